//! One collection: its rows in memory, its log and snapshot on disk, its optional HNSW graph.
//!
//! Rows live in one contiguous row-major `Vec<f32>` so exact search streams through memory.
//! Replacing or deleting an item leaves its row as a tombstone (skipped by every search); rows
//! are repacked, and the graph rebuilt, once tombstones outnumber live rows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::hnsw::HnswIndex;
use super::manifest::{CollectionManifest, IndexSpec, Metric};
use super::record::{DeleteOp, Op, StoredRow, UpsertOp, WalRecord};
use super::search::{self, Hit};
use super::vector::{self, VectorError};
use super::wal::{self, Wal};
use super::{StoreError, snapshot};
use crate::modality::Modality;

/// File name of the log inside a collection folder.
pub const WAL_FILE: &str = "wal";

/// Longest item id, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// Most hits one search may ask for.
pub const MAX_TOP_K: usize = 10_000;

/// Tombstones tolerated before rows are repacked (and at least as many as live rows).
const REPACK_MIN_DEAD: usize = 1024;

/// An item to write: validated by [`Collection::upsert`] before anything is stored.
#[derive(Debug, Clone)]
pub struct NewItem {
    /// Client id.
    pub id: String,
    /// Modality of the input it came from, if known.
    pub modality: Option<Modality>,
    /// String metadata.
    pub metadata: BTreeMap<String, String>,
    /// The vector (for cosine collections it is stored at unit norm).
    pub vector: Vec<f32>,
}

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

/// What recovery found when the collection was opened.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// Log records replayed.
    pub records: u64,
    /// Damaged log tails cut off (0 or 1).
    pub corrupt_tails: u64,
    /// Bytes cut off with it.
    pub truncated_bytes: u64,
    /// What was wrong, empty when nothing was.
    pub report: String,
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
}

#[derive(Debug)]
struct RowMeta {
    id: String,
    modality: Option<Modality>,
    metadata: BTreeMap<String, String>,
    live: bool,
}

/// The in-memory content: rows, their metadata, the id map and the graph.
#[derive(Debug)]
struct State {
    dim: usize,
    data: Vec<f32>,
    meta: Vec<RowMeta>,
    by_id: HashMap<String, usize>,
    dead: usize,
    last_seq: u64,
    index: Option<HnswIndex>,
}

impl State {
    fn empty(dim: usize) -> Self {
        Self {
            dim,
            data: Vec::new(),
            meta: Vec::new(),
            by_id: HashMap::new(),
            dead: 0,
            last_seq: 0,
            index: None,
        }
    }

