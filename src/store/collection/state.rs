//! A collection's content in memory: rows, their metadata, the id map and the graph handles.
//!
//! Rows live in one contiguous row-major `Vec<f32>` so exact search streams through memory.
//! Replacing or deleting an item leaves its row as a tombstone (skipped by every search); rows
//! are repacked, and the graph rebuilt, once tombstones outnumber live rows. Everything here
//! runs under the collection's state lock; the lock and the order of changes belong to the
//! write path.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

use super::Item;
use crate::shared::Modality;
use crate::store::hnsw::HnswIndex;
use crate::store::record::{DeleteOp, Op, StoredRow, UpsertOp};

/// Tombstones tolerated before rows are repacked (and at least as many as live rows).
pub(super) const REPACK_MIN_DEAD: usize = 1024;

/// What is kept of an item besides its vector; a replaced or deleted item's row stays as a
/// tombstone (`live` false) until rows are repacked.
#[derive(Debug)]
pub(super) struct RowMeta {
    pub(super) id: String,
    pub(super) modality: Option<Modality>,
    pub(super) metadata: BTreeMap<String, String>,
    pub(super) live: bool,
}

/// The in-memory content: rows, their metadata, the id map and the graph.
#[derive(Debug)]
pub(super) struct State {
    pub(super) dim: usize,
    pub(super) data: Vec<f32>,
    pub(super) meta: Vec<RowMeta>,
    pub(super) by_id: HashMap<String, usize>,
    pub(super) dead: usize,
    pub(super) last_seq: u64,
    /// Shared so a writer can insert into it without holding the state lock.
    pub(super) index: Option<Arc<HnswIndex>>,
    /// A graph being built (never set together with `index`): not searched yet, but writers
    /// insert their new rows into it so none is missing once it is installed.
    pub(super) building: Option<Arc<HnswIndex>>,
    /// Bumped whenever rows are renumbered, which makes a graph built over the old numbers stale.
    pub(super) generation: u64,
}

impl State {
    pub(super) fn empty(dim: usize) -> Self {
        Self {
            dim,
            data: Vec::new(),
            meta: Vec::new(),
            by_id: HashMap::new(),
            dead: 0,
            last_seq: 0,
            index: None,
            building: None,
            generation: 0,
        }
    }

    pub(super) fn row(&self, row: usize) -> &[f32] {
        &self.data[row * self.dim..(row + 1) * self.dim]
    }

    fn kill(&mut self, id: &str) -> bool {
        match self.by_id.remove(id) {
            Some(row) => {
                self.meta[row].live = false;
                self.dead += 1;
                true
            }
            None => false,
        }
    }

    /// Applies a logged change and returns the rows it added. The change was validated before
    /// it was logged (or, in replay, by [`check_op`]). The graph is left to the caller.
    pub(super) fn apply(&mut self, op: Op) -> Range<usize> {
        let first = self.meta.len();
        match op {
            Op::Upsert(UpsertOp { rows }) => {
                for r in rows {
                    self.kill(&r.id);
                    let row = self.meta.len();
                    self.data.extend_from_slice(&r.vector);
                    self.by_id.insert(r.id.clone(), row);
                    self.meta.push(RowMeta {
                        id: r.id,
                        // An empty or unknown name (from a newer build) reads as no modality.
                        modality: r.modality.parse().ok(),
                        metadata: r.metadata,
                        live: true,
                    });
                }
            }
            Op::Delete(DeleteOp { ids }) => {
                for id in ids {
                    self.kill(&id);
                }
            }
        }
        first..self.meta.len()
    }

    /// Whether tombstones outnumber live rows enough to repack.
    pub(super) fn is_sparse(&self) -> bool {
        self.dead >= REPACK_MIN_DEAD && self.dead >= self.by_id.len()
    }

    /// Drops tombstones from storage, renumbering rows; the graph, keyed by the old numbers, is
    /// dropped with them (and a graph being built is made stale).
    pub(super) fn repack_rows(&mut self) {
        let live = self.by_id.len();
        let mut data = Vec::with_capacity(live * self.dim);
        let mut meta = Vec::with_capacity(live);
        let mut by_id = HashMap::with_capacity(live);
        for (row, m) in std::mem::take(&mut self.meta).into_iter().enumerate() {
            if m.live {
                data.extend_from_slice(self.row(row));
                by_id.insert(m.id.clone(), meta.len());
                meta.push(m);
            }
        }
        self.data = data;
        self.meta = meta;
        self.by_id = by_id;
        self.dead = 0;
        self.index = None;
        self.building = None;
        self.generation += 1;
    }

    pub(super) fn stored_row(&self, row: usize) -> StoredRow {
        let m = &self.meta[row];
        StoredRow {
            id: m.id.clone(),
            modality: m.modality.map(|m| m.as_str().to_string()).unwrap_or_default(),
            metadata: m.metadata.clone(),
            vector: self.row(row).to_vec(),
        }
    }

    pub(super) fn item(&self, row: usize, with_vector: bool) -> Item {
        let m = &self.meta[row];
        Item {
            id: m.id.clone(),
            modality: m.modality,
            metadata: m.metadata.clone(),
            vector: with_vector.then(|| self.row(row).to_vec()),
        }
    }
}
