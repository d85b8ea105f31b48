//! Points reordered into small spatial leaves with bounding boxes, so that farthest point
//! sampling and the neighbour search can skip whole leaves without changing any result.
//!
//! A leaf is skipped only when a lower bound of the distance from the query to every point of
//! the leaf proves that no point in it can matter. The bound is computed with the same f32
//! operations as the point distances (`(dx*dx + dy*dy) + dz*dz`), on per-axis gaps that are never
//! larger than the point's own differences; every one of those operations is monotonic, so the
//! bound never exceeds the distance the exact scan would have computed for any point in the leaf.

/// Spatial leaves over a cloud; point data is stored leaf by leaf (structure of arrays).
pub(crate) struct Leaves {
    /// Coordinates in leaf order.
    pub x: Vec<f32>,
    pub y: Vec<f32>,
    pub z: Vec<f32>,
    /// Original index of each reordered point.
    pub ids: Vec<u32>,
    /// Reordered position of each original point.
    pub position: Vec<u32>,
    /// `[start, end)` of each leaf in the reordered arrays.
    pub ranges: Vec<(usize, usize)>,
    /// Leaf of each original point.
    pub leaf: Vec<u32>,
    /// Bounding box corners of each leaf.
    pub lo: Vec<[f32; 3]>,
    pub hi: Vec<[f32; 3]>,
}

impl Leaves {
    /// Splits `xyz` (N*3) at the median of the widest axis until leaves hold at most `leaf_size`.
    pub fn build(xyz: &[f32], leaf_size: usize) -> Self {
        let n = xyz.len() / 3;
        let leaf_size = leaf_size.max(1);
        // Points travel with their index so the partitioning reads memory in order.
        let mut pts: Vec<([f32; 3], u32)> =
            xyz.chunks_exact(3).zip(0u32..).map(|(p, i)| ([p[0], p[1], p[2]], i)).collect();
        let mut ranges = Vec::with_capacity(n / leaf_size * 2 + 1);
        let mut stack = vec![(0usize, n)];
        while let Some((start, end)) = stack.pop() {
            if end - start <= leaf_size {
                if end > start {
                    ranges.push((start, end));
                }
                continue;
            }
            let (lo, hi) = bounds(&pts[start..end]);
            let axis = (0..3).max_by(|&a, &b| (hi[a] - lo[a]).total_cmp(&(hi[b] - lo[b]))).unwrap_or(0);
            let mid = (end - start) / 2;
            // (coordinate, index) is a total order, so the split is deterministic.
            pts[start..end]
                .select_nth_unstable_by(mid, |a, b| a.0[axis].total_cmp(&b.0[axis]).then(a.1.cmp(&b.1)));
            // Right half first so leaves come out left to right.
            stack.push((start + mid, end));
            stack.push((start, start + mid));
        }
        let (lo, hi) = ranges.iter().map(|&(s, e)| bounds(&pts[s..e])).unzip();
        let mut position = vec![0u32; n];
        let mut leaf = vec![0u32; n];
        for (l, &(s, e)) in ranges.iter().enumerate() {
            for (pos, p) in pts.iter().enumerate().take(e).skip(s) {
                position[p.1 as usize] = pos as u32;
                leaf[p.1 as usize] = l as u32;
            }
        }
        Self {
            x: pts.iter().map(|p| p.0[0]).collect(),
            y: pts.iter().map(|p| p.0[1]).collect(),
            z: pts.iter().map(|p| p.0[2]).collect(),
            ids: pts.iter().map(|p| p.1).collect(),
            position,
            ranges,
            leaf,
            lo,
            hi,
        }
    }

    /// A lower bound of [`sq_dist`] from `q` to every point of leaf `leaf` (see module docs).
    #[inline]
    pub fn lower_bound(&self, leaf: usize, q: [f32; 3]) -> f32 {
        let (lo, hi) = (self.lo[leaf], self.hi[leaf]);
        let gap = |a: usize| (lo[a] - q[a]).max(q[a] - hi[a]).max(0.0);
        let (dx, dy, dz) = (gap(0), gap(1), gap(2));
        (dx * dx + dy * dy) + dz * dz
    }
}

/// Squared distance in the reference's operation order: `(dx*dx + dy*dy) + dz*dz`, in f32.
#[inline(always)]
pub(crate) fn sq_dist(px: f32, py: f32, pz: f32, q: [f32; 3]) -> f32 {
    let dx = px - q[0];
    let dy = py - q[1];
    let dz = pz - q[2];
    (dx * dx + dy * dy) + dz * dz
}

fn bounds(pts: &[([f32; 3], u32)]) -> ([f32; 3], [f32; 3]) {
    let mut lo = [f32::INFINITY; 3];
    let mut hi = [f32::NEG_INFINITY; 3];
    for (p, _) in pts {
        for a in 0..3 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
        }
    }
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_lands_in_one_leaf_inside_its_box() {
        let xyz: Vec<f32> = (0..3000).map(|i| ((i * 7919) % 1013) as f32 * 0.37).collect();
        let leaves = Leaves::build(&xyz, 16);
        let mut seen = vec![false; 1000];
        for (l, &(s, e)) in leaves.ranges.iter().enumerate() {
            assert!(e - s <= 16 && e > s);
            for p in s..e {
                let id = leaves.ids[p] as usize;
                assert!(!seen[id]);
                seen[id] = true;
                assert_eq!(leaves.position[id] as usize, p);
                let q = [leaves.x[p], leaves.y[p], leaves.z[p]];
                let inside = (0..3).all(|a| leaves.lo[l][a] <= q[a] && q[a] <= leaves.hi[l][a]);
                assert!(inside, "point {id} outside its leaf box");
                // The bound is at most the distance of every member.
                let probe = [1.5, -3.0, 400.0];
                assert!(leaves.lower_bound(l, probe) <= sq_dist(q[0], q[1], q[2], probe));
            }
        }
        assert!(seen.iter().all(|s| *s));
    }
}
