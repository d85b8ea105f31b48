//! Point-cloud preprocessing: parsing a 1M-point binary PLY, grouping 10000 points into 512
//! groups of 32 (farthest point sampling + nearest neighbours), and the whole pipeline on the
//! 1M-point file (farthest point sampling down to 8192 points dominates it).
//!
//! The cloud is generated at start-up with the formula of `tools/make_point_fixtures.py`
//! (`generated_cloud`); `tools/bench_point_reference.py` times the reference (plyfile, fpsample,
//! torch) on the same data.

use std::hint::black_box;

use bindery::modality::point_cloud::fps::farthest_point_sampling;
use bindery::modality::point_cloud::group::{PointColors, group, normalize};
use bindery::modality::point_cloud::{PointCloudInput, PointCloudLimits, PointCloudPreprocessor};
use bindery::model::manifest::PointCloudPreprocess;
use criterion::{Criterion, criterion_group, criterion_main};

const POINTS: usize = 1_000_000;

fn splitmix(i: u64) -> u64 {
    let mut z = i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Binary little-endian PLY: float x y z, uchar red green blue.
fn generated_ply(points: usize) -> Vec<u8> {
    let header = format!(
        "ply\nformat binary_little_endian 1.0\nelement vertex {points}\nproperty float x\n\
         property float y\nproperty float z\nproperty uchar red\nproperty uchar green\n\
         property uchar blue\nend_header\n"
    );
    let mut out = header.into_bytes();
    out.reserve(points * 15);
    let coord = |v: u64| ((v as f64 - 1_048_576.0) / 1_048_576.0) as f32;
    for i in 0..points as u64 {
        let (h, g) = (splitmix(i), splitmix(i + (1 << 32)));
        for v in [h >> 43, (h >> 22) & 0x1f_ffff, (h >> 1) & 0x1f_ffff] {
            out.extend(coord(v).to_le_bytes());
        }
        out.extend([g as u8, (g >> 8) as u8, (g >> 16) as u8]);
    }
    out
}

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
    let ply = generated_ply(POINTS);
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
