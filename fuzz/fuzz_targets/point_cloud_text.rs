//! XYZ/PTS/CSV text point clouds.
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::read_cloud(data, Some("csv")));
