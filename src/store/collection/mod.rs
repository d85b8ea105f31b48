//! One collection: its rows in memory, its log and snapshot on disk, its optional HNSW graph.
//!
//! This file owns the [`Collection`] handle and its opening: recovery from the snapshot and
//! the log, a damaged log tail cut off, and the graph build started. The rest is split by
//! concern, each with invariants of its own:
//! - `state.rs`: the rows in memory, tombstones and repacking;
//! - `write.rs`: the write path and its commit order (log append, flush, apply), compaction;
//! - `graph.rs`: the HNSW graph off the request path (writers' inserts, background builds);
//! - `read.rs`: get, search and stats;
//! - `validate.rs`: what a write or a search may carry.

mod graph;
mod read;
mod state;
#[cfg(test)]
mod testkit;
mod validate;
mod write;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard};

use super::hnsw::HnswIndex;
use super::manifest::{CollectionManifest, IndexSpec};
use super::record::{Op, UpsertOp};
use super::wal::{self, Wal};
use super::{StoreError, snapshot};
pub use read::{Filter, Item, SearchHit, SearchOutcome, Stats};
use state::State;
pub use validate::{MAX_ID_BYTES, MAX_TOP_K, check_id, check_search_limits};
use validate::{check_op, check_row};
use write::Commit;
pub use write::NewItem;

/// File name of the log inside a collection folder.
pub const WAL_FILE: &str = "wal";

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
        // (last write, rows) of the snapshot: what a saved graph must index to be used.
        let mut indexed = None;
        if let Some(loaded) = snapshot::read(dir, dim)? {
            snapshot_bytes = loaded.bytes;
            indexed = Some((loaded.last_seq, loaded.rows.len()));
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
            return Ok(Self::assemble(manifest, dir, state, wal, snapshot_bytes, recovery, indexed));
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
        Ok(Self::assemble(manifest, dir, state, wal, snapshot_bytes, recovery, indexed))
    }

    fn assemble(
        manifest: CollectionManifest,
        dir: &Path,
        mut state: State,
        wal: Wal,
        snapshot_bytes: u64,
        recovery: Recovery,
        indexed: Option<(u64, usize)>,
    ) -> Arc<Self> {
        // A saved graph indexes the snapshot's rows, which stay rows 0.. unless the log deleted
        // or replaced some (then the repack renumbers them and the graph is rebuilt).
        let saved = match (manifest.index, indexed) {
            (IndexSpec::Hnsw(params), Some((seq, rows))) if state.dead == 0 => {
                let started = std::time::Instant::now();
                let graph = HnswIndex::load(dir, params, manifest.metric, seq, rows);
                if graph.is_some() {
                    tracing::info!(
                        collection = %manifest.name,
                        rows,
                        seconds = started.elapsed().as_secs_f64(),
                        "HNSW graph loaded"
                    );
                }
                graph
            }
            _ => None,
        };
        if state.dead > 0 {
            state.repack_rows();
        }
        let mut job = state.start_graph(&manifest, saved);
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
            commit: Mutex::new(Commit::recovered(last_seq)),
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

    fn alive(&self) -> Result<(), StoreError> {
        if self.dropped.load(Ordering::Acquire) {
            return Err(StoreError::CollectionNotFound { name: self.manifest.name.clone() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::{Scratch, create, ids, item, open_store};
    use super::*;
    use crate::store::manifest::IndexSpec;

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
}
