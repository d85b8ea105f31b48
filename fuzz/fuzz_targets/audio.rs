//! Audio bytes through the whole audio preprocessing (decode, resample, clips, filterbank).
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::crash_only_on_own_panics();
    bindery::fuzzing::audio(data);
});
