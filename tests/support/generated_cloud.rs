//! The deterministic 1M-point cloud of `tools/make_point_fixtures.py` (`generated_cloud`), shared
//! by the point-cloud tests and benches so both use the exact cloud the reference goldens describe.

/// splitmix64's output for state `(i + 1) * 0x9E3779B97F4A7C15`.
pub fn splitmix(i: u64) -> u64 {
    let mut z = i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generated cloud as a binary little-endian PLY: float x y z, uchar red green blue.
pub fn generated_ply(points: usize) -> Vec<u8> {
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
