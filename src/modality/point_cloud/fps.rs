//! Farthest point sampling, exact and fast.
//!
//! Defined as the textbook O(N*S) loop (the `fps_sampling` of the `fpsample` package and
//! PointNet++'s `furthest_point_sample`): start at index 0; keep, for every point, the smallest
//! squared distance to the points selected so far (f32, `(dx*dx + dy*dy) + dz*dz` with
//! `d = p - selected`, updated only when strictly smaller); select the point with the largest such
//! distance, ties to the lowest index. Once every point is at distance 0 (fewer distinct points
//! than samples) that rule selects index 0 again, then keeps doing so.
//!
//! The implementation gives exactly those indices but skips work: points live in spatial leaves
//! (`spatial.rs`), each leaf remembers its largest distance and the lowest index holding it, and
//! a leaf whose lower-bound distance to the new sample is not below its largest distance cannot
//! have any point updated, so it is not visited. Selecting the maximum over leaves with ties to the
//! lowest index is the same as selecting it over points.

use super::spatial::{Leaves, sq_dist};

/// Indices of `count` points of `xyz` (N*3) chosen by farthest point sampling (module docs).
///
/// Returns an empty vector when `xyz` holds no point.
pub fn farthest_point_sampling(xyz: &[f32], count: usize) -> Vec<u32> {
    let n = xyz.len() / 3;
    if n == 0 || count == 0 {
        return Vec::new();
    }
    // Big leaves keep the per-sample scan over leaves short on large clouds; small ones skip
    // more points on small clouds.
    let leaf_size = ((n as f64).sqrt() / 2.0).clamp(32.0, 1024.0) as usize;
    sample_leaves(&Leaves::build(&xyz[..3 * n], leaf_size), count)
}

/// [`farthest_point_sampling`] over already built leaves (at least one point).
pub(crate) fn sample_leaves(leaves: &Leaves, count: usize) -> Vec<u32> {
    let n = leaves.ids.len();
    if n == 0 || count == 0 {
        return Vec::new();
    }
    let mut dist = vec![f32::INFINITY; n];
    let nl = leaves.ranges.len();
    let mut leaf_max = vec![f32::INFINITY; nl];
    // Original index of the point holding `leaf_max` (the lowest one on ties).
    let mut leaf_arg = vec![0u32; nl];
    for (l, &(s, e)) in leaves.ranges.iter().enumerate() {
        leaf_arg[l] = leaves.ids[s..e].iter().copied().min().unwrap_or(0);
    }
    let mut selected = Vec::with_capacity(count);
    let mut current = 0usize;
    selected.push(0u32);
    while selected.len() < count {
        let p = leaves.position[current] as usize;
        let q = [leaves.x[p], leaves.y[p], leaves.z[p]];
        for l in 0..nl {
            if leaves.lower_bound(l, q) >= leaf_max[l] {
                continue;
            }
            let (s, e) = leaves.ranges[l];
            let span = &mut dist[s..e];
            // Two passes: the update vectorises; the arg-max with its tie rule is one scalar pass
            // (measured faster than branch-free max and index passes).
            for (((m, &x), &y), &z) in
                span.iter_mut().zip(&leaves.x[s..e]).zip(&leaves.y[s..e]).zip(&leaves.z[s..e])
            {
                let d = sq_dist(x, y, z, q);
                if d < *m {
                    *m = d;
                }
            }
            let (mut best, mut best_id) = (f32::NEG_INFINITY, u32::MAX);
            for (&m, &id) in span.iter().zip(&leaves.ids[s..e]) {
                if m > best || (m == best && id < best_id) {
                    best = m;
                    best_id = id;
                }
            }
            leaf_max[l] = best;
            leaf_arg[l] = best_id;
        }
        let mut best_leaf = 0;
        for l in 1..nl {
            let (m, b) = (leaf_max[l], leaf_max[best_leaf]);
            if m > b || (m == b && leaf_arg[l] < leaf_arg[best_leaf]) {
                best_leaf = l;
            }
        }
        current = leaf_arg[best_leaf] as usize;
        selected.push(current as u32);
    }
    selected
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The module-docs definition, written as the plain loop.
    fn plain(xyz: &[f32], count: usize) -> Vec<u32> {
        let n = xyz.len() / 3;
        let mut dist = vec![f32::INFINITY; n];
        let mut out = vec![0u32];
        let mut cur = 0;
        while out.len() < count {
            let q = [xyz[3 * cur], xyz[3 * cur + 1], xyz[3 * cur + 2]];
            let mut best = 0;
            for i in 0..n {
                let d = sq_dist(xyz[3 * i], xyz[3 * i + 1], xyz[3 * i + 2], q);
                if d < dist[i] {
                    dist[i] = d;
                }
                if dist[i] > dist[best] {
                    best = i;
                }
            }
            cur = best;
            out.push(cur as u32);
        }
        out
    }

    #[test]
    fn leaves_do_not_change_the_selection() {
        // A lattice (many exact ties) plus a pseudo-random cloud.
        let mut xyz = Vec::new();
        for i in 0..12 {
            for j in 0..12 {
                for k in 0..12 {
                    xyz.extend([i as f32, j as f32 * 0.5, k as f32 * 0.25]);
                }
            }
        }
        let mut s = 12345u32;
        for _ in 0..3000 {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            xyz.push((s >> 8) as f32 / 65536.0);
        }
        for count in [1, 2, 50, 700, 2000] {
            assert_eq!(farthest_point_sampling(&xyz, count), plain(&xyz, count), "{count}");
        }
    }

    #[test]
    fn duplicates_resolve_to_the_lowest_index() {
        let xyz = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, -1.0, 0.0, 0.0];
        assert_eq!(farthest_point_sampling(&xyz, 4), vec![0, 1, 3, 0]);
        assert_eq!(farthest_point_sampling(&[2.0; 9], 3), vec![0, 0, 0]);
    }
}
