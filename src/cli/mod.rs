//! The `bindery` command line: `serve` and the client subcommands.

mod client;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::engine::Limits;
use crate::server::{self, ServerOptions};

/// bindery: one embedding space for text, images, audio and 3D point clouds, served over gRPC.
#[derive(Debug, Parser)]
#[command(name = "bindery", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the models and serve them over gRPC.
    Serve(ServeArgs),
    /// Embed a text or an image with a running server and print JSON.
    Embed(client::EmbedArgs),
    /// List the models of a running server as JSON.
    Models(client::ConnectArgs),
    /// Drive a running server with a configurable load and report throughput and latency.
    Load(crate::load::LoadArgs),
}

/// Options of `bindery serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Folder whose subfolders each hold a model (`model.toml` + ONNX towers).
    #[arg(long, env = "BINDERY_MODELS", default_value = "models")]
    pub models: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "BINDERY_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Model used when a request names none (default: the only model, or the first by name).
    #[arg(long, env = "BINDERY_DEFAULT_MODEL")]
    pub default_model: Option<String>,
    /// Path of libonnxruntime (default: ORT_DYLIB_PATH, then .ort/ as fetched by `make setup`).
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
    /// ONNX Runtime intra-op threads per session (default: number of cores).
    #[arg(long)]
    pub intra_threads: Option<usize>,
    /// Most inputs accepted in one request.
    #[arg(long, default_value_t = Limits::default().max_items_per_request)]
    pub max_items: usize,
    /// Longest text accepted, in UTF-8 bytes.
    #[arg(long, default_value_t = Limits::default().max_text_bytes)]
    pub max_text_bytes: usize,
    /// Largest encoded image accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().image.max_bytes)]
    pub max_image_bytes: usize,
    /// Largest decoded image accepted, in pixels (decompression-bomb guard).
    #[arg(long, default_value_t = Limits::default().image.max_pixels)]
    pub max_image_pixels: u64,
    /// Largest encoded audio file accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().audio.max_bytes)]
    pub max_audio_bytes: usize,
    /// Longest audio accepted, in seconds.
    #[arg(long, default_value_t = Limits::default().audio.max_duration_secs)]
    pub max_audio_seconds: f64,
    /// Largest encoded point-cloud file accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().point_cloud.max_bytes)]
    pub max_point_cloud_bytes: usize,
    /// Most points accepted in one point cloud.
    #[arg(long, default_value_t = Limits::default().point_cloud.max_points)]
    pub max_points: usize,
    /// Largest gRPC message accepted, in bytes.
    #[arg(long, default_value_t = server::DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
}

impl ServeArgs {
    fn options(&self) -> ServerOptions {
        let mut options = ServerOptions::new(&self.models);
        options.default_model = self.default_model.clone();
        options.ort_library = self.ort_lib.clone();
        if let Some(n) = self.intra_threads {
            options.towers.intra_threads = n;
        }
        options.limits.max_items_per_request = self.max_items;
        options.limits.max_text_bytes = self.max_text_bytes;
        options.limits.image.max_bytes = self.max_image_bytes;
        options.limits.image.max_pixels = self.max_image_pixels;
        options.limits.audio.max_bytes = self.max_audio_bytes;
        options.limits.audio.max_duration_secs = self.max_audio_seconds;
        options.limits.point_cloud.max_bytes = self.max_point_cloud_bytes;
        options.limits.point_cloud.max_points = self.max_points;
        options.max_message_bytes = self.max_message_bytes;
        options
    }
}

/// Runs the parsed command line and returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let ok = std::process::ExitCode::SUCCESS;
    match cli.command {
        Command::Serve(args) => serve(args).await.map(|()| ok),
        Command::Embed(args) => client::embed(args).await.map(|()| ok),
        Command::Models(args) => client::models(args).await.map(|()| ok),
        Command::Load(args) => crate::load::run(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let options = args.options();
    let engine = tokio::task::spawn_blocking(move || server::load_engine(&options)).await??;
    let engine = Arc::new(engine);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(
        listen = %listener.local_addr()?,
        default_model = engine.registry().default_model(),
        "bindery serving"
    );
    server::serve(engine, listener, &args.options(), shutdown_signal()).await?;
    tracing::info!("bindery stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
