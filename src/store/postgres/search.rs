//! Search in PostgreSQL: exact (a sequential scan, with index scans turned off for the
//! statement) or through the collection's pgvector HNSW index.
//!
//! pgvector 0.6 applies a query's `WHERE` after the index scan: the scan yields at most
//! `hnsw.ef_search` candidates, the filter then drops the ones that do not match, and a
//! selective filter leaves fewer than `top_k` hits although enough items match. The embedded
//! store redoes such a search exactly; here a short answer is first retried with
//! `hnsw.ef_search` at pgvector's maximum (1000), then, if still short, answered exactly. A
//! search whose filter matches fewer than `top_k` items therefore always ends as an exact scan,
//! as it does in the embedded store.

use pgvector::Vector;
use tokio_postgres::types::ToSql;

use super::{PgStore, db_error, item_of, schema};
use crate::store::{
    IndexSpec, Metric, SearchHit, SearchOutcome, StoreError, VectorSearch, collection::check_search_limits,
};

/// pgvector's largest `hnsw.ef_search`.
const PG_MAX_EF_SEARCH: usize = 1000;

/// How one attempt scans the table.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Plan {
    /// Through the HNSW index with this candidate list size.
    Hnsw(usize),
    /// Every row.
    Exact,
}

/// Runs `request` on the collection called `name`.
pub(super) async fn run(
    client: &mut deadpool_postgres::Client,
    name: &str,
    request: VectorSearch,
) -> Result<SearchOutcome, StoreError> {
    check_search_limits(request.top_k, request.ef_search)?;
    let (id, manifest) = PgStore::lookup(&***client, name).await?;
    let query = manifest.prepare_vector("query vector", request.query.clone())?;
    let k = request.top_k;
    let mut plans = Vec::new();
    if let IndexSpec::Hnsw(params) = manifest.index
        && !request.exact
    {
        // The index returns at most ef_search rows, so never ask it for fewer than k.
        let ef = request.ef_search.unwrap_or(params.ef_search).max(k).min(PG_MAX_EF_SEARCH);
        plans.push(Plan::Hnsw(ef));
        if ef < PG_MAX_EF_SEARCH {
            plans.push(Plan::Hnsw(PG_MAX_EF_SEARCH));
        }
    }
    plans.push(Plan::Exact);
    let last = plans.len() - 1;
    for (n, plan) in plans.into_iter().enumerate() {
        let hits = attempt(client, name, id, manifest.metric, &query, &request, plan).await?;
        if hits.len() >= k || n == last {
            return Ok(SearchOutcome { hits, exact: plan == Plan::Exact });
        }
    }
    Err(StoreError::Internal("search ran no plan".into()))
}

/// One query under `plan`, in a transaction so its settings end with it.
async fn attempt(
    client: &mut deadpool_postgres::Client,
    name: &str,
    id: i64,
    metric: Metric,
    query: &[f32],
    request: &VectorSearch,
    plan: Plan,
) -> Result<Vec<SearchHit>, StoreError> {
    let tx = client.transaction().await.map_err(|e| db_error(e, None))?;
    let setting = match plan {
        Plan::Hnsw(ef) => ("hnsw.ef_search", ef.to_string()),
        Plan::Exact => ("enable_indexscan", "off".to_string()),
    };
    tx.execute("SELECT set_config($1, $2, true)", &[&setting.0, &setting.1])
        .await
        .map_err(|e| db_error(e, None))?;
    // `<#>` is the negated inner product and `<->` the Euclidean distance: both ascend towards
    // the nearest item, which is the order pgvector's index scans produce.
    let operator = match metric {
        Metric::Cosine | Metric::Dot => "<#>",
        Metric::L2 => "<->",
    };
    let columns =
        if request.with_vectors { "id, modality, metadata, embedding" } else { "id, modality, metadata" };
    let vector = Vector::from(query.to_vec());
    let limit = request.top_k as i64;
    let metadata = serde_json::to_value(&request.filter.metadata)
        .map_err(|e| StoreError::Internal(format!("filter: {e}")))?;
    let modalities: Vec<String> = request.filter.modalities.iter().map(|m| m.as_str().to_string()).collect();
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&vector, &limit];
    let mut conditions = Vec::new();
    if !request.filter.metadata.is_empty() {
        // Containment: every pair of the filter is in the item's metadata.
        params.push(&metadata);
        conditions.push(format!("metadata @> ${}", params.len()));
    }
    if !modalities.is_empty() {
        params.push(&modalities);
        conditions.push(format!("modality = ANY(${})", params.len()));
    }
    let filter =
        if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
    let sql = format!(
        "SELECT {columns}, (embedding {operator} $1)::float8 AS distance FROM {} {filter} \
         ORDER BY embedding {operator} $1 LIMIT $2",
        schema::items_table(id)
    );
    let rows = tx.query(&sql, &params).await.map_err(|e| db_error(e, Some(name)))?;
    let mut hits = Vec::with_capacity(rows.len());
    for row in &rows {
        let distance: f64 = row.try_get::<_, f64>("distance").map_err(|e| db_error(e, None))?;
        let score = match metric {
            Metric::Cosine | Metric::Dot => -distance,
            Metric::L2 => distance,
        } as f32;
        hits.push(SearchHit { item: item_of(row, request.with_vectors)?, score });
    }
    // Read-only: ending the transaction either way only resets the settings.
    tx.rollback().await.map_err(|e| db_error(e, None))?;
    Ok(hits)
}
