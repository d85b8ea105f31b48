//! Collection write-ahead log decoding: frame headers, checksums and record payloads.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bindery::fuzzing::wal(data));
