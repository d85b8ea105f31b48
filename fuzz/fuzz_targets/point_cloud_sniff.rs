//! Point clouds without a hint: format detection from the content, then whichever reader it picks.
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::read_cloud(data, None));
