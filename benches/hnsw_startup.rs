//! Start-up of an HNSW collection: how long after `Store::open` approximate search is served,
//! with the graph saved beside the snapshot (loaded at open) and without it (rebuilt in the
//! background, searches exact meanwhile, as every start did before graphs were saved).
//!
//!     cargo bench --bench hnsw_startup
//!     BINDERY_BENCH_STARTUP_POINTS=1000000 BINDERY_BENCH_STARTUP_DIM=64 cargo bench --bench hnsw_startup
//!
//! Data: `benches/search.rs`'s embedding-like mixture (its first `dim` coordinates,
//! renormalised, when `dim` is under 1024), cosine, the default graph settings (m 16,
//! ef_construction 100). Defaults: 100000 points of dimension 1024.

use std::path::Path;
use std::time::{Duration, Instant};

use bindery::store::{
    CollectionManifest, Filter, HnswParams, IndexSpec, Metric, NewItem, Store, StoreOptions, hnsw::GRAPH_DIR,
    manifest::MANIFEST_FORMAT,
};

#[path = "common/mixture.rs"]
mod mixture;

const NAME: &str = "startup";
const BATCH: usize = 1000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Opens the store and returns (seconds until open returned, seconds until the graph answered).
fn start(folder: &Path, query: &[f32]) -> (f64, f64) {
    let options = StoreOptions { compact_interval: Duration::ZERO, ..StoreOptions::default() };
    let started = Instant::now();
    let store = Store::open(folder, options).expect("open");
    let opened = started.elapsed().as_secs_f64();
    let collection = store.get(NAME).expect("collection");
    loop {
        let outcome =
            collection.search(query.to_vec(), 10, &Filter::default(), false, None, false).expect("search");
        if !outcome.exact {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (opened, started.elapsed().as_secs_f64())
}

fn main() {
    let n = env("BINDERY_BENCH_STARTUP_POINTS", 100_000);
    let dim = env("BINDERY_BENCH_STARTUP_DIM", mixture::DIM).min(mixture::DIM);
    let model = mixture::model();
    let full = mixture::mixture(n, &model, 0);
    let row = |i: usize| -> Vec<f32> {
        let mut v = full[i * mixture::DIM..i * mixture::DIM + dim].to_vec();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        v
    };
    let folder = std::env::temp_dir().join(format!("bindery-bench-startup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    let options = StoreOptions { compact_interval: Duration::ZERO, ..StoreOptions::default() };
    let store = Store::open(&folder, options).expect("open");
    let collection = store
        .create(CollectionManifest {
            format: MANIFEST_FORMAT,
            name: NAME.into(),
            model: "bench".into(),
            dim,
            metric: Metric::Cosine,
            index: IndexSpec::Hnsw(HnswParams::default()),
            schema: None,
        })
        .expect("create");
    let started = Instant::now();
    for first in (0..n).step_by(BATCH) {
        let items = (first..(first + BATCH).min(n))
            .map(|i| NewItem {
                id: i.to_string(),
                modality: None,
                metadata: Default::default(),
                vector: row(i),
            })
            .collect();
        collection.upsert(items).expect("upsert");
    }
    let loaded = started.elapsed().as_secs_f64();
    let started = Instant::now();
    store.close().expect("close: snapshot and graph");
    let closed = started.elapsed().as_secs_f64();
    drop((collection, store));
    let query = row(n / 2);
    let graph = folder.join("collections").join(NAME).join(GRAPH_DIR);
    let graph_bytes: u64 = std::fs::read_dir(&graph)
        .expect("saved graph")
        .map(|e| e.expect("entry").metadata().map_or(0, |m| m.len()))
        .sum();

    eprintln!(
        "hnsw_startup: {n} x {dim} loaded through upserts in {loaded:.1}s; close (snapshot + graph) {closed:.1}s"
    );
    let (saved_open, saved_ready) = start(&folder, &query);
    eprintln!("hnsw_startup: saved graph: open {saved_open:.2}s, approximate search after {saved_ready:.2}s");
    std::fs::remove_dir_all(&graph).expect("remove the saved graph");
    let (rebuilt_open, rebuilt_ready) = start(&folder, &query);
    eprintln!("hnsw_startup: rebuilt: open {rebuilt_open:.2}s, approximate search after {rebuilt_ready:.1}s");
    let _ = std::fs::remove_dir_all(&folder);

    println!("| {n} x {dim} | open returned (s) | approximate search served after (s) |");
    println!("| --- | --- | --- |");
    println!("| graph rebuilt (no saved graph) | {rebuilt_open:.2} | {rebuilt_ready:.1} |");
    println!(
        "| graph saved with the snapshot ({:.0} MiB) | {saved_open:.2} | {saved_ready:.2} |",
        graph_bytes as f64 / (1 << 20) as f64
    );
}
