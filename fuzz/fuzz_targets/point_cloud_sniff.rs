//! Point clouds without a hint: format detection from the content, then whichever reader it picks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bindery::fuzzing::point_cloud_sniff(data));
