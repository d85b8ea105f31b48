//! Durable collections: named sets of vectors with string metadata, kept under a data folder
//! and searchable exactly or through an HNSW graph.
//!
//! Layout: `<data_dir>/LOCK` is held locked by the one server using the folder and names its
//! process; `<data_dir>/collections/<name>/` holds `manifest.json` (settings fixed at creation),
//! `wal` (the write-ahead log, see [`wal`]) and `snapshot` (see [`snapshot`]). Every write is
//! appended to the log and flushed before it is acknowledged; when the log grows past a
//! threshold, every compaction interval, and at shutdown its content is folded into a new
//! snapshot and the log emptied. Opening replays the snapshot, then the log up to its first
//! damaged record.

pub mod backend;
pub mod collection;
mod compactor;
pub mod hnsw;
pub mod index;
pub mod manifest;
pub mod postgres;
pub mod quantized;
pub mod record;
pub mod search;
pub mod snapshot;
pub mod vector;
pub mod wal;

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use compactor::Compactor;
use dashmap::DashMap;

pub use backend::{CollectionInfo, CollectionStore, EmbeddedStore, VectorSearch, blocking};
pub use collection::{Collection, Filter, Item, NewItem, Recovery, SearchHit, SearchOutcome, Stats};
pub use index::VectorIndex;
pub use manifest::{CollectionManifest, HnswParams, IndexSpec, MetadataSchema, Metric};
pub use vector::VectorError;

/// Folder under the data folder that holds one subfolder per collection.
pub const COLLECTIONS_DIR: &str = "collections";

/// File in the data folder that the server using it holds locked; it contains that server's
/// process id.
pub const LOCK_FILE: &str = "LOCK";

/// Longest collection name.
pub const MAX_NAME_LEN: usize = 64;

