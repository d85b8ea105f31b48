//! Backpressure and deadlines: a full admission queue refuses the excess with RESOURCE_EXHAUSTED
//! and serves the rest; a request whose deadline the queue ahead makes unmeetable is refused at
//! once, or dropped unrun if admitted before the encoder's pace was known.
//!
//! Each test keeps the image encoder's queue full for seconds, and their deadlines are measured
//! against its pace, so they hold `common::exclusive`. The overload test samples its process's
//! resident memory, which other tests would disturb: it runs in a process of its own.

use std::time::Duration;

use bindery::api::pb;
use bindery::engine::{EmbedOptions, EngineError, Item};
use bindery::modality::image;

use crate::common;
use crate::common::{assert_refused, connect, cosine, image, metric, png, scrape, start, uncached};

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
    let _exclusive = common::exclusive().await;
    // The resident memory sampled below must be this test's alone.
    let name = "overload::a_full_queue_refuses_the_excess_serves_the_rest_and_memory_returns";
    if !common::in_own_process(name) {
        return;
    }
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
                    let saturated = ["imagebind-fixture/image encoder is saturated", "capacity 2"];
                    assert_refused(status, tonic::Code::ResourceExhausted, &saturated);
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
    let _exclusive = common::exclusive().await;
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
        // gives up first; any other client library reports DEADLINE_EXCEEDED. Once the encoder's
        // pace is known the server refuses such a request at the door instead.
        let client_side =
            status.code() == tonic::Code::Cancelled && status.message().contains("Timeout expired");
        let shed = status.code() == tonic::Code::ResourceExhausted
            && status.message().contains("cannot finish this request before its deadline");
        assert!(status.code() == tonic::Code::DeadlineExceeded || client_side || shed, "{status:?}");
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
    let _exclusive = common::exclusive().await;
    // The engine on its own, without gRPC timers racing it: its answer is deterministic.
    let engine = std::sync::Arc::new(bindery::server::load_engine(&common::fixture_options()).unwrap());
    let item = |id: &str, bytes: Vec<u8>| Item { id: id.into(), payload: image::payload(bytes) };
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
    // Refused at the door once the encoder's pace is known, else dropped in the queue.
    match &error {
        EngineError::DeadlineExceeded { .. } => {
            assert_eq!(tonic::Status::from(error).code(), tonic::Code::DeadlineExceeded);
        }
        EngineError::DeadlineUnmeetable { .. } => {
            let status = tonic::Status::from(error);
            assert_eq!(status.code(), tonic::Code::ResourceExhausted);
            assert!(status.metadata().get("retry-after-ms").is_some(), "{status:?}");
        }
        other => panic!("expected a deadline refusal, got {other:?}"),
    }
    for task in backlog {
        task.await.unwrap().expect("the backlog is served");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = engine.metrics().render();
    let labels = [("model", MODEL), ("modality", "image")];
    assert_eq!(metric(&text, "bindery_items_total", &labels), Some(24.0), "the late image was not run");
}

/// Sends `n` uncached requests of `per_request` distinct PNGs (`size` pixels square) at once,
/// without deadlines, and returns their tasks.
fn backlog(
    addr: std::net::SocketAddr,
    n: u32,
    per_request: u32,
    size: u32,
) -> Vec<tokio::task::JoinHandle<Result<tonic::Response<pb::EmbedResponse>, tonic::Status>>> {
    (0..n)
        .map(|i| {
            let inputs: Vec<pb::Input> =
                (0..per_request).map(|j| image("backlog", png(5000 + i * per_request + j, size))).collect();
            tokio::spawn(async move { connect(addr).await.embed(uncached(inputs)).await })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_the_queue_ahead_makes_unmeetable_is_refused_at_once_with_a_retry_hint() {
    let _exclusive = common::exclusive().await;
    let server = start(common::fixture_options()).await;
    let mut client = server.client.clone();
    // A few batches first, so the image encoder's pace is known.
    for i in 0..3 {
        let inputs = (0..4).map(|j| image("pace", png(6000 + 4 * i + j, 700))).collect();
        client.embed(uncached(inputs)).await.expect("pace batches are served");
    }
    // 64 large images: one batch of at most 32 is taken, the rest wait in the queue.
    let queued = backlog(server.addr, 16, 4, 500);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut tight = tonic::Request::new(uncached(vec![image("tight", png(7000, 64))]));
    tight.set_timeout(Duration::from_millis(20));
    let status = client.embed(tight).await.expect_err("20 ms behind dozens of queued images");
    let unmeetable = [
        "imagebind-fixture/image encoder cannot finish this request before its deadline",
        "inputs are ahead of it",
    ];
    let status = assert_refused(status, tonic::Code::ResourceExhausted, &unmeetable);
    let hint: u64 =
        status.metadata().get("retry-after-ms").expect("retry hint").to_str().unwrap().parse().unwrap();
    assert!(hint >= 1 && status.message().contains(&format!("retry in {hint} ms")), "{}", status.message());

    // The same queue with a deadline it can meet: admitted and served.
    let mut roomy = tonic::Request::new(uncached(vec![image("roomy", png(7001, 64))]));
    roomy.set_timeout(Duration::from_secs(60));
    client.embed(roomy).await.expect("a generous deadline is admitted behind the same queue");
    for task in queued {
        task.await.unwrap().expect("the backlog is served");
    }
    let text = scrape(server.metrics).await;
    let labels = [("model", MODEL), ("modality", "image")];
    let deadline_refusals = [("model", MODEL), ("modality", "image"), ("reason", "deadline")];
    assert_eq!(metric(&text, "bindery_rejected_total", &deadline_refusals), Some(1.0));
    // 12 pace images, 64 queued, the roomy one: the refused image never reached the tower.
    assert_eq!(metric(&text, "bindery_items_total", &labels), Some(77.0));
    assert_eq!(metric(&text, "bindery_admitted_total", &labels), Some(3.0 + 16.0 + 1.0));
    assert_eq!(metric(&text, "bindery_late_total", &labels), None, "nothing admitted missed its deadline");
}
