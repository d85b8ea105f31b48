//! Exact search over contiguous row-major `f32` storage: vectorisable distance kernels, a
//! bounded top-k heap, and a scan that runs in parallel over row chunks for large collections.
//! [`ExactIndex`] offers the scan as a [`VectorIndex`], beside the HNSW graph.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use rayon::prelude::*;

use super::index::VectorIndex;
use super::manifest::Metric;

/// Collections with fewer rows are scanned on the calling thread (splitting costs more).
pub const PARALLEL_MIN_ROWS: usize = 16 * 1024;

/// Rows per parallel task.
const CHUNK_ROWS: usize = 4096;

/// Sum of `a[i] * b[i]` over `L`-wide independent accumulators: written on fixed-size arrays so
/// the compiler turns the inner loop into SIMD multiply-adds without bounds checks.
#[inline(always)]
fn dot_lanes<const L: usize, const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (ca, ra) = a[..n].as_chunks::<L>();
    let (cb, rb) = b[..n].as_chunks::<L>();
    let mut acc = [0f32; L];
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..L {
            acc[i] = if FMA { x[i].mul_add(y[i], acc[i]) } else { acc[i] + x[i] * y[i] };
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Sum of `(a[i] - b[i])²`, laid out like [`dot_lanes`].
#[inline(always)]
fn l2_lanes<const L: usize, const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (ca, ra) = a[..n].as_chunks::<L>();
    let (cb, rb) = b[..n].as_chunks::<L>();
    let mut acc = [0f32; L];
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..L {
            let d = x[i] - y[i];
            acc[i] = if FMA { d.mul_add(d, acc[i]) } else { acc[i] + d * d };
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| (x - y) * (x - y)).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    // Compiled for AVX2 + FMA and chosen at run time, so one binary uses 256-bit FMAs where the
    // CPU has them and stays correct where it does not.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        super::dot_lanes::<32, true>(a, b)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn l2_avx2(a: &[f32], b: &[f32]) -> f32 {
        super::l2_lanes::<32, true>(a, b)
    }

    pub(super) fn has_avx2_fma() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
}

/// Dot product of the common prefix of `a` and `b`.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if x86::has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA, the features the function is compiled with.
        return unsafe { x86::dot_avx2(a, b) };
    }
    dot_lanes::<16, false>(a, b)
}

/// Squared Euclidean distance over the common prefix of `a` and `b`.
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if x86::has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA, the features the function is compiled with.
        return unsafe { x86::l2_avx2(a, b) };
    }
    l2_lanes::<16, false>(a, b)
}

/// A scored row. `rank` orders hits (higher is nearer for every metric).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Row index in the collection's storage.
    pub row: usize,
    /// Ordering score: the similarity, or the negated squared distance for l2.
    pub rank: f32,
}

impl Hit {
    /// The score a client sees: cosine or dot product, or the Euclidean distance for l2.
    pub fn score(&self, metric: Metric) -> f32 {
        match metric {
            Metric::Cosine | Metric::Dot => self.rank,
            Metric::L2 => (-self.rank).max(0.0).sqrt(),
        }
    }
}

/// The ordering score of `row` against `query`.
#[inline]
pub fn rank(metric: Metric, query: &[f32], row: &[f32]) -> f32 {
    match metric {
        Metric::Cosine | Metric::Dot => dot(query, row),
        Metric::L2 => -l2_squared(query, row),
    }
}

/// Total order on hits: better rank first, then the lower row (deterministic ties).
#[derive(Debug, Clone, Copy)]
struct Ranked(Hit);

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.rank.total_cmp(&other.0.rank).then_with(|| other.0.row.cmp(&self.0.row))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

/// The best `k` hits seen so far, in a min-heap of size `k`.
#[derive(Debug)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Reverse<Ranked>>,
}

impl TopK {
    /// An empty set keeping at most `k` hits.
    pub fn new(k: usize) -> Self {
        Self { k, heap: BinaryHeap::with_capacity(k.min(1 << 16) + 1) }
    }

    /// Offers a hit.
    #[inline]
    pub fn push(&mut self, hit: Hit) {
        if self.heap.len() < self.k {
            self.heap.push(Reverse(Ranked(hit)));
        } else if let Some(Reverse(worst)) = self.heap.peek()
            && Ranked(hit) > *worst
        {
            self.heap.pop();
            self.heap.push(Reverse(Ranked(hit)));
        }
    }

    /// Adds every hit of `other`.
    pub fn merge(mut self, other: TopK) -> TopK {
        for Reverse(Ranked(hit)) in other.heap {
            self.push(hit);
        }
        self
    }