/// Prefix of folders being created or deleted (never a valid collection name).
const TEMP_PREFIX: char = '.';

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The server runs without a data folder.
    #[error("collections are disabled: the server has no data directory")]
    Disabled,
    /// Another process holds the data folder's lock: two servers writing one folder would
    /// each acknowledge writes the other overwrites.
    #[error(
        "data folder {} is in use by another bindery server ({}); only one server may use a data \
         folder at a time",
        .dir.display(),
        .pid.map_or("unknown PID".to_string(), |pid| format!("PID {pid}"))
    )]
    InUse {
        /// The data folder.
        dir: PathBuf,
        /// Process id of the holder, as it wrote it into the lock file; `None` if unreadable.
        pid: Option<u32>,
    },
    /// No collection of that name.
    #[error("collection {name:?} not found")]
    CollectionNotFound {
        /// Requested name.
        name: String,
    },
    /// The name is taken.
    #[error("collection {name:?} already exists")]
    CollectionExists {
        /// Requested name.
        name: String,
    },
    /// The name is not usable.
    #[error("invalid collection name {name:?}: {reason}")]
    InvalidName {
        /// Requested name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Creation settings are invalid.
    #[error("invalid collection settings: {0}")]
    InvalidSpec(String),
    /// The collection's model is not loaded, so inputs cannot be embedded for it.
    #[error("collection {collection:?} belongs to model {model:?}, which this server has not loaded")]
    ModelUnavailable {
        /// Collection name.
        collection: String,
        /// Its model.
        model: String,
    },
    /// The loaded model's dimension differs from the collection's.
    #[error("collection {collection:?} has dimension {want}, but model {model:?} now produces {got}")]
    ModelDimension {
        /// Collection name.
        collection: String,
        /// Its model.
        model: String,
        /// The model's dimension.
        got: usize,
        /// The collection's.
        want: usize,
    },
    /// A write carried no items.
    #[error("no items given")]
    NoItems,
    /// A call carried no ids.
    #[error("no ids given")]
    NoIds,
    /// Two items of one write share an id.
    #[error("item id {id:?} appears more than once in the request")]
    DuplicateId {
        /// The id.
        id: String,
    },
    /// An item is invalid.
    #[error("item {id:?}: {reason}")]
    InvalidItem {
        /// Its id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A vector is invalid.
    #[error("{what}: {source}")]
    Vector {
        /// Which vector ("item \"a\"", "query vector").
        what: String,
        /// What is wrong.
        source: VectorError,
    },
    /// `top_k` out of range.
    #[error("top_k = {top_k} is out of range (1 to {max})")]
    TopK {
        /// Requested.
        top_k: usize,
        /// Largest accepted.
        max: usize,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file holds data that cannot be right.
    #[error("{path} is damaged: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A write to the collection's log failed, leaving its disk state unknown: this write and
    /// every later one to the collection fail until a restart rebuilds it from the log. Reads
    /// keep working on what was acknowledged.
    #[error(
        "collection {collection:?} accepts no writes until the server restarts and recovers it from \
         its write-ahead log {path}: {reason}"
    )]
    LogUnusable {
        /// The collection.
        collection: String,
        /// The log file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The database behind the store cannot be reached (down, restarting, or every pooled
    /// connection busy past the wait limit). The call changed nothing it acknowledged; a retry
    /// may succeed once the database is back.
    #[error("the collection database is unavailable: {0}")]
    Unavailable(String),
    /// The database refused or failed a statement for a reason other than being unreachable.
    #[error("collection database error: {0}")]
    Database(String),
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Checks a collection name: 1 to [`MAX_NAME_LEN`] ASCII letters, digits, `_`, `-`, `.`,
/// starting with a letter or digit (so it is a safe folder name on every platform).
pub fn check_name(name: &str) -> Result<(), StoreError> {
    let bad =
        |reason: &str| Err(StoreError::InvalidName { name: name.to_string(), reason: reason.to_string() });
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad(&format!("it is longer than {MAX_NAME_LEN} characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return bad("it must start with an ASCII letter or digit");
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))) {
        return bad(&format!("character {c:?} is not allowed (use ASCII letters, digits, '_', '-', '.')"));
    }
    Ok(())
}

/// Store settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// A collection's log is folded into a snapshot once it is larger than this.
    pub compact_wal_bytes: u64,
    /// Every this often, each collection whose log holds records is folded into a snapshot, so
    /// a quiet collection does not keep a long log to replay; zero turns it off.
    pub compact_interval: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { compact_wal_bytes: 64 << 20, compact_interval: Duration::from_secs(300) }
    }
}

type Collections = Arc<DashMap<String, Arc<Collection>>>;

/// Takes the exclusive lock on `data_dir` (creating the folder if needed) and writes this
/// process's id into the lock file. The lock is `flock`-style: the kernel releases it when the
/// file is closed or the process dies, so a killed server never blocks its restart. The lock
/// file is never deleted: a process that opened it before the deletion could then lock a file
/// that a third one no longer sees.
fn lock_data_dir(data_dir: &Path) -> Result<File, StoreError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io { path, source }
    };
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let path = data_dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let pid = file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse().ok());
            return Err(StoreError::InUse { dir: data_dir.to_path_buf(), pid });
        }
        Err(TryLockError::Error(source)) => return Err(StoreError::Io { path, source }),
    }
    file.set_len(0).map_err(io(&path))?;
    writeln!(file, "{}", std::process::id()).map_err(io(&path))?;
    Ok(file)
}

/// Every collection under one data folder.
#[derive(Debug)]
pub struct Store {
    /// The data folder's lock file, locked for as long as the store exists.
    _lock: File,
    root: PathBuf,
    options: StoreOptions,
    collections: Collections,
    /// Serialises creation and deletion (which rename folders).
    admin: Mutex<()>,
    /// Running while the store is open and the compaction interval is not zero.
    compactor: Mutex<Option<Compactor>>,
}

