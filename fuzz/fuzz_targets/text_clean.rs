//! Bytes as text through the reference cleanup: ftfy's fixes with mojibake repair, HTML
//! unescaping, whitespace and case.
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::crash_only_on_own_panics();
    bindery::fuzzing::run("text_clean", data);
});
