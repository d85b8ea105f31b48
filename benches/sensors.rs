//! Sensor preprocessing on the committed fixture inputs: a 640x480 16-bit PNG depth map through
//! the disparity conversion, a 2000-sample 6-channel IMU CSV (Weaviate's layout, with an index
//! column), and a 640x512 8-bit thermal frame. `tools/bench_sensor_reference.py` times the
//! reference on the same files.

use std::hint::black_box;
use std::path::Path;

use bindery::modality::depth::{DepthLimits, DepthPayload, DepthPreprocess, DepthPreprocessor};
use bindery::modality::imu::{ImuLimits, ImuPayload, ImuPreprocess, ImuPreprocessor};
use bindery::modality::thermal::{ThermalLimits, ThermalPreprocess, ThermalPreprocessor};
use criterion::{Criterion, criterion_group, criterion_main};

fn fixture(relative: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn benches(c: &mut Criterion) {
    let depth = DepthPreprocessor::new(&DepthPreprocess::imagebind(), DepthLimits::default())
        .expect("valid depth values");
    let map = DepthPayload { data: fixture("depth/kinect_640x480.png"), ..Default::default() };
    let mut out = vec![0f32; depth.tensor_len()];
    c.bench_function("depth_png16_640x480_disparity", |b| {
        b.iter(|| depth.preprocess_into(black_box(&map), &mut out).expect("depth map"))
    });

    let imu = ImuPreprocessor::new(&ImuPreprocess::imagebind(), ImuLimits::default());
    let csv = ImuPayload { data: fixture("imu/weaviate_2000.csv"), ..Default::default() };
    let mut out = vec![0f32; imu.tensor_len()];
    c.bench_function("imu_csv_2000x6", |b| {
        b.iter(|| imu.preprocess_into(black_box(&csv), &mut out).expect("csv"))
    });

    let thermal = ThermalPreprocessor::new(&ThermalPreprocess::imagebind(), ThermalLimits::default())
        .expect("valid thermal values");
    let frame = fixture("thermal/gray8_640x512.png");
    let mut out = vec![0f32; thermal.tensor_len()];
    c.bench_function("thermal_png8_640x512", |b| {
        b.iter(|| thermal.preprocess_into(black_box(&frame), &mut out).expect("frame"))
    });
}

/// The decode step alone, to show where the time goes.
fn decode(c: &mut Criterion) {
    use bindery::modality::image::ImageLimits;
    use bindery::modality::image::gray::decode_gray;
    let limits = ImageLimits::default();
    for (name, file) in [
        ("decode_png16_640x480", "depth/kinect_640x480.png"),
        ("decode_png8_640x512", "thermal/gray8_640x512.png"),
    ] {
        let bytes = fixture(file);
        c.bench_function(name, |b| b.iter(|| decode_gray(black_box(&bytes), &limits).expect("image")));
    }
}

criterion_group!(sensors, benches, decode);
criterion_main!(sensors);
