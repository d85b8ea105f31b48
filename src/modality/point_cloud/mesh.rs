//! Area-weighted random sampling of a triangle mesh surface, reproducible bit for bit.
//!
//! The algorithm, fixed so that any implementation can reproduce the points exactly (all
//! arithmetic is IEEE-754 binary64 unless said otherwise; vertices are the f32 values read from
//! the file, widened):
//!
//! 1. Triangles: every face `(v0, v1, ..., vn-1)` with n >= 3 becomes the fan `(v0, vi, vi+1)`
//!    for i = 1..n-2, faces in file order. Triangles touching a vertex with a non-finite
//!    coordinate or colour are left out.
//! 2. Weights: for triangle `(a, b, c)`, `e1 = b - a`, `e2 = c - a`,
//!    `cx = e1y*e2z - e1z*e2y`, `cy = e1z*e2x - e1x*e2z`, `cz = e1x*e2y - e1y*e2x`,
//!    `w = sqrt((cx*cx + cy*cy) + cz*cz)` (twice the area). Cumulative sums `C[t]` are taken in
//!    order (`C[t] = C[t-1] + w[t]`); `T = C[last]`. When there is no triangle or `T` is not a
//!    positive finite number, the mesh is used as a point cloud of its finite vertices instead.
//! 3. Random numbers: `rand_pcg::Pcg32` (PCG XSH RR 64/32) created with
//!    `Pcg32::new(0xcafe_f00d_d15e_a5e5, 0x0a02_bdbf_7bb3_c0a7)`; a uniform double in [0, 1) is
//!    `((a >> 5) * 2^26 + (b >> 6)) / 2^53` for two consecutive 32-bit outputs `a`, `b`.
//! 4. For each of the `count` samples, draw `u`, `r1`, `r2` in that order. The triangle is the
//!    first `t` with `C[t] > u * T` (the last triangle if none). With `s = sqrt(r1)`,
//!    `wa = 1 - s`, `wb = s * (1 - r2)`, `wc = s * r2`, the point is
//!    `(wa*a + wb*b) + wc*c` per coordinate, rounded to f32; vertex colours, when every vertex has
//!    one, are interpolated with the same weights.

use rand_pcg::Pcg32;
use rand_pcg::rand_core::Rng;

use super::Cloud;

/// RNG state and stream of step 3 (module docs).
const SEED_STATE: u64 = 0xcafe_f00d_d15e_a5e5;
const SEED_STREAM: u64 = 0x0a02_bdbf_7bb3_c0a7;

/// A triangle mesh as read from a file.
#[derive(Debug, Clone, Default)]
pub struct Mesh {
    /// V*3 vertex coordinates.
    pub vertices: Vec<f32>,
    /// V*3 vertex colours in [0, 1], when every vertex has one.
    pub colors: Option<Vec<f32>>,
    /// Triangles (already fan-triangulated), vertex indices checked to be in range.
    pub triangles: Vec<[u32; 3]>,
}

impl Mesh {
    /// Samples `count` surface points (module docs); returns the cloud and how many vertices
    /// had a non-finite coordinate or colour.
    pub fn sample(&self, count: usize) -> (Cloud, u64) {
        let nv = self.vertices.len() / 3;
        let finite: Vec<bool> = (0..nv)
            .map(|v| {
                self.vertices[3 * v..3 * v + 3].iter().all(|x| x.is_finite())
                    && self.colors.as_ref().is_none_or(|c| c[3 * v..3 * v + 3].iter().all(|x| x.is_finite()))
            })
            .collect();
        let dropped = finite.iter().filter(|f| !**f).count() as u64;
        let vertex = |v: u32| -> [f64; 3] {
            let i = 3 * v as usize;
            [f64::from(self.vertices[i]), f64::from(self.vertices[i + 1]), f64::from(self.vertices[i + 2])]
        };
        let mut triangles = Vec::with_capacity(self.triangles.len());
        let mut cumulative = Vec::with_capacity(self.triangles.len());
        let mut total = 0f64;
        for t in &self.triangles {
            // Parsers check indices; a hand-built mesh with a bad index loses that triangle.
            if !t.iter().all(|&v| finite.get(v as usize).copied().unwrap_or(false)) {
                continue;
            }
            let (a, b, c) = (vertex(t[0]), vertex(t[1]), vertex(t[2]));
            let e1 = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
            let e2 = [c[0] - a[0], c[1] - a[1], c[2] - a[2]];
            let cx = e1[1] * e2[2] - e1[2] * e2[1];
            let cy = e1[2] * e2[0] - e1[0] * e2[2];
            let cz = e1[0] * e2[1] - e1[1] * e2[0];
            total += ((cx * cx + cy * cy) + cz * cz).sqrt();
            triangles.push(*t);
            cumulative.push(total);
        }
        if triangles.is_empty() || !(total.is_finite() && total > 0.0) {
            return (self.vertex_cloud(&finite), dropped);
        }
        let mut rng = Pcg32::new(SEED_STATE, SEED_STREAM);
        let mut xyz = Vec::with_capacity(count * 3);
        let mut rgb = self.colors.as_ref().map(|_| Vec::with_capacity(count * 3));
        for _ in 0..count {
            let u = unit_f64(&mut rng);
            let r1 = unit_f64(&mut rng);
            let r2 = unit_f64(&mut rng);
            let target = u * total;
            let t = cumulative.partition_point(|&c| c <= target).min(triangles.len() - 1);
            let s = r1.sqrt();
            let w = [1.0 - s, s * (1.0 - r2), s * r2];
            let tri = triangles[t];
            let mix = |values: &[f32], out: &mut Vec<f32>| {
                for axis in 0..3 {
                    let at = |v: u32| f64::from(values[3 * v as usize + axis]);
                    let p = (w[0] * at(tri[0]) + w[1] * at(tri[1])) + w[2] * at(tri[2]);
                    out.push(p as f32);
                }
            };
            mix(&self.vertices, &mut xyz);
            if let (Some(colors), Some(out)) = (&self.colors, rgb.as_mut()) {
                mix(colors, out);
            }
        }
        (Cloud { xyz, rgb }, dropped)
    }

