//! A collection's `manifest.json`: parsing, validation, writing back.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bindery::fuzzing::collection_manifest(data));
