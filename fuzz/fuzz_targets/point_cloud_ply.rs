//! PLY point clouds (the reader chosen by the `ply` hint).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bindery::fuzzing::point_cloud_ply(data));
