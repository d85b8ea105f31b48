//! Collections in PostgreSQL with the pgvector extension (`--store postgres://...`): the same
//! [`CollectionStore`] as the embedded store, for teams that run several servers over one
//! database.
//!
//! Layout: one table `bindery_collections` lists the collections (name, manifest as JSONB, the
//! last write's sequence number); each collection's items live in a table of its own,
//! `bindery_items_<id>` (the id of its row, since a collection name can be longer than a
//! PostgreSQL identifier), with the metadata as JSONB and the vector as `vector(dim)`. An HNSW
//! collection gets a pgvector HNSW index at creation.
//!
//! Every write is one transaction that first bumps the collection's `last_seq` (which also
//! locks its row, so writes to one collection apply in sequence order, as the embedded log
//! orders them) and is acknowledged only once PostgreSQL reports the commit. A write whose
//! commit fails or whose connection drops is reported UNAVAILABLE: it may or may not have been
//! applied, as with an embedded write cut off by a crash before its reply.
//!
//! - `schema.rs`: the tables and indexes, created at start and per collection;
//! - `search.rs`: exact and HNSW search, and the fallback when a filter starves the index.

mod schema;
mod search;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use pgvector::Vector;
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};

use crate::shared::Modality;
use crate::store::{
    CollectionInfo, CollectionManifest, CollectionStore, Item, NewItem, Recovery, SearchOutcome, Stats,
    StoreError, VectorSearch, check_name,
};

/// Pool and timeout settings.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections kept open at most.
    pub pool_size: usize,
    /// How long a call waits for a free connection, or for a new one to open, before it fails
    /// with UNAVAILABLE.
    pub connect_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self { pool_size: 16, connect_timeout: Duration::from_secs(5) }
    }
}

/// Collections kept in a PostgreSQL database.
pub struct PgStore {
    pool: Pool,
    /// The URL without its password, for messages.
    shown: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("url", &self.shown).finish_non_exhaustive()
    }
}

/// `url` with any password replaced, so it can be logged.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(name, _)| name);
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_string(),
    }
}

/// The store error for a failed statement: unreachable databases are UNAVAILABLE, a missing
/// item table means the collection was deleted meanwhile.
fn db_error(error: tokio_postgres::Error, collection: Option<&str>) -> StoreError {
    if let Some(code) = error.code() {
        if *code == SqlState::UNDEFINED_TABLE
            && let Some(name) = collection
        {
            return StoreError::CollectionNotFound { name: name.to_string() };
        }
        let class = &code.code()[..2];
        // 08: connection exceptions; 57P0x: the server is shutting down or starting up.
        if class == "08" || matches!(code.code(), "57P01" | "57P02" | "57P03") {
            return StoreError::Unavailable(error.to_string());
        }
        let detail = error.as_db_error().map_or_else(|| error.to_string(), |d| d.message().to_string());
        return StoreError::Database(format!("{} ({})", detail, code.code()));
    }
    // No SQLSTATE: the connection itself failed (closed, reset, refused).
    StoreError::Unavailable(error.to_string())
}

