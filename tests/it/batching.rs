//! Dynamic batching across requests, the embedding cache, per-encoder health and the metrics
//! endpoint, all observed through gRPC and `/metrics`.

use std::time::Duration;

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::common;
use crate::common::{assert_refused, connect, cosine, image, metric, png, request, scrape, start, uncached};

const MODEL: &str = "imagebind-fixture";

fn image_labels() -> [(&'static str, &'static str); 2] {
    [("model", MODEL), ("modality", "image")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_single_image_clients_are_batched_and_each_gets_its_own_embedding() {
    let mut options = common::fixture_options();
    // A short wait lets the batch fill even on a fast machine; the test checks results, not time.
    options.engine.max_batch_delay = Some(Duration::from_millis(20));
    let server = start(options).await;
    let images: Vec<Vec<u8>> = (0..64).map(|i| png(i, 96)).collect();

    // Unbatched references: one request at a time, so every tower run holds one image.
    let mut client = server.client.clone();
    let mut references = Vec::new();
    for (i, bytes) in images.iter().enumerate() {
        let reply = client.embed(uncached(vec![image(&i.to_string(), bytes.clone())])).await.unwrap();
        references.push(reply.into_inner().embeddings.remove(0).vector);
    }
    let before = scrape(server.metrics).await;
    let runs_before = metric(&before, "bindery_batch_size_count", &image_labels()).unwrap();
    let items_before = metric(&before, "bindery_batch_size_sum", &image_labels()).unwrap();
    assert_eq!(runs_before, 64.0, "sequential requests run one image per batch");
    assert_eq!(items_before, 64.0);

    // 64 clients, each on its own connection, each sending one image at the same moment.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(64));
    let mut tasks = Vec::new();
    for (i, bytes) in images.iter().cloned().enumerate() {
        let (addr, barrier) = (server.addr, barrier.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = connect(addr).await;
            barrier.wait().await;
            let reply = client.embed(uncached(vec![image(&format!("client-{i}"), bytes)])).await.unwrap();
            reply.into_inner().embeddings.remove(0)
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let embedding = task.await.unwrap();
        assert_eq!(embedding.id, format!("client-{i}"), "each client gets its own input back");
        let c = cosine(&embedding.vector, &references[i]);
        assert!(c >= 0.99999, "client {i}: cosine with its unbatched embedding is {c}");
    }

    let after = scrape(server.metrics).await;
    let runs = metric(&after, "bindery_batch_size_count", &image_labels()).unwrap() - runs_before;
    let items = metric(&after, "bindery_batch_size_sum", &image_labels()).unwrap() - items_before;
    assert_eq!(items, 64.0, "every image ran exactly once");
    assert!(runs < 64.0, "64 concurrent images took {runs} tower runs: no batch held more than one");
    // The histogram's first bucket (le=1) counts single-image runs; some runs must be larger.
    let single =
        metric(&after, "bindery_batch_size_bucket", &[("modality", "image"), ("le", "1.0")]).unwrap();
    let total = metric(&after, "bindery_batch_size_count", &image_labels()).unwrap();
    assert!(total > single, "no tower run held more than one image ({single} of {total} were single)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_exports_every_series_and_they_move() {
    let server = start(common::fixture_options()).await;
    let before = scrape(server.metrics).await;
    for family in ["bindery_encoder_up", "bindery_queue_depth", "bindery_cache_bytes"] {
        assert!(before.contains(family), "{family} missing from:\n{before}");
    }
    for modality in ["text", "image", "audio", "point_cloud", "depth", "thermal", "imu"] {
        let up = metric(&before, "bindery_encoder_up", &[("model", MODEL), ("modality", modality)]);
        assert_eq!(up, Some(1.0), "{modality} encoder warmed up and serving");
    }

    let mut client = server.client.clone();
    let inputs = vec![common::text("a", "a cat on a mat"), image("b", png(7, 64))];
    client.embed(request(inputs.clone())).await.unwrap();
    client.embed(request(inputs)).await.unwrap();
    let bad = client.embed(request(vec![image("broken", b"not an image".to_vec())])).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    let after = scrape(server.metrics).await;
    for family in [
        "# TYPE bindery_requests counter",
        "# TYPE bindery_queue_duration_seconds histogram",
        "# TYPE bindery_preprocess_duration_seconds histogram",
        "# TYPE bindery_inference_duration_seconds histogram",
        "# TYPE bindery_request_duration_seconds histogram",
        "# TYPE bindery_batch_size histogram",
        "# TYPE bindery_cache_hits counter",
        "# TYPE bindery_cache_misses counter",
    ] {
        assert!(after.contains(family), "{family} missing from:\n{after}");
    }
    let text = [("model", MODEL), ("modality", "text")];
    let ok_text = [("model", MODEL), ("modality", "text"), ("status", "ok")];
    let bad_image = [("model", MODEL), ("modality", "image"), ("status", "invalid_argument")];
    assert_eq!(metric(&after, "bindery_requests_total", &ok_text), Some(2.0));
    assert_eq!(metric(&after, "bindery_requests_total", &bad_image), Some(1.0));
    assert_eq!(metric(&after, "bindery_cache_misses_total", &text), Some(1.0), "first text is a miss");
    assert_eq!(metric(&after, "bindery_cache_hits_total", &text), Some(1.0), "the repeat is a hit");
    assert_eq!(metric(&after, "bindery_items_total", &text), Some(1.0), "the hit did not run the tower");
    for histogram in [
        "bindery_queue_duration_seconds_count",
        "bindery_preprocess_duration_seconds_count",
        "bindery_inference_duration_seconds_count",
        "bindery_request_duration_seconds_count",
        "bindery_batch_size_count",
    ] {
        let n = metric(&after, histogram, &text).unwrap_or(0.0);
        assert!(n >= 1.0, "{histogram} did not move: {n}");
    }
    assert!(metric(&after, "bindery_cache_bytes", &[]).unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_returns_identical_vectors_and_can_be_bypassed() {
    let server = start(common::fixture_options()).await;
    let mut client = server.client.clone();
    let input = vec![image("x", png(3, 80))];
    let first = client.embed(request(input.clone())).await.unwrap().into_inner().embeddings.remove(0);
    let cached = client.embed(request(input.clone())).await.unwrap().into_inner().embeddings.remove(0);
    let fresh = client.embed(uncached(input.clone())).await.unwrap().into_inner().embeddings.remove(0);
    assert_eq!(first.vector, cached.vector);
    assert_eq!(first.vector, fresh.vector);
    // Raw (unnormalised) vectors come from the same cache entry.
    let mut raw = request(input);
    raw.normalize = Some(false);
    let raw = client.embed(raw).await.unwrap().into_inner().embeddings.remove(0);
    assert!(cosine(&raw.vector, &first.vector) > 0.999999);
    let text = scrape(server.metrics).await;
    assert_eq!(metric(&text, "bindery_cache_hits_total", &image_labels()), Some(2.0));
    assert_eq!(metric(&text, "bindery_items_total", &image_labels()), Some(2.0), "first + bypass ran");

    let mut options = common::fixture_options();
    options.engine.cache_bytes = 0;
    let no_cache = start(options).await;
    let mut client = no_cache.client.clone();
    for _ in 0..2 {
        client.embed(request(vec![image("x", png(3, 80))])).await.unwrap();
    }
    let text = scrape(no_cache.metrics).await;
    assert_eq!(metric(&text, "bindery_items_total", &image_labels()), Some(2.0), "server-wide off");
    assert_eq!(metric(&text, "bindery_cache_hits_total", &image_labels()), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoder_whose_session_fails_is_reported_not_serving_by_name() {
    // A copy of the fixture model whose manifest promises 16 dimensions: every tower run returns
    // 32 and fails, the warm-up included.
    let root = common::TempDir::new("health");
    let dir = root.join("broken");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(common::repo().join("models/imagebind-fixture")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let manifest = std::fs::read_to_string(dir.join("model.toml")).unwrap();
    let manifest = manifest
        .replace("name = \"imagebind-fixture\"", "name = \"broken\"")
        .replace("embedding_dim = 32", "embedding_dim = 16");
    std::fs::write(dir.join("model.toml"), manifest).unwrap();
    let mut options = bindery::server::ServerOptions::new(root.path());
    options.towers.intra_threads = 1;
    let server = start(options).await;

    let mut health = HealthClient::new(server.channel.clone());
    let status = |service: &str| {
        let mut health = health.clone();
        let service = service.to_string();
        async move {
            health
                .check(tonic_health::pb::HealthCheckRequest { service })
                .await
                .map(|r| r.into_inner().status)
                .map_err(|s| s.code())
        }
    };
    assert_eq!(status("").await, Ok(ServingStatus::Serving as i32), "the server itself is up");
    for modality in ["text", "image", "audio", "point_cloud", "depth", "thermal", "imu"] {
        assert_eq!(
            status(&format!("broken/{modality}")).await,
            Ok(ServingStatus::NotServing as i32),
            "broken/{modality}"
        );
    }
    let reply = server.client.clone().embed(request(vec![common::text("t", "hello")])).await;
    assert_refused(reply, tonic::Code::Internal, &["broken/text encoder failed"]);
    // The operations endpoint: alive, but not ready, naming the encoders that do not serve.
    assert_eq!(common::http_get(server.metrics, "/health").await, (200, "ok\n".to_string()));
    let (code, body) = common::http_get(server.metrics, "/ready").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.starts_with("not ready: not serving: broken/") && body.contains("broken/text"), "{body}");
    let unknown = health.check(tonic_health::pb::HealthCheckRequest { service: "broken/smell".into() }).await;
    assert_eq!(unknown.unwrap_err().code(), tonic::Code::NotFound);
}
