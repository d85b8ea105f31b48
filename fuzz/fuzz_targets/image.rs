//! Image bytes through the whole image preprocessing (decode, convert, resize, crop, normalise).
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::crash_only_on_own_panics();
    bindery::fuzzing::image(data);
});
