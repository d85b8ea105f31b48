//! The write path: how a change gets from a request into the log and then into memory, and
//! the snapshots that fold the log away.
//!
//! A write becomes visible only once its log record is on disk, and writes become visible in
//! log order: a writer appends its record under a short lock that fixes its sequence number,
//! flushes the log without holding any lock (concurrent writers share one fsync), then waits
//! for its turn and applies the change. The rows it added join the HNSW graph after the change
//! is applied, outside the state lock (see `graph.rs`). If the log fails, nothing unflushed is
//! applied and the collection refuses every later write until a restart recovers it from the
//! log. Compaction and deletion take the append lock and wait for the writes in flight, so
//! memory then holds exactly what the log does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use super::Collection;
use super::graph::{GraphJob, GraphStep, insert_rows};
use crate::shared::Modality;
use crate::store::hnsw::HnswIndex;
use crate::store::record::{DeleteOp, Op, StoredRow, UpsertOp, WalRecord};
use crate::store::wal::LogFailure;
use crate::store::{StoreError, snapshot};

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

/// Where writes stand between the log and memory.
#[derive(Debug, Default)]
pub(super) struct Commit {
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

impl Commit {
    /// Nothing in flight, with every write through `applied` in memory (as after recovery).
    pub(super) fn recovered(applied: u64) -> Self {
        Self { applied, ..Self::default() }
    }
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

impl Collection {
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
                state.start_graph(&self.manifest, None).map_or(GraphWork::None, GraphWork::Rebuild)
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

    /// Inserts or replaces `items`, all or nothing, and returns once the write is on disk and
    /// visible. Returns the write's sequence number. A call that fails changes nothing in
    /// memory; when its log write or flush failed, the collection refuses later writes too.
    pub fn upsert(&self, items: Vec<NewItem>) -> Result<u64, StoreError> {
        self.manifest.check_items(items.iter().map(|i| (i.id.as_str(), &i.metadata)))?;
        let mut rows = Vec::with_capacity(items.len());
        for item in items {
            let what = format!("item {:?}", item.id);
            let vector = self.manifest.prepare_vector(&what, item.vector)?;
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
        self.save_graph(&state, live.len());
        self.snapshot_bytes.store(size, Ordering::Relaxed);
        self.compactions.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(collection = %self.manifest.name, items = live.len(), bytes = size, "snapshot written");
        Ok(true)
    }

    /// Saves the HNSW graph beside the snapshot just written, when it indexes exactly the
    /// snapshot's `rows` (no tombstones, every row a node), so the next open loads it instead of
    /// rebuilding it; otherwise removes a saved graph that no longer matches. A failure only
    /// costs the next open a rebuild, so it is logged, not returned.
    fn save_graph(&self, state: &super::state::State, rows: usize) {
        if !matches!(self.manifest.index, crate::store::IndexSpec::Hnsw(_)) {
            return;
        }
        match &state.index {
            Some(graph) if state.dead == 0 && state.meta.len() == rows && graph.len() == rows => {
                let started = std::time::Instant::now();
                match graph.save(&self.dir, state.last_seq, rows) {
                    Ok(()) => tracing::debug!(
                        collection = %self.manifest.name,
                        rows,
                        seconds = started.elapsed().as_secs_f64(),
                        "HNSW graph saved"
                    ),
                    Err(e) => {
                        tracing::warn!(collection = %self.manifest.name, error = %e, "cannot save the HNSW graph");
                        HnswIndex::remove_saved(&self.dir);
                    }
                }
            }
            _ => HnswIndex::remove_saved(&self.dir),
        }
    }

    /// Marks the collection deleted: every later call on this handle fails with NOT_FOUND.
    /// Waits for in-flight writes and a running compaction so none lands after it.
    pub(in crate::store) fn mark_dropped(&self) {
        let _compaction = self.compaction.lock().unwrap_or_else(|e| e.into_inner());
        let _appended = self.appended.lock().unwrap_or_else(|e| e.into_inner());
        self.wait_idle();
        self.dropped.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::store::collection::Filter;
    use crate::store::collection::testkit::{Scratch, WAIT, create, ids, item, open_store};
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
