//! Backpressure and deadlines: a full admission queue refuses the excess with RESOURCE_EXHAUSTED
//! and serves the rest; requests whose deadline passes in the queue are dropped unrun.
//!
//! The tests in this file share one lock: the overload test samples the process's resident
//! memory, which another test running beside it would disturb.

mod common;

use std::time::Duration;

use bindery::api::pb;
use bindery::engine::{EmbedOptions, EngineError, Item, Payload};
use common::{connect, cosine, image, metric, png, scrape, start, uncached};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MODEL: &str = "imagebind-fixture";

/// Resident set size of this process, in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Sends `burst` single-image requests at once and returns each outcome in order.
async fn burst(
    addr: std::net::SocketAddr,
    images: &[Vec<u8>],
) -> Vec<Result<pb::EmbedResponse, tonic::Status>> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(images.len()));
    let mut tasks = Vec::new();
    for (i, bytes) in images.iter().cloned().enumerate() {
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = connect(addr).await;
            barrier.wait().await;
            client.embed(uncached(vec![image(&i.to_string(), bytes)])).await.map(|r| r.into_inner())
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_the_excess_serves_the_rest_and_memory_returns() {
    let _serial = SERIAL.lock().await;
    let mut options = common::fixture_options();
    options.engine.queue_capacity = Some(2);
    let server = start(options).await;
    let images: Vec<Vec<u8>> = (0..24).map(|i| png(i, 640)).collect();
    let mut client = server.client.clone();
    let mut references = Vec::new();
    for bytes in &images {
        let reply = client.embed(uncached(vec![image("ref", bytes.clone())])).await.unwrap();
        references.push(reply.into_inner().embeddings.remove(0).vector);
    }

    let mut rss_after_first = 0;
    let mut refused_total = 0;
    for round in 0..6 {
        let outcomes = burst(server.addr, &images).await;
        let mut served = 0;
        for (i, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(reply) => {
                    served += 1;
                    let c = cosine(&reply.embeddings[0].vector, &references[i]);
                    assert!(c >= 0.99999, "round {round}, image {i}: cosine {c}");
                }
                Err(status) => {
                    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                    assert!(
                        status.message().contains("imagebind-fixture/image encoder is saturated")
                            && status.message().contains("capacity 2"),
                        "{}",
                        status.message()
                    );
                    refused_total += 1;
                }
            }
        }
        assert!(served >= 1, "round {round}: nothing was served");
        if round == 0 {
            rss_after_first = rss_bytes();
        }
    }
    assert!(refused_total > 0, "a queue of 2 under bursts of 24 never refused anything");
    let text = scrape(server.metrics).await;
    let labels = [("model", MODEL), ("modality", "image")];
    assert_eq!(metric(&text, "bindery_rejected_total", &labels), Some(refused_total as f64));
    assert_eq!(metric(&text, "bindery_queue_depth", &labels), Some(0.0), "the queue drained");
    // Five more bursts after the first must not keep what they allocated.
    let grown = rss_bytes().saturating_sub(rss_after_first);
    assert!(grown < 48 << 20, "resident memory grew {} MiB over 5 bursts", grown >> 20);
    // And the server still serves normally.
    let reply = client.embed(uncached(vec![image("after", images[0].clone())])).await.unwrap();
    assert!(cosine(&reply.into_inner().embeddings[0].vector, &references[0]) >= 0.99999);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_whose_deadline_passes_in_the_queue_are_not_run() {
    let _serial = SERIAL.lock().await;
    let server = start(common::fixture_options()).await;
    // A backlog of large images keeps the image encoder busy for a while.
    let backlog_images: Vec<Vec<u8>> = (0..24).map(|i| png(1000 + i, 900)).collect();
    let mut backlog = Vec::new();
    for chunk in backlog_images.chunks(4) {
        let inputs: Vec<pb::Input> = chunk.iter().cloned().map(|b| image("backlog", b)).collect();
        let addr = server.addr;
        backlog.push(tokio::spawn(async move { connect(addr).await.embed(uncached(inputs)).await }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    // Requests with a 1 ms deadline behind it.
    let mut late = Vec::new();
    for i in 0..5 {
        let mut req = tonic::Request::new(uncached(vec![image("late", png(2000 + i, 64))]));
        req.set_timeout(Duration::from_millis(1));
        let addr = server.addr;
        late.push(tokio::spawn(async move { connect(addr).await.embed(req).await }));
    }
    for task in late {
        let status = task.await.unwrap().expect_err("a 1 ms deadline behind a backlog cannot be met");
        // A tonic client reports its own expired deadline as CANCELLED "Timeout expired" when it
        // gives up first; any other client library reports DEADLINE_EXCEEDED.
        let client_side =
            status.code() == tonic::Code::Cancelled && status.message().contains("Timeout expired");
        assert!(status.code() == tonic::Code::DeadlineExceeded || client_side, "{status:?}");
    }
    for task in backlog {
        task.await.unwrap().expect("the backlog is served");
    }
    // Give the queue time to reach the late requests' slots, then check they never ran.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = scrape(server.metrics).await;
    let labels = [("model", MODEL), ("modality", "image")];
    let run = metric(&text, "bindery_items_total", &labels).unwrap();
    assert_eq!(run, 24.0, "only the backlog's 24 images reached the tower");
    // Which side's 1 ms timer fires first (bindery's, tonic's server-side one, or the client's) is
    // a race; a request that tonic times out before its body is decoded never reaches bindery.
    let ended = ["deadline_exceeded", "cancelled"]
        .map(|status| {
            metric(&text, "bindery_requests_total", &[("modality", "image"), ("status", status)])
                .unwrap_or(0.0)
        })
        .iter()
        .sum::<f64>();
    assert!(ended <= 5.0, "late requests recorded as expired or cancelled: {ended}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_answers_deadline_exceeded_for_work_expiring_in_its_queue() {
    let _serial = SERIAL.lock().await;
    // The engine on its own, without gRPC timers racing it: its answer is deterministic.
    let engine = std::sync::Arc::new(bindery::server::load_engine(&common::fixture_options()).unwrap());
    let item = |id: &str, bytes: Vec<u8>| Item { id: id.into(), payload: Payload::Image(bytes) };
    let uncached = EmbedOptions { use_cache: false, ..EmbedOptions::default() };
    let backlog: Vec<_> = (0..6)
        .map(|i| {
            let engine = std::sync::Arc::clone(&engine);
            let items = (0..4).map(|j| item("backlog", png(3000 + 4 * i + j, 900))).collect();
            tokio::spawn(async move { engine.embed(MODEL, items, uncached).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let late =
        EmbedOptions { deadline: Some(std::time::Instant::now() + Duration::from_millis(1)), ..uncached };
    let Err(error) = engine.embed(MODEL, vec![item("late", png(4000, 64))], late).await else {
        panic!("a 1 ms deadline behind a backlog was met");
    };
    assert!(matches!(error, EngineError::DeadlineExceeded { .. }), "{error:?}");
    assert_eq!(tonic::Status::from(error).code(), tonic::Code::DeadlineExceeded);
    for task in backlog {
        task.await.unwrap().expect("the backlog is served");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = engine.metrics().render();
    let labels = [("model", MODEL), ("modality", "image")];
    assert_eq!(metric(&text, "bindery_items_total", &labels), Some(24.0), "the late image was not run");
}
