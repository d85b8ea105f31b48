//! One collection: its rows in memory, its log and snapshot on disk, its optional HNSW graph.
//!
//! Rows live in one contiguous row-major `Vec<f32>` so exact search streams through memory.
//! Replacing or deleting an item leaves its row as a tombstone (skipped by every search); rows
//! are repacked, and the graph rebuilt, once tombstones outnumber live rows.
//!
//! Opening a collection does not wait for its graph: a background thread builds it from the rows
//! loaded, a chunk at a time under short read locks, while writers add their new rows to it as
//! they would to a finished graph. Searches are exact until the graph is installed.
//!
//! A write becomes visible only once its log record is on disk, and writes become visible in
//! log order: a writer appends its record under a short lock that fixes its sequence number,
//! flushes the log without holding any lock (concurrent writers share one fsync), then waits
//! for its turn and applies the change. The HNSW graph takes new rows after the change is
//! applied, outside the state lock, so searches keep running while a batch is inserted. If the
//! log fails, nothing unflushed is applied and the collection refuses every later write.

mod graph;
mod read;
mod state;
#[cfg(test)]
mod testkit;
mod validate;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use super::hnsw::HnswIndex;
use super::manifest::CollectionManifest;
use super::record::{DeleteOp, Op, StoredRow, UpsertOp, WalRecord};
use super::wal::{self, LogFailure, Wal};
use super::{StoreError, snapshot};
use crate::modality::Modality;
use graph::{GraphJob, GraphStep, insert_rows};
pub use read::{Filter, Item, SearchHit, SearchOutcome, Stats};
use state::State;
pub use validate::{MAX_ID_BYTES, MAX_TOP_K, check_id};
use validate::{check_op, check_row};

/// File name of the log inside a collection folder.
pub const WAL_FILE: &str = "wal";

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

/// Where writes stand between the log and memory.
#[derive(Debug, Default)]
struct Commit {
    /// Sequence number of the last write applied to memory; writes apply in sequence order.
    applied: u64,
    /// Writes logged whose writer has not finished (applied them, or failed).
    in_flight: usize,
    /// Per id, the effect of the latest write in flight that touches it: its sequence number
    /// and whether the id exists after it. A delete checks these before memory, so it sees the
    /// writes logged ahead of it.
    pending: HashMap<String, (u64, bool)>,
    /// A writer panicked between logging and applying: the writes after it cannot apply.
    halted: bool,
}

/// A write between its log append and the end of its apply step. Dropping it unfinished
/// (failure or panic) takes it off the in-flight count and wakes whoever waits on it.
struct Ticket<'a> {
    collection: &'a Collection,
    seq: u64,
    ids: Vec<String>,
    /// Its turn to apply came: the writes after it wait for this one.
    in_turn: bool,
    finished: bool,
}

impl Ticket<'_> {
    fn release(&mut self, applied: bool) {
        self.finished = true;
        let mut commit = self.collection.commit();
        if applied {
            commit.applied = self.seq;
        } else if self.in_turn || std::thread::panicking() {
            // The writes queued behind this one would wait forever.
            commit.halted = true;
        }
        commit.in_flight -= 1;
        for id in &self.ids {
            if commit.pending.get(id).is_some_and(|(seq, _)| *seq == self.seq) {
                commit.pending.remove(id);
            }
        }
        drop(commit);
        self.collection.committed.notify_all();
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.release(false);
        }
    }
}

/// Graph work left to a writer once its change is applied.
enum GraphWork {
    None,
    /// Insert these rows (`row`, then its vector, row-major) into this graph.
    Insert(Arc<HnswIndex>, Range<usize>, Vec<f32>),
    /// Rows were repacked: fill and install the new graph.
    Rebuild(GraphJob),
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
    /// Sequence number of the last record appended to the log. Held while a writer picks its
    /// sequence number and appends its record, and by compaction and deletion to stop writes.
    appended: Mutex<u64>,
    commit: Mutex<Commit>,
    /// Signalled whenever `commit` changes.
    committed: Condvar,
    /// Held while a snapshot is written, so only one runs at a time.
    compaction: Mutex<()>,
    compactions: AtomicU64,
    snapshot_bytes: AtomicU64,
    recovery: Recovery,
    dropped: AtomicBool,
}

