//! Test harness: starts the real gRPC server on an ephemeral port and connects a client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod fixtures;
pub mod isolation;
pub mod postgres;
pub mod process;

pub use fixtures::{FIXTURES, Fixtures, ImageCase, TensorGolden, TextCase, max_abs_diff};
pub use isolation::{exclusive, in_own_process, raise_open_file_limit};

use bindery::api::pb;
use bindery::api::pb::embedder_client::EmbedderClient;
use bindery::server::{self, ServerOptions};
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// Repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Options serving the committed models folder (the fixture model among them).
pub fn fixture_options() -> ServerOptions {
    let mut options = ServerOptions::new(repo().join("models"));
    options.default_model = Some("imagebind-fixture".into());
    options.towers.intra_threads = 1;
    // Never the user's real data folder, and one of its own per server: the server locks it.
    options.data_dir = Some(scratch_path("data"));
    options
}

/// Which collection store a test's server keeps its collections in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded store, in the server's own data folder.
    Embedded,
    /// PostgreSQL with pgvector: a fresh database on the shared test server.
    Postgres,
}

/// [`fixture_options`] with the collections in `backend`.
pub async fn backend_options(backend: Backend, what: &str) -> ServerOptions {
    let mut options = fixture_options();
    if backend == Backend::Postgres {
        options.store_url = Some(postgres::fresh_database(what).await);
    }
    options
}

/// Declares, for each `async fn name(backend: Backend)` listed, the tests `embedded::name` and
/// `postgres::name`: one suite, run against both stores.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Embedded).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            )*
        }
    };
}

