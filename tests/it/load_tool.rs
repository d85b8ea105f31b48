//! `bindery load` against a real server started in the test: the JSON report of a bounded run,
//! open-loop latency measured from the intended send time behind a deliberately slow proxy, and the
//! exit status of a missed objective.
//!
//! Every run here is measured over a window of a second or two and its figures are checked, so
//! these tests hold `common::exclusive`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use bindery::api::pb;
use bindery::api::pb::embedder_client::EmbedderClient;
use bindery::api::pb::embedder_server::{Embedder, EmbedderServer};
use bindery::cli::{Cli, Command};
use bindery::client::load::LoadArgs;
use clap::Parser;
use futures::Stream;
use serde_json::Value;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status, Streaming};

use crate::common;

/// Parses `bindery load <args>` with the real command line.
fn load_args(args: &[&str]) -> LoadArgs {
    let cli = Cli::try_parse_from(["bindery", "load"].iter().chain(args)).expect("valid arguments");
    match cli.command {
        Command::Load(args) => args,
        other => panic!("parsed as {other:?}"),
    }
}

fn temp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// Runs `bindery load` in-process with `--json` to a file and returns the parsed report.
async fn run_json(name: &str, args: &[&str]) -> Value {
    let path = temp(name);
    let path_arg = path.to_str().expect("utf-8 path").to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--quiet", "--json", &path_arg]);
    let code = bindery::client::load::run(load_args(&all)).await.expect("load run");
    assert_eq!(code, ExitCode::SUCCESS);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("json written")).expect("valid json")
}

