//! The Prometheus endpoint: plain HTTP, on its own address, so it can be bound to a private
//! interface while the gRPC port faces clients (it carries no API-key check).

use std::future::Future;
use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Content type of the OpenMetrics text format, which Prometheus scrapes natively.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = Arc::clone(&metrics);
            async move { ([(CONTENT_TYPE, OPENMETRICS)], metrics.render()) }
        }),
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
