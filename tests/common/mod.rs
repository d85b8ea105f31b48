//! Test harness: starts the real gRPC server on an ephemeral port and connects a client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bindery::api::pb;
use bindery::api::pb::embedder_client::EmbedderClient;
use bindery::server::{self, ServerOptions};
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// Repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture file under `tests/fixtures/`.
pub fn fixture(relative: &str) -> PathBuf {
    repo().join("tests/fixtures").join(relative)
}

/// Options serving the committed models folder (the fixture model among them).
pub fn fixture_options() -> ServerOptions {
    let mut options = ServerOptions::new(repo().join("models"));
    options.default_model = Some("imagebind-fixture".into());
    options.towers.intra_threads = 1;
    options
}

/// A running server; stops when dropped.
pub struct TestServer {
    /// Address it listens on.
    pub addr: SocketAddr,
    /// A connected Embedder client.
    pub client: EmbedderClient<Channel>,
    /// The channel, for other services (health, reflection).
    pub channel: Channel,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts a server with `options` on 127.0.0.1:0.
pub async fn start(options: ServerOptions) -> TestServer {
    let load_options = options.clone();
    let engine = tokio::task::spawn_blocking(move || server::load_engine(&load_options))
        .await
        .expect("load task")
        .expect("models load");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        server::serve(Arc::new(engine), listener, &options, async {
            let _ = rx.await;
        })
        .await
        .expect("server runs");
    });
    let channel =
        Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect");
    let client = EmbedderClient::new(channel.clone())
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    TestServer { addr, client, channel, shutdown: Some(tx) }
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
        payload: Some(pb::input::Payload::Audio(pb::Audio { data: bytes, format_hint: hint.into() })),
    }
}

/// A request for the default model.
pub fn request(inputs: Vec<pb::Input>) -> pb::EmbedRequest {
    pb::EmbedRequest { model: String::new(), inputs, normalize: None, cache: None }
}

/// Cosine similarity in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "vector lengths differ");
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// L2 norm in f64.
pub fn norm(a: &[f32]) -> f64 {
    a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt()
}
