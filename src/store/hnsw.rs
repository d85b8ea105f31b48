//! The approximate index: an HNSW graph (the `hnsw_rs` crate) over a collection's rows, searched
//! through [`VectorIndex`] like the exact scan.
//!
//! Graph nodes are keyed by row index. Rows are never removed from the graph: deleted and
//! replaced items are tombstones that the search filter skips, and the graph is rebuilt when the
//! collection's rows are repacked (tombstones outnumbering live rows) and when it is opened.

use hnsw_rs::anndists::dist::Distance;
use hnsw_rs::prelude::Hnsw;

use super::index::VectorIndex;
use super::manifest::{HnswParams, Metric};
use super::search::{self, Hit};

/// Most layers in the graph (the library's own ceiling).
const MAX_LAYERS: usize = 16;

/// Most candidates fetched from the graph for one search when filters or tombstones reject many.
pub const MAX_FETCH: usize = 4096;

/// Graph distance: non-negative, lower is nearer, as the graph library requires.
#[derive(Debug, Clone, Copy)]
struct IndexDistance(Metric);

impl Distance<f32> for IndexDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        let d = match self.0 {
            // Unit vectors: 1 - cosine lies in [0, 2]; rounding can push it a hair below 0.
            Metric::Cosine | Metric::Dot => 1.0 - search::dot(a, b),
            Metric::L2 => search::l2_squared(a, b),
        };
        // The library asserts non-negative distances; NaN cannot arise from the finite vectors
        // the store accepts, but map it to "far" rather than let an assertion fire.
        if d.is_nan() { f32::MAX } else { d.max(0.0) }
    }
}

/// An HNSW graph over row indices.
pub struct HnswIndex {
    graph: Hnsw<'static, f32, IndexDistance>,
    params: HnswParams,
    metric: Metric,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex")
            .field("params", &self.params)
            .field("metric", &self.metric)
            .field("nodes", &self.graph.get_nb_point())
            .finish()
    }
}

impl HnswIndex {
    /// Builds a graph over the rows of `data` (row-major, `dim` columns) that `live` keeps,
    /// inserting in parallel on the current rayon pool.
    pub fn build(
        params: HnswParams,
        metric: Metric,
        data: &[f32],
        dim: usize,
        live: impl Fn(usize) -> bool,
    ) -> Self {
        let rows = data.len().checked_div(dim).unwrap_or(0);
        let graph =
            Hnsw::new(params.m, rows.max(1024), MAX_LAYERS, params.ef_construction, IndexDistance(metric));
        let batch: Vec<(&[f32], usize)> = data
            .chunks_exact(dim.max(1))
            .enumerate()
            .filter(|(row, _)| live(*row))
            .map(|(row, v)| (v, row))
            .collect();
        if !batch.is_empty() {
            graph.parallel_insert_slice(&batch);
        }
        Self { graph, params, metric }
    }

    /// Adds one row.
    pub fn insert(&self, row: usize, vector: &[f32]) {
        self.graph.insert_slice((vector, row));
    }

    /// Adds rows, in parallel on the current rayon pool when there are several. Safe while
    /// other threads search or insert: the graph locks its own nodes.
    pub fn insert_batch<'a>(&self, rows: impl IntoIterator<Item = (usize, &'a [f32])>) {
        let batch: Vec<(&[f32], usize)> = rows.into_iter().map(|(row, v)| (v, row)).collect();
        match batch.as_slice() {
            [] => {}
            [(vector, row)] => self.graph.insert_slice((vector, *row)),
            _ => self.graph.parallel_insert_slice(&batch),
        }
    }

    /// Nodes in the graph, tombstones included.
    pub fn len(&self) -> usize {
        self.graph.get_nb_point()
    }

    /// Whether the graph has no node.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Default candidate list size.
    pub fn ef_search(&self) -> usize {
        self.params.ef_search
    }

    /// Up to `k` rows near `query` among those `accept` lets through, best first, with exact
    /// scores recomputed from `data` so they equal what an exact search reports.
    ///
    /// The graph is searched without a filter and the results filtered afterwards, fetching
    /// more candidates while too few pass: the library's own filtered search never stops early
    /// and visits the whole graph. Returns fewer than `k` hits when even [`MAX_FETCH`]
    /// candidates do not hold `k` that pass; the caller then searches exactly.
    pub fn search(
        &self,
        data: &[f32],
        dim: usize,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: &(dyn Fn(usize) -> bool + Sync),
    ) -> Vec<Hit> {
        let nodes = self.len();
        let mut fetch = k.min(nodes);
        loop {
            let found = self.graph.search_filter(query, fetch, ef.max(fetch), None);
            let exhausted = found.len() < fetch || fetch >= nodes;
            let mut hits: Vec<Hit> = found
                .into_iter()
                .filter_map(|n| {
                    let row = n.d_id;
                    let v = data.get(row * dim..(row + 1) * dim)?;
                    accept(row).then(|| Hit { row, rank: search::rank(self.metric, query, v) })
                })
                .collect();
            if hits.len() >= k || exhausted || fetch >= MAX_FETCH {
                hits.sort_by(|a, b| b.rank.total_cmp(&a.rank).then(a.row.cmp(&b.row)));
                hits.truncate(k);
                return hits;
            }
            fetch = (fetch * 4).min(nodes).min(MAX_FETCH);
        }
    }
}

impl VectorIndex for HnswIndex {
    /// [`HnswIndex::search`], at the graph's default candidate list size when `ef` is `None`.
    fn search(
        &self,
        data: &[f32],
        dim: usize,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        accept: &(dyn Fn(usize) -> bool + Sync),
    ) -> Vec<Hit> {
        HnswIndex::search(self, data, dim, query, k, ef.unwrap_or(self.ef_search()), accept)
    }
}
