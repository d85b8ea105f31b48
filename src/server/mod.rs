//! Assembling and running the gRPC server: model loading, health, reflection, the services.

pub mod auth;
pub mod catch_panic;
pub mod connections;
mod health;
pub mod http;
mod metrics_http;
pub mod rate_limit;
pub mod tls;

pub use crate::api::media_url;
pub use metrics_http::{Draining, serve_metrics};

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::api::media_url::{MediaFetcher, MediaPolicyError, MediaUrlPolicy};
use crate::api::pb::FILE_DESCRIPTOR_SET;
use crate::api::pb::collections_server::CollectionsServer;
use crate::api::pb::embedder_server::EmbedderServer;
use crate::api::{CollectionsService, EmbedderService};
use crate::engine::{Engine, EngineOptions, Limits, LoadError, Registry};
use crate::metrics::Metrics;
use crate::model::runtime;
use crate::model::tower::{ThreadPools, TowerOptions};
use crate::store::{CollectionStore, EmbeddedStore, Store, StoreError, StoreOptions};

pub use crate::shared::DEFAULT_MAX_MESSAGE_BYTES;

/// Concurrent HTTP/2 streams (calls) one connection may have open by default.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 128;

/// How long a shutdown waits for in-flight calls by default.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything needed to load models and serve them.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Folder whose subfolders are model folders.
    pub models_dir: PathBuf,
    /// Model used when a request names none.
    pub default_model: Option<String>,
    /// Explicit ONNX Runtime library path.
    pub ort_library: Option<PathBuf>,
    /// Request limits.
    pub limits: Limits,
    /// ONNX execution settings.
    pub towers: TowerOptions,
    /// CPU pool, cache and batching settings.
    pub engine: EngineOptions,
    /// Address of the Prometheus metrics endpoint (HTTP, `/metrics`); none when `None`.
    pub metrics_addr: Option<SocketAddr>,
    /// Largest gRPC message, both directions.
    pub max_message_bytes: usize,
    /// TLS on the gRPC port (and mutual TLS with a client CA); plaintext when `None`.
    pub tls: Option<tls::TlsOptions>,
    /// API keys every bindery RPC must carry; no authentication when `None`.
    pub api_keys: Option<Arc<auth::ApiKeys>>,
    /// Request rate per API key (per client address without keys); unlimited when `None`.
    pub rate_limit: Option<rate_limit::RateLimit>,
    /// Concurrent HTTP/2 streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_concurrent_streams: u32,
    /// How long a shutdown waits for in-flight calls before giving up on them.
    pub drain_timeout: Duration,
    /// How long the server keeps taking calls after shutdown begins, with health and `/ready`
    /// already failing, so load balancers stop routing here before the listeners close.
    pub shutdown_delay: Duration,
    /// Folder holding the collections; the Collections service refuses every call when `None`
    /// (unless `store_url` names a database).
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (`postgres://...` or `postgresql://...`, a Unix socket folder as
    /// `?host=/path`) of a database with pgvector that keeps the collections instead of
    /// `data_dir`.
    pub store_url: Option<String>,
    /// Collection store settings.
    pub store: StoreOptions,
    /// Set when shutdown begins, so the operations endpoint's `/ready` fails from then on.
    pub draining: Draining,
    /// Connection cap, timeouts and listen backlog of the gRPC listener.
    pub connections: connections::ConnectionOptions,
    /// What `media_url` inputs may fetch; off (no host allowed) by default.
    pub media_urls: MediaUrlPolicy,
}

