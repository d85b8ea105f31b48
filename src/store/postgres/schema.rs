//! The tables: `bindery_collections` (created at start) and one item table per collection,
//! with its pgvector HNSW index when the collection asks for one.

use deadpool_postgres::Transaction;
use tokio_postgres::error::SqlState;

use super::db_error;
use crate::store::{CollectionManifest, IndexSpec, Metric, StoreError};

/// Key of the advisory lock that serialises schema changes: servers starting together would
/// otherwise race on `CREATE EXTENSION` and `CREATE TABLE IF NOT EXISTS`, which are not safe
/// against concurrent runs.
const SCHEMA_LOCK: i64 = 0x6269_6e64_6572_7901;

/// pgvector 0.6's limits on HNSW indexes (narrower than the embedded graph's).
const PG_HNSW_MAX_M: usize = 100;
const PG_HNSW_MIN_EF_CONSTRUCTION: usize = 4;
const PG_HNSW_MAX_EF_CONSTRUCTION: usize = 1000;
const PG_HNSW_MAX_DIM: usize = 2000;
/// pgvector's largest `vector` column.
const PG_MAX_DIM: usize = 16_000;

/// Name of the item table of collection row `id`.
pub(super) fn items_table(id: i64) -> String {
    format!("bindery_items_{id}")
}

/// Creates the pgvector extension and the collections table if missing.
pub(super) async fn prepare(client: &mut deadpool_postgres::Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(|e| db_error(e, None))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).await.map_err(|e| db_error(e, None))?;
    tx.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS vector;
         CREATE TABLE IF NOT EXISTS bindery_collections (
             id bigserial PRIMARY KEY,
             name text NOT NULL UNIQUE,
             manifest jsonb NOT NULL,
             last_seq bigint NOT NULL DEFAULT 0
         );",
    )
    .await
    .map_err(|e| match db_error(e, None) {
        StoreError::Database(reason) => StoreError::Database(format!(
            "cannot prepare the collections schema (the pgvector extension must be installed, and \
             the user allowed to create it or it created already): {reason}"
        )),
        e => e,
    })?;
    tx.commit().await.map_err(|e| db_error(e, None))
}

/// Refuses settings pgvector cannot index, before anything is created.
pub(super) fn check_supported(manifest: &CollectionManifest) -> Result<(), StoreError> {
    if manifest.dim > PG_MAX_DIM {
        return Err(StoreError::InvalidSpec(format!(
            "dimension {} is above pgvector's limit of {PG_MAX_DIM}",
            manifest.dim
        )));
    }
    if let IndexSpec::Hnsw(p) = manifest.index {
        if manifest.dim > PG_HNSW_MAX_DIM {
            return Err(StoreError::InvalidSpec(format!(
                "pgvector's hnsw index takes at most {PG_HNSW_MAX_DIM} dimensions, not {} (use an exact index)",
                manifest.dim
            )));
        }
        if p.m > PG_HNSW_MAX_M {
            return Err(StoreError::InvalidSpec(format!(
                "hnsw m = {} is outside 2..={PG_HNSW_MAX_M}, pgvector's range",
                p.m
            )));
        }
        let lowest = PG_HNSW_MIN_EF_CONSTRUCTION.max(2 * p.m);
        if !(lowest..=PG_HNSW_MAX_EF_CONSTRUCTION).contains(&p.ef_construction) {
            return Err(StoreError::InvalidSpec(format!(
                "hnsw ef_construction = {} is outside {lowest}..={PG_HNSW_MAX_EF_CONSTRUCTION}, pgvector's range \
                 for m = {} (at least twice m)",
                p.ef_construction, p.m
            )));
        }
    }
    Ok(())
}

/// pgvector's operator class of a metric. Cosine vectors are stored at unit norm, so the inner
/// product orders them as cosine does, and the same operator serves both.
pub(super) fn opclass(metric: Metric) -> &'static str {
    match metric {
        Metric::Cosine | Metric::Dot => "vector_ip_ops",
        Metric::L2 => "vector_l2_ops",
    }
}

/// Adds the collection's row and creates its item table (and index), in `tx`.
pub(super) async fn create_collection(
    tx: &Transaction<'_>,
    manifest: &CollectionManifest,
) -> Result<(), StoreError> {
    let json = serde_json::to_value(manifest).map_err(|e| StoreError::Internal(format!("manifest: {e}")))?;
    let row = tx
        .query_one(
            "INSERT INTO bindery_collections (name, manifest) VALUES ($1, $2) RETURNING id",
            &[&manifest.name, &json],
        )
        .await
        .map_err(|e| {
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                StoreError::CollectionExists { name: manifest.name.clone() }
            } else {
                db_error(e, None)
            }
        })?;
    let table = items_table(row.get(0));
    let mut ddl = format!(
        "CREATE TABLE {table} (
             id text PRIMARY KEY,
             modality text,
             metadata jsonb NOT NULL,
             embedding vector({}) NOT NULL
         );",
        manifest.dim
    );
    if let IndexSpec::Hnsw(p) = manifest.index {
        ddl.push_str(&format!(
            "CREATE INDEX ON {table} USING hnsw (embedding {}) WITH (m = {}, ef_construction = {});",
            opclass(manifest.metric),
            p.m,
            p.ef_construction
        ));
    }
    tx.batch_execute(&ddl).await.map_err(|e| db_error(e, None))
}

/// Removes the collection's row and drops its item table, in `tx`.
pub(super) async fn drop_collection(tx: &Transaction<'_>, name: &str) -> Result<(), StoreError> {
    let row = tx
        .query_opt("DELETE FROM bindery_collections WHERE name = $1 RETURNING id", &[&name])
        .await
        .map_err(|e| db_error(e, Some(name)))?
        .ok_or_else(|| StoreError::CollectionNotFound { name: name.to_string() })?;
    let table = items_table(row.get(0));
    tx.batch_execute(&format!("DROP TABLE IF EXISTS {table}")).await.map_err(|e| db_error(e, Some(name)))
}
