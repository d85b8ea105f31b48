//! IMU file bytes (CSV or NPY) through the whole IMU preprocessing (parse, channel order,
//! pad or crop).
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::crash_only_on_own_panics();
    bindery::fuzzing::run("imu", data);
});
