//! Depth map bytes (16-bit images, NPY, 8-bit images) through the whole depth preprocessing under
//! both conversions (disparity and grayscale).
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::crash_only_on_own_panics();
    bindery::fuzzing::run("depth", data);
});
