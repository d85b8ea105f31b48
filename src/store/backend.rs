//! The one interface the Collections service talks to, whichever engine keeps the data: the
//! embedded store of this folder ([`Store`], the default) or PostgreSQL with pgvector
//! ([`PgStore`](super::postgres::PgStore)). Both take the same checked types and answer with the
//! same results and [`StoreError`]s, so the service and the API edge never know which one runs.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Collection, CollectionManifest, Filter, Item, NewItem, SearchOutcome, Stats, Store, StoreError};

/// A collection's settings and its item count, as listings report them.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionInfo {
    /// Settings fixed at creation.
    pub manifest: CollectionManifest,
    /// Items stored.
    pub count: u64,
}

/// A nearest-neighbour search, with the query already a vector.
#[derive(Debug, Clone)]
pub struct VectorSearch {
    /// The query vector (checked and normalised by the store, as a stored vector is).
    pub query: Vec<f32>,
    /// Hits wanted.
    pub top_k: usize,
    /// Which items may match.
    pub filter: Filter,
    /// Score every item even when the collection has an approximate index.
    pub exact: bool,
    /// Overrides the index's candidate list size.
    pub ef_search: Option<usize>,
    /// Return the hits' vectors.
    pub with_vectors: bool,
}

/// Durable collections of vectors. Every write returns only once it is durable (the embedded
/// log flushed, or the PostgreSQL transaction committed); every read sees only durable writes.
#[async_trait]
pub trait CollectionStore: Send + Sync + std::fmt::Debug {
    /// Short name of the backend, for logs ("embedded", "postgres").
    fn backend(&self) -> &'static str;

    /// Creates an empty collection; fails with [`StoreError::CollectionExists`] if the name is
    /// taken.
    async fn create(&self, manifest: CollectionManifest) -> Result<CollectionInfo, StoreError>;

    /// Every collection, sorted by name.
    async fn list(&self) -> Result<Vec<CollectionInfo>, StoreError>;

    /// Deletes a collection and everything in it.
    async fn drop_collection(&self, name: &str) -> Result<(), StoreError>;

    /// The settings of the collection called `name` (to check and embed items before writing).
    async fn manifest(&self, name: &str) -> Result<CollectionManifest, StoreError>;

    /// Inserts or replaces `items`, all or nothing; returns the write's sequence number.
    async fn upsert(&self, name: &str, items: Vec<NewItem>) -> Result<u64, StoreError>;

    /// Removes the items of `ids` that exist; returns how many, the ids not found and the
    /// write's sequence number (0 when nothing was removed).
    async fn delete(&self, name: &str, ids: Vec<String>) -> Result<(usize, Vec<String>, u64), StoreError>;

    /// The items of `ids` that exist (in request order) and the ids that do not.
    async fn get(
        &self,
        name: &str,
        ids: Vec<String>,
        with_vectors: bool,
    ) -> Result<(Vec<Item>, Vec<String>), StoreError>;

    /// The nearest items to a query vector.
    async fn search(&self, name: &str, search: VectorSearch) -> Result<SearchOutcome, StoreError>;

    /// The collection's settings, count and statistics.
    async fn stats(&self, name: &str) -> Result<(CollectionInfo, Stats), StoreError>;

    /// Called once at shutdown, after the last call: leaves the data ready for a quick start.
    async fn close(&self) -> Result<(), StoreError>;
}

/// Runs blocking store work (file I/O, fsync, scans) off the async workers.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
}

fn info(collection: &Collection) -> CollectionInfo {
    CollectionInfo { manifest: collection.manifest().clone(), count: collection.len() as u64 }
}

/// The embedded store behind [`CollectionStore`]: calls that read, write or flush files run on
/// the blocking pool.
#[derive(Debug, Clone)]
pub struct EmbeddedStore(pub Arc<Store>);

#[async_trait]
impl CollectionStore for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn create(&self, manifest: CollectionManifest) -> Result<CollectionInfo, StoreError> {
        let store = Arc::clone(&self.0);
        blocking(move || store.create(manifest).map(|c| info(&c))).await
    }

    async fn list(&self) -> Result<Vec<CollectionInfo>, StoreError> {
        Ok(self.0.list().iter().map(|c| info(c)).collect())
    }

    async fn drop_collection(&self, name: &str) -> Result<(), StoreError> {
        let (store, name) = (Arc::clone(&self.0), name.to_string());
        blocking(move || store.delete(&name)).await
    }

    async fn manifest(&self, name: &str) -> Result<CollectionManifest, StoreError> {
        Ok(self.0.get(name)?.manifest().clone())
    }

    async fn upsert(&self, name: &str, items: Vec<NewItem>) -> Result<u64, StoreError> {
        let collection = self.0.get(name)?;
        let writer = Arc::clone(&collection);
        let sequence = blocking(move || writer.upsert(items)).await?;
        self.0.compact_later(collection);
        Ok(sequence)
    }

    async fn delete(&self, name: &str, ids: Vec<String>) -> Result<(usize, Vec<String>, u64), StoreError> {
        let collection = self.0.get(name)?;
        let writer = Arc::clone(&collection);
        let outcome = blocking(move || writer.delete(&ids)).await?;
        self.0.compact_later(collection);
        Ok(outcome)
    }

    async fn get(
        &self,
        name: &str,
        ids: Vec<String>,
        with_vectors: bool,
    ) -> Result<(Vec<Item>, Vec<String>), StoreError> {
        // Lookups in memory under a read lock: short enough for an async worker.
        self.0.get(name)?.get(&ids, with_vectors)
    }

    async fn search(&self, name: &str, search: VectorSearch) -> Result<SearchOutcome, StoreError> {
        let collection = self.0.get(name)?;
        blocking(move || {
            let VectorSearch { query, top_k, filter, exact, ef_search, with_vectors } = search;
            collection.search(query, top_k, &filter, exact, ef_search, with_vectors)
        })
        .await
    }

    async fn stats(&self, name: &str) -> Result<(CollectionInfo, Stats), StoreError> {
        let collection = self.0.get(name)?;
        let stats = collection.stats()?;
        Ok((info(&collection), stats))
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.0.stop_compactor();
        let collections = self.0.list();
        blocking(move || super::snapshot_all(&collections)).await
    }
}

impl Store {
    /// Folds the collection's log into a snapshot in the background once it has grown enough.
    fn compact_later(&self, collection: Arc<Collection>) {
        if collection.wal_bytes() <= self.options().compact_wal_bytes {
            return;
        }
        tokio::task::spawn_blocking(move || {
            if let Err(e) = collection.compact(false) {
                tracing::error!(collection = %collection.manifest().name, error = %e, "compaction failed");
            }
        });
    }
}
