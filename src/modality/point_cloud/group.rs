//! ULIP's `pc_normalize` and PointBERT's `Group` (centres by farthest point sampling, k nearest
//! neighbours of each centre).

use super::PointCloudError;
use super::fps::sample_leaves;
use super::spatial::{Leaves, sq_dist};

/// Colour channels appended to each neighbour.
#[derive(Debug, Clone, Copy)]
pub enum PointColors<'a> {
    /// N*3 colours, one per point.
    PerPoint(&'a [f32]),
    /// The same value in every channel of every point.
    Uniform(f32),
}

/// ULIP's `pc_normalize` in place on N*3 coordinates, with numpy's float32 arithmetic:
///
/// * centroid: per axis, the f32 sum of the points in order (`((p0 + p1) + p2) + ...`, what
///   `np.mean(pc, axis=0)` does on a C-ordered float32 array) divided by N;
/// * `pc - centroid`;
/// * scale `m`: the largest `sqrt((x*x + y*y) + z*z)` (`np.sum(pc**2, axis=1)`);
/// * `pc / m`, skipped when `m` is 0 (every point identical) instead of dividing by zero.
pub fn normalize(xyz: &mut [f32]) -> Result<(), PointCloudError> {
    let n = xyz.len() / 3;
    if n == 0 {
        return Ok(());
    }
    let mut sum = [0f32; 3];
    for p in xyz.chunks_exact(3) {
        for a in 0..3 {
            sum[a] += p[a];
        }
    }
    let centroid = sum.map(|s| s / n as f32);
    if centroid.iter().any(|c| !c.is_finite()) {
        return Err(PointCloudError::OutOfRange("the centroid overflows f32".into()));
    }
    let mut m = 0f32;
    for p in xyz.chunks_exact_mut(3) {
        for a in 0..3 {
            p[a] -= centroid[a];
        }
        let r = ((p[0] * p[0] + p[1] * p[1]) + p[2] * p[2]).sqrt();
        m = m.max(r);
    }
    if !m.is_finite() {
        return Err(PointCloudError::OutOfRange("the distance from the centroid overflows f32".into()));
    }
    if m > 0.0 {
        for v in xyz.iter_mut() {
            *v /= m;
        }
    }
    Ok(())
}

/// PointBERT's grouping of N*3 (normalised) coordinates.
///
/// Centres: `num_group` points by [`farthest_point_sampling`](super::fps::farthest_point_sampling)
/// (start index 0), in selection order;
/// `center` (`[G, 3]`) receives their coordinates. Neighbourhoods: for each centre, the
/// `group_size` points with the smallest squared distance (`(dx*dx + dy*dy) + dz*dz` in f32, ties
/// to the lower index), nearest first, as `torch.topk(..., largest=False, sorted=True)` orders
/// them; `neighborhood` (`[G, K, C]`) receives `xyz - centre` and, when `colors` is given, the
/// point's absolute colour (C = 6; else C = 3). Returns the centre indices; `neighbors`, when
/// given, receives the G*K neighbour indices.
///
/// The caller sizes the slots: `neighborhood` G*K*C values, `center` G*3, with K <= N.
pub fn group(
    xyz: &[f32],
    colors: Option<PointColors<'_>>,
    num_group: usize,
    group_size: usize,
    neighborhood: &mut [f32],
    center: &mut [f32],
    mut neighbors: Option<&mut Vec<u32>>,
) -> Vec<u32> {
    // Leaves of at most 2K points hold at least K each, so the query's own leaf alone fills the
    // candidate list with close points and the k-th distance prunes well from the start. The
    // same leaves serve the centre sampling.
    let leaves = Leaves::build(xyz, (2 * group_size).max(16));
    let centers = sample_leaves(&leaves, num_group);
    if group_size == 0 {
        return centers;
    }
    let channels = if colors.is_some() { 6 } else { 3 };
    let mut search = Knn::new(&leaves, group_size);
    let rows = neighborhood.chunks_exact_mut(group_size * channels);
    for ((&c, row), out_c) in centers.iter().zip(rows).zip(center.chunks_exact_mut(3)) {
        let c = c as usize;
        let q = [xyz[3 * c], xyz[3 * c + 1], xyz[3 * c + 2]];
        out_c.copy_from_slice(&q);
        let found = search.query(q, leaves.leaf[c] as usize);
        if let Some(out) = neighbors.as_mut() {
            out.extend(found.iter().map(|&(_, id)| id));
        }
        for (&(_, id), slot) in found.iter().zip(row.chunks_exact_mut(channels)) {
            let i = id as usize;
            for a in 0..3 {
                slot[a] = xyz[3 * i + a] - q[a];
            }
            match colors {
                Some(PointColors::PerPoint(rgb)) => {
                    slot[3..6].copy_from_slice(&rgb[3 * i..3 * i + 3]);
                }
                Some(PointColors::Uniform(v)) => slot[3..6].fill(v),
                None => {}
            }
        }
    }
    centers
}

