//! The approximate index: an HNSW graph (the `hnsw_rs` crate) over a collection's rows, searched
//! through [`VectorIndex`] like the exact scan.
//!
//! Graph nodes are keyed by row index. Rows are never removed from the graph: deleted and
//! replaced items are tombstones that the search filter skips, and the graph is rebuilt when the
//! collection's rows are repacked (tombstones outnumbering live rows).
//!
//! A graph is saved beside the snapshot it indexes ([`HnswIndex::save`], folder [`GRAPH_DIR`]),
//! when every row of the snapshot is in it, and loaded back at open ([`HnswIndex::load`]) if it
//! was saved with the snapshot being loaded; otherwise the open builds one in the background.
//!
//! `hnsw_rs` loads a graph that borrows its loader (`HnswIo`) for its lifetime, while a
//! collection holds an owned `Hnsw<'static>` (hnswlib-rs issue #19). Loaded without a memory
//! map, as here, the graph copies every point out of the files, and the loader keeps only its
//! folder, base name and options: a few hundred bytes. Each load therefore leaks its loader
//! (once per collection open) to get the `'static` borrow, rather than carrying a
//! self-referential pair of loader and graph through every use of the graph.

use std::path::Path;

use hnsw_rs::anndists::dist::Distance;
use hnsw_rs::api::AnnT;
use hnsw_rs::hnswio::HnswIo;
use hnsw_rs::prelude::Hnsw;
use serde::{Deserialize, Serialize};

use super::index::VectorIndex;
use super::manifest::{HnswParams, Metric};
use super::search::{self, Hit};
use super::{StoreError, snapshot};

/// Folder of a saved graph inside the collection's folder.
pub const GRAPH_DIR: &str = "graph";
/// Where a graph is written before it is renamed to [`GRAPH_DIR`].
const GRAPH_TMP_DIR: &str = ".graph.tmp";
/// Base name of `hnsw_rs`'s two files (`graph.hnsw.graph`, `graph.hnsw.data`).
const GRAPH_BASENAME: &str = "graph";
/// What the saved graph indexes, written last.
const GRAPH_META: &str = "graph.json";

/// The snapshot a saved graph belongs to and the settings it was built with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct GraphMeta {
    /// Sequence number of the snapshot's last write.
    seq: u64,
    /// Rows of the snapshot, every one a node of the graph.
    rows: usize,
    params: HnswParams,
    metric: Metric,
}

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

impl HnswIndex {
    /// Saves the graph into `dir/graph` as the index of the snapshot whose last write is `seq`
    /// and which holds `rows` rows (every one a node). Written into a temporary folder, synced
    /// and renamed into place, so a crash leaves the old graph or the new one, or none.
    pub fn save(&self, dir: &Path, seq: u64, rows: usize) -> Result<(), StoreError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        let tmp = dir.join(GRAPH_TMP_DIR);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        std::fs::create_dir(&tmp).map_err(io(&tmp))?;
        self.graph.file_dump(&tmp, GRAPH_BASENAME).map_err(|e| {
            StoreError::Internal(format!("saving the HNSW graph into {}: {e}", tmp.display()))
        })?;
        let meta = GraphMeta { seq, rows, params: self.params, metric: self.metric };
        let json = serde_json::to_vec(&meta).map_err(|e| StoreError::Internal(format!("graph meta: {e}")))?;
        std::fs::write(tmp.join(GRAPH_META), json).map_err(io(&tmp.join(GRAPH_META)))?;
        for entry in std::fs::read_dir(&tmp).map_err(io(&tmp))? {
            let path = entry.map_err(io(&tmp))?.path();
            std::fs::File::open(&path).and_then(|f| f.sync_all()).map_err(io(&path))?;
        }
        snapshot::sync_dir(&tmp)?;
        let dest = dir.join(GRAPH_DIR);
        if dest.exists() {
            std::fs::remove_dir_all(&dest).map_err(io(&dest))?;
        }
        std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
        snapshot::sync_dir(dir)
    }

    /// Removes a saved graph (one that no longer matches the snapshot), if any.
    pub fn remove_saved(dir: &Path) {
        for name in [GRAPH_DIR, GRAPH_TMP_DIR] {
            let path = dir.join(name);
            if path.exists()
                && let Err(e) = std::fs::remove_dir_all(&path)
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an outdated HNSW graph");
            }
        }
    }

    /// The graph saved in `dir/graph` if it indexes the snapshot whose last write is `seq` and
    /// which holds `rows` rows, with these settings; `None` (logged) when there is none, it
    /// belongs to another snapshot or it cannot be read.
    pub fn load(dir: &Path, params: HnswParams, metric: Metric, seq: u64, rows: usize) -> Option<Self> {
        let folder = dir.join(GRAPH_DIR);
        let text = std::fs::read(folder.join(GRAPH_META)).ok()?;
        let want = GraphMeta { seq, rows, params, metric };
        match serde_json::from_slice::<GraphMeta>(&text) {
            Ok(meta) if meta == want => {}
            Ok(meta) => {
                tracing::info!(saved = ?meta, snapshot = ?want, "saved HNSW graph is outdated; rebuilding");
                return None;
            }
            Err(e) => {
                tracing::warn!(path = %folder.display(), error = %e, "saved HNSW graph unreadable; rebuilding");
                return None;
            }
        }
        // See the module comment: the loader holds no point data, so leaking it costs bytes.
        let loader: &'static HnswIo = Box::leak(Box::new(HnswIo::new(&folder, GRAPH_BASENAME)));
        // The library asserts on damaged files rather than returning an error.
        let loaded = std::panic::catch_unwind(|| loader.load_hnsw_with_dist(IndexDistance(metric)));
        let graph = match loaded {
            Ok(Ok(graph)) => graph,
            Ok(Err(e)) => {
                tracing::warn!(path = %folder.display(), error = %e, "saved HNSW graph unreadable; rebuilding");
                return None;
            }
            Err(_) => {
                tracing::warn!(path = %folder.display(), "saved HNSW graph damaged; rebuilding");
                return None;
            }
        };
        if graph.get_nb_point() != rows {
            tracing::warn!(
                path = %folder.display(),
                nodes = graph.get_nb_point(),
                rows,
                "saved HNSW graph does not hold every row; rebuilding"
            );
            return None;
        }
        Some(Self { graph, params, metric })
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
