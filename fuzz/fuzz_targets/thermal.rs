//! Thermal image bytes through the whole thermal preprocessing (decode to grey at 8 or 16 bits,
//! resize, crop, normalise).
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::crash_only_on_own_panics();
    bindery::fuzzing::run("thermal", data);
});
