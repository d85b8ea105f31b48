//! Collection search: exact top-10 over 100k and 1M unit vectors of dimension 1024 on one thread
//! and on every core, and the HNSW index on 100k (build time, recall@10 against exact search,
//! query time).
//!
//! Data imitates embeddings: a Gaussian mixture (1000 clusters) in a 64-dimensional latent
//! space, mapped into 1024 dimensions by a fixed random projection, with a little noise in every
//! dimension, then unit-normalised. Real embeddings are clustered and of low intrinsic dimension;
//! uniform random 1024-d vectors are all nearly orthogonal, which no approximate index handles
//! well and no embedding model produces. Queries come from the same distribution.
//!
//!     cargo bench --bench search
//!
//! Recall and build times are printed as `search:` lines; query throughput is criterion's
//! (one element = one query). `BINDERY_BENCH_HNSW_POINTS` changes the size of the HNSW data set
//! (default 100000) and `BINDERY_BENCH_HNSW_M` / `BINDERY_BENCH_HNSW_EF_CONSTRUCTION` the graph
//! parameters (default: the collection defaults), to try parameters quickly.
//! `BINDERY_BENCH_GROUPS=quantized` (or `exact_100k`, `exact_1M`, `hnsw`, comma-separated) runs
//! only those groups; the quantized group measures int8 and binary codes with float rescoring.

use std::collections::HashSet;
use std::hint::black_box;
use std::time::Instant;

use bindery::store::hnsw::HnswIndex;
use bindery::store::quantized::{Quantization, QuantizedRows};
use bindery::store::search;
use bindery::store::{HnswParams, Metric};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const K: usize = 10;
const RECALL_QUERIES: usize = 200;

#[path = "common/mixture.rs"]
mod mixture;
use mixture::{DIM, mixture, model};

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool")
}

fn exact_group(c: &mut Criterion, n: usize, label: &str) {
    if !wanted(&format!("exact_{label}")) {
        return;
    }
    let model = model();
    let started = Instant::now();
    let data = mixture(n, &model, 0);
    let queries = mixture(64, &model, 7);
    println!("search: generated {label} x {DIM} in {:.1}s", started.elapsed().as_secs_f64());
    let all = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut group = c.benchmark_group(format!("exact_{label}x{DIM}"));
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_secs(1));
    group.measurement_time(std::time::Duration::from_secs(if n > 200_000 { 8 } else { 4 }));
    for threads in [1, all] {
        let pool = pool(threads);
        let mut q = 0;
        group.bench_function(format!("top{K}_threads_{threads}"), |b| {
            b.iter(|| {
                q = (q + 1) % 64;
                let query = &queries[q * DIM..(q + 1) * DIM];
                pool.install(|| black_box(search::exact(&data, DIM, query, Metric::Cosine, K, &|_| true)))
            })
        });
    }
    group.finish();
}

/// `100k`, `1M` or the plain count.
fn size_label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

fn exact_100k(c: &mut Criterion) {
    exact_group(c, 100_000, "100k");
}

fn exact_1m(c: &mut Criterion) {
    exact_group(c, 1_000_000, "1M");
}

fn hnsw_100k(c: &mut Criterion) {
    let env =
        |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    if !wanted("hnsw") {
        return;
    }
    let n = env("BINDERY_BENCH_HNSW_POINTS", 100_000);
    let model = model();
    let data = mixture(n, &model, 0);
    let queries = mixture(RECALL_QUERIES, &model, 11);
    let defaults = HnswParams::default();
    let params = HnswParams {
        m: env("BINDERY_BENCH_HNSW_M", defaults.m),
        ef_construction: env("BINDERY_BENCH_HNSW_EF_CONSTRUCTION", defaults.ef_construction),
        ..defaults
    };
    let started = Instant::now();
    let index = HnswIndex::build(params, Metric::Cosine, &data, DIM, |_| true);
    println!(
        "search: hnsw build {n} x {DIM} (m {}, ef_construction {}) on {} threads: {:.1}s",
        params.m,
        params.ef_construction,
        rayon::current_num_threads(),
        started.elapsed().as_secs_f64()
    );
    let truth: Vec<HashSet<usize>> = queries
        .chunks_exact(DIM)
        .map(|q| {
            search::exact(&data, DIM, q, Metric::Cosine, K, &|_| true).into_iter().map(|h| h.row).collect()
        })
        .collect();
    for ef in [32, 64, params.ef_search, 256] {
        let found: usize = queries
            .chunks_exact(DIM)
            .zip(&truth)
            .map(|(q, t)| {
                index.search(&data, DIM, q, K, ef, &|_| true).iter().filter(|h| t.contains(&h.row)).count()
            })
            .sum();
        println!(
            "search: hnsw {n} recall@{K} at ef_search {ef}: {:.4}",
            found as f64 / (RECALL_QUERIES * K) as f64
        );
    }
    let mut group = c.benchmark_group(format!("hnsw_{}x{DIM}", size_label(n)));
    group.throughput(Throughput::Elements(1));
    for ef in [32, 64, params.ef_search, 256] {
        let mut q = 0;
        group.bench_function(format!("top{K}_ef_{ef}"), |b| {
            b.iter(|| {
                q = (q + 1) % RECALL_QUERIES;
                let query = &queries[q * DIM..(q + 1) * DIM];
                black_box(index.search(&data, DIM, query, K, ef, &|_| true))
            })
        });
    }
    group.finish();
}

