//! The two collection stores side by side, in one run, through the `CollectionStore` trait the
//! Collections service calls: the embedded store (exact and HNSW) against PostgreSQL + pgvector
//! (exact and HNSW), on the same embedding-like data as `benches/search.rs`.
//!
//!     BINDERY_BENCH_PG='postgresql://postgres:@/postgres?host=/tmp/pg' cargo bench --bench store_backends
//!
//! For each collection: the time to load it (upserts of 1000 items, each acknowledged durable),
//! recall@10 over 200 queries against the true nearest neighbours, and search throughput with 8
//! concurrent searches for 10 s. `BINDERY_BENCH_BACKEND_POINTS` changes the size (default
//! 100000). HNSW collections use the defaults: m 16, ef_construction 100, ef_search 128. The
//! database must be empty of bindery collections named `bench-*` (they are dropped at the end).
//!
//! pgvector inserts each row into an existing HNSW index one at a time, which at 1024
//! dimensions is far slower than building the index over loaded rows, and its documentation
//! advises loading first. A bindery collection gets its index at creation (`schema.rs`), so for
//! the pgvector HNSW collection the bench drops that index after creating the collection, loads
//! the rows, and runs the same `CREATE INDEX` statement again (read back from `pg_indexes`, so
//! it is exactly the one `schema.rs` issued) with `maintenance_work_mem` large enough for the
//! graph and `max_parallel_maintenance_workers` workers besides the leader. The load time then
//! counts both, and the index build is also given alone. `BINDERY_BENCH_PG_BUILD_MEMORY`
//! (default `4GB`) and `BINDERY_BENCH_PG_BUILD_WORKERS` (default 1: two processes on two cores;
//! 0 builds in one process) change the settings; `BINDERY_BENCH_PG_INDEX_FIRST=1` loads into the
//! index made at creation instead, as a collection filled through the API is.
//! `BINDERY_BENCH_ONLY=postgres-hnsw` (a comma-separated list of `store-index`) measures only
//! the collections named.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bindery::store::postgres::{PgOptions, PgStore};
use bindery::store::{
    CollectionManifest, CollectionStore, EmbeddedStore, Filter, HnswParams, IndexSpec, Metric, NewItem,
    Store, StoreOptions, VectorSearch, manifest::MANIFEST_FORMAT, search,
};

#[path = "common/mixture.rs"]
mod mixture;
use mixture::{DIM, mixture, model};

const K: usize = 10;
const QUERIES: usize = 200;
const BATCH: usize = 1000;
const CONCURRENCY: usize = 8;
const MEASURE: Duration = Duration::from_secs(10);

fn manifest(name: &str, index: IndexSpec) -> CollectionManifest {
    CollectionManifest {
        format: MANIFEST_FORMAT,
        name: name.into(),
        model: "bench".into(),
        dim: DIM,
        metric: Metric::Cosine,
        index,
        schema: None,
    }
}

/// One measured collection.
struct Row {
    store: &'static str,
    index: &'static str,
    load_s: f64,
    recall: f64,
    qps: f64,
    exact_share: f64,
    /// Of `load_s`, the seconds spent building the index after the rows were loaded.
    index_build_s: Option<f64>,
}

/// How the pgvector HNSW collection gets its index (see the file's documentation).
#[derive(Clone)]
struct PgBuild {
    url: String,
    /// `maintenance_work_mem` for the build.
    memory: String,
    /// `max_parallel_maintenance_workers` for the build.
    workers: usize,
    /// Load into the index made at creation instead.
    index_first: bool,
}

/// The item table's HNSW index of collection `name`: the table, the index's name and its
/// `CREATE INDEX` statement.
async fn hnsw_index(client: &tokio_postgres::Client, name: &str) -> (String, String, String) {
    let row = client
        .query_one(
            "SELECT i.tablename, i.indexname, i.indexdef FROM bindery_collections c \
             JOIN pg_indexes i ON i.tablename = 'bindery_items_' || c.id \
             WHERE c.name = $1 AND i.indexdef LIKE '% USING hnsw %'",
            &[&name],
        )
        .await
        .expect("the collection's hnsw index");
    (row.get(0), row.get(1), row.get(2))
}