    fn row(&self, row: usize) -> &[f32] {
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

    /// Applies a logged change. The change was validated before it was logged (or, in replay,
    /// by [`check_op`]).
    fn apply(&mut self, op: Op) {
        match op {
            Op::Upsert(UpsertOp { rows }) => {
                for r in rows {
                    self.kill(&r.id);
                    let row = self.meta.len();
                    self.data.extend_from_slice(&r.vector);
                    if let Some(index) = &self.index {
                        index.insert(row, &r.vector);
                    }
                    self.by_id.insert(r.id.clone(), row);
                    self.meta.push(RowMeta {
                        id: r.id,
                        modality: modality_from_name(&r.modality),
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
    }

    /// Drops tombstones from storage when they outnumber live rows, rebuilding the graph.
    fn repack_if_sparse(&mut self, manifest: &CollectionManifest) {
        if self.dead < REPACK_MIN_DEAD || self.dead < self.by_id.len() {
            return;
        }
        self.repack(manifest);
    }

    fn repack(&mut self, manifest: &CollectionManifest) {
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
        self.rebuild_index(manifest);
    }

    fn rebuild_index(&mut self, manifest: &CollectionManifest) {
        self.index = match manifest.index {
            IndexSpec::Exact => None,
            IndexSpec::Hnsw(params) => {
                let meta = &self.meta;
                Some(HnswIndex::build(params, manifest.metric, &self.data, self.dim, |row| meta[row].live))
            }
        };
    }

    fn stored_row(&self, row: usize) -> StoredRow {
        let m = &self.meta[row];
        StoredRow {
            id: m.id.clone(),
            modality: m.modality.map(|m| m.as_str().to_string()).unwrap_or_default(),
            metadata: m.metadata.clone(),
            vector: self.row(row).to_vec(),
        }
    }

    fn item(&self, row: usize, with_vector: bool) -> Item {
        let m = &self.meta[row];
        Item {
            id: m.id.clone(),
            modality: m.modality,
            metadata: m.metadata.clone(),
            vector: with_vector.then(|| self.row(row).to_vec()),
        }
    }
}

/// The modality stored under `name` (`Modality::as_str`); `None` for an empty or unknown name.
pub fn modality_from_name(name: &str) -> Option<Modality> {
    [
        Modality::Text,
        Modality::Image,
        Modality::Audio,
        Modality::PointCloud,
        Modality::Depth,
        Modality::Thermal,
        Modality::Imu,
    ]
    .into_iter()
    .find(|m| m.as_str() == name)
}

/// A durable, searchable set of vectors.
#[derive(Debug)]
pub struct Collection {
    manifest: CollectionManifest,
    dir: PathBuf,
    state: RwLock<State>,
    wal: Wal,
    /// Held while a snapshot is written, so only one runs at a time.
    compaction: Mutex<()>,
    compactions: AtomicU64,
    snapshot_bytes: AtomicU64,
    recovery: Recovery,
    dropped: AtomicBool,
}

impl Collection {
    /// Opens the collection in `dir`: reads the manifest, loads the snapshot, replays the log
    /// up to its first damaged record (cutting the damage off) and builds the graph.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let manifest = CollectionManifest::read(dir)?;
        let dim = manifest.dim;
        let mut state = State::empty(dim);
        let mut snapshot_bytes = 0;
        if let Some(loaded) = snapshot::read(dir, dim)? {
            snapshot_bytes = loaded.bytes;
            state.last_seq = loaded.last_seq;
            for row in &loaded.rows {
                check_row(row, dim).map_err(|reason| StoreError::Corrupt {
                    path: dir.join(snapshot::SNAPSHOT_FILE),
                    reason,
                })?;
            }
            state.apply(Op::Upsert(UpsertOp { rows: loaded.rows }));
        }
        let wal_path = dir.join(WAL_FILE);
        let bytes = match std::fs::read(&wal_path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(StoreError::Io { path: wal_path, source }),
        };
        let Some(bytes) = bytes else {
            // Creation writes the log before the folder gets its name, so this is damage; start
            // a new log and say so.
            tracing::warn!(collection = %manifest.name, "write-ahead log missing; starting an empty one");
            let recovery = Recovery {
                corrupt_tails: 1,
                report: format!("{} was missing", wal_path.display()),
                ..Recovery::default()
            };
            let wal = Wal::create(&wal_path)?;
            return Ok(Self::assemble(manifest, dir, state, wal, snapshot_bytes, recovery));
        };
        let scan = wal::scan(&bytes);
        let mut recovery = Recovery::default();
        let mut valid_len = scan.valid_len;
        let mut corruption = scan.corruption.map(|c| c.to_string());
        for (record, offset) in scan.records.into_iter().zip(scan.offsets) {
            if record.seq <= state.last_seq {
                // Already in the snapshot: the log was not emptied before a crash.
                continue;
            }
            let Some(op) = record.op else { continue };
            if let Err(reason) = check_op(&op, dim) {
                valid_len = offset;
                corruption = Some(format!("record {} is invalid: {reason}", record.seq));
                break;
            }
            state.apply(op);
            state.last_seq = record.seq;
            recovery.records += 1;
        }
        if let Some(report) = corruption {
            recovery.corrupt_tails = 1;
            recovery.truncated_bytes = (bytes.len() - valid_len.min(bytes.len())) as u64;
            tracing::warn!(
                collection = %manifest.name,
                log = %wal_path.display(),
                kept_records = recovery.records,
                truncated_bytes = recovery.truncated_bytes,
                problem = %report,
                "damaged write-ahead log tail cut off"
            );
            recovery.report = report;
        }
        let wal = Wal::open(&wal_path, valid_len as u64, state.last_seq)?;
        Ok(Self::assemble(manifest, dir, state, wal, snapshot_bytes, recovery))
    }

    fn assemble(
        manifest: CollectionManifest,
        dir: &Path,
        mut state: State,
        wal: Wal,
        snapshot_bytes: u64,
        recovery: Recovery,
    ) -> Self {
        if state.dead > 0 {
            state.repack(&manifest);
        } else {
            state.rebuild_index(&manifest);
        }
        Self {
            manifest,
            dir: dir.to_path_buf(),
            state: RwLock::new(state),
            wal,
            compaction: Mutex::new(()),
            compactions: AtomicU64::new(0),
            snapshot_bytes: AtomicU64::new(snapshot_bytes),
            recovery,
            dropped: AtomicBool::new(false),
        }
    }

    /// The collection's settings.
    pub fn manifest(&self) -> &CollectionManifest {
        &self.manifest
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn read(&self) -> Result<RwLockReadGuard<'_, State>, StoreError> {
        // A panic under the lock leaves at worst a half-applied change in memory; the log is the
        // truth, so report it and let a restart rebuild memory from disk.
        let state = self.state.read().map_err(|_| self.poisoned())?;
        self.alive()?;
        Ok(state)
    }

    fn write(&self) -> Result<RwLockWriteGuard<'_, State>, StoreError> {
        let state = self.state.write().map_err(|_| self.poisoned())?;
        self.alive()?;
        Ok(state)
    }

    fn poisoned(&self) -> StoreError {
        StoreError::Internal(format!(
            "collection {:?} is unusable after an internal error; restart the server",
            self.manifest.name
        ))
    }

    fn alive(&self) -> Result<(), StoreError> {
        if self.dropped.load(Ordering::Acquire) {
            return Err(StoreError::CollectionNotFound { name: self.manifest.name.clone() });
        }
        Ok(())
    }

    /// Checks ids and metadata of items about to be written (cheap; run before embedding).
    pub fn check_items<'a>(
        &self,
        items: impl IntoIterator<Item = (&'a str, &'a BTreeMap<String, String>)>,
    ) -> Result<(), StoreError> {
        let mut seen = HashSet::new();
        let mut any = false;
        for (id, metadata) in items {
            any = true;
            check_id(id)?;
            if !seen.insert(id) {
                return Err(StoreError::DuplicateId { id: id.to_string() });
            }
            self.check_metadata(id, metadata)?;
        }
        if !any {
            return Err(StoreError::NoItems);
        }
        Ok(())
    }

    fn check_metadata(&self, id: &str, metadata: &BTreeMap<String, String>) -> Result<(), StoreError> {
        if metadata.keys().any(|k| k.is_empty()) {
            return Err(StoreError::InvalidItem {
                id: id.to_string(),
                reason: "metadata has an empty key".into(),
            });
        }
        let Some(schema) = &self.manifest.schema else { return Ok(()) };
        if let Some(missing) = schema.required.iter().find(|k| !metadata.contains_key(*k)) {
            return Err(StoreError::InvalidItem {
                id: id.to_string(),
                reason: format!("metadata key {missing:?} is required by the collection's schema"),
            });
        }
        if !schema.allowed.is_empty()
            && let Some(extra) =
                metadata.keys().find(|k| !schema.allowed.contains(*k) && !schema.required.contains(*k))
        {
            return Err(StoreError::InvalidItem {
                id: id.to_string(),
                reason: format!("metadata key {extra:?} is not allowed by the collection's schema"),
            });
        }
        Ok(())
    }

    /// Checks a vector for this collection without changing it. `what` names it in errors.
    pub fn check_vector(&self, what: &str, v: &[f32]) -> Result<(), StoreError> {
        let wrap = |source: VectorError| StoreError::Vector { what: what.to_string(), source };
        vector::check(v, self.manifest.dim).map_err(wrap)?;
        if self.manifest.metric == Metric::Cosine && v.iter().all(|x| *x == 0.0) {
            return Err(wrap(VectorError::Zero));
        }
        Ok(())
    }

    /// Checks a vector for this collection and brings it to the stored form (unit norm for
    /// cosine). `what` names it in errors.
    pub fn prepare_vector(&self, what: &str, mut v: Vec<f32>) -> Result<Vec<f32>, StoreError> {
        let wrap = |source: VectorError| StoreError::Vector { what: what.to_string(), source };
        vector::check(&v, self.manifest.dim).map_err(wrap)?;
        if self.manifest.metric == Metric::Cosine {
            vector::normalize(&mut v).map_err(wrap)?;
        }
        Ok(v)
    }

    /// Inserts or replaces `items`, all or nothing, and returns once the write is on disk.
    /// Returns the write's sequence number.
    pub fn upsert(&self, items: Vec<NewItem>) -> Result<u64, StoreError> {
        self.check_items(items.iter().map(|i| (i.id.as_str(), &i.metadata)))?;
        let mut rows = Vec::with_capacity(items.len());
        for item in items {
            let what = format!("item {:?}", item.id);
            let vector = self.prepare_vector(&what, item.vector)?;
            rows.push(StoredRow {
                id: item.id,
                modality: item.modality.map(|m| m.as_str().to_string()).unwrap_or_default(),
                metadata: item.metadata,
                vector,
            });
        }
        let seq = {
            let mut state = self.write()?;
            let seq = state.last_seq + 1;
            let record = WalRecord { seq, op: Some(Op::Upsert(UpsertOp { rows })) };
            self.wal.append(&record)?;
            if let Some(op) = record.op {
                state.apply(op);
            }
            state.last_seq = seq;
            state.repack_if_sparse(&self.manifest);
            seq
        };
        self.wal.sync_through(seq)?;
        Ok(seq)
    }

    /// Removes the items of `ids` that exist and returns once the removal is on disk.
    /// Returns the number removed, the ids not found, and the write's sequence number (0 when
    /// nothing was removed and nothing written).
    pub fn delete(&self, ids: &[String]) -> Result<(usize, Vec<String>, u64), StoreError> {
        if ids.is_empty() {
            return Err(StoreError::NoIds);
        }
        let (count, missing, seq) = {
            let mut state = self.write()?;
            let mut seen = HashSet::new();
            let mut present = Vec::new();
            let mut missing = Vec::new();
            for id in ids {
                if !seen.insert(id.as_str()) {
                    continue;
                }
                if state.by_id.contains_key(id) {
                    present.push(id.clone());
                } else {
                    missing.push(id.clone());
                }
            }
            if present.is_empty() {
                return Ok((0, missing, 0));
            }
            let seq = state.last_seq + 1;
            let count = present.len();
            let record = WalRecord { seq, op: Some(Op::Delete(DeleteOp { ids: present })) };
            self.wal.append(&record)?;
            if let Some(op) = record.op {
                state.apply(op);
            }
            state.last_seq = seq;
            state.repack_if_sparse(&self.manifest);
            (count, missing, seq)
        };
        self.wal.sync_through(seq)?;
        Ok((count, missing, seq))
    }

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
        if k == 0 || k > MAX_TOP_K {
            return Err(StoreError::TopK { top_k: k, max: MAX_TOP_K });
        }
        if let Some(ef) = ef
            && ef > super::manifest::HnswParams::MAX_EF
        {
            return Err(StoreError::InvalidSpec(format!(
                "ef_search = {ef} is above {}",
                super::manifest::HnswParams::MAX_EF
            )));
        }
        let query = self.prepare_vector("query vector", query)?;
        let state = self.read()?;
        let meta = &state.meta;
        let accept = |row: usize| meta[row].live && filter.matches(&meta[row]);
        let metric = self.manifest.metric;
        let mut approximate: Option<Vec<Hit>> = None;
        if !exact && let Some(index) = &state.index {
            let hits =
                index.search(&state.data, state.dim, &query, k, ef.unwrap_or(index.ef_search()), &accept);
            if hits.len() >= k.min(state.by_id.len()) {
                approximate = Some(hits);
            }
        }
        let used_index = approximate.is_some();
        let hits = match approximate {
            Some(hits) => hits,
            None => search::exact(&state.data, state.dim, &query, metric, k, &accept),
        };
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

    /// Writes a snapshot of the current content and empties the log. Writers wait while it runs;
    /// readers do not. With `wait` false, returns `Ok(false)` at once if another compaction is
    /// running. Returns whether a snapshot was written (not when the log is already empty).
    pub fn compact(&self, wait: bool) -> Result<bool, StoreError> {
        let _running = if wait {
            self.compaction.lock().unwrap_or_else(|e| e.into_inner())
        } else {
            match self.compaction.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return Ok(false),
            }
        };
        let state = self.read()?;
        if self.wal.is_empty() {
            return Ok(false);
        }
        let live: Vec<usize> =
            state.meta.iter().enumerate().filter(|(_, m)| m.live).map(|(row, _)| row).collect();
        let size = snapshot::write(
            &self.dir,
            state.last_seq,
            state.dim,
            live.len(),
            live.iter().map(|&row| state.stored_row(row)),
        )?;
        self.wal.reset(state.last_seq)?;
        self.snapshot_bytes.store(size, Ordering::Relaxed);
        self.compactions.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(collection = %self.manifest.name, items = live.len(), bytes = size, "snapshot written");
        Ok(true)
    }

    /// Marks the collection deleted: every later call on this handle fails with NOT_FOUND.
    /// Waits for in-flight writes so none lands after it.
    pub(super) fn mark_dropped(&self) {
        let _state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let _compaction = self.compaction.lock().unwrap_or_else(|e| e.into_inner());
        self.dropped.store(true, Ordering::Release);
    }
}

fn check_row(row: &StoredRow, dim: usize) -> Result<(), String> {
    check_id(&row.id).map_err(|e| e.to_string())?;
    vector::check(&row.vector, dim).map_err(|e| format!("item {:?}: {e}", row.id))
}

/// Checks a replayed change as [`Collection::upsert`] checked it before logging it.
fn check_op(op: &Op, dim: usize) -> Result<(), String> {
    match op {
        Op::Upsert(u) => u.rows.iter().try_for_each(|r| check_row(r, dim)),
        Op::Delete(_) => Ok(()),
    }
}

/// Checks an item id.
pub fn check_id(id: &str) -> Result<(), StoreError> {
    if id.is_empty() {
        return Err(StoreError::InvalidItem { id: String::new(), reason: "item id is empty".into() });
    }
    if id.len() > MAX_ID_BYTES {
        return Err(StoreError::InvalidItem {
            id: format!("{}...", id.chars().take(32).collect::<String>()),
            reason: format!("item id is {} bytes, more than the limit of {MAX_ID_BYTES}", id.len()),
        });
    }
    Ok(())
}