impl Store {
    /// Opens every collection under `data_dir/collections`, recovering each from its snapshot
    /// and log, and starts the periodic compaction (stopped by [`Store::close`] or on drop).
    /// HNSW graphs are built in the background afterwards, so this does not wait for them.
    /// The data folder is created if missing and locked for the store's lifetime
    /// ([`LOCK_FILE`]): a second store on the same folder, in this process or another, fails
    /// with [`StoreError::InUse`].
    pub fn open(data_dir: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        let store = Self::load(data_dir, options)?;
        if !store.options.compact_interval.is_zero() {
            let compactor = Compactor::start(Arc::clone(&store.collections), store.options.compact_interval)?;
            *store.compactor.lock().unwrap_or_else(|e| e.into_inner()) = Some(compactor);
        }
        Ok(store)
    }

    fn load(data_dir: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        let lock = lock_data_dir(data_dir)?;
        let root = data_dir.join(COLLECTIONS_DIR);
        let store = Self {
            _lock: lock,
            root,
            options,
            collections: Arc::new(DashMap::new()),
            admin: Mutex::new(()),
            compactor: Mutex::new(None),
        };
        let entries = match std::fs::read_dir(&store.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(store),
            Err(source) => return Err(StoreError::Io { path: store.root.clone(), source }),
        };
        for entry in entries {
            let entry = entry.map_err(|source| StoreError::Io { path: store.root.clone(), source })?;
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(TEMP_PREFIX) {
                // A creation or deletion interrupted by a crash: the collection was never
                // acknowledged, or its deletion was.
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove leftover folder");
                }
                continue;
            }
            if check_name(&name).is_err() {
                tracing::warn!(path = %path.display(), "ignoring a folder that is not a collection");
                continue;
            }
            let collection = Collection::open(&path)?;
            if collection.manifest().name != name {
                return Err(StoreError::Corrupt {
                    path: path.join(manifest::MANIFEST_FILE),
                    reason: format!(
                        "names collection {:?}, but its folder is {name:?}",
                        collection.manifest().name
                    ),
                });
            }
            tracing::info!(
                collection = %name,
                items = collection.len(),
                replayed = collection.stats().map(|s| s.recovery.records).unwrap_or(0),
                "collection opened"
            );
            store.collections.insert(name, collection);
        }
        Ok(store)
    }

    /// The store's settings.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// Creates an empty collection. The folder is prepared under a temporary name and renamed
    /// into place, so a crash never leaves a half-created collection.
    pub fn create(&self, manifest: CollectionManifest) -> Result<Arc<Collection>, StoreError> {
        manifest.check()?;
        let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let name = manifest.name.clone();
        if self.collections.contains_key(&name) {
            return Err(StoreError::CollectionExists { name });
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let dest = self.root.join(&name);
        if dest.exists() {
            return Err(StoreError::CollectionExists { name });
        }
        let tmp = self.root.join(format!("{TEMP_PREFIX}creating-{name}"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        std::fs::create_dir(&tmp).map_err(io(&tmp))?;
        let manifest_path = tmp.join(manifest::MANIFEST_FILE);
        let json = manifest.to_json()?;
        let written = std::fs::File::create(&manifest_path).and_then(|mut f| {
            use std::io::Write;
            f.write_all(json.as_bytes())?;
            f.sync_all()
        });
        written.map_err(io(&manifest_path))?;
        wal::Wal::create(&tmp.join(collection::WAL_FILE))?;
        snapshot::sync_dir(&tmp)?;
        std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
        snapshot::sync_dir(&self.root)?;
        let collection = Collection::open(&dest)?;
        self.collections.insert(name, Arc::clone(&collection));
        Ok(collection)
    }

    /// The collection called `name`.
    pub fn get(&self, name: &str) -> Result<Arc<Collection>, StoreError> {
        self.collections
            .get(name)
            .map(|c| Arc::clone(c.value()))
            .ok_or_else(|| StoreError::CollectionNotFound { name: name.to_string() })
    }

    /// Every collection, sorted by name.
    pub fn list(&self) -> Vec<Arc<Collection>> {
        let mut all: Vec<_> = self.collections.iter().map(|c| Arc::clone(c.value())).collect();
        all.sort_by(|a, b| a.manifest().name.cmp(&b.manifest().name));
        all
    }

    /// Deletes a collection and its files. The folder is renamed away first, so a crash
    /// midway leaves nothing that reopens as the collection.
    pub fn delete(&self, name: &str) -> Result<(), StoreError> {
        let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let collection = self.get(name)?;
        collection.mark_dropped();
        self.collections.remove(name);
        let dir = collection.dir().to_path_buf();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let doomed = self.root.join(format!("{TEMP_PREFIX}deleted-{name}-{nanos}"));
        std::fs::rename(&dir, &doomed).map_err(|source| StoreError::Io { path: dir.clone(), source })?;
        snapshot::sync_dir(&self.root)?;
        if let Err(e) = std::fs::remove_dir_all(&doomed) {
            // Removed on the next start; the collection is already gone.
            tracing::warn!(path = %doomed.display(), error = %e, "cannot remove a deleted collection's files");
        }
        Ok(())
    }

    /// Folds `collection`'s log into a snapshot if it has grown past the threshold. Returns
    /// whether it did (false also when another compaction of it is running).
    pub fn compact_if_needed(&self, collection: &Collection) -> Result<bool, StoreError> {
        if collection.wal_bytes() <= self.options.compact_wal_bytes {
            return Ok(false);
        }
        collection.compact(false)
    }

    fn stop_compactor(&self) {
        let compactor = self.compactor.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(compactor) = compactor {
            compactor.stop();
        }
    }

    /// Stops the periodic compaction and snapshots every collection with a non-empty log, so
    /// the next start replays nothing. A collection whose log failed is left to be recovered
    /// from its log at the next start. Returns the first error after trying them all.
    pub fn close(&self) -> Result<(), StoreError> {
        self.stop_compactor();
        snapshot_all(&self.list())
    }
}

/// Snapshots each of `collections` whose log holds records (see [`Store::close`]).
fn snapshot_all(collections: &[Arc<Collection>]) -> Result<(), StoreError> {
    let mut first = None;
    for collection in collections {
        match collection.compact(true) {
            Ok(_) | Err(StoreError::CollectionNotFound { .. }) => {}
            Err(e @ StoreError::LogUnusable { .. }) => {
                tracing::warn!(collection = %collection.manifest().name, error = %e, "no snapshot at shutdown");
            }
            Err(e) => {
                tracing::error!(collection = %collection.manifest().name, error = %e, "snapshot at shutdown failed");
                first.get_or_insert(e);
            }
        }
    }
    first.map_or(Ok(()), Err)
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop_compactor();
    }
}

/// The default data folder: `bindery` under the platform's local data folder (e.g.
/// `~/.local/share/bindery` on Linux); `None` when the platform has none.
pub fn default_data_dir() -> Option<PathBuf> {
    dirs::data_local_dir().map(|d| d.join("bindery"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_store_on_the_same_folder_is_refused_until_the_first_is_gone() {
        let dir = std::env::temp_dir().join(format!("bindery-unit-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // The folder does not exist yet: taking the lock creates it.
        let first = Store::open(&dir, StoreOptions::default()).unwrap();
        let written = std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap();
        assert_eq!(written.trim(), std::process::id().to_string());

        // flock locks belong to the open file, so a second open in this process conflicts too.
        let e = Store::open(&dir, StoreOptions::default()).unwrap_err();
        let pid = std::process::id();
        assert!(matches!(&e, StoreError::InUse { pid: Some(p), .. } if *p == pid), "{e:?}");
        let message = e.to_string();
        assert!(message.contains(&dir.display().to_string()), "{message}");
        assert!(message.contains(&format!("PID {pid}")), "{message}");
        drop(first);

        // A lock file holding no process id (e.g. left by another tool) is reported as such.
        let reopened = Store::open(&dir, StoreOptions::default()).unwrap();
        std::fs::write(dir.join(LOCK_FILE), "").unwrap();
        let message = Store::open(&dir, StoreOptions::default()).unwrap_err().to_string();
        assert!(message.contains("unknown PID"), "{message}");
        drop(reopened);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
