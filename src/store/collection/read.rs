//! Reads: items by id, nearest-neighbour search and the collection's counts.
//!
//! Readers take the state lock for reading only, so they never wait for a log flush: a write is
//! applied to memory only once its record is durable, so whatever a reader sees is on disk.
//! Search goes through [`VectorIndex`]: the HNSW graph answers when the collection has one
//! installed and an exact answer was not requested, and [`ExactIndex`] scores every row
//! otherwise, or when the graph cannot fill `k` hits.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::state::RowMeta;
use super::validate::check_search_limits;
use super::{Collection, Recovery};
use crate::shared::Modality;
use crate::store::StoreError;
use crate::store::index::VectorIndex;
use crate::store::manifest::IndexSpec;
use crate::store::search::ExactIndex;

/// An item as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Client id.
    pub id: String,
    /// Modality, if known.
    pub modality: Option<Modality>,
    /// String metadata.
    pub metadata: BTreeMap<String, String>,
    /// The stored vector, when asked for.
    pub vector: Option<Vec<f32>>,
}

/// Which items a search may return.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The item's modality is one of these (empty: any).
    pub modalities: Vec<Modality>,
    /// Every pair must be in the item's metadata.
    pub metadata: BTreeMap<String, String>,
}

impl Filter {
    fn matches(&self, row: &RowMeta) -> bool {
        (self.modalities.is_empty() || row.modality.is_some_and(|m| self.modalities.contains(&m)))
            && self.metadata.iter().all(|(k, v)| row.metadata.get(k) == Some(v))
    }

    /// Whether the filter lets everything through.
    pub fn is_empty(&self) -> bool {
        self.modalities.is_empty() && self.metadata.is_empty()
    }
}

/// A search result.
#[derive(Debug, Clone)]
pub struct SearchHit {
    /// The item.
    pub item: Item,
    /// Cosine or dot product (higher is nearer), or Euclidean distance (lower is nearer).
    pub score: f32,
}

/// Search results and how they were found.
#[derive(Debug, Clone)]
pub struct SearchOutcome {
    /// Nearest first.
    pub hits: Vec<SearchHit>,
    /// Whether every item was scored.
    pub exact: bool,
}

/// Counts and sizes of a collection.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Items stored.
    pub count: u64,
    /// Items per modality name ("unspecified" when unknown).
    pub by_modality: BTreeMap<String, u64>,
    /// Sequence number of the last write.
    pub last_seq: u64,
    /// Log size in bytes.
    pub wal_bytes: u64,
    /// Snapshot size in bytes.
    pub snapshot_bytes: u64,
    /// Snapshots written since the collection was opened.
    pub compactions: u64,
    /// Recovery report.
    pub recovery: Recovery,
    /// Graph nodes that are tombstones.
    pub index_tombstones: u64,
    /// False while an HNSW collection's graph is being built (searches are exact meanwhile);
    /// always true for an exact collection.
    pub index_ready: bool,
}

impl Collection {
    /// The items of `ids` that exist (in request order) and the ids that do not.
    pub fn get(&self, ids: &[String], with_vectors: bool) -> Result<(Vec<Item>, Vec<String>), StoreError> {
        if ids.is_empty() {
            return Err(StoreError::NoIds);
        }
        let state = self.read()?;
        let mut items = Vec::new();
        let mut missing = Vec::new();
        for id in ids {
            match state.by_id.get(id) {
                Some(&row) => items.push(state.item(row, with_vectors)),
                None => missing.push(id.clone()),
            }
        }
        Ok((items, missing))
    }

    /// The `k` items nearest to `query` that pass `filter`. The HNSW graph answers when the
    /// collection has one and `exact` is false; when it finds fewer than `k` hits (a selective
    /// filter, many tombstones), the search is redone exactly.
    pub fn search(
        &self,
        query: Vec<f32>,
        k: usize,
        filter: &Filter,
        exact: bool,
        ef: Option<usize>,
        with_vectors: bool,
    ) -> Result<SearchOutcome, StoreError> {
        check_search_limits(k, ef)?;
        let query = self.manifest.prepare_vector("query vector", query)?;
        let state = self.read()?;
        let meta = &state.meta;
        let accept = |row: usize| meta.get(row).is_some_and(|m| m.live && filter.matches(m));
        let metric = self.manifest.metric;
        let graph: Option<&dyn VectorIndex> = match &state.index {
            Some(graph) if !exact => Some(graph.as_ref()),
            _ => None,
        };
        let ask = |index: &dyn VectorIndex| index.search(&state.data, state.dim, &query, k, ef, &accept);
        let approximate = graph.map(ask).filter(|hits| hits.len() >= k.min(state.by_id.len()));
        let used_index = approximate.is_some();
        let hits = approximate.unwrap_or_else(|| ask(&ExactIndex::new(metric)));
        let hits = hits
            .into_iter()
            .map(|h| SearchHit { item: state.item(h.row, with_vectors), score: h.score(metric) })
            .collect();
        Ok(SearchOutcome { hits, exact: !used_index })
    }

    /// Counts, sizes and the recovery report.
    pub fn stats(&self) -> Result<Stats, StoreError> {
        let state = self.read()?;
        let mut by_modality = BTreeMap::new();
        for m in state.meta.iter().filter(|m| m.live) {
            let name = m.modality.map_or("unspecified", |m| m.as_str());
            *by_modality.entry(name.to_string()).or_insert(0) += 1;
        }
        let index_tombstones = state.index.as_ref().map_or(0, |i| i.len().saturating_sub(state.by_id.len()));
        Ok(Stats {
            count: state.by_id.len() as u64,
            by_modality,
            last_seq: state.last_seq,
            wal_bytes: self.wal.len(),
            snapshot_bytes: self.snapshot_bytes.load(Ordering::Relaxed),
            compactions: self.compactions.load(Ordering::Relaxed),
            recovery: self.recovery.clone(),
            index_tombstones: index_tombstones as u64,
            index_ready: matches!(self.manifest.index, IndexSpec::Exact) || state.index.is_some(),
        })
    }

    /// Items stored.
    pub fn len(&self) -> usize {
        self.state.read().map(|s| s.by_id.len()).unwrap_or(0)
    }

    /// Whether the collection holds no item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Log size in bytes.
    pub fn wal_bytes(&self) -> u64 {
        self.wal.len()
    }

    /// Whether the log holds no record (everything is in the snapshot).
    pub fn wal_is_empty(&self) -> bool {
        self.wal.is_empty()
    }
}