fn f(v: &Value, pointer: &str) -> f64 {
    v.pointer(pointer).and_then(Value::as_f64).unwrap_or_else(|| panic!("{pointer} missing in {v:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_run_reports_throughput_latency_and_server_stages() {
    let _exclusive = common::exclusive().await;
    let server = common::start_fixture().await;
    let url = format!("http://{}", server.addr);
    let report = run_json(
        "load-closed.json",
        &[
            "--server",
            &url,
            "--mix",
            "text=0.5,image=0.5",
            "--image-size",
            "320x240",
            "--concurrency",
            "4",
            "--duration",
            "2s",
            "--warmup",
            "500ms",
            // The payload pools are small: with the cache on, the warm-up can fill it and the
            // measured part then holds no preprocessing or inference to report.
            "--no-cache",
        ],
    )
    .await;

    assert_eq!(report["load"], "closed");
    assert_eq!(report["concurrency"], 4);
    assert!(f(&report, "/requests") > 0.0, "{report:#}");
    assert!(f(&report, "/items_per_s") > 0.0);
    assert!(f(&report, "/requests_per_s") > 0.0);
    assert_eq!(f(&report, "/errors"), 0.0, "{report:#}");
    assert!(f(&report, "/elapsed_s") >= 2.0, "the measured part excludes the warm-up only");
    let (p50, p99, max) =
        (f(&report, "/latency_ms/p50"), f(&report, "/latency_ms/p99"), f(&report, "/latency_ms/max"));
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{report:#}");
    for stage in ["preprocess", "inference", "total"] {
        assert!(f(&report, &format!("/server_stages_ms/{stage}")) > 0.0, "{stage}: {report:#}");
    }
    assert!(f(&report, "/server_stages_ms/queue") >= 0.0);
    assert!(f(&report, "/server_stages_ms/total") <= max, "server time fits in the client's latency");
    assert_eq!(f(&report, "/mix/text"), 0.5);
    assert_eq!(f(&report, "/cache_hit_ratio"), 0.0, "--no-cache bypasses the cache: {report:#}");

    // With the cache on, the small payload pools repeat and come from the cache; the report says
    // so (and its summary warns).
    let cached = run_json(
        "load-closed-cached.json",
        &["--server", &url, "--mix", "text=0.5,image=0.5", "--image-size", "320x240", "--duration", "1s"],
    )
    .await;
    assert!(f(&cached, "/cache_hit_ratio") > 0.5, "{cached:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_baseline_runs_the_same_work_without_a_server() {
    let _exclusive = common::exclusive().await;
    let models = common::repo().join("models");
    let models = models.to_str().expect("utf-8 path");
    let report = run_json(
        "load-in-process.json",
        &[
            "--in-process",
            models,
            "--model",
            "imagebind-fixture",
            "--mix",
            "image=0.5,point_cloud=0.5",
            "--image-size",
            "160x120",
            "--batch",
            "4",
            "--concurrency",
            "2",
            "--duration",
            "1s",
            "--warmup",
            "300ms",
        ],
    )
    .await;
    assert_eq!(f(&report, "/errors"), 0.0, "{report:#}");
    assert!(f(&report, "/items") >= 4.0 && f(&report, "/items") % 4.0 == 0.0, "{report:#}");
    assert!(f(&report, "/items_per_s") > 0.0);
    for stage in ["preprocess", "inference", "total"] {
        assert!(f(&report, &format!("/server_stages_ms/{stage}")) > 0.0, "{stage}: {report:#}");
    }
    // A modality without its own generator here sends its registration's examples (thermal, IMU,
    // depth).
    let report = run_json(
        "load-in-process-thermal.json",
        &[
            "--in-process",
            models,
            "--model",
            "imagebind-fixture",
            "--mix",
            "thermal=0.4,imu=0.3,depth=0.3",
            "--concurrency",
            "1",
            "--duration",
            "500ms",
            "--warmup",
            "0s",
        ],
    )
    .await;
    assert_eq!(f(&report, "/errors"), 0.0, "{report:#}");
    assert!(f(&report, "/items") > 0.0 && f(&report, "/mix/depth") == 0.3, "{report:#}");
    // An unknown model is an error before anything runs.
    let args = load_args(&["--in-process", models, "--model", "nope", "--duration", "1s", "--quiet"]);
    let err = bindery::client::load::run(args).await.expect_err("unknown model");
    assert!(err.to_string().contains("nope"), "{err}");
}

/// Forwards `Embed` calls to the real server one at a time, each after a fixed delay: a server
/// whose capacity is 1 / delay.
struct SlowProxy {
    upstream: EmbedderClient<Channel>,
    delay: Duration,
    one_at_a_time: tokio::sync::Mutex<()>,
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<pb::EmbedResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Embedder for SlowProxy {
    async fn embed(&self, request: Request<pb::EmbedRequest>) -> Result<Response<pb::EmbedResponse>, Status> {
        let _turn = self.one_at_a_time.lock().await;
        tokio::time::sleep(self.delay).await;
        self.upstream.clone().embed(request.into_inner()).await
    }

    type EmbedStreamStream = ReplyStream;

    async fn embed_stream(
        &self,
        _request: Request<Streaming<pb::EmbedRequest>>,
    ) -> Result<Response<ReplyStream>, Status> {
        Err(Status::unimplemented("the test proxy forwards Embed only"))
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        self.upstream.clone().list_models(request.into_inner()).await
    }

    async fn similarity(
        &self,
        request: Request<pb::SimilarityRequest>,
    ) -> Result<Response<pb::SimilarityResponse>, Status> {
        self.upstream.clone().similarity(request.into_inner()).await
    }

    async fn classify(
        &self,
        request: Request<pb::ClassifyRequest>,
    ) -> Result<Response<pb::ClassifyResponse>, Status> {
        self.upstream.clone().classify(request.into_inner()).await
    }
}

async fn start_proxy(upstream: EmbedderClient<Channel>, delay: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let proxy = SlowProxy { upstream, delay, one_at_a_time: tokio::sync::Mutex::new(()) };
    tokio::spawn(
        Server::builder()
            .add_service(EmbedderServer::new(proxy))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_counts_queueing_from_the_intended_send_time() {
    let _exclusive = common::exclusive().await;
    let server = common::start_fixture().await;
    let delay = Duration::from_millis(20);
    let proxy = start_proxy(server.client.clone(), delay).await;
    let url = format!("http://{proxy}");
    let delay_ms = delay.as_secs_f64() * 1000.0;

    // 100 requests/s for 1 s against a capacity of 50/s: the backlog grows for the whole run, and
    // with at most 8 requests in flight most of it waits in the client, which must still count it.
    let open = run_json(
        "load-open.json",
        &[
            "--server",
            &url,
            "--mix",
            "text",
            "--rate",
            "100",
            "--max-in-flight",
            "8",
            "--duration",
            "1s",
            "--warmup",
            "0s",
        ],
    )
    .await;
    assert_eq!(open["load"], "open");
    assert_eq!(f(&open, "/errors"), 0.0, "{open:#}");
    assert_eq!(f(&open, "/requests"), 100.0, "every scheduled request is sent and counted");
    let open_p99 = f(&open, "/latency_ms/p99");
    assert!(open_p99 > 15.0 * delay_ms, "open-loop p99 {open_p99} ms hides the queue: {open:#}");
    let trend: Vec<f64> =
        open["latency_trend_ms"].as_array().expect("trend").iter().map(|v| v.as_f64().expect("ms")).collect();
    assert_eq!(trend.len(), 10);
    assert!(trend[9] > 3.0 * trend[0], "latency does not grow over the run: {trend:?}");
    // The server could not keep up, so the measured throughput is its capacity, not the rate.
    assert!(f(&open, "/requests_per_s") < 60.0, "{open:#}");

    let closed = run_json(
        "load-closed-slow.json",
        &["--server", &url, "--mix", "text", "--concurrency", "1", "--duration", "1s", "--warmup", "0s"],
    )
    .await;
    let closed_p50 = f(&closed, "/latency_ms/p50");
    assert!(
        closed_p50 >= delay_ms && closed_p50 < 2.0 * delay_ms,
        "closed-loop p50 {closed_p50} ms should be close to the {delay_ms} ms delay: {closed:#}"
    );
    assert!(f(&closed, "/latency_ms/p99") * 4.0 < open_p99);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_objective_gives_a_nonzero_exit_status() {
    let _exclusive = common::exclusive().await;
    let server = common::start_fixture().await;
    let chart = temp("load-sweep.svg");
    let _ = std::fs::remove_file(&chart);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_bindery"))
        .args(["load", "--server", &format!("http://{}", server.addr), "--mode", "stream"])
        .args(["--concurrency", "1,2", "--duration", "300ms", "--warmup", "0s", "--quiet"])
        .args(["--json", "-", "--max-p99", "1us", "--max-error-rate", "0.5", "--chart"])
        .arg(&chart)
        .output()
        .await
        .expect("bindery runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("SLO missed (concurrency 1): p99"), "stderr: {stderr}");
    assert!(stderr.contains("SLO missed (concurrency 2): p99"), "stderr: {stderr}");
    assert!(!stderr.contains("error rate"), "no request failed: {stderr}");

    let runs: Value = serde_json::from_slice(&output.stdout).expect("stdout is only the JSON report");
    let runs = runs.as_array().expect("a sweep gives an array");
    assert_eq!(runs.len(), 2);
    for (run, level) in runs.iter().zip([1, 2]) {
        assert_eq!(run["concurrency"], level);
        assert_eq!(run["mode"], "stream");
        assert!(f(run, "/ok") > 0.0 && f(run, "/errors") == 0.0, "{run:#}");
        assert_eq!(run["slo"]["passed"], false);
        assert!(run["server_stages_ms"].is_null(), "stream replies carry no timings");
    }
    let svg = std::fs::read_to_string(&chart).expect("chart written");
    assert!(svg.starts_with("<svg") && svg.contains("p99") && svg.contains("concurrency 2"));
}

/// Runs `bindery load` in-process against `url` with image requests and returns the report.
async fn image_load(name: &str, url: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--server", url, "--mix", "image", "--image-size", "160x120", "--no-cache"];
    args.extend_from_slice(extra);
    run_json(name, &args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goodput_holds_when_offered_well_over_capacity_with_short_deadlines() {
    let _exclusive = common::exclusive().await;
    let server = common::start_fixture().await;
    let url = format!("http://{}", server.addr);
    // The deadline is short relative to the service time of one image (as 50 ms is for the
    // release build on this model), whatever the build's speed.
    let alone = image_load(
        "goodput-alone.json",
        &url,
        &["--concurrency", "1", "--duration", "1s", "--warmup", "300ms", "--timeout", "60s"],
    )
    .await;
    let deadline_ms = (10.0 * f(&alone, "/latency_ms/p50")).max(50.0);
    let capacity = f(
        &image_load(
            "goodput-capacity.json",
            &url,
            // Long enough that several full batches finish even on a busy machine's debug build.
            &["--concurrency", "64", "--duration", "4s", "--warmup", "1s", "--timeout", "60s"],
        )
        .await,
        "/requests_per_s",
    );
    assert!(capacity > 0.0);
    let metrics_before = common::scrape(server.metrics).await;
    let rate = format!("{:.1}", 2.5 * capacity);
    let timeout = format!("{deadline_ms:.0}ms");
    let overload = image_load(
        "goodput-overload.json",
        &url,
        &[
            "--rate",
            &rate,
            "--max-in-flight",
            "20000",
            "--connections",
            "8",
            "--timeout",
            &timeout,
            "--duration",
            "4s",
            "--warmup",
            "1s",
        ],
    )
    .await;
    let goodput = f(&overload, "/requests_per_s");
    // Before deadline-aware admission this fell to nearly zero: the queue filled with work that
    // expired before the tower reached it.
    assert!(
        goodput >= 0.5 * capacity,
        "goodput {goodput:.1}/s at 2.5x a capacity of {capacity:.1}/s, deadline {timeout}: {overload:#}"
    );
    assert!(
        overload.pointer("/errors_by_code/ResourceExhausted").and_then(Value::as_u64).unwrap_or(0) > 0,
        "the excess is shed at the door: {overload:#}"
    );
    let metrics_after = common::scrape(server.metrics).await;
    let delta = |name: &str| {
        let labels = [("model", "imagebind-fixture"), ("modality", "image")];
        common::metric(&metrics_after, name, &labels).unwrap_or(0.0)
            - common::metric(&metrics_before, name, &labels).unwrap_or(0.0)
    };
    let (late, admitted) = (delta("bindery_late_total"), delta("bindery_admitted_total"));
    assert!(admitted > 0.0);
    assert!(late <= 0.05 * admitted, "{late} of {admitted} admitted requests missed their deadline");
}
