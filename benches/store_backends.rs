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
}

async fn measure(
    store: Arc<dyn CollectionStore>,
    index: IndexSpec,
    data: &Arc<Vec<f32>>,
    queries: &Arc<Vec<f32>>,
    truth: &[HashSet<usize>],
) -> Row {
    let kind = if matches!(index, IndexSpec::Exact) { "exact" } else { "hnsw" };
    let name = format!("bench-{kind}");
    let _ = store.drop_collection(&name).await;
    store.create(manifest(&name, index)).await.expect("create");
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
                let row = measure(Arc::clone(store), index, &data, &queries, &truth).await;
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
        "| store | index | load {n} x {DIM} (s) | recall@{K} | searches/s ({CONCURRENCY} concurrent) | answered exactly |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in rows {
        println!(
            "| {} | {} | {:.1} | {:.3} | {:.0} | {:.0}% |",
            r.store,
            r.index,
            r.load_s,
            r.recall,
            r.qps,
            100.0 * r.exact_share
        );
    }
}
