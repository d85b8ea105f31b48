//! Periodic compaction: one thread that, every [`StoreOptions::compact_interval`], folds each
//! collection's non-empty log into a snapshot, so a quiet collection does not keep a long log to
//! replay at the next start. A log that grows past the size threshold is compacted after the
//! write that grew it instead ([`Store::compact_if_needed`]).
//!
//! [`StoreOptions::compact_interval`]: super::StoreOptions::compact_interval
//! [`Store::compact_if_needed`]: super::Store::compact_if_needed

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Collection, Collections, StoreError};

/// The thread that compacts collections every
/// [`StoreOptions::compact_interval`](super::StoreOptions::compact_interval).
#[derive(Debug)]
pub(super) struct Compactor {
    /// Set to stop the thread; the condition variable wakes it.
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
}

impl Compactor {
    /// Starts the thread over `collections`.
    pub(super) fn start(collections: Collections, interval: Duration) -> Result<Self, StoreError> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("bindery-compact".into())
            .spawn(move || compact_periodically(&collections, interval, &signal))
            .map_err(|e| StoreError::Internal(format!("cannot start the compaction thread: {e}")))?;
        Ok(Self { stop, thread })
    }

    /// Stops the thread, waiting for a compaction it is running.
    pub(super) fn stop(self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
        if self.thread.join().is_err() {
            tracing::error!("the compaction thread panicked");
        }
    }
}

/// The thread's loop: sleeps an interval (woken early to stop), then folds the log of every
/// collection that has one into a snapshot, skipping collections whose log failed.
fn compact_periodically(collections: &Collections, interval: Duration, stop: &(Mutex<bool>, Condvar)) {
    let (stopped, wake) = stop;
    let is_stopped = || *stopped.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let deadline = Instant::now() + interval;
        let mut guard = stopped.lock().unwrap_or_else(|e| e.into_inner());
        while !*guard {
            let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
                break;
            };
            guard = wake.wait_timeout(guard, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        if *guard {
            return;
        }
        drop(guard);
        let due: Vec<Arc<Collection>> = collections
            .iter()
            .filter(|c| !c.wal_is_empty() && c.log_failure().is_none())
            .map(|c| Arc::clone(c.value()))
            .collect();
        for collection in due {
            if is_stopped() {
                return;
            }
            match collection.compact(false) {
                Ok(_) | Err(StoreError::CollectionNotFound { .. }) => {}
                Err(e) => {
                    tracing::error!(collection = %collection.manifest().name, error = %e, "periodic compaction failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::manifest::{self, CollectionManifest, IndexSpec, Metric};
    use crate::store::{NewItem, Store, StoreOptions, wal};

    #[test]
    fn logs_are_compacted_periodically_until_the_store_closes() {
        let dir = std::env::temp_dir().join(format!("bindery-unit-periodic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let options = StoreOptions { compact_interval: Duration::from_millis(50), ..StoreOptions::default() };
        let store = Store::open(&dir, options).unwrap();
        let collection = store
            .create(CollectionManifest {
                format: manifest::MANIFEST_FORMAT,
                name: "quiet".into(),
                model: "m".into(),
                dim: 2,
                metric: Metric::Dot,
                index: IndexSpec::Exact,
                schema: None,
            })
            .unwrap();
        let header = wal::WAL_MAGIC.len() as u64;
        for round in 1..=2u64 {
            let item = NewItem {
                id: format!("a{round}"),
                modality: None,
                metadata: Default::default(),
                vector: vec![1.0, 0.0],
            };
            let seq = collection.upsert(vec![item]).unwrap();
            // Far below the size threshold: only the timer compacts.
            assert!(collection.wal_bytes() > header);
            let started = Instant::now();
            while collection.stats().unwrap().compactions < round {
                assert!(started.elapsed() < Duration::from_secs(20), "no periodic compaction");
                std::thread::sleep(Duration::from_millis(10));
            }
            let stats = collection.stats().unwrap();
            assert_eq!((stats.wal_bytes, stats.last_seq), (header, seq));
            assert!(stats.snapshot_bytes > 0);
        }
        // Nothing to do: an empty log is left alone.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(collection.stats().unwrap().compactions, 2);
        store.close().unwrap();
        assert!(store.compactor.lock().unwrap().is_none(), "close stops the thread");
        drop(store);
        let reopened = Store::open(&dir, StoreOptions::default()).unwrap();
        let stats = reopened.get("quiet").unwrap().stats().unwrap();
        assert_eq!((stats.count, stats.recovery.records), (2, 0));
        drop(reopened);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
