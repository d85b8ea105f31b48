//! Graceful shutdown: on SIGTERM or SIGINT the server reports NOT_SERVING, ends health watches,
//! stops accepting, lets the in-flight call finish, folds the collection logs into snapshots and
//! exits 0; a call still running at the drain timeout is abandoned; a signal during start-up stops
//! it cleanly. One server per data folder: a second one is refused, and the restart of a killed
//! one is not.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bindery::api::pb;
use bindery::api::pb::collections_client::CollectionsClient;
use bindery::api::pb::embedder_client::EmbedderClient;
use bindery::server;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::common::process::{exit_status, signal, sigterm};
use crate::common::*;

/// `bindery serve` on an ephemeral port; killed if the test fails before it exits.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    log: mpsc::Receiver<String>,
    /// Its default data folder, removed after the process is killed.
    _data: TempDir,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bindery serve` with `extra` arguments, without waiting for it. Its data folder is the
/// returned scratch folder unless `extra` names another.
fn spawn_process(extra: &[&str]) -> (Child, mpsc::Receiver<String>, TempDir) {
    let data = TempDir::new("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bindery"))
        .args(["serve", "--listen", "127.0.0.1:0", "--default-model", "imagebind-fixture"])
        .args(["--intra-threads", "1", "--max-message-bytes", "268435456", "--models"])
        .arg(repo().join("models"))
        .args(extra)
        // Collections go to a scratch folder of this server's own (tests run in parallel, and a
        // data folder takes one server), never the user's data dir (--data-dir overrides).
        .env("BINDERY_DATA_DIR", data.path())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "bindery=info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start bindery");
    let stderr = child.stderr.take().unwrap();
    let (tx, log) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, log, data)
}

/// Reads `log` until a line contains `needle` and returns that line.
fn wait_for_line(log: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let line = log.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("server log");
        assert!(!line.contains("panicked"), "{line}");
        if line.contains(needle) {
            return line;
        }
    }
}

/// Reads `log` until every needle has appeared (in any order); returns the matching lines in the
/// needles' order.
fn wait_for_lines(log: &mpsc::Receiver<String>, needles: &[&str]) -> Vec<String> {
    let mut found: Vec<Option<String>> = vec![None; needles.len()];
    while found.iter().any(Option::is_none) {
        let line = wait_for_line(log, "");
        for (slot, needle) in found.iter_mut().zip(needles) {
            if slot.is_none() && line.contains(needle) {
                *slot = Some(line.clone());
            }
        }
    }
    found.into_iter().flatten().collect()
}

/// Starts `bindery serve` and waits until it listens and its background warm-up is done.
fn spawn_server(extra: &[&str]) -> ServerProcess {
    let (child, log, data) = spawn_process(extra);
    let lines = wait_for_lines(&log, &["bindery serving", "warm-up done"]);
    let field = lines[0].split_whitespace().find_map(|w| w.strip_prefix("listen=")).expect("listen= field");
    ServerProcess { child, addr: field.parse().expect("address"), log, _data: data }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overall_health_serves_once_the_background_warm_up_is_done() {
    let (child, log, data) = spawn_process(&["--warm-up", "background"]);
    let mut warmed = false;
    let serving = loop {
        let line = wait_for_line(&log, "");
        warmed |= line.contains("warm-up done");
        if line.contains("bindery serving") {
            break line;
        }
    };
    let field = serving.split_whitespace().find_map(|w| w.strip_prefix("listen=")).expect("listen= field");
    let server = ServerProcess { child, addr: field.parse().expect("address"), log, _data: data };
    let channel = Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap();
    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest { service: String::new() })
        .await
        .expect("watch")
        .into_inner();
    // Zero or more NOT_SERVING (the warm-up still running), then SERVING; nothing else.
    loop {
        let status = tokio::time::timeout(Duration::from_secs(60), watch.message())
            .await
            .expect("the warm-up ends")
            .expect("watch stream")
            .expect("a status")
            .status;
        if status == ServingStatus::Serving as i32 {
            break;
        }
        assert_eq!(status, ServingStatus::NotServing as i32);
    }
    // SERVING is only reported once the warm-up thread finished, and then every encoder serves.
    if !warmed {
        wait_for_line(&server.log, "warm-up done");
    }
    let mut health = HealthClient::new(channel);
    for service in ["imagebind-fixture/text", "imagebind-fixture/image", "imagebind-fixture/audio"] {
        let reply = health.check(HealthCheckRequest { service: service.into() }).await.expect("check");
        assert_eq!(reply.into_inner().status, ServingStatus::Serving as i32, "{service}");
    }
}

/// A request that takes the debug-built server a few seconds (4 s on a busy 2-core machine): large point
/// clouds go through farthest point sampling. The cache is bypassed so the work is always done.
fn slow_request() -> pb::EmbedRequest {
    let points: usize = 200_000;
    let inputs = (0..2)
        .map(|k| {
            let xyz = (0..points * 3).map(|i| ((i * 7919 + k * 104_729) % 100_003) as f32 / 1000.0).collect();
            pb::Input {
                id: format!("cloud{k}"),
                payload: Some(pb::input::Payload::PointCloud(pb::PointCloud { xyz, ..Default::default() })),
            }
        })
        .collect();
    pb::EmbedRequest { cache: Some(false), ..request(inputs) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_calls_refuses_new_ones_and_exits_zero() {
    let mut server = spawn_server(&["--drain-timeout", "60s"]);
    let channel = Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel.clone());
    let mut watch =
        health.watch(HealthCheckRequest { service: String::new() }).await.expect("watch").into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);

    let mut client = EmbedderClient::new(channel.clone())
        .max_encoding_message_size(256 << 20)
        .max_decoding_message_size(256 << 20);
    let slow = tokio::spawn(async move { client.embed(slow_request()).await });
    // Let the request reach the server before the signal.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!slow.is_finished(), "the slow request must still be running when SIGTERM arrives");
    sigterm(&server.child);

    // Health turns NOT_SERVING, then the server ends the watch so it does not hold the drain.
    let next = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("health update")
        .expect("watch stream")
        .expect("a status");
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    drop(watch);

    // New connections are refused while the in-flight call drains.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect(),
    )
    .await;
    assert!(matches!(refused, Ok(Err(_))), "a new connection must be refused during the drain");

    let reply = slow.await.unwrap().expect("the in-flight request completes after SIGTERM").into_inner();
    assert_eq!(reply.embeddings.len(), 2);
    assert!(reply.embeddings.iter().all(|e| e.vector.iter().all(|v| v.is_finite())));

    let status = exit_status(&mut server.child).await;
    assert!(status.success(), "exit status {status:?}");
    let log: Vec<String> = server.log.try_iter().collect();
    assert!(log.iter().any(|l| l.contains("bindery stopped")), "{log:?}");
}

#[tokio::test]
async fn the_drain_timeout_bounds_the_wait_for_calls_that_do_not_finish() {
    let mut options = fixture_options();
    options.drain_timeout = Duration::from_millis(300);
    let engine = tokio::task::spawn_blocking({
        let options = options.clone();
        move || server::load_engine(&options)
    })
    .await
    .unwrap()
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        server::serve(Arc::new(engine), listener, &options, async {
            let _ = stopped.await;
        })
        .await
    });
    // A request stream the client never ends: the call that outlives the drain. One reply shows
    // the call is open on the server before the stop.
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let (requests, outgoing) = tokio::sync::mpsc::channel(1);
    requests.send(request(vec![text("t", "a red cube")])).await.unwrap();
    let mut replies = EmbedderClient::new(channel)
        .embed_stream(tokio_stream::wrappers::ReceiverStream::new(outgoing))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replies.message().await.unwrap().unwrap().embeddings.len(), 1);

    let asked = Instant::now();
    stop.send(()).unwrap();
    let result =
        tokio::time::timeout(Duration::from_secs(10), serving).await.expect("serve returns").unwrap();
    result.expect("a drain timeout is a clean stop");
    let waited = asked.elapsed();
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(5), "{waited:?}");
    drop(requests);
}

fn unit_item(id: &str, axis: usize) -> pb::Item {
    let mut values = vec![0.0f32; 32];
    values[axis] = 1.0;
    pb::Item {
        id: id.into(),
        source: Some(pb::item::Source::Vector(pb::Vector { values })),
        metadata: [("axis".to_string(), axis.to_string())].into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_flushes_the_collection_logs_and_marks_every_encoder_not_serving() {
    let data = TempDir::new("shutdown-data");
    let data_arg = data.path().to_str().expect("utf-8 path").to_string();
    let mut server = spawn_server(&["--data-dir", &data_arg]);
    let channel = Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap();
    let mut collections = CollectionsClient::new(channel.clone());
    collections
        .create_collection(pb::CreateCollectionRequest { name: "kept".into(), ..Default::default() })
        .await
        .expect("create");
    let items = (0..3).map(|i| unit_item(&format!("item{i}"), i)).collect();
    collections.upsert(pb::UpsertRequest { collection: "kept".into(), items }).await.expect("upsert");
    let stats = collections.stats(pb::StatsRequest { collection: "kept".into() }).await.unwrap().into_inner();
    assert!(stats.wal_bytes > 8, "the upsert is in the log before the signal: {stats:?}");

    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest { service: "imagebind-fixture/text".into() })
        .await
        .expect("watch an encoder")
        .into_inner();
    assert_eq!(watch.message().await.unwrap().unwrap().status, ServingStatus::Serving as i32);
    signal(&server.child, libc::SIGINT);
    let next = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("health update")
        .expect("watch stream")
        .expect("a status");
    assert_eq!(next.status, ServingStatus::NotServing as i32, "encoder entries stop serving too");
    drop(watch);
    let status = exit_status(&mut server.child).await;
    assert!(status.success(), "exit status {status:?}");
    let log: Vec<String> = server.log.try_iter().collect();
    assert!(log.iter().any(|l| l.contains("SIGINT received")), "{log:?}");
    drop(server);

    // The log was folded into a snapshot on the way out: the restart replays nothing and finds
    // every item intact.
    let server = spawn_server(&["--data-dir", &data_arg]);
    let channel = Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap();
    let mut collections = CollectionsClient::new(channel);
    let stats = collections.stats(pb::StatsRequest { collection: "kept".into() }).await.unwrap().into_inner();
    assert_eq!(stats.recovered_records, 0, "{stats:?}");
    assert_eq!(stats.corrupt_tails, 0, "{stats:?}");
    assert_eq!(stats.collection.map(|c| c.count), Some(3));
    let got = collections
        .get(pb::GetRequest {
            collection: "kept".into(),
            ids: (0..3).map(|i| format!("item{i}")).collect(),
            include_vectors: true,
        })
        .await
        .expect("get")
        .into_inner();
    assert!(got.missing_ids.is_empty());
    for (i, item) in got.items.iter().enumerate() {
        let Some(pb::item::Source::Vector(want)) = unit_item("", i).source else { unreachable!() };
        assert_eq!(item.vector, want.values, "{}", item.id);
        assert_eq!(item.metadata.get("axis"), Some(&i.to_string()));
    }
}

#[tokio::test]
async fn sigterm_while_the_models_load_stops_cleanly() {
    let (mut child, log, _data) = spawn_process(&[]);
    // Logged once the signal handlers are in place, before any model is read.
    wait_for_line(&log, "bindery starting");
    signal(&child, libc::SIGTERM);
    let status = exit_status(&mut child).await;
    assert!(status.success(), "exit status {status:?}");
    let lines: Vec<String> = log.try_iter().collect();
    assert!(lines.iter().any(|l| l.contains("bindery stopped before serving")), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("bindery serving")), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_health_watches_so_an_idle_server_exits_at_once() {
    // The exit is timed.
    let _exclusive = exclusive().await;
    // The default 30 s drain timeout: only the watches could make the exit wait.
    let mut server = spawn_server(&[]);
    let channel = Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap();
    let mut watches = Vec::new();
    for service in ["", "imagebind-fixture/text"] {
        let mut watch = HealthClient::new(channel.clone())
            .watch(HealthCheckRequest { service: service.into() })
            .await
            .expect("watch")
            .into_inner();
        assert_eq!(watch.message().await.unwrap().unwrap().status, ServingStatus::Serving as i32);
        watches.push(watch);
    }

    let signalled = Instant::now();
    sigterm(&server.child);
    for watch in &mut watches {
        let next = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("health update")
            .expect("watch stream")
            .expect("a status");
        assert_eq!(next.status, ServingStatus::NotServing as i32);
        // Then the stream ends with OK (an error would be `Err`, an open stream the timeout).
        let end = tokio::time::timeout(Duration::from_secs(10), watch.message()).await.expect("watch ends");
        assert!(matches!(end, Ok(None)), "{end:?}");
    }
    let status = exit_status(&mut server.child).await;
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status:?}");
    eprintln!("exit {:.0} ms after SIGTERM with two health watches open", took.as_secs_f64() * 1000.0);
    // Held watches would keep the process for the whole 30 s drain; a loaded machine can take a
    // second or more to unload the models, so the bound sits well between the two.
    assert!(took < Duration::from_secs(10), "the watches held the exit for {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_a_data_folder_is_refused_and_a_killed_ones_restart_is_not() {
    let data = TempDir::new("one-server");
    let data_arg = data.path().to_str().expect("utf-8 path").to_string();
    let mut first = spawn_server(&["--data-dir", &data_arg]);
    let channel = Channel::from_shared(format!("http://{}", first.addr)).unwrap().connect().await.unwrap();
    let mut collections = CollectionsClient::new(channel);
    // A Collections answer means the store is open, so the folder is locked.
    collections
        .create_collection(pb::CreateCollectionRequest { name: "mine".into(), ..Default::default() })
        .await
        .expect("create");

    let (mut second, log, _) = spawn_process(&["--data-dir", &data_arg]);
    let status = exit_status(&mut second).await;
    assert!(!status.success(), "the second server must not run: {status:?}");
    // The reader thread ends at the closed pipe, so this is the whole stderr.
    let stderr = log.iter().collect::<Vec<_>>().join("\n");
    let expected =
        format!("data folder {data_arg} is in use by another bindery server (PID {})", first.child.id());
    assert!(stderr.contains(&expected), "{stderr}");
    // The first server is unaffected.
    let listed = collections.list_collections(pb::ListCollectionsRequest {}).await.expect("list");
    assert_eq!(listed.into_inner().collections.len(), 1);

    // SIGKILL leaves the lock file behind, but not the lock: the restart serves the folder.
    first.child.kill().expect("SIGKILL");
    first.child.wait().expect("reap");
    let restarted = spawn_server(&["--data-dir", &data_arg]);
    let channel =
        Channel::from_shared(format!("http://{}", restarted.addr)).unwrap().connect().await.unwrap();
    let mut collections = CollectionsClient::new(channel);
    collections
        .create_collection(pb::CreateCollectionRequest { name: "after".into(), ..Default::default() })
        .await
        .expect("the restarted server writes");
    let listed = collections.list_collections(pb::ListCollectionsRequest {}).await.expect("list");
    let names: Vec<String> = listed.into_inner().collections.into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["after", "mine"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_fails_as_soon_as_shutdown_begins_while_calls_drain() {
    let mut server = crate::common::process::ServerProcess::start(
        &["--drain-timeout", "60s", "--http", "127.0.0.1:0"],
        None,
    );
    let metrics = server.metrics.expect("metrics endpoint");
    let http = server.http.expect("HTTP API");
    assert_eq!(http_get(metrics, "/ready").await, (200, "ready\n".to_string()));
    assert_eq!(http_get(http, "/ready").await, (200, "ready\n".to_string()));
    let channel = Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap();
    let mut client = EmbedderClient::new(channel)
        .max_encoding_message_size(256 << 20)
        .max_decoding_message_size(256 << 20);
    let slow = tokio::spawn(async move { client.embed(slow_request()).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!slow.is_finished(), "the slow request must still be running when SIGTERM arrives");
    sigterm(&server.child);
    // While the call drains, /health still answers and /ready says why it fails.
    let mut ready = (0, String::new());
    for _ in 0..50 {
        ready = http_get(metrics, "/ready").await;
        if ready.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ready, (503, "not ready: shutting down\n".to_string()));
    assert_eq!(http_get(metrics, "/health").await.0, 200);
    // The HTTP API's own /ready flips with it (its listener still answers while calls drain).
    assert_eq!(http_get(http, "/ready").await, (503, "not ready: shutting down\n".to_string()));
    let late = http_post_json(http, "/v1/embed", &serde_json::json!({"inputs": [{"text": "late"}]})).await;
    assert_eq!(late.status, 503, "{}", late.text());
    assert_eq!(late.json()["error"]["code"], "UNAVAILABLE");
    assert!(slow.await.unwrap().is_ok(), "the in-flight call completes");
    assert!(exit_status(&mut server.child).await.success());
}
