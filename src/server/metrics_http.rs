//! The operations endpoint: plain HTTP, on its own address, so it can be bound to a private
//! interface while the gRPC port faces clients (it carries no API-key check). `GET /metrics` is
//! the Prometheus text; `GET /health` (the process answers) and `GET /ready` (every encoder
//! serving and the server not shutting down) are for load balancers and orchestrators, which
//! mostly cannot speak `grpc.health.v1`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use tokio::net::TcpListener;

use crate::engine::Engine;

/// Content type of the OpenMetrics text format, which Prometheus scrapes natively.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether the server has begun shutting down; shared by the gRPC server (which sets it before
/// its listener closes, when it turns its gRPC health NOT_SERVING), `/ready` and the HTTP API.
/// Shutdown has two steps: it starts (health and `/ready` fail, calls are still taken, so
/// balancers can stop routing here during `--shutdown-delay`), then the listeners close (new
/// calls are refused, the ones in flight drain).
#[derive(Debug, Clone, Default)]
pub struct Draining {
    started: Arc<AtomicBool>,
    closing: Arc<AtomicBool>,
}

impl Draining {
    /// Marks the server as shutting down.
    pub fn start(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown has begun.
    pub fn started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    /// Marks the listeners as closing: new calls are refused from now on.
    pub fn close(&self) {
        self.start();
        self.closing.store(true, Ordering::SeqCst);
    }

    /// Whether new calls are refused.
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }
}

/// `/ready`: 200 with "ready" when every encoder serves and the server is not shutting down;
/// 503 naming the encoders that do not, or "shutting down".
fn readiness(engine: &Engine, draining: &Draining) -> (StatusCode, String) {
    if draining.started() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: shutting down\n".into());
    }
    let down: Vec<String> = engine
        .encoder_health()
        .into_iter()
        .filter(|e| !e.serving)
        .map(|e| format!("{}/{}", e.model, e.modality))
        .collect();
    if down.is_empty() {
        (StatusCode::OK, "ready\n".into())
    } else if engine.warming_up() {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: warming up: {}\n", down.join(", ")))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: not serving: {}\n", down.join(", ")))
    }
}

/// `GET /health` (200 while the process answers) and `GET /ready` ([`readiness`]): the probes
/// both the operations endpoint and the HTTP API serve.
pub(crate) fn probes(engine: Arc<Engine>, draining: Draining) -> axum::Router {
    axum::Router::new().route("/health", axum::routing::get(|| async { "ok\n" })).route(
        "/ready",
        axum::routing::get(move || {
            let (engine, draining) = (Arc::clone(&engine), draining.clone());
            async move { readiness(&engine, &draining) }
        }),
    )
}

/// Serves `GET /metrics`, `/health` and `/ready` on `listener` until `shutdown` resolves.
pub async fn serve_metrics(
    listener: TcpListener,
    engine: Arc<Engine>,
    draining: Draining,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = Arc::clone(engine.metrics());
    let app = probes(engine, draining).route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = Arc::clone(&metrics);
            async move { ([(CONTENT_TYPE, OPENMETRICS)], metrics.render()) }
        }),
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