/// Exact k-nearest-neighbour search over spatial leaves.
struct Knn<'a> {
    leaves: &'a Leaves,
    k: usize,
    /// Current best `(distance, index)` pairs, sorted ascending.
    best: Vec<(f32, u32)>,
}

impl<'a> Knn<'a> {
    fn new(leaves: &'a Leaves, k: usize) -> Self {
        Self { leaves, k, best: Vec::with_capacity(k + 1) }
    }

    /// The `k` nearest points of `q`, ordered by (distance, index). Scanning `start` (the leaf
    /// holding `q`) first makes the k-th distance small early, so most leaves are skipped; the
    /// answer does not depend on `start`.
    fn query(&mut self, q: [f32; 3], start: usize) -> &[(f32, u32)] {
        self.best.clear();
        self.scan(start, q);
        for l in (0..self.leaves.ranges.len()).filter(|&l| l != start) {
            // A leaf whose bound exceeds the k-th distance holds no point that could enter,
            // not even on a tie (which would need an equal distance).
            let full = self.best.len() == self.k;
            if full && self.best.last().is_some_and(|w| self.leaves.lower_bound(l, q) > w.0) {
                continue;
            }
            self.scan(l, q);
        }
        &self.best
    }

    fn scan(&mut self, leaf: usize, q: [f32; 3]) {
        let lv = self.leaves;
        let (s, e) = lv.ranges[leaf];
        for i in s..e {
            let cand = (sq_dist(lv.x[i], lv.y[i], lv.z[i], q), lv.ids[i]);
            if self.best.len() == self.k {
                match self.best.last() {
                    Some(w) if less(cand, *w) => {
                        self.best.pop();
                    }
                    _ => continue,
                }
            }
            let at = self.best.partition_point(|b| less(*b, cand));
            self.best.insert(at, cand);
        }
    }
}

#[inline]
fn less(a: (f32, u32), b: (f32, u32)) -> bool {
    a.0 < b.0 || (a.0 == b.0 && a.1 < b.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knn_matches_a_full_sort() {
        let mut xyz = Vec::new();
        let mut s = 7u32;
        for i in 0..2000 {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            // Every third point sits on a coarse lattice to create exact distance ties.
            let v = if i % 3 == 0 { ((s >> 28) as f32) * 0.125 } else { (s >> 8) as f32 / 16_777_216.0 };
            xyz.push(v);
        }
        let n = xyz.len() / 3;
        let leaves = Leaves::build(&xyz, 8);
        let mut knn = Knn::new(&leaves, 40);
        for c in (0..n).step_by(37) {
            let q = [xyz[3 * c], xyz[3 * c + 1], xyz[3 * c + 2]];
            let mut all: Vec<(f32, u32)> =
                (0..n).map(|i| (sq_dist(xyz[3 * i], xyz[3 * i + 1], xyz[3 * i + 2], q), i as u32)).collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            assert_eq!(knn.query(q, leaves.leaf[c] as usize), &all[..40]);
            // Any starting leaf gives the same answer.
            assert_eq!(knn.query(q, 0), &all[..40]);
        }
    }

    #[test]
    fn normalize_centres_and_scales() {
        let mut xyz = vec![1.0, 1.0, 1.0, 3.0, 1.0, 1.0];
        normalize(&mut xyz).unwrap();
        assert_eq!(xyz, vec![-1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
        let mut same = vec![2.5; 9];
        normalize(&mut same).unwrap();
        assert_eq!(same, vec![0.0; 9]);
        let mut huge = vec![3e38, 0.0, 0.0, 3e38, 0.0, 0.0];
        assert!(matches!(normalize(&mut huge), Err(PointCloudError::OutOfRange(_))));
    }
}
