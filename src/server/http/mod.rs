//! The HTTP API, on its own listener (`--http ADDR`): JSON mappings of the Embedder and
//! Collections RPCs (`/v1/embed`, `/v1/collections/...`), OpenAI's `/v1/embeddings`, the
//! OpenAPI document at `/openapi.json`, and `/health` and `/ready` for load balancers.
//!
//! Every API call goes into the gRPC services in process ([`gateway`]), through the same API-key,
//! rate-limit and panic layers, so limits, errors and metrics are the gRPC ones. The listener
//! has the gRPC listener's TLS, connection cap and timeouts, and drains with it at shutdown.

mod error;
mod gateway;
mod openai;
pub mod openapi;
pub mod routes;

pub use error::{code_name, http_status};
pub use gateway::{Gateway, GrpcService};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use futures::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;

use super::connections::{self, ActivityLayer, Tracker};
use super::metrics_http::{Draining, probes};
use crate::engine::Engine;

/// What every HTTP handler reads.
#[derive(Clone)]
pub struct HttpState {
    gateway: Gateway,
    draining: Draining,
    /// Largest request body read (JSON is bigger than protobuf: base64 bytes, decimal floats).
    max_body_bytes: usize,
}

/// JSON spends more bytes than protobuf (base64 for bytes, decimal floats), so a body may be this
/// many times the gRPC message limit; the protobuf it becomes must still fit that limit.
pub const BODY_TO_MESSAGE_RATIO: usize = 4;

/// The HTTP API's routes over `gateway`.
pub fn router(gateway: Gateway, engine: Arc<Engine>, draining: Draining, max_message_bytes: usize) -> Router {
    let probes = probes(engine, draining.clone());
    let state = HttpState {
        gateway,
        draining,
        max_body_bytes: max_message_bytes.saturating_mul(BODY_TO_MESSAGE_RATIO),
    };
    let api = routes::add(Router::new().route("/v1/embeddings", axum::routing::post(openai::embeddings)))
        .layer(axum::middleware::from_fn_with_state(state.clone(), refuse_while_draining));
    Router::new()
        .route("/openapi.json", axum::routing::get(openapi::document))
        .merge(api)
        .fallback(|method: http::Method, uri: http::Uri| async move {
            error::HttpError::from(tonic::Status::not_found(format!(
                "no route {method} {}: see /openapi.json for the routes",
                uri.path()
            )))
        })
        .method_not_allowed_fallback(|method: http::Method, uri: http::Uri| async move {
            error::HttpError::with_http_status(
                tonic::Status::invalid_argument(format!("{} does not take {method}", uri.path())),
                StatusCode::METHOD_NOT_ALLOWED,
            )
        })
        .with_state(state)
        .merge(probes)
}

/// Once the listeners close, new API calls are refused (the listener stays open while calls
/// drain, so `/ready` can say why it fails): 503 UNAVAILABLE and `Connection: close`.
async fn refuse_while_draining(
    State(state): State<HttpState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if state.draining.closing() {
        let mut response = axum::response::IntoResponse::into_response(error::HttpError::from(
            tonic::Status::unavailable("the server is shutting down; retry on another replica"),
        ));
        response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
        return response;
    }
    next.run(request).await
}

/// How the HTTP listener runs.
pub struct HttpServe {
    /// The routes ([`router`]).
    pub app: Router,
    /// TLS, as on the gRPC port.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Connection cap and timeouts (its own count, the gRPC listener's settings).
    pub tracker: Arc<Tracker>,
    /// TLS handshake timeout.
    pub handshake_timeout: Duration,
    /// How long shutdown waits for calls in flight.
    pub drain_timeout: Duration,
}

/// Serves `serve.app` on `listener` until `shutdown` resolves, then stops accepting and waits
/// (at most the drain timeout) for the calls in flight.
pub async fn serve(listener: TcpListener, serve: HttpServe, shutdown: impl Future<Output = ()>) {
    let HttpServe { app, tls, tracker, handshake_timeout, drain_timeout } = serve;
    let mut incoming = connections::incoming(listener, tracker);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let acceptor = tls.map(TlsAcceptor::from);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            next = incoming.next() => match next {
                Some(Ok(stream)) => stream,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "HTTP accept failed");
                    continue;
                }
                None => break,
            },
        };
        let info = stream.connect_info();
        let service = tower::ServiceBuilder::new()
            .map_request(move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(info.clone());
                request
            })
            .layer(ActivityLayer)
            .service(app.clone());
        let service = TowerToHyperService::new(service);
        match &acceptor {
            None => {
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                tokio::spawn(graceful.watch(connection));
            }
            Some(acceptor) => {
                let (acceptor, builder) = (acceptor.clone(), builder.clone());
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => return tracing::debug!(error = %e, "HTTP TLS handshake failed"),
                        Err(_) => return tracing::debug!("HTTP TLS handshake timed out"),
                    };
                    let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    let _ = watcher.watch(connection).await;
                });
            }
        }
    }
    // Closes the listening socket.
    drop(incoming);
    if tokio::time::timeout(drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!(timeout = ?drain_timeout, "HTTP drain timeout reached; abandoning the calls still in flight");
    }
}