impl Collection {
    /// Opens the collection in `dir`: reads the manifest, removes the temporary file of an
    /// interrupted snapshot, loads the snapshot and replays the log up to its first damaged
    /// record (cutting the damage off). An HNSW collection's graph is built on a background
    /// thread; searches are exact until it is ready ([`Stats::index_ready`]).
    pub fn open(dir: &Path) -> Result<Arc<Self>, StoreError> {
        let manifest = CollectionManifest::read(dir)?;
        match snapshot::remove_leftover(dir) {
            Ok(None) => {}
            Ok(Some(bytes)) => tracing::warn!(
                collection = %manifest.name,
                bytes,
                "removed the temporary file of an interrupted snapshot"
            ),
            // Only disk space is at stake: the next compaction overwrites the file.
            Err(e) => tracing::warn!(
                collection = %manifest.name,
                error = %e,
                "cannot remove the temporary file of an interrupted snapshot"
            ),
        }
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
            let _rows = state.apply(Op::Upsert(UpsertOp { rows: loaded.rows }));
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
            let _rows = state.apply(op);
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
    ) -> Arc<Self> {
        if state.dead > 0 {
            state.repack_rows();
        }
        let mut job = state.start_graph(&manifest);
        if job.as_ref().is_some_and(|j| j.start >= j.rows) {
            // Nothing left to build: the graph is ready.
            state.index = state.building.take();
            job = None;
        }
        let last_seq = state.last_seq;
        let collection = Arc::new(Self {
            manifest,
            dir: dir.to_path_buf(),
            state: RwLock::new(state),
            wal,
            appended: Mutex::new(last_seq),
            commit: Mutex::new(Commit { applied: last_seq, ..Commit::default() }),
            committed: Condvar::new(),
            compaction: Mutex::new(()),
            compactions: AtomicU64::new(0),
            snapshot_bytes: AtomicU64::new(snapshot_bytes),
            recovery,
            dropped: AtomicBool::new(false),
        });
        if let Some(job) = job {
            collection.spawn_build(job);
        }
        collection
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

    fn poisoned(&self) -> StoreError {
        StoreError::Internal(format!(
            "collection {:?} is unusable after an internal error; restart the server",
            self.manifest.name
        ))
    }

    fn commit(&self) -> MutexGuard<'_, Commit> {
        // Plain counters and a map that every holder leaves consistent: poisoning is ignored.
        self.commit.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log_failed(&self, failure: LogFailure) -> StoreError {
        StoreError::LogUnusable {
            collection: self.manifest.name.clone(),
            path: self.wal.path().to_path_buf(),
            reason: failure.reason,
        }
    }

    /// Why the collection refuses writes, if it does: its log failed and only a restart, which
    /// rebuilds it from the log, makes it writable again.
    pub fn log_failure(&self) -> Option<String> {
        self.wal.failure().map(|f| f.reason)
    }

    /// The append lock, for a write: fails if the collection was deleted or its log failed.
    fn lock_for_write(&self) -> Result<MutexGuard<'_, u64>, StoreError> {
        let appended = self.appended.lock().unwrap_or_else(|e| e.into_inner());
        self.alive()?;
        if let Some(failure) = self.wal.failure() {
            return Err(self.log_failed(failure));
        }
        Ok(appended)
    }