impl ServerOptions {
    /// Options with defaults for everything but the models folder.
    pub fn new(models_dir: impl Into<PathBuf>) -> Self {
        Self {
            models_dir: models_dir.into(),
            default_model: None,
            ort_library: None,
            limits: Limits::default(),
            towers: TowerOptions::default(),
            engine: EngineOptions::default(),
            metrics_addr: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            tls: None,
            api_keys: None,
            rate_limit: None,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            shutdown_delay: Duration::ZERO,
            data_dir: None,
            store_url: None,
            store: StoreOptions::default(),
            connections: connections::ConnectionOptions::default(),
            draining: Draining::default(),
            media_urls: MediaUrlPolicy::default(),
        }
    }
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Models could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The transport failed.
    #[error("gRPC transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be set up.
    #[error("cannot build the reflection service: {0}")]
    Reflection(String),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The media URL policy is invalid (a host pattern, a limit).
    #[error("invalid media URL settings: {0}")]
    MediaUrls(#[from] MediaPolicyError),
    /// The collection store could not be opened or closed (its messages name the folder or file;
    /// transparent, so an error chain does not print them twice).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Opens the collection store: the PostgreSQL database of `options.store_url` (checking that
/// it is reachable and preparing its tables), or else the embedded store under
/// `options.data_dir` (locking the folder and recovering every collection, off the async
/// workers); `None` with neither.
pub async fn open_store(options: &ServerOptions) -> Result<Option<Arc<dyn CollectionStore>>, StoreError> {
    if let Some(url) = &options.store_url {
        let store =
            crate::store::postgres::PgStore::connect(url, &crate::store::postgres::PgOptions::default())
                .await?;
        return Ok(Some(Arc::new(store)));
    }
    let Some(dir) = options.data_dir.clone() else { return Ok(None) };
    let store_options = options.store.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&dir, store_options))
        .await
        .map_err(|e| StoreError::Internal(format!("store open task failed: {e}")))??;
    Ok(Some(Arc::new(EmbeddedStore(Arc::new(store)))))
}

/// Loads ONNX Runtime and every model named by `options`, and logs the threads both pools got.
pub fn load_engine(options: &ServerOptions) -> Result<Engine, LoadError> {
    let towers = &options.towers;
    // The shared pool serves the CPU provider only; a CUDA session keeps its own few threads.
    let shared = towers.thread_pools == ThreadPools::Shared && towers.cuda_device.is_none();
    let runtime_options = runtime::RuntimeOptions {
        shared_intra_threads: shared.then_some(towers.intra_threads.max(1)),
        // Sequential sessions never use the inter-op pool; one thread keeps it empty.
        shared_inter_threads: if towers.parallel_execution { towers.intra_threads.max(1) } else { 1 },
    };
    let runtime = runtime::init_with(options.ort_library.as_deref(), runtime_options)?;
    let registry = Registry::load_dir(
        &runtime,
        &options.models_dir,
        options.default_model.as_deref(),
        &options.limits,
        &options.towers,
    )?;
    let engine = Engine::new(registry, options.limits.clone(), &options.engine, Arc::new(Metrics::new()))?;
    // The runtime is built once per process, so its pool is reported as built, not as asked.
    let (onnx_threads, onnx_pools) = match runtime.options.shared_intra_threads {
        Some(n) => (n, "shared"),
        None => (towers.intra_threads.max(1), "per-session"),
    };
    tracing::info!(
        preprocessing_threads = engine.cpu_threads(),
        onnx_threads,
        onnx_pools,
        arena = ?towers.arena,
        memory_pattern = towers.memory_pattern,
        parallel_execution = towers.parallel_execution,
        "threads"
    );
    Ok(engine)
}

/// Sets each encoder's health entry (`<model>/<modality>`) from the engine, or to NOT_SERVING
/// for all of them when the server is `stopping`.
async fn report_encoder_health(
    engine: &Engine,
    health: &tonic_health::server::HealthReporter,
    stopping: bool,
) {
    for encoder in engine.encoder_health() {
        let serving = encoder.serving && !stopping;
        let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
        health.set_service_status(format!("{}/{}", encoder.model, encoder.modality), status).await;
    }
    // The overall status waits for the background warm-up, so that probes on "" (Kubernetes'
    // default) route no traffic to a replica whose towers are still cold.
    if !stopping {
        let status = if engine.warming_up() { ServingStatus::NotServing } else { ServingStatus::Serving };
        health.set_service_status("", status).await;
    }
}

/// Serves `engine` on `listener` until `shutdown` resolves, then drains in-flight calls; opens
/// the collection store first.
pub async fn serve(
    engine: Arc<Engine>,
    listener: TcpListener,
    options: &ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let store = open_store(options).await?;
    serve_with_store(engine, listener, options, store, shutdown).await
}