/// A running server without a client (for tests that connect their own way: TLS, API keys,
/// several connections); stops when dropped.
pub struct BareServer {
    /// Address it listens on.
    pub addr: SocketAddr,
    /// Address of its Prometheus endpoint (`http://{metrics}/metrics`).
    pub metrics: SocketAddr,
    /// Address of its HTTP API.
    pub http: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for BareServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts a server with `options` on 127.0.0.1:0 (and its metrics endpoint and HTTP API on other
/// ports) and returns without connecting to it.
pub async fn start_bare(options: ServerOptions) -> BareServer {
    raise_open_file_limit();
    let load_options = options.clone();
    let engine = tokio::task::spawn_blocking(move || server::load_engine(&load_options))
        .await
        .expect("load task")
        .expect("models load");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel();
    let engine = Arc::new(engine);
    let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind metrics");
    let metrics = metrics_listener.local_addr().expect("metrics addr");
    let (metrics_tx, metrics_rx) = oneshot::channel::<()>();
    tokio::spawn(server::serve_metrics(
        metrics_listener,
        Arc::clone(&engine),
        options.draining.clone(),
        async {
            let _ = metrics_rx.await;
        },
    ));
    let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind http");
    let http = http_listener.local_addr().expect("http addr");
    tokio::spawn(async move {
        let store = server::open_store(&options).await.expect("store opens");
        let listeners = server::Listeners { grpc: listener, http: Some(http_listener) };
        server::serve_all(engine, listeners, &options, store, async {
            let _ = rx.await;
        })
        .await
        .expect("server runs");
        let _ = metrics_tx.send(());
    });
    BareServer { addr, metrics, http, shutdown: Some(tx) }
}

/// A running server with a connected client; stops when dropped.
pub struct TestServer {
    /// Address it listens on.
    pub addr: SocketAddr,
    /// A connected Embedder client.
    pub client: EmbedderClient<Channel>,
    /// The channel, for other services (health, reflection).
    pub channel: Channel,
    /// Address of its Prometheus endpoint (`http://{metrics}/metrics`).
    pub metrics: SocketAddr,
    /// Address of its HTTP API.
    pub http: SocketAddr,
    _server: BareServer,
}

/// Starts a server with `options` on 127.0.0.1:0 and connects an Embedder client to it.
pub async fn start(options: ServerOptions) -> TestServer {
    let server = start_bare(options).await;
    let addr = server.addr;
    let channel =
        Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect");
    let client = EmbedderClient::new(channel.clone())
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    TestServer { addr, client, channel, metrics: server.metrics, http: server.http, _server: server }
}

/// Starts a server on the committed fixture model.
pub async fn start_fixture() -> TestServer {
    start(fixture_options()).await
}

/// An input with a text payload.
pub fn text(id: &str, t: &str) -> pb::Input {
    pb::Input { id: id.into(), payload: Some(pb::input::Payload::Text(t.into())) }
}

/// An input with an image payload.
pub fn image(id: &str, bytes: Vec<u8>) -> pb::Input {
    pb::Input { id: id.into(), payload: Some(pb::input::Payload::Image(bytes)) }
}

/// An input with an audio payload.
pub fn audio(id: &str, bytes: Vec<u8>, hint: &str) -> pb::Input {
    pb::Input {
        id: id.into(),
        payload: Some(pb::input::Payload::Audio(pb::Audio {
            data: bytes,
            format_hint: hint.into(),
            ..Default::default()
        })),
    }
}

/// A request for the default model.
pub fn request(inputs: Vec<pb::Input>) -> pb::EmbedRequest {
    pb::EmbedRequest { inputs, ..Default::default() }
}

/// A distinct PNG per seed (a seed-dependent pattern), `size` pixels square; large sizes make
/// decoding take real time.
pub fn png(seed: u32, size: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(size, size, |x, y| {
        let v = x.wrapping_mul(13).wrapping_add(y.wrapping_mul(29)).wrapping_add(seed.wrapping_mul(101));
        image::Rgb([(v % 253) as u8, ((x + seed) % 256) as u8, ((y ^ seed) % 256) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("encode png");
    out.into_inner()
}

/// A request for the default model that bypasses the embedding cache.
pub fn uncached(inputs: Vec<pb::Input>) -> pb::EmbedRequest {
    let mut r = request(inputs);
    r.cache = Some(false);
    r
}

/// An Embedder client on its own connection to `addr`.
pub async fn connect(addr: SocketAddr) -> EmbedderClient<Channel> {
    let channel =
        Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect");
    EmbedderClient::new(channel).max_encoding_message_size(64 << 20)
}

/// Cosine similarity in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "vector lengths differ");
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Dot product in f64.
pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum()
}

/// L2 norm in f64.
pub fn norm(a: &[f32]) -> f64 {
    a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt()
}

/// What [`assert_refused`] checks: a status, or the result of a call that must have been refused.
pub trait Refusal {
    /// The status (a reply instead of one fails the test).
    fn into_status(self) -> tonic::Status;
}

impl Refusal for tonic::Status {
    fn into_status(self) -> tonic::Status {
        self
    }
}

impl<T: std::fmt::Debug> Refusal for Result<T, tonic::Status> {
    #[track_caller]
    fn into_status(self) -> tonic::Status {
        match self {
            Ok(reply) => panic!("expected a refusal, got {reply:?}"),
            Err(status) => status,
        }
    }
}

/// Asserts that a call was refused with `code` and a message containing each of `parts` (the
/// input, the limit, the problem it names); returns the status for further checks.
#[track_caller]
pub fn assert_refused(refusal: impl Refusal, code: tonic::Code, parts: &[&str]) -> tonic::Status {
    let status = refusal.into_status();
    assert_eq!(status.code(), code, "{status:?}");
    for part in parts {
        assert!(status.message().contains(part), "{:?} lacks {part:?}", status.message());
    }
    status
}

/// The text of `GET /metrics` from a server's metrics endpoint.
pub async fn scrape(metrics: SocketAddr) -> String {
    let (status, body) = http_get(metrics, "/metrics").await;
    assert_eq!(status, 200, "metrics endpoint answered {status}: {body}");
    body
}

/// `GET path` on an HTTP listener (the operations endpoint or the HTTP API): status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let reply = http_request(addr, "GET", path, &[], b"").await;
    (reply.status, reply.text())
}

/// An HTTP/1.1 reply.
#[derive(Debug)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body (chunked transfer decoded).
    pub body: Vec<u8>,
}

impl HttpReply {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one HTTP/1.1 request over `stream` (`Connection: close`) and reads the whole reply.
pub async fn http_exchange<S>(
    stream: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpReply
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    try_http_exchange(stream, method, path, headers, body).await.expect("HTTP exchange")
}

/// [`http_exchange`], with I/O failures (a refused TLS session, say) returned.
pub async fn try_http_exchange<S>(
    mut stream: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpReply, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: bindery\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).await.map_err(|e| format!("send head: {e}"))?;
    stream.write_all(body).await.map_err(|e| format!("send body: {e}"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.map_err(|e| format!("read reply: {e}"))?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status =
        lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked")) {
        let mut decoded = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..line_end]).trim(), 16)
                .expect("chunk size");
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            decoded.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = decoded;
    }
    Ok(HttpReply { status, headers, body })
}

/// Sends one plaintext HTTP/1.1 request to `addr`.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpReply {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect to the HTTP listener");
    http_exchange(stream, method, path, headers, body).await
}

/// `POST`s `body` as JSON to `path`.
pub async fn http_post_json(addr: SocketAddr, path: &str, body: &serde_json::Value) -> HttpReply {
    http_request(addr, "POST", path, &[("Content-Type", "application/json")], body.to_string().as_bytes())
        .await
}

/// The value of the series `name` whose labels include every `labels` pair, if present.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let all =
            labels.iter().all(|(k, v)| series_labels.split(',').any(|pair| pair == format!("{k}=\"{v}\"")));
        (series_name == name && all).then(|| value.parse().ok()).flatten()
    })
}

/// A path under the system temp folder that no other test (or test process) uses; not created.
pub fn scratch_path(what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("bindery-test-{what}-{}-{n}", std::process::id()))
}