    /// Waits until no write is between its log append and the end of its apply step. Callers
    /// hold the append lock, so none starts meanwhile.
    fn wait_idle(&self) {
        let mut commit = self.commit();
        while commit.in_flight > 0 {
            commit = self.committed.wait(commit).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Logs `op` (whose effect on each id is `effects`) as the next record and returns its
    /// sequence number once it is durable and applied. `appended` is the append lock, taken
    /// before the change was checked against the collection.
    fn log_and_apply(
        &self,
        mut appended: MutexGuard<'_, u64>,
        op: Op,
        effects: Vec<(String, bool)>,
    ) -> Result<u64, StoreError> {
        let seq = *appended + 1;
        let record = WalRecord { seq, op: Some(op) };
        self.wal.append(&record).map_err(|e| self.log_failed(e))?;
        *appended = seq;
        let mut ticket = {
            let mut commit = self.commit();
            commit.in_flight += 1;
            let mut ids = Vec::with_capacity(effects.len());
            for (id, exists) in effects {
                commit.pending.insert(id.clone(), (seq, exists));
                ids.push(id);
            }
            Ticket { collection: self, seq, ids, in_turn: false, finished: false }
        };
        drop(appended);

        // Outside every lock: writers that append meanwhile share this flush or the next.
        self.wal.sync_through(seq).map_err(|e| self.log_failed(e))?;

        // The records whose flush succeeded form a prefix of the log, so every write before
        // this one is durable too and will take its turn.
        {
            let mut commit = self.commit();
            while commit.applied + 1 < seq {
                if commit.halted {
                    return Err(self.poisoned());
                }
                commit = self.committed.wait(commit).unwrap_or_else(|e| e.into_inner());
            }
        }
        ticket.in_turn = true;
        let Some(op) = record.op else {
            return Err(StoreError::Internal("a logged record lost its change".into()));
        };
        let work = {
            // Only the writer whose turn it is takes the write lock.
            let mut state = self.state.write().map_err(|_| self.poisoned())?;
            let added = state.apply(op);
            state.last_seq = seq;
            if state.is_sparse() {
                state.repack_rows();
                state.start_graph(&self.manifest).map_or(GraphWork::None, GraphWork::Rebuild)
            } else {
                match state.graph_for_inserts() {
                    Some(index) if !added.is_empty() => {
                        let values = state.data[added.start * state.dim..added.end * state.dim].to_vec();
                        GraphWork::Insert(Arc::clone(index), added, values)
                    }
                    _ => GraphWork::None,
                }
            }
        };
        match work {
            GraphWork::None => ticket.release(true),
            GraphWork::Insert(index, rows, values) => {
                // The next writer may apply meanwhile; the rows are visible to exact search
                // already and join the graph before this write is acknowledged.
                ticket.release(true);
                insert_rows(&index, rows, &values, self.manifest.dim);
            }
            GraphWork::Rebuild(job) => {
                // Searches run exactly while the graph is rebuilt. The next writer waits for
                // this turn to end, so no row is added or renumbered meanwhile.
                let mut next = job.start;
                while let GraphStep::Chunk(chunk) = self.graph_step(&job, next)? {
                    next = chunk.end;
                    insert_rows(&job.graph, chunk.rows.into_iter(), &chunk.values, self.manifest.dim);
                }
                ticket.release(true);
            }
        }
        Ok(seq)
    }

    fn alive(&self) -> Result<(), StoreError> {
        if self.dropped.load(Ordering::Acquire) {
            return Err(StoreError::CollectionNotFound { name: self.manifest.name.clone() });
        }
        Ok(())
    }

    /// Inserts or replaces `items`, all or nothing, and returns once the write is on disk and
    /// visible. Returns the write's sequence number. A call that fails changes nothing in
    /// memory; when its log write or flush failed, the collection refuses later writes too.
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
        let effects = rows.iter().map(|r| (r.id.clone(), true)).collect();
        let appended = self.lock_for_write()?;
        self.log_and_apply(appended, Op::Upsert(UpsertOp { rows }), effects)
    }

    /// Removes the items of `ids` that exist and returns once the removal is on disk and
    /// visible. Items of writes logged before this one count as existing.
    /// Returns the number removed, the ids not found, and the write's sequence number (0 when
    /// nothing was removed and nothing written).
    pub fn delete(&self, ids: &[String]) -> Result<(usize, Vec<String>, u64), StoreError> {
        if ids.is_empty() {
            return Err(StoreError::NoIds);
        }
        let appended = self.lock_for_write()?;
        let (present, missing) = {
            // Writes logged but not yet applied decide first; the append lock keeps new ones out.
            let commit = self.commit();
            let state = self.read()?;
            let mut seen = HashSet::new();
            let mut present = Vec::new();
            let mut missing = Vec::new();
            for id in ids {
                if !seen.insert(id.as_str()) {
                    continue;
                }
                let exists = match commit.pending.get(id) {
                    Some(&(_, exists)) => exists,
                    None => state.by_id.contains_key(id),
                };
                if exists {
                    present.push(id.clone());
                } else {
                    missing.push(id.clone());
                }
            }
            (present, missing)
        };
        if present.is_empty() {
            return Ok((0, missing, 0));
        }
        let count = present.len();
        let effects = present.iter().map(|id| (id.clone(), false)).collect();
        let seq = self.log_and_apply(appended, Op::Delete(DeleteOp { ids: present }), effects)?;
        Ok((count, missing, seq))
    }

    /// Writes a snapshot of the current content and empties the log. Writers wait while it runs
    /// (after the writes already logged are applied); readers do not. With `wait` false, returns
    /// `Ok(false)` at once if another compaction is running. Returns whether a snapshot was
    /// written (not when the log is already empty). Fails once the log has failed.
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
        // Holding the append lock with nothing in flight, memory holds exactly what the log does.
        let _appended = self.lock_for_write()?;
        self.wait_idle();
        if let Some(failure) = self.wal.failure() {
            return Err(self.log_failed(failure));
        }
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
        self.wal.reset(state.last_seq).map_err(|e| self.log_failed(e))?;
        self.snapshot_bytes.store(size, Ordering::Relaxed);
        self.compactions.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(collection = %self.manifest.name, items = live.len(), bytes = size, "snapshot written");
        Ok(true)
    }

