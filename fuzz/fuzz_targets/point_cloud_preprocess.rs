//! Small point clouds without a hint through reading, sampling, normalisation and grouping.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bindery::fuzzing::point_cloud_preprocess(data));
