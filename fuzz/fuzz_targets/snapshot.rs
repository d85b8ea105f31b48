//! Collection snapshot decoding: file header, frames, checksums, header and row chunks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bindery::fuzzing::snapshot(data));