    /// Marks the collection deleted: every later call on this handle fails with NOT_FOUND.
    /// Waits for in-flight writes and a running compaction so none lands after it.
    pub(super) fn mark_dropped(&self) {
        let _compaction = self.compaction.lock().unwrap_or_else(|e| e.into_inner());
        let _appended = self.appended.lock().unwrap_or_else(|e| e.into_inner());
        self.wait_idle();
        self.dropped.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::testkit::{Scratch, WAIT, create, ids, item, open_store};
    use super::*;
    use crate::store::manifest::{HnswParams, IndexSpec};
    use crate::store::wal::{FaultHook, FaultPoint};

    /// A hook that holds the next flush until `release` is sent, after telling `entered`.
    fn pause_next_sync() -> (FaultHook, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let entered_tx = Mutex::new(entered_tx);
        let release_rx = Mutex::new(release_rx);
        let hook: FaultHook = Arc::new(move |point| {
            if point == FaultPoint::Sync {
                let _ = entered_tx.lock().unwrap().send(());
                let _ = release_rx.lock().unwrap().recv_timeout(WAIT);
            }
            Ok(())
        });
        (hook, entered, release)
    }

    fn search_ids(c: &Collection, query: Vec<f32>, exact: bool) -> Vec<String> {
        let outcome = c.search(query, 10, &Filter::default(), exact, None, false).unwrap();
        outcome.hits.into_iter().map(|h| h.item.id).collect()
    }

    #[test]
    fn a_write_is_invisible_until_its_record_is_flushed() {
        let dir = Scratch::new("visible");
        let store = open_store(&dir);
        let c = create(&store, "c", IndexSpec::Exact, 2);
        c.upsert(vec![item("a", vec![1.0, 0.0], "1")]).unwrap();
        let (hook, entered, release) = pause_next_sync();
        c.wal.set_fault_hook(Some(hook));
        let writer = {
            let c = Arc::clone(&c);
            std::thread::spawn(move || c.upsert(vec![item("b", vec![0.0, 1.0], "2")]))
        };
        entered.recv_timeout(WAIT).unwrap();
        // A second writer logs its record behind the paused flush.
        let before = c.wal_bytes();
        let second = {
            let c = Arc::clone(&c);
            std::thread::spawn(move || c.upsert(vec![item("c", vec![1.0, 1.0], "3")]))
        };
        let started = std::time::Instant::now();
        while c.wal_bytes() == before {
            assert!(started.elapsed() < WAIT, "the second write was not logged");
            std::thread::sleep(Duration::from_millis(1));
        }

        // Reads run meanwhile and see neither write.
        let (_, missing) = c.get(&ids(&["a", "b", "c"]), false).unwrap();
        assert_eq!(missing, ["b", "c"]);
        assert_eq!(search_ids(&c, vec![0.0, 1.0], true), ["a"]);
        let stats = c.stats().unwrap();
        assert_eq!((stats.count, stats.last_seq), (1, 1));
        assert!(!writer.is_finished() && !second.is_finished());

        c.wal.set_fault_hook(None);
        release.send(()).unwrap();
        assert_eq!(writer.join().unwrap().unwrap(), 2);
        assert_eq!(second.join().unwrap().unwrap(), 3);
        let (items, missing) = c.get(&ids(&["a", "b", "c"]), false).unwrap();
        assert!(missing.is_empty());
        assert_eq!(items.len(), 3);
        assert_eq!(c.stats().unwrap().last_seq, 3);
    }

    #[test]
    fn a_delete_counts_writes_logged_ahead_of_it() {
        let dir = Scratch::new("pending-delete");
        let store = open_store(&dir);
        let c = create(&store, "c", IndexSpec::Exact, 2);
        let (hook, entered, release) = pause_next_sync();
        c.wal.set_fault_hook(Some(hook));
        let writer = {
            let c = Arc::clone(&c);
            std::thread::spawn(move || c.upsert(vec![item("b", vec![0.0, 1.0], "2")]))
        };
        entered.recv_timeout(WAIT).unwrap();
        c.wal.set_fault_hook(None);
        let logged = c.wal_bytes();
        let deleter = {
            let c = Arc::clone(&c);
            std::thread::spawn(move || c.delete(&ids(&["b", "ghost"])))
        };
        // The delete logs its record (it counts "b" as present) and waits behind the upsert.
        let started = std::time::Instant::now();
        while !deleter.is_finished() && c.wal_bytes() == logged {
            assert!(started.elapsed() < WAIT, "the delete neither returned nor logged");
            std::thread::sleep(Duration::from_millis(1));
        }
        release.send(()).unwrap();
        assert_eq!(writer.join().unwrap().unwrap(), 1);
        let (count, missing, seq) = deleter.join().unwrap().unwrap();
        assert_eq!((count, missing.as_slice(), seq), (1, ["ghost".to_string()].as_slice(), 2));
        assert_eq!(c.get(&ids(&["b"]), false).unwrap().1, ["b"]);
    }

    fn assert_refuses_writes(c: &Collection, injected: &str) {
        let check = |e: StoreError| match &e {
            StoreError::LogUnusable { collection, reason, .. } => {
                assert_eq!(collection, "c");
                assert!(reason.contains(injected), "{e}");
                assert!(e.to_string().contains("restarts"), "{e}");
            }
            other => panic!("expected LogUnusable, got {other:?}"),
        };
        check(c.upsert(vec![item("later", vec![1.0, 1.0], "9")]).unwrap_err());
        check(c.delete(&ids(&["a"])).unwrap_err());
        check(c.compact(true).unwrap_err());
        assert_eq!(c.log_failure().map(|r| r.contains(injected)), Some(true));
    }

    fn failing(at: FaultPoint) -> FaultHook {
        Arc::new(move |point| {
            if point == at {
                Err(std::io::Error::other(format!("injected {point:?} failure")))
            } else {
                Ok(())
            }
        })
    }

    #[test]
    fn a_failed_flush_changes_nothing_and_refuses_later_writes() {
        let dir = Scratch::new("failed-sync");
        let store = open_store(&dir);
        let c = create(&store, "c", IndexSpec::Exact, 2);
        c.upsert(vec![item("a", vec![1.0, 0.0], "1")]).unwrap();
        c.wal.set_fault_hook(Some(failing(FaultPoint::Sync)));
        let e = c.upsert(vec![item("b", vec![0.0, 1.0], "2"), item("a", vec![5.0, 5.0], "x")]).unwrap_err();
        assert!(matches!(&e, StoreError::LogUnusable { collection, .. } if collection == "c"), "{e:?}");
        c.wal.set_fault_hook(None);

        // Nothing of the failed write is visible; reads work.
        let (items, missing) = c.get(&ids(&["a", "b"]), true).unwrap();
        assert_eq!(missing, ["b"]);
        assert_eq!(items[0].vector.as_deref(), Some([1.0, 0.0].as_slice()));
        assert_eq!(items[0].metadata["tag"], "1");
        assert_eq!(search_ids(&c, vec![0.0, 1.0], true), ["a"]);
        let stats = c.stats().unwrap();
        assert_eq!((stats.count, stats.last_seq), (1, 1));
        assert_refuses_writes(&c, "injected Sync failure");
        assert_eq!(c.stats().unwrap().last_seq, 1);

        // Shutdown leaves it to the log; a restart recovers it and takes writes again.
        store.close().unwrap();
        drop((c, store));
        let store = open_store(&dir);
        let c = store.get("c").unwrap();
        assert!(c.log_failure().is_none());
        assert!(c.get(&ids(&["a"]), false).unwrap().1.is_empty());
        c.upsert(vec![item("d", vec![2.0, 2.0], "4")]).unwrap();
    }

    #[test]
    fn an_interrupted_snapshot_file_is_removed_at_open_and_the_data_is_intact() {
        let dir = Scratch::new("stale-tmp");
        let store = open_store(&dir);
        let c = create(&store, "c", IndexSpec::Exact, 2);
        c.upsert(vec![item("a", vec![1.0, 0.0], "1")]).unwrap();
        // "a" goes into the snapshot, "b" stays in the log.
        store.close().unwrap();
        c.upsert(vec![item("b", vec![0.0, 1.0], "2")]).unwrap();
        drop((c, store));
        // What a compaction killed before its rename leaves: a partial snapshot under the
        // temporary name.
        let folder = dir.0.join(crate::store::COLLECTIONS_DIR).join("c");
        let tmp = folder.join(snapshot::SNAPSHOT_TMP_FILE);
        std::fs::write(&tmp, &snapshot::SNAPSHOT_MAGIC[..5]).unwrap();

        let store = open_store(&dir);
        assert!(!tmp.exists(), "the leftover is removed");
        assert!(folder.join(snapshot::SNAPSHOT_FILE).exists());
        let c = store.get("c").unwrap();
        let (items, missing) = c.get(&ids(&["a", "b"]), true).unwrap();
        assert!(missing.is_empty(), "{missing:?}");
        assert_eq!(items[0].vector.as_deref(), Some([1.0, 0.0].as_slice()));
        assert_eq!(items[1].vector.as_deref(), Some([0.0, 1.0].as_slice()));
        let stats = c.stats().unwrap();
        assert_eq!((stats.count, stats.last_seq, stats.recovery.records), (2, 2, 1));
        // The next compaction writes its own temporary file and renames it as usual.
        assert!(c.compact(true).unwrap());
        assert!(!tmp.exists());
    }

    #[test]
    fn a_failed_log_write_changes_nothing_and_refuses_later_writes() {
        let dir = Scratch::new("failed-append");
        let store = open_store(&dir);
        let c = create(&store, "c", IndexSpec::Hnsw(HnswParams::default()), 2);
        c.upsert(vec![item("a", vec![1.0, 0.0], "1")]).unwrap();
        let bytes = c.wal_bytes();
        c.wal.set_fault_hook(Some(failing(FaultPoint::Append)));
        assert!(matches!(
            c.upsert(vec![item("b", vec![0.0, 1.0], "2")]),
            Err(StoreError::LogUnusable { .. })
        ));
        c.wal.set_fault_hook(None);
        assert_eq!(c.wal_bytes(), bytes, "nothing was logged");
        assert_eq!(c.get(&ids(&["b"]), false).unwrap().1, ["b"]);
        assert_eq!(search_ids(&c, vec![0.0, 1.0], false), ["a"]);
        assert_refuses_writes(&c, "injected Append failure");
    }

    #[test]
    fn concurrent_writes_apply_in_log_order() {
        let dir = Scratch::new("order");
        let store = open_store(&dir);
        let c = create(&store, "c", IndexSpec::Exact, 2);
        let (writers, each) = (6, 40);
        let threads: Vec<_> = (0..writers)
            .map(|w| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    let mut last = Vec::new();
                    for n in 0..each {
                        let tag = format!("{w}-{n}");
                        let own = item(&format!("w{w}-{n}"), vec![w as f32, n as f32], &tag);
                        let seq = c.upsert(vec![item("x", vec![w as f32, n as f32], &tag), own]).unwrap();
                        last.push((seq, tag));
                    }
                    last
                })
            })
            .collect();
        let mut all: Vec<(u64, String)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        all.sort();
        let seqs: Vec<u64> = all.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (1..=(writers * each) as u64).collect::<Vec<_>>(), "one sequence number each");
        let winner = &all.last().unwrap().1;
        let x = |c: &Collection| c.get(&ids(&["x"]), false).unwrap().0[0].metadata["tag"].clone();
        assert_eq!(&x(&c), winner, "the last write in the log is the one visible");
        assert_eq!(c.len(), writers * each + 1);
        drop((c, store));
        let store = open_store(&dir);
        assert_eq!(&x(&store.get("c").unwrap()), winner, "replay agrees");
    }
}