    /// The hits, best first.
    pub fn into_sorted(self) -> Vec<Hit> {
        let mut hits: Vec<Ranked> = self.heap.into_iter().map(|Reverse(r)| r).collect();
        hits.sort_by(|a, b| b.cmp(a));
        hits.into_iter().map(|r| r.0).collect()
    }
}

fn scan_rows(
    rows: &[f32],
    dim: usize,
    first_row: usize,
    query: &[f32],
    metric: Metric,
    k: usize,
    accept: &(dyn Fn(usize) -> bool + Sync),
) -> TopK {
    let mut top = TopK::new(k);
    for (i, row) in rows.chunks_exact(dim).enumerate() {
        let index = first_row + i;
        if accept(index) {
            top.push(Hit { row: index, rank: rank(metric, query, row) });
        }
    }
    top
}

/// The `k` rows of `data` (row-major, `dim` columns) nearest to `query` among those `accept`
/// lets through, best first. Large collections are split into chunks scanned in parallel on the
/// current rayon pool; each chunk keeps its own top-k and the heaps are merged.
pub fn exact(
    data: &[f32],
    dim: usize,
    query: &[f32],
    metric: Metric,
    k: usize,
    accept: &(dyn Fn(usize) -> bool + Sync),
) -> Vec<Hit> {
    if k == 0 || dim == 0 {
        return Vec::new();
    }
    let rows = data.len() / dim;
    if rows < PARALLEL_MIN_ROWS || rayon::current_num_threads() <= 1 {
        return scan_rows(data, dim, 0, query, metric, k, accept).into_sorted();
    }
    data.par_chunks(CHUNK_ROWS * dim)
        .enumerate()
        .map(|(chunk, rows)| scan_rows(rows, dim, chunk * CHUNK_ROWS, query, metric, k, accept))
        .reduce(|| TopK::new(k), TopK::merge)
        .into_sorted()
}

/// [`exact`] as a [`VectorIndex`]: it keeps nothing but the metric, so a collection makes one
/// per search, and its answer is complete (every accepted row is scored).
#[derive(Debug, Clone, Copy)]
pub struct ExactIndex {
    metric: Metric,
}

impl ExactIndex {
    /// Exact search under `metric`.
    pub fn new(metric: Metric) -> Self {
        Self { metric }
    }
}

impl VectorIndex for ExactIndex {
    fn search(
        &self,
        data: &[f32],
        dim: usize,
        query: &[f32],
        k: usize,
        _ef: Option<usize>,
        accept: &(dyn Fn(usize) -> bool + Sync),
    ) -> Vec<Hit> {
        exact(data, dim, query, self.metric, k, accept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum()
    }

    fn vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..n * dim)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn kernels_match_a_naive_sum_at_every_length() {
        for len in [0, 1, 7, 15, 16, 17, 31, 32, 33, 100, 1024, 1031] {
            let a = vectors(1, len, 1);
            let b = vectors(1, len, 2);
            let d = dot(&a, &b);
            assert!((f64::from(d) - naive_dot(&a, &b)).abs() < 1e-4, "dot at len {len}");
            let l2: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
            assert!((f64::from(l2_squared(&a, &b)) - l2).abs() < 1e-3, "l2 at len {len}");
            assert!((f64::from(dot_lanes::<16, false>(&a, &b)) - naive_dot(&a, &b)).abs() < 1e-4);
        }
    }

    #[test]
    fn exact_search_agrees_with_sorting_everything() {
        let dim = 24;
        for n in [0, 1, 5, 100, PARALLEL_MIN_ROWS + 777] {
            let data = vectors(n, dim, 3);
            let query = vectors(1, dim, 4);
            for metric in [Metric::Dot, Metric::L2] {
                let accept = |row: usize| row % 3 != 1;
                let got = exact(&data, dim, &query, metric, 10, &accept);
                let mut all: Vec<Hit> = data
                    .chunks_exact(dim)
                    .enumerate()
                    .filter(|(i, _)| accept(*i))
                    .map(|(row, v)| Hit { row, rank: rank(metric, &query, v) })
                    .collect();
                all.sort_by_key(|h| Reverse(Ranked(*h)));
                all.truncate(10);
                assert_eq!(got, all, "n = {n}, {metric:?}");
            }
        }
    }

    #[test]
    fn ties_keep_the_lower_row_first() {
        let data = vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        let hits = exact(&data, 2, &[1.0, 0.0], Metric::Dot, 2, &|_| true);
        assert_eq!(hits.iter().map(|h| h.row).collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn l2_scores_are_distances() {
        let hit = Hit { row: 0, rank: -9.0 };
        assert_eq!(hit.score(Metric::L2), 3.0);
        assert_eq!(hit.score(Metric::Cosine), -9.0);
    }
}