async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

async fn measure(
    store: Arc<dyn CollectionStore>,
    index: IndexSpec,
    data: &Arc<Vec<f32>>,
    queries: &Arc<Vec<f32>>,
    truth: &[HashSet<usize>],
    pg_build: &PgBuild,
) -> Row {
    let kind = if matches!(index, IndexSpec::Exact) { "exact" } else { "hnsw" };
    let name = format!("bench-{kind}");
    let _ = store.drop_collection(&name).await;
    store.create(manifest(&name, index)).await.expect("create");
    let build_after = store.backend() == "postgres" && kind == "hnsw" && !pg_build.index_first;
    let deferred = if build_after {
        let client = pg_client(&pg_build.url).await;
        let (table, index, ddl) = hnsw_index(&client, &name).await;
        client.batch_execute(&format!("DROP INDEX {index}")).await.expect("drop the index for the load");
        Some((client, table, ddl))
    } else {
        None
    };
    let started = Instant::now();
    let n = data.len() / DIM;
    for start in (0..n).step_by(BATCH) {
        let items = (start..(start + BATCH).min(n))
            .map(|i| NewItem {
                id: i.to_string(),
                modality: None,
                metadata: Default::default(),
                vector: data[i * DIM..(i + 1) * DIM].to_vec(),
            })
            .collect();
        store.upsert(&name, items).await.expect("upsert");
    }
    let mut index_build_s = None;
    if let Some((client, table, ddl)) = deferred {
        // pgvector plans its build workers from the size of the table's main heap, but a 1024-d
        // vector (4 KiB) is kept out of line in TOAST: 100k rows leave a main heap under
        // `min_parallel_table_scan_size` and the build runs serially unless the table names its
        // worker count.
        let workers = if pg_build.workers > 0 {
            format!("ALTER TABLE {table} SET (parallel_workers = {});", pg_build.workers)
        } else {
            String::new()
        };
        let build = Instant::now();
        client
            .batch_execute(&format!(
                "{workers} SET maintenance_work_mem = '{}'; SET max_parallel_maintenance_workers = {}; {ddl}",
                pg_build.memory, pg_build.workers
            ))
            .await
            .expect("build the index over the loaded rows");
        index_build_s = Some(build.elapsed().as_secs_f64());
        eprintln!(
            "store_backends: postgres hnsw: index built over the rows in {:.1}s: {ddl}",
            build.elapsed().as_secs_f64()
        );
    }
    // The embedded graph is complete once the writes return (writers insert their rows); the
    // wait covers a background build should one run.
    while !store.stats(&name).await.expect("stats").1.index_ready {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let load_s = started.elapsed().as_secs_f64();
    let search = |q: usize| VectorSearch {
        query: queries[q * DIM..(q + 1) * DIM].to_vec(),
        top_k: K,
        filter: Filter::default(),
        exact: false,
        ef_search: None,
        with_vectors: false,
    };
    let (mut found, mut exact_answers) = (0, 0);
    for (q, want) in truth.iter().enumerate() {
        let outcome = store.search(&name, search(q)).await.expect("search");
        exact_answers += usize::from(outcome.exact);
        found +=
            outcome.hits.iter().filter(|h| h.item.id.parse().is_ok_and(|i: usize| want.contains(&i))).count();
    }
    let recall = found as f64 / (truth.len() * K) as f64;
    let deadline = Instant::now() + MEASURE;
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|t| {
            let (store, name, queries) = (Arc::clone(&store), name.clone(), Arc::clone(queries));
            tokio::spawn(async move {
                let mut done = 0usize;
                while Instant::now() < deadline {
                    let q = (t * 31 + done) % QUERIES;
                    let request = VectorSearch {
                        query: queries[q * DIM..(q + 1) * DIM].to_vec(),
                        top_k: K,
                        filter: Filter::default(),
                        exact: false,
                        ef_search: None,
                        with_vectors: false,
                    };
                    store.search(&name, request).await.expect("search");
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("search task");
    }
    store.drop_collection(&name).await.expect("drop");
    Row {
        store: store.backend(),
        index: kind,
        load_s,
        recall,
        qps: total as f64 / MEASURE.as_secs_f64(),
        exact_share: exact_answers as f64 / truth.len() as f64,
        index_build_s,
    }
}

fn main() {
    let url = std::env::var("BINDERY_BENCH_PG").unwrap_or_else(|_| {
        eprintln!("store_backends: set BINDERY_BENCH_PG to the URL of a PostgreSQL database with pgvector");
        std::process::exit(2);
    });
    // `cargo bench` passes --bench; nothing else is taken.
    let n: usize =
        std::env::var("BINDERY_BENCH_BACKEND_POINTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let env = |name: &str| std::env::var(name).ok();
    let pg_build = PgBuild {
        url: url.clone(),
        memory: env("BINDERY_BENCH_PG_BUILD_MEMORY").unwrap_or_else(|| "4GB".into()),
        workers: env("BINDERY_BENCH_PG_BUILD_WORKERS").and_then(|v| v.parse().ok()).unwrap_or(1),
        index_first: env("BINDERY_BENCH_PG_INDEX_FIRST").is_some_and(|v| v == "1"),
    };
    let only: Option<Vec<String>> =
        env("BINDERY_BENCH_ONLY").map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let model = model();
    let data = Arc::new(mixture(n, &model, 0));
    let queries = Arc::new(mixture(QUERIES, &model, 11));
    let truth: Vec<HashSet<usize>> = (0..QUERIES)
        .map(|q| {
            search::exact(&data, DIM, &queries[q * DIM..(q + 1) * DIM], Metric::Cosine, K, &|_| true)
                .into_iter()
                .map(|h| h.row)
                .collect()
        })
        .collect();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let rows = runtime.block_on(async {
        let folder = std::env::temp_dir().join(format!("bindery-bench-stores-{}", std::process::id()));
        let options = StoreOptions { compact_interval: Duration::ZERO, ..StoreOptions::default() };
        let embedded: Arc<dyn CollectionStore> =
            Arc::new(EmbeddedStore(Arc::new(Store::open(&folder, options).expect("embedded store"))));
        let pg: Arc<dyn CollectionStore> =
            Arc::new(PgStore::connect(&url, &PgOptions::default()).await.expect("connect to PostgreSQL"));
        let mut rows = Vec::new();
        for store in [&embedded, &pg] {
            for index in [IndexSpec::Exact, IndexSpec::Hnsw(HnswParams::default())] {
                let kind = if matches!(index, IndexSpec::Exact) { "exact" } else { "hnsw" };
                if only.as_ref().is_some_and(|o| !o.contains(&format!("{}-{kind}", store.backend()))) {
                    continue;
                }
                let row = measure(Arc::clone(store), index, &data, &queries, &truth, &pg_build).await;
                eprintln!(
                    "store_backends: {} {}: loaded in {:.1}s, recall@{K} {:.3}, {:.0} searches/s",
                    row.store, row.index, row.load_s, row.recall, row.qps
                );
                rows.push(row);
            }
        }
        let _ = std::fs::remove_dir_all(&folder);
        rows
    });
    println!(
        "| store | index | load {n} x {DIM} (s) | of which index built after the rows (s) | recall@{K} | \
         searches/s ({CONCURRENCY} concurrent) | answered exactly |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for r in rows {
        println!(
            "| {} | {} | {:.1} | {} | {:.3} | {:.0} | {:.0}% |",
            r.store,
            r.index,
            r.load_s,
            r.index_build_s.map_or_else(String::new, |s| format!("{s:.1}")),
            r.recall,
            r.qps,
            100.0 * r.exact_share
        );
    }
}