fn pool_error(error: PoolError) -> StoreError {
    match error {
        PoolError::Backend(e) => db_error(e, None),
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// The manifest column's content back as a manifest.
fn manifest_of(row: &Row, column: &str) -> Result<CollectionManifest, StoreError> {
    let value: serde_json::Value = row.try_get(column).map_err(|e| db_error(e, None))?;
    serde_json::from_value(value).map_err(|e| {
        StoreError::Internal(format!("a collection manifest in the database is unreadable: {e}"))
    })
}

/// An item row (`id`, `modality`, `metadata` and, when read, `embedding`) as an [`Item`].
fn item_of(row: &Row, with_vector: bool) -> Result<Item, StoreError> {
    let get_err = |e| db_error(e, None);
    let id: String = row.try_get("id").map_err(get_err)?;
    let modality: Option<String> = row.try_get("modality").map_err(get_err)?;
    let metadata: serde_json::Value = row.try_get("metadata").map_err(get_err)?;
    let metadata: BTreeMap<String, String> = serde_json::from_value(metadata).map_err(|e| {
        StoreError::Internal(format!("item {id:?}: metadata in the database is unreadable: {e}"))
    })?;
    let vector = if with_vector {
        let v: Vector = row.try_get("embedding").map_err(get_err)?;
        Some(v.to_vec())
    } else {
        None
    };
    Ok(Item { modality: modality.and_then(|m| Modality::from_str(&m).ok()), id, metadata, vector })
}

impl PgStore {
    /// Connects to the database of `url`, checks it, and creates the pgvector extension and the
    /// collections table if they are missing. Fails when the database cannot be reached, so a
    /// mistyped URL stops the start instead of failing every call.
    pub async fn connect(url: &str, options: &PgOptions) -> Result<Self, StoreError> {
        let shown = without_password(url);
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::InvalidSpec(format!(
                "--store {shown}: expected a postgres:// or postgresql:// URL"
            )));
        }
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::InvalidSpec(format!("--store {shown}: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        config.application_name("bindery");
        // Fast recycling checks only that the connection is open: a connection PostgreSQL closed
        // (restart, crash) is dropped and replaced when a call next asks for one.
        let manager =
            Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Internal(format!("connection pool: {e}")))?;
        let store = Self { pool, shown };
        let mut client = store.client().await.map_err(|e| match e {
            StoreError::Unavailable(reason) => {
                StoreError::Unavailable(format!("cannot connect to {}: {reason}", store.shown))
            }
            e => e,
        })?;
        schema::prepare(&mut client).await?;
        tracing::info!(database = %store.shown, "collections kept in PostgreSQL");
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// The id and manifest of the collection called `name`.
    async fn lookup(
        client: &impl tokio_postgres::GenericClient,
        name: &str,
    ) -> Result<(i64, CollectionManifest), StoreError> {
        let row = client
            .query_opt("SELECT id, manifest FROM bindery_collections WHERE name = $1", &[&name])
            .await
            .map_err(|e| db_error(e, Some(name)))?
            .ok_or_else(|| StoreError::CollectionNotFound { name: name.to_string() })?;
        Ok((row.get("id"), manifest_of(&row, "manifest")?))
    }

    /// In a write transaction: bumps the collection's sequence number, locking its row until
    /// the commit, and returns the item table's id, the manifest and the new number.
    async fn begin_write(
        tx: &deadpool_postgres::Transaction<'_>,
        name: &str,
    ) -> Result<(i64, CollectionManifest, u64), StoreError> {
        let row = tx
            .query_opt(
                "UPDATE bindery_collections SET last_seq = last_seq + 1 WHERE name = $1 \
                 RETURNING id, manifest, last_seq",
                &[&name],
            )
            .await
            .map_err(|e| db_error(e, Some(name)))?
            .ok_or_else(|| StoreError::CollectionNotFound { name: name.to_string() })?;
        let seq: i64 = row.get("last_seq");
        Ok((row.get("id"), manifest_of(&row, "manifest")?, seq as u64))
    }

    async fn count(
        client: &impl tokio_postgres::GenericClient,
        id: i64,
        name: &str,
    ) -> Result<u64, StoreError> {
        let row = client
            .query_one(&format!("SELECT count(*) FROM {}", schema::items_table(id)), &[])
            .await
            .map_err(|e| db_error(e, Some(name)))?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}

/// Commits `tx`; a commit that fails for any reason leaves the outcome unknown to us.
async fn commit(tx: deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
    tx.commit().await.map_err(|e| match db_error(e, None) {
        StoreError::Unavailable(reason) => StoreError::Unavailable(format!(
            "the commit was cut off, so the write may or may not have applied: {reason}"
        )),
        e => e,
    })
}

#[async_trait]
impl CollectionStore for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn create(&self, manifest: CollectionManifest) -> Result<CollectionInfo, StoreError> {
        manifest.check()?;
        schema::check_supported(&manifest)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db_error(e, None))?;
        schema::create_collection(&tx, &manifest).await?;
        commit(tx).await?;
        Ok(CollectionInfo { manifest, count: 0 })
    }

    async fn list(&self) -> Result<Vec<CollectionInfo>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT id, name, manifest FROM bindery_collections ORDER BY name", &[])
            .await
            .map_err(|e| db_error(e, None))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let name: String = row.get("name");
            match Self::count(&**client, row.get("id"), &name).await {
                Ok(count) => out.push(CollectionInfo { manifest: manifest_of(&row, "manifest")?, count }),
                // Deleted since the listing was read.
                Err(StoreError::CollectionNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn drop_collection(&self, name: &str) -> Result<(), StoreError> {
        check_name(name).map_err(|_| StoreError::CollectionNotFound { name: name.to_string() })?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db_error(e, None))?;
        schema::drop_collection(&tx, name).await?;
        commit(tx).await
    }

    async fn manifest(&self, name: &str) -> Result<CollectionManifest, StoreError> {
        let client = self.client().await?;
        Ok(Self::lookup(&**client, name).await?.1)
    }

    async fn upsert(&self, name: &str, items: Vec<NewItem>) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db_error(e, None))?;
        let (id, manifest, seq) = Self::begin_write(&tx, name).await?;
        // Checked again here, against the manifest read under the row lock: the service
        // checked before embedding, but the collection may have been recreated since. A refusal
        // drops the transaction, so the sequence number is not used up.
        manifest.check_items(items.iter().map(|i| (i.id.as_str(), &i.metadata)))?;
        let (mut ids, mut modalities, mut metadata, mut vectors) = (vec![], vec![], vec![], vec![]);
        for item in items {
            let vector = manifest.prepare_vector(&format!("item {:?}", item.id), item.vector)?;
            modalities.push(item.modality.map(|m| m.as_str().to_string()));
            metadata
                .push(serde_json::to_value(&item.metadata).map_err(|e| StoreError::Internal(e.to_string()))?);
            vectors.push(Vector::from(vector));
            ids.push(item.id);
        }
        let sql = format!(
            "INSERT INTO {} (id, modality, metadata, embedding) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::vector[]) \
             ON CONFLICT (id) DO UPDATE SET modality = EXCLUDED.modality, metadata = EXCLUDED.metadata, \
             embedding = EXCLUDED.embedding",
            schema::items_table(id)
        );
        tx.execute(&sql, &[&ids, &modalities, &metadata, &vectors])
            .await
            .map_err(|e| db_error(e, Some(name)))?;
        commit(tx).await?;
        Ok(seq)
    }

    async fn delete(&self, name: &str, ids: Vec<String>) -> Result<(usize, Vec<String>, u64), StoreError> {
        if ids.is_empty() {
            return Err(StoreError::NoIds);
        }
        let mut seen = HashSet::new();
        let unique: Vec<String> = ids.into_iter().filter(|id| seen.insert(id.clone())).collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db_error(e, None))?;
        let (id, _, seq) = Self::begin_write(&tx, name).await?;
        let sql = format!("DELETE FROM {} WHERE id = ANY($1) RETURNING id", schema::items_table(id));
        let rows = tx.query(&sql, &[&unique]).await.map_err(|e| db_error(e, Some(name)))?;
        let deleted: HashSet<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
        let missing: Vec<String> = unique.into_iter().filter(|id| !deleted.contains(id)).collect();
        if deleted.is_empty() {
            // Nothing to remove: roll back, so the sequence number is not used up (as the
            // embedded store logs nothing for it).
            drop(tx);
            return Ok((0, missing, 0));
        }
        commit(tx).await?;
        Ok((deleted.len(), missing, seq))
    }

    async fn get(
        &self,
        name: &str,
        ids: Vec<String>,
        with_vectors: bool,
    ) -> Result<(Vec<Item>, Vec<String>), StoreError> {
        if ids.is_empty() {
            return Err(StoreError::NoIds);
        }
        let client = self.client().await?;
        let (id, _) = Self::lookup(&**client, name).await?;
        let columns =
            if with_vectors { "id, modality, metadata, embedding" } else { "id, modality, metadata" };
        let sql = format!("SELECT {columns} FROM {} WHERE id = ANY($1)", schema::items_table(id));
        let rows = client.query(&sql, &[&ids]).await.map_err(|e| db_error(e, Some(name)))?;
        let mut found = HashMap::with_capacity(rows.len());
        for row in &rows {
            let item = item_of(row, with_vectors)?;
            found.insert(item.id.clone(), item);
        }
        let (mut items, mut missing) = (Vec::new(), Vec::new());
        for id in ids {
            match found.get(&id) {
                Some(item) => items.push(item.clone()),
                None => missing.push(id),
            }
        }
        Ok((items, missing))
    }

    async fn search(&self, name: &str, request: VectorSearch) -> Result<SearchOutcome, StoreError> {
        let mut client = self.client().await?;
        search::run(&mut client, name, request).await
    }

    async fn stats(&self, name: &str) -> Result<(CollectionInfo, Stats), StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT id, manifest, last_seq FROM bindery_collections WHERE name = $1", &[&name])
            .await
            .map_err(|e| db_error(e, Some(name)))?
            .ok_or_else(|| StoreError::CollectionNotFound { name: name.to_string() })?;
        let (id, manifest, last_seq): (i64, _, i64) =
            (row.get("id"), manifest_of(&row, "manifest")?, row.get("last_seq"));
        let sql = format!("SELECT modality, count(*) FROM {} GROUP BY modality", schema::items_table(id));
        let rows = client.query(&sql, &[]).await.map_err(|e| db_error(e, Some(name)))?;
        let mut by_modality = BTreeMap::new();
        let mut count = 0;
        for row in rows {
            let modality: Option<String> = row.get(0);
            let n = row.get::<_, i64>(1) as u64;
            count += n;
            *by_modality.entry(modality.unwrap_or_else(|| "unspecified".into())).or_insert(0) += n;
        }
        let stats = Stats {
            count,
            by_modality,
            last_seq: last_seq as u64,
            // PostgreSQL owns the log, the checkpoints and the index: none of the embedded
            // store's files exist, and pgvector's index is always complete.
            wal_bytes: 0,
            snapshot_bytes: 0,
            compactions: 0,
            recovery: Recovery::default(),
            index_tombstones: 0,
            index_ready: true,
        };
        Ok((CollectionInfo { manifest, count }, stats))
    }

    async fn close(&self) -> Result<(), StoreError> {
        // Every acknowledged write is committed; there is nothing to fold away.
        self.pool.close();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn passwords_never_reach_the_logs() {
        assert_eq!(without_password("postgres://u:secret@db:5432/x"), "postgres://u:***@db:5432/x");
        assert_eq!(
            without_password("postgresql://u@db/x?sslmode=disable"),
            "postgresql://u:***@db/x?sslmode=disable"
        );
        assert_eq!(
            without_password("postgresql://postgres:@/postgres?host=/tmp/pg"),
            "postgresql://postgres:***@/postgres?host=/tmp/pg"
        );
        assert_eq!(without_password("postgres:///x?host=/run/pg"), "postgres:///x?host=/run/pg");
    }
}
