//! `model.toml` parsing and validation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bindery::fuzzing::manifest(data));