    fn vertex_cloud(&self, finite: &[bool]) -> Cloud {
        let pick = |values: &[f32]| -> Vec<f32> {
            values
                .chunks_exact(3)
                .zip(finite)
                .filter(|(_, f)| **f)
                .flat_map(|(p, _)| p.iter().copied())
                .collect()
        };
        Cloud { xyz: pick(&self.vertices), rgb: self.colors.as_deref().map(pick) }
    }
}

/// Uniform double in [0, 1) from two 32-bit outputs (module docs, step 3).
fn unit_f64(rng: &mut Pcg32) -> f64 {
    let a = u64::from(rng.next_u32() >> 5);
    let b = u64::from(rng.next_u32() >> 6);
    (a * (1 << 26) + b) as f64 / (1u64 << 53) as f64
}

/// Fan-triangulates a polygon into `out` (module docs, step 1); fewer than 3 vertices add nothing.
pub(crate) fn fan(polygon: &[u32], out: &mut Vec<[u32; 3]>) {
    if polygon.len() >= 3 {
        for i in 1..polygon.len() - 1 {
            out.push([polygon[0], polygon[i], polygon[i + 1]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcg32_stream_is_the_documented_generator() {
        // PCG XSH RR 64/32 written out from its published definition.
        let mult = 6_364_136_223_846_793_005u64;
        let inc = (SEED_STREAM << 1) | 1;
        let mut state = SEED_STATE.wrapping_add(inc).wrapping_mul(mult).wrapping_add(inc);
        let mut rng = Pcg32::new(SEED_STATE, SEED_STREAM);
        for _ in 0..100 {
            let old = state;
            state = old.wrapping_mul(mult).wrapping_add(inc);
            let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
            let want = xorshifted.rotate_right((old >> 59) as u32);
            assert_eq!(rng.next_u32(), want);
        }
    }

    #[test]
    fn samples_lie_on_the_triangles_with_area_weighting() {
        // Two triangles in z = 0 and z = 1; the second has 3 times the area.
        let mesh = Mesh {
            vertices: vec![
                0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, //
                0.0, 0.0, 1.0, 3.0, 0.0, 1.0, 0.0, 1.0, 1.0,
            ],
            colors: None,
            triangles: vec![[0, 1, 2], [3, 4, 5]],
        };
        let (cloud, dropped) = mesh.sample(4000);
        assert_eq!(dropped, 0);
        assert_eq!(cloud.len(), 4000);
        let upper = cloud.xyz.chunks_exact(3).filter(|p| p[2] == 1.0).count();
        assert!((2850..3150).contains(&upper), "{upper}");
        for p in cloud.xyz.chunks_exact(3) {
            let scale = if p[2] == 1.0 { 3.0 } else { 1.0 };
            assert!(p[0] >= 0.0 && p[1] >= 0.0 && p[0] / scale + p[1] <= 1.0 + 1e-6);
        }
        // Same input, same points.
        assert_eq!(mesh.sample(4000).0, cloud);
    }

    #[test]
    fn degenerate_mesh_falls_back_to_vertices() {
        let mesh = Mesh {
            vertices: vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, f32::NAN, 0.0, 0.0],
            colors: None,
            triangles: vec![[0, 1, 2], [0, 1, 3]],
        };
        let (cloud, dropped) = mesh.sample(10);
        assert_eq!(dropped, 1);
        assert_eq!(cloud.xyz, vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
    }
}
