//! PCD point clouds (the reader chosen by the `pcd` hint).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bindery::fuzzing::point_cloud_pcd(data));