/// A scratch folder removed (with its content) when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new, empty scratch folder.
    pub fn new(what: &str) -> Self {
        let path = scratch_path(what);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create scratch folder");
        Self(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `models/<model>/model.toml` cut to its header and the sections of `modalities` (each with its
/// `.preprocess` table), so a test serves only the towers it needs.
pub fn manifest_sections(model: &str, modalities: &[&str]) -> String {
    let full =
        std::fs::read_to_string(repo().join("models").join(model).join("model.toml")).expect("manifest");
    let mut keep = true;
    let mut out = String::new();
    for line in full.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            keep = modalities.contains(&name.split('.').next().unwrap_or(name));
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A models folder holding `model`'s files with `manifest` as its `model.toml`.
pub fn model_folder(model: &str, manifest: &str) -> TempDir {
    let dir = TempDir::new(model);
    let to = dir.path().join(model);
    std::fs::create_dir_all(&to).expect("model folder");
    for entry in std::fs::read_dir(repo().join("models").join(model)).expect("model files") {
        let path = entry.expect("model file").path();
        if path.is_file() && path.file_name().is_some_and(|n| n != "model.toml") {
            std::fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy model file");
        }
    }
    std::fs::write(to.join("model.toml"), manifest).expect("write manifest");
    dir
}

/// A server on the models folder `dir`, with `model` as its default.
pub async fn start_model_folder(dir: &TempDir, model: &str) -> TestServer {
    let mut options = fixture_options();
    options.models_dir = dir.path().to_path_buf();
    options.default_model = Some(model.into());
    start(options).await
}

/// Asserts that each served embedding is the golden of the same position: same id, `modality`,
/// and cosine >= 0.9999 with the reference embedding. `goldens` holds (id, file, embedding).
pub fn assert_matches_goldens(
    embeddings: &[pb::Embedding],
    goldens: &[(&str, &str, &[f32])],
    modality: pb::Modality,
) {
    assert_eq!(embeddings.len(), goldens.len());
    for (e, (id, file, golden)) in embeddings.iter().zip(goldens) {
        assert_eq!((e.id.as_str(), e.modality), (*id, modality as i32));
        let c = cosine(&e.vector, golden);
        assert!(c >= 0.9999, "{modality:?} case {id} ({file}): cosine {c}");
    }
}

/// Asserts that a Classify result's probabilities are the softmax, over the labels, of
/// `result.logit_scale` times the cosines between `reference` (the input's reference embedding)
/// and each label's embedding.
pub fn assert_softmax_of_scaled_cosines(result: &pb::Classification, reference: &[f32], labels: &[Vec<f32>]) {
    let logits: Vec<f64> =
        labels.iter().map(|l| f64::from(result.logit_scale) * cosine(reference, l)).collect();
    let max = logits.iter().copied().fold(f64::MIN, f64::max);
    let sum: f64 = logits.iter().map(|l| (l - max).exp()).sum();
    assert_eq!(result.probabilities.len(), labels.len());
    for (j, p) in result.probabilities.iter().enumerate() {
        let want = (logits[j] - max).exp() / sum;
        assert!((f64::from(*p) - want).abs() < 1e-3, "label {j}: probability {p}, reference {want}");
    }
}

/// Options serving a copy of the fixture model whose `model.toml` has each `from` replaced by its
/// `to` (a model that differs in a few preprocessing values), and the folder holding the copy.
pub fn fixture_variant(changes: &[(&str, &str)]) -> (ServerOptions, TempDir) {
    let dir = TempDir::new("fixture-variant");
    let model = dir.path().join("imagebind-fixture");
    std::fs::create_dir_all(&model).expect("create model folder");
    for entry in std::fs::read_dir(repo().join("models/imagebind-fixture")).expect("fixture model") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, model.join(path.file_name().expect("file name"))).expect("copy");
    }
    let mut manifest = std::fs::read_to_string(model.join("model.toml")).expect("manifest");
    for (from, to) in changes {
        assert_eq!(manifest.matches(from).count(), 1, "the fixture manifest has one {from:?}");
        manifest = manifest.replace(from, to);
    }
    std::fs::write(model.join("model.toml"), manifest).expect("write manifest");
    let mut options = fixture_options();
    options.models_dir = dir.path().to_path_buf();
    (options, dir)
}

/// A Collections client on a test server's channel.
pub fn collections_client(server: &TestServer) -> pb::collections_client::CollectionsClient<Channel> {
    pb::collections_client::CollectionsClient::new(server.channel.clone())
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
}

/// An input with a point-cloud file payload.
pub fn point_cloud(id: &str, bytes: Vec<u8>, hint: &str) -> pb::Input {
    pb::Input {
        id: id.into(),
        payload: Some(pb::input::Payload::PointCloud(pb::PointCloud {
            data: bytes,
            format_hint: hint.into(),
            ..Default::default()
        })),
    }
}

/// Sends message bytes as they are (and reads replies as bytes), so that malformed protobuf
/// reaches the server.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// Calls the unary method `path` (`/package.Service/Method`) with `message` as raw bytes.
pub async fn raw_unary(
    channel: &Channel,
    path: &'static str,
    message: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(message), path, RawCodec).await.map(tonic::Response::into_inner)
}
