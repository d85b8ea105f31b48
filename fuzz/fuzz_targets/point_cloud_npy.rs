//! NPY point clouds (the reader chosen by the `npy` hint).
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::read_cloud(data, Some("npy")));
