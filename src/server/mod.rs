//! Assembling and running the gRPC server: model loading, health, reflection, the services.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::api::EmbedderService;
use crate::api::pb::FILE_DESCRIPTOR_SET;
use crate::api::pb::embedder_server::EmbedderServer;
use crate::engine::{Engine, Limits, LoadError, Registry};
use crate::model::runtime;
use crate::model::tower::TowerOptions;

/// Largest gRPC message accepted by default (a batch of large images or audio files).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;

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
    /// Largest gRPC message, both directions.
    pub max_message_bytes: usize,
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
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
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
}

/// Loads ONNX Runtime and every model named by `options`.
pub fn load_engine(options: &ServerOptions) -> Result<Engine, LoadError> {
    let runtime = runtime::init(options.ort_library.as_deref())?;
    let registry = Registry::load_dir(
        &runtime,
        &options.models_dir,
        options.default_model.as_deref(),
        &options.limits,
        &options.towers,
    )?;
    Ok(Engine::new(registry, options.limits.clone()))
}

/// Serves `engine` on `listener` until `shutdown` resolves, then drains in-flight calls.
pub async fn serve(
    engine: Arc<Engine>,
    listener: TcpListener,
    options: &ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let max_message_bytes = options.max_message_bytes;
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let embedder = EmbedderServer::new(EmbedderService::new(engine))
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    // Every encoder was loaded before we got here, so the server is ready as soon as it listens.
    health.set_serving::<EmbedderServer<EmbedderService>>().await;
    health.set_service_status("", ServingStatus::Serving).await;
    let shutdown_health = health.clone();
    Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(embedder)
        // Without TCP_NODELAY small replies wait on Nagle + delayed ACK (~40 ms per call).
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), async move {
            shutdown.await;
            shutdown_health.set_not_serving::<EmbedderServer<EmbedderService>>().await;
            shutdown_health.set_service_status("", ServingStatus::NotServing).await;
        })
        .await?;
    Ok(())
}