/// [`serve`] with a store opened beforehand (by [`open_store`]): `bindery serve` opens it before
/// loading the models, so a data folder in use is refused before minutes of loading.
pub async fn serve_with_store(
    engine: Arc<Engine>,
    listener: TcpListener,
    options: &ServerOptions,
    store: Option<Arc<dyn CollectionStore>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    serve_all(engine, Listeners { grpc: listener, http: None }, options, store, shutdown).await
}

/// The listeners a server serves on.
#[derive(Debug)]
pub struct Listeners {
    /// gRPC.
    pub grpc: TcpListener,
    /// The HTTP API (`--http`), when it is on.
    pub http: Option<TcpListener>,
}

/// [`serve_with_store`] on gRPC and, when `listeners.http` is set, the HTTP API, which shares
/// the services, keys, rate limits, TLS, connection settings and shutdown.
pub async fn serve_all(
    engine: Arc<Engine>,
    listeners: Listeners,
    options: &ServerOptions,
    store: Option<Arc<dyn CollectionStore>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let Listeners { grpc: listener, http: http_listener } = listeners;
    let max_message_bytes = options.max_message_bytes;
    let health = tonic_health::server::HealthReporter::new();
    let (health_watches, end_health_watches) = health::ShutdownAwareHealth::new(health.clone());
    let health_service = tonic_health::pb::health_server::HealthServer::new(health_watches);
    // Both reflection versions: grpcurl and Rust tooling speak v1, Python's grpcio-reflection
    // and older tools only v1alpha.
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder().build_v1().map_err(|e| ServeError::Reflection(e.to_string()))?;
    let reflection_v1alpha =
        reflection_builder().build_v1alpha().map_err(|e| ServeError::Reflection(e.to_string()))?;
    let media = MediaFetcher::new(options.media_urls.clone())?;
    let embedder = EmbedderServer::new(EmbedderService::new(Arc::clone(&engine), media.clone()))
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    let collections =
        CollectionsServer::new(CollectionsService::new(Arc::clone(&engine), store.clone(), media))
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes);
    let api_routes = tonic::service::Routes::new(embedder).add_service(collections).prepare();
    // Every encoder was loaded before we got here, so the services serve as soon as the server
    // listens. The overall status ("") waits for a background warm-up; each encoder has its own
    // entry, `<model>/<modality>`, which follows its warm-up and then its latest batch.
    health.set_serving::<EmbedderServer<EmbedderService>>().await;
    health.set_serving::<CollectionsServer<CollectionsService>>().await;
    report_encoder_health(&engine, &health, false).await;
    let mut health_changes = engine.health_changes();
    let (watch_engine, watch_health) = (Arc::clone(&engine), health.clone());
    let health_watcher = tokio::spawn(async move {
        while health_changes.changed().await.is_ok() {
            report_encoder_health(&watch_engine, &watch_health, false).await;
        }
    });
    let shutdown_health = health.clone();
    let (shutdown_engine, stop_health_watcher) = (Arc::clone(&engine), health_watcher.abort_handle());
    let conn = &options.connections;
    let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
    let mut builder = Server::builder()
        .max_concurrent_streams(options.max_concurrent_streams)
        .http2_keepalive_interval(nonzero(conn.keepalive_interval))
        .http2_keepalive_timeout(nonzero(conn.keepalive_timeout));
    if let Some(tls_options) = &options.tls {
        builder = builder
            .tls_config(tls::server_config(tls_options)?.timeout(conn.handshake_timeout))
            .map_err(|e| tls::TlsError::Config(crate::shared::error_chain(&e)))?;
    }
    let max_connections = connections::effective_max_connections(conn);
    if max_connections < conn.max_connections {
        tracing::warn!(
            max_connections,
            requested = conn.max_connections,
            reserved_fds = conn.reserved_fds,
            "the open-file limit leaves room for fewer connections than requested"
        );
    }
    tracing::info!(
        max_connections,
        reserved_fds = conn.reserved_fds,
        idle_timeout = ?conn.idle_timeout,
        handshake_timeout = ?conn.handshake_timeout,
        "connection limits"
    );
    let tracker = connections::Tracker::new(conn.clone(), max_connections, Arc::clone(engine.metrics()));
    // Shared by both listeners, so a caller has one bucket whichever protocol it uses.
    let rate_limit = rate_limit::RateLimitLayer::new(options.rate_limit);
    // Outermost first: panics anywhere below are caught; keys are checked before the rate, which
    // draws from the bucket of the key the auth layer found.
    let layers = tower::ServiceBuilder::new()
        .layer(connections::ActivityLayer)
        .layer(catch_panic::CatchPanicLayer)
        .layer(auth::AuthLayer::new(options.api_keys.clone()))
        .layer(rate_limit.clone())
        .into_inner();
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let http_task = match http_listener {
        Some(http_listener) => {
            let grpc = tower::ServiceBuilder::new()
                .map_response(|r: ::http::Response<_>| r.map(tonic::body::Body::new))
                .layer(catch_panic::CatchPanicLayer)
                .layer(auth::AuthLayer::new(options.api_keys.clone()))
                .layer(rate_limit)
                .service(api_routes.clone());
            let gateway = http::Gateway::new(tower::util::BoxCloneSyncService::new(grpc), max_message_bytes);
            let app = http::router(gateway, Arc::clone(&engine), options.draining.clone(), max_message_bytes);
            let serve = http::HttpServe {
                app,
                tls: options.tls.as_ref().map(tls::rustls_config).transpose()?,
                tracker: connections::Tracker::new(
                    conn.clone(),
                    max_connections,
                    Arc::clone(engine.metrics()),
                ),
                handshake_timeout: conn.handshake_timeout,
                drain_timeout: options.drain_timeout,
            };
            Some(tokio::spawn(http::serve(http_listener, serve, async move {
                let _ = http_stop_rx.await;
            })))
        }
        None => None,
    };
    let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown_draining = options.draining.clone();
    let shutdown_delay = options.shutdown_delay;
    let server = builder
        .layer(layers)
        .add_routes(api_routes)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(connections::incoming(listener, tracker), async move {
            shutdown.await;
            // NOT_SERVING (and /ready failing) before the listener closes, so balancers stop
            // routing here first.
            shutdown_draining.start();
            shutdown_health.set_not_serving::<EmbedderServer<EmbedderService>>().await;
            shutdown_health.set_not_serving::<CollectionsServer<CollectionsService>>().await;
            shutdown_health.set_service_status("", ServingStatus::NotServing).await;
            // Per-encoder entries too; the watcher would otherwise report a batch's success.
            stop_health_watcher.abort();
            report_encoder_health(&shutdown_engine, &shutdown_health, true).await;
            // Watch streams never end on their own and would hold the drain until its timeout.
            end_health_watches.fire();
            if !shutdown_delay.is_zero() {
                tracing::info!(delay = ?shutdown_delay, "health failing; still taking calls while balancers notice");
                tokio::time::sleep(shutdown_delay).await;
            }
            shutdown_draining.close();
            let _ = draining_tx.send(());
        });
    // Once shutdown starts, tonic stops accepting and waits for every open call; this bounds
    // that wait.
    let drain_timeout = options.drain_timeout;
    let drain_deadline = async move {
        match draining_rx.await {
            Ok(()) => tokio::time::sleep(drain_timeout).await,
            // The server ended without a shutdown request (a transport error): no deadline.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        result = server => result?,
        () = drain_deadline => {
            tracing::warn!(timeout = ?drain_timeout, "drain timeout reached; abandoning the calls still in flight");
        }
    }
    health_watcher.abort();
    // The HTTP listener stays open through the gRPC drain, answering probes with "shutting down"
    // and new calls with UNAVAILABLE; its own calls in flight reach the services in process, so
    // they are waited for too.
    let _ = http_stop_tx.send(());
    if let Some(task) = http_task {
        let _ = task.await;
    }
    // No call can reach the server's state any more: fold every collection log into a snapshot
    // so the next start replays nothing (every acknowledged write is already on disk).
    if let Some(store) = store {
        store.close().await?;
    }
    Ok(())
}
