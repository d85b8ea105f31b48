//! Point-cloud preprocessing: parsing a 1M-point binary PLY, grouping 10000 points into 512
//! groups of 32 (farthest point sampling + nearest neighbours), and the whole pipeline on the
//! 1M-point file (farthest point sampling down to 8192 points dominates it).
//!
//! The cloud is generated at start-up with the formula of `tools/make_point_fixtures.py`
//! (`generated_cloud`); `tools/bench_point_reference.py` times the reference (plyfile, fpsample,
//! torch) on the same data.

#[path = "../tests/support/generated_cloud.rs"]
mod generated_cloud;

use std::hint::black_box;

use bindery::modality::point_cloud::PointCloudPreprocess;
use bindery::modality::point_cloud::fps::farthest_point_sampling;
use bindery::modality::point_cloud::group::{PointColors, group, normalize};
use bindery::modality::point_cloud::{PointCloudInput, PointCloudLimits, PointCloudPreprocessor};
use criterion::{Criterion, criterion_group, criterion_main};

const POINTS: usize = 1_000_000;

fn spec() -> PointCloudPreprocess {
    PointCloudPreprocess {
        npoints: 8192,
        num_group: 512,
        group_size: 32,
        use_color: true,
        default_color: 0.4,
        min_points: 1,
        center_input: "center".into(),
        mesh_samples: 10_000,
    }
}

fn benches(c: &mut Criterion) {
    let ply = generated_cloud::generated_ply(POINTS);
    let p = PointCloudPreprocessor::new(&spec(), PointCloudLimits::default());
    let input = PointCloudInput::File { data: &ply, format_hint: None };

    c.bench_function("parse_ply_1m", |b| {
        b.iter(|| black_box(p.read(black_box(input)).map(|(cloud, _)| cloud.len())))
    });

    let (cloud, _) = p.read(input).expect("generated PLY parses");
    let mut xyz = cloud.xyz[..10_000 * 3].to_vec();
    normalize(&mut xyz).expect("finite cloud");
    let rgb = cloud.rgb.as_ref().map(|c| c[..10_000 * 3].to_vec()).unwrap_or_default();
    let mut neighborhood = vec![0f32; 512 * 32 * 6];
    let mut center = vec![0f32; 512 * 3];
    c.bench_function("group_10k_512x32", |b| {
        b.iter(|| {
            group(
                black_box(&xyz),
                Some(PointColors::PerPoint(&rgb)),
                512,
                32,
                &mut neighborhood,
                &mut center,
                None,
            )
        })
    });

    c.bench_function("fps_10k_512", |b| b.iter(|| farthest_point_sampling(black_box(&xyz), 512)));

    let mut whole = c.benchmark_group("whole");
    whole.sample_size(10);
    whole.bench_function("preprocess_ply_1m", |b| {
        b.iter(|| {
            p.preprocess_into(black_box(input), &mut neighborhood, &mut center)
                .expect("generated PLY preprocesses")
        })
    });
    whole.finish();
}

criterion_group!(point_cloud, benches);
criterion_main!(point_cloud);