/// Whether the group `name` should run: `BINDERY_BENCH_GROUPS` (comma-separated names, e.g.
/// `quantized`) picks groups, so a quick run skips the others' set-up (the HNSW build, the 1M
/// set); unset, every group runs.
fn wanted(name: &str) -> bool {
    std::env::var("BINDERY_BENCH_GROUPS").map_or(true, |groups| groups.split(',').any(|g| g == name))
}

/// Quantized exact search on the 100k set: recall@10 against float exact search for int8 and
/// binary codes at several oversampling factors (candidates rescored with the float rows), and
/// query time against the float scan on one thread, in the same run.
fn quantized_100k(c: &mut Criterion) {
    if !wanted("quantized") {
        return;
    }
    let n = 100_000;
    let model = model();
    let data = mixture(n, &model, 0);
    let queries = mixture(RECALL_QUERIES, &model, 11);
    let truth: Vec<HashSet<usize>> = queries
        .chunks_exact(DIM)
        .map(|q| {
            search::exact(&data, DIM, q, Metric::Cosine, K, &|_| true).into_iter().map(|h| h.row).collect()
        })
        .collect();
    let settings = [(Quantization::Int8, [1, 2, 4]), (Quantization::Binary, [4, 10, 20])];
    let mut built = Vec::new();
    for (quantization, oversamples) in settings {
        let started = Instant::now();
        let codes = QuantizedRows::build(quantization, &data, DIM);
        println!(
            "search: {quantization:?} codes for {n} x {DIM}: {:.1} MB (floats {:.1} MB), built in {:.2}s",
            codes.bytes() as f64 / 1e6,
            (data.len() * 4) as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        for oversample in oversamples {
            let found: usize = queries
                .chunks_exact(DIM)
                .zip(&truth)
                .map(|(q, t)| {
                    codes.search(&data, q, K, oversample).iter().filter(|h| t.contains(&h.row)).count()
                })
                .sum();
            println!(
                "search: {quantization:?} recall@{K} with {oversample}x candidates rescored: {:.4}",
                found as f64 / (RECALL_QUERIES * K) as f64
            );
        }
        built.push((quantization, oversamples[1], codes));
    }
    let mut group = c.benchmark_group(format!("quantized_100kx{DIM}"));
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    let one = pool(1);
    let mut q = 0;
    group.bench_function(format!("float_exact_top{K}_threads_1"), |b| {
        b.iter(|| {
            q = (q + 1) % RECALL_QUERIES;
            let query = &queries[q * DIM..(q + 1) * DIM];
            one.install(|| black_box(search::exact(&data, DIM, query, Metric::Cosine, K, &|_| true)))
        })
    });
    for (quantization, oversample, codes) in &built {
        let mut q = 0;
        group.bench_function(format!("{quantization:?}_top{K}_{oversample}x_rescored"), |b| {
            b.iter(|| {
                q = (q + 1) % RECALL_QUERIES;
                let query = &queries[q * DIM..(q + 1) * DIM];
                black_box(codes.search(&data, query, K, *oversample))
            })
        });
    }
    group.finish();
}

criterion_group!(search_benches, exact_100k, hnsw_100k, exact_1m, quantized_100k);
criterion_main!(search_benches);
