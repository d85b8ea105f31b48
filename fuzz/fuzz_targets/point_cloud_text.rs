//! XYZ/PTS/CSV text point clouds.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bindery::fuzzing::point_cloud_text(data));
