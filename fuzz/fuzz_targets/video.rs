//! Video bytes through FFmpeg's demuxers from memory, bindery's frame index, and decoding of the
//! first and last frames to RGB (the `video` feature: FFmpeg's libraries).
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::crash_only_on_own_panics();
    bindery::fuzzing::run("video", data);
});
