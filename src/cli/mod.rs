//! The `bindery` command line: `serve` and the client subcommands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::client::connect::ConnectArgs;
use crate::client::{commands, load};
use crate::engine::{EngineOptions, Limits, WarmUp};
use crate::modality::InputLimits;
use crate::model::tower::{Arena, Precision, ThreadPools};
use crate::server::connections::ConnectionOptions;
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
// Parsed once per process; boxing the arguments would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Load the models and serve them over gRPC (and HTTP with `--http`).
    Serve(ServeArgs),
    /// Embed inputs of any modality with a running server and print JSON.
    Embed(commands::EmbedArgs),
    /// List the models of a running server as JSON.
    Models(ConnectArgs),
    /// Drive a running server with a configurable load and report throughput and latency.
    Load(load::LoadArgs),
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
    /// Cores the server may keep busy: sizes both the preprocessing pool and ONNX Runtime's
    /// intra-op threads (default: the cores this process may run on). `--cpu-workers` and
    /// `--intra-threads` override either side.
    #[arg(long, env = "BINDERY_CORES", value_parser = clap::value_parser!(u16).range(1..))]
    pub cores: Option<u16>,
    /// ONNX Runtime intra-op threads: of the pool all sessions share, or of each session's own
    /// with `--ort-thread-pools per-session` (default: `--cores`).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub intra_threads: Option<u16>,
    /// `shared`: one ONNX Runtime thread pool for every tower, so towers that run at once share
    /// the cores; `per-session`: a pool per tower.
    #[arg(long, value_enum, default_value_t = ThreadPools::Shared)]
    pub ort_thread_pools: ThreadPools,
    /// What each tower's ONNX Runtime memory arena does after a run: `keep` its memory for the
    /// next run, `shrink` back to what is in use, or `off` (no arena: the system allocator).
    #[arg(long, value_enum, default_value_t = Arena::Keep)]
    pub ort_arena: Arena,
    /// Turn on ONNX Runtime's memory pattern: buffers planned once per input shape and kept.
    /// Off by default: batches come in every size up to the largest, each size kept its own
    /// plan, and on bind-mini it held 18 MiB more under load at the same throughput.
    #[arg(long)]
    pub ort_memory_pattern: bool,
    /// Run independent branches of a tower's graph at the same time (ONNX Runtime's parallel
    /// execution mode; the towers bindery ships are chains, where it only adds threads).
    #[arg(long)]
    pub ort_parallel_execution: bool,
    /// Where the towers run: `cpu`, or `cuda:N` (needs a build with `--features cuda` and the
    /// CUDA build of ONNX Runtime; start-up fails rather than falling back to the CPU).
    #[arg(long, env = "BINDERY_DEVICE", default_value = "cpu", value_parser = parse_device)]
    pub device: Device,
    /// Tower variants to load where the manifest names them: `fp32` (the towers themselves),
    /// `fp16` (`onnx_fp16`, for GPUs) or `int8` (`onnx_int8`, for CPUs; refused when its recorded
    /// cosine against fp32 is under the manifest's `int8_min_cosine`, default 0.99).
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// Same as `--precision fp16`.
    #[arg(long, conflicts_with = "precision")]
    pub fp16: bool,
    /// Threads that decode, resample, tokenize and group inputs (default: `--cores`).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub cpu_workers: Option<u16>,
    /// Embedding cache size in MiB (0 disables the cache).
    #[arg(long, default_value_t = EngineOptions::default().cache_bytes >> 20)]
    pub cache_mib: u64,
    /// Longest an input waits for others to join its batch, for every encoder (e.g. `2ms`;
    /// default: each manifest's `max_batch_delay_ms`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub max_batch_delay: Option<std::time::Duration>,
    /// Inputs each encoder's admission queue holds before refusing requests with
    /// RESOURCE_EXHAUSTED (default: each manifest's `queue_capacity`).
    #[arg(long)]
    pub max_queue: Option<usize>,
    /// When each tower runs its warm-up item: `background` (the port opens at once; each encoder,
    /// the overall health and `/ready` report NOT_SERVING until it ran), `before` (the port opens
    /// after it) or `off`.
    #[arg(long, value_enum, default_value_t = WarmUp::Background)]
    pub warm_up: WarmUp,
    /// The same as `--warm-up off`.
    #[arg(long)]
    pub no_warm_up: bool,
    /// Serve Prometheus metrics over HTTP at `http://ADDR/metrics` (no API key is checked there:
    /// bind it to a private address).
    #[arg(long, env = "BINDERY_METRICS", value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Serve the HTTP/JSON API on ADDR (e.g. `127.0.0.1:8080`): `/v1/embed`, `/v1/embeddings`
    /// (OpenAI), `/v1/collections/...`, `/openapi.json`, `/health`, `/ready`. Same TLS, API keys
    /// and limits as gRPC. Off by default.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Let `media_url` inputs fetch from these hosts (comma-separated: `media.example.com`, or
    /// `*.example.com` for its subdomains). Off by default. Addresses that are private, loopback,
    /// link-local or cloud metadata are refused even then, unless allowed below.
    #[arg(long, value_name = "HOSTS", value_delimiter = ',')]
    pub media_url_allow: Vec<String>,
    /// Address ranges media URLs may reach although they are private or loopback
    /// (comma-separated, e.g. `10.1.0.0/16,127.0.0.1`).
    #[arg(long, value_name = "CIDRS", value_delimiter = ',')]
    pub media_url_allow_addresses: Vec<server::media_url::AddressRange>,
    /// Largest file a media URL may return, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = server::media_url::DEFAULT_MAX_BYTES)]
    pub media_url_max_bytes: usize,
    /// Longest one media URL fetch may take, redirects included (e.g. `10s`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration,
          default_value = "30s")]
    pub media_url_timeout: std::time::Duration,
    /// Most entries in one request: inputs to embed, Similarity queries and candidates together,
    /// Classify inputs, Upsert items, Get and Delete ids.
    #[arg(long, default_value_t = Limits::default().max_items_per_request)]
    pub max_items: usize,
    /// Most labels in one Classify call.
    #[arg(long, default_value_t = Limits::default().max_labels)]
    pub max_labels: usize,
    /// Most prompt templates in one Classify call.
    #[arg(long, default_value_t = Limits::default().max_templates)]
    pub max_templates: usize,
    /// Most label prompts (labels x templates, cached or not) in one Classify call.
    #[arg(long, default_value_t = Limits::default().max_label_prompts)]
    pub max_label_prompts: usize,
    /// Each modality's input limits (`--max-text-bytes`, `--max-image-bytes`, ...).
    #[command(flatten)]
    pub inputs: InputLimitFlags,
    /// Largest gRPC message accepted, in bytes.
    #[arg(long, default_value_t = server::DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    /// Most concurrent calls (HTTP/2 streams) one client connection may have open.
    #[arg(long, default_value_t = server::DEFAULT_MAX_CONCURRENT_STREAMS)]
    pub max_concurrent_streams: u32,
    /// Most client connections open at once (lowered at start when the open-file limit leaves
    /// less room). At the cap, a new connection replaces the one idle the longest.
    #[arg(long, env = "BINDERY_MAX_CONNECTIONS", default_value_t = ConnectionOptions::default().max_connections)]
    pub max_connections: usize,
    /// File descriptors kept free of client connections, for collection files, models and logs.
    #[arg(long, default_value_t = ConnectionOptions::default().reserved_fds)]
    pub reserved_fds: u64,
    /// Close a connection that has had no call in flight for this long (0 keeps idle
    /// connections open).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub idle_timeout: std::time::Duration,
    /// A connection must finish its TLS handshake, or send the HTTP/2 preface, within this.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: std::time::Duration,
    /// Pending connections the kernel may queue before they are accepted (capped by the kernel's
    /// net.core.somaxconn).
    #[arg(long, default_value_t = ConnectionOptions::default().listen_backlog)]
    pub listen_backlog: u32,
    /// Interval of the HTTP/2 PINGs that find dead clients (0 disables them).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub keepalive_interval: std::time::Duration,
    /// How long a PING may go unanswered before its connection is closed.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub keepalive_timeout: std::time::Duration,
    /// Server certificate chain (PEM); enables TLS on the gRPC port, with --tls-key.
    #[arg(long, env = "BINDERY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM).
    #[arg(long, env = "BINDERY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) client certificates must chain to: clients without a valid certificate are
    /// refused (mutual TLS). Needs --tls-cert.
    #[arg(long, env = "BINDERY_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// File of API keys, one `KEY [ROLE]` per line (ROLE: rw, the default, or ro; `#` comments);
    /// the variable BINDERY_API_KEYS may hold more, comma-separated. Every bindery RPC then needs
    /// `authorization: Bearer KEY` metadata; health and reflection stay open.
    #[arg(long, env = "BINDERY_API_KEYS_FILE", value_name = "FILE")]
    pub api_keys: Option<PathBuf>,
    /// API keys given inline, `KEY [ROLE]` entries separated by commas or newlines (added to
    /// --api-keys).
    #[arg(long = "api-keys-inline", env = "BINDERY_API_KEYS", hide_env_values = true, hide = true)]
    pub api_keys_inline: Option<String>,
    /// Requests per second allowed per API key (per client address without keys); off by
    /// default. Calls over it get RESOURCE_EXHAUSTED with a `retry-after-ms` hint.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate_limit: Option<f64>,
    /// Requests a caller may send at once after a quiet period (default: the rate, rounded up).
    #[arg(long, requires = "rate_limit")]
    pub rate_burst: Option<u32>,
    /// On SIGTERM/SIGINT, how long to let in-flight calls finish before exiting (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: std::time::Duration,
    /// On SIGTERM/SIGINT, how long to keep taking new calls with health and /ready already
    /// failing, so a load balancer stops routing here first (e.g. twice its check interval).
    /// Then the listeners close and in-flight calls drain.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub shutdown_delay: std::time::Duration,
    /// Folder holding the collections (default: `bindery` in the platform's local data folder,
    /// e.g. ~/.local/share/bindery).
    #[arg(long, env = "BINDERY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep the collections in PostgreSQL with the pgvector extension instead of the data
    /// folder: a URL such as postgres://user:password@host:5432/db, or
    /// postgresql://user@/db?host=/run/postgresql for a Unix socket.
    #[arg(long, env = "BINDERY_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// A collection's write-ahead log is folded into a snapshot once it exceeds this many bytes.
    #[arg(long, default_value_t = crate::store::StoreOptions::default().compact_wal_bytes)]
    pub wal_compact_bytes: u64,
    /// Every this many seconds, each collection whose write-ahead log holds records is folded
    /// into a snapshot (0: only --wal-compact-bytes and shutdown trigger compaction).
    #[arg(
        long,
        env = "BINDERY_COMPACT_INTERVAL",
        value_name = "SECONDS",
        default_value_t = crate::store::StoreOptions::default().compact_interval.as_secs()
    )]
    pub compact_interval: u64,
}

impl ServeArgs {
    /// The security settings: TLS files, API keys and the rate limit, checked.
    fn security(&self, options: &mut ServerOptions) -> anyhow::Result<()> {
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            let tls = server::tls::TlsOptions {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
            };
            // Read now so that a wrong path fails before the models load.
            server::tls::server_config(&tls)?;
            options.tls = Some(tls);
        }
        if self.api_keys.is_some() || self.api_keys_inline.is_some() {
            let mut keys = server::auth::ApiKeys::new();
            if let Some(path) = &self.api_keys {
                keys.add_file(path)?;
            }
            if let Some(text) = &self.api_keys_inline {
                keys.add_text(text, "BINDERY_API_KEYS")?;
            }
            options.api_keys = Some(Arc::new(keys));
        }
        if let Some(rate) = self.rate_limit {
            options.rate_limit = Some(server::rate_limit::RateLimit::new(rate, self.rate_burst)?);
        }
        Ok(())
    }

    fn options(&self) -> ServerOptions {
        let mut options = ServerOptions::new(&self.models);
        options.default_model = self.default_model.clone();
        options.ort_library = self.ort_lib.clone();
        let cores = self.cores.map_or_else(available_cores, usize::from);
        options.towers.intra_threads = self.intra_threads.map_or(cores, usize::from);
        options.engine.cpu_workers = self.cpu_workers.map_or(cores, usize::from);
        options.towers.thread_pools = self.ort_thread_pools;
        options.towers.arena = self.ort_arena;
        options.towers.memory_pattern = self.ort_memory_pattern;
        options.towers.parallel_execution = self.ort_parallel_execution;
        options.towers.cuda_device = match self.device {
            Device::Cpu => None,
            Device::Cuda(n) => Some(n),
        };
        options.towers.precision = if self.fp16 { Precision::Fp16 } else { self.precision };
        options.engine.cache_bytes = self.cache_mib << 20;
        options.engine.max_batch_delay = self.max_batch_delay;
        options.engine.queue_capacity = self.max_queue;
        options.engine.warm_up = if self.no_warm_up { WarmUp::Off } else { self.warm_up };
        options.metrics_addr = self.metrics;
        options.limits.max_items_per_request = self.max_items;
        options.limits.max_labels = self.max_labels;
        options.limits.max_templates = self.max_templates;
        options.limits.max_label_prompts = self.max_label_prompts;
        options.limits.inputs = self.inputs.0.clone();
        options.max_message_bytes = self.max_message_bytes;
        options.max_concurrent_streams = self.max_concurrent_streams;
        options.drain_timeout = self.drain_timeout;
        options.shutdown_delay = self.shutdown_delay;
        options.data_dir = self.data_dir.clone().or_else(crate::store::default_data_dir);
        options.store_url = self.store.clone();
        options.store.compact_wal_bytes = self.wal_compact_bytes;
        options.store.compact_interval = std::time::Duration::from_secs(self.compact_interval);
        options.media_urls = server::media_url::MediaUrlPolicy {
            allowed_hosts: self.media_url_allow.clone(),
            allowed_addresses: self.media_url_allow_addresses.clone(),
            max_bytes: self.media_url_max_bytes,
            total_timeout: self.media_url_timeout,
            ..Default::default()
        };
        options.connections = ConnectionOptions {
            max_connections: self.max_connections,
            reserved_fds: self.reserved_fds,
            idle_timeout: self.idle_timeout,
            handshake_timeout: self.handshake_timeout,
            listen_backlog: self.listen_backlog,
            keepalive_interval: self.keepalive_interval,
            keepalive_timeout: self.keepalive_timeout,
        };
        options
    }
}

/// The cores this process may run on (its CPU affinity and cgroup quota), at least 1.
fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Where towers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// ONNX Runtime's CPU provider.
    Cpu,
    /// The CUDA provider on this device ordinal.
    Cuda(i32),
}

fn parse_device(text: &str) -> Result<Device, String> {
    match text {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        _ => text
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<i32>().ok())
            .filter(|n| *n >= 0)
            .map(Device::Cuda)
            .ok_or_else(|| format!("expected `cpu`, `cuda` or `cuda:N`, got {text:?}")),
    }
}

/// Runs the parsed command line and returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let ok = std::process::ExitCode::SUCCESS;
    match cli.command {
        Command::Serve(args) => serve(args).await.map(|()| ok),
        Command::Embed(args) => commands::embed(args).await.map(|()| ok),
        Command::Models(args) => commands::models(args).await.map(|()| ok),
        Command::Load(args) => load::run(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Listening from the first moment: a SIGTERM while the models load stops the start cleanly
    // instead of killing the process with the default action.
    let mut shutdown = std::pin::pin!(shutdown_signal()?);
    tracing::info!("bindery starting");
    match server::connections::raise_open_file_limit() {
        Ok(limit) => tracing::info!(
            soft = limit.soft,
            hard = limit.hard,
            soft_at_start = limit.soft_before,
            "open-file limit"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-file limit"),
    }
    let mut options = args.options();
    args.security(&mut options)?;
    // The data folder first: a folder in use by another server is refused before the models load.
    let store = tokio::select! {
        store = server::open_store(&options) => store?,
        () = &mut shutdown => {
            tracing::info!("bindery stopped before serving");
            return Ok(());
        }
    };
    let load_options = options.clone();
    let loading = tokio::task::spawn_blocking(move || server::load_engine(&load_options));
    let engine = tokio::select! {
        engine = loading => engine??,
        () = &mut shutdown => {
            tracing::info!("bindery stopped before serving");
            return Ok(());
        }
    };
    let engine = Arc::new(engine);
    let listener = server::connections::bind(args.listen, options.connections.listen_backlog)?;
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(addr) = options.metrics_addr {
        let metrics_listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(
            metrics = %metrics_listener.local_addr()?,
            "serving Prometheus metrics at /metrics, liveness at /health, readiness at /ready"
        );
        let (engine, draining) = (Arc::clone(&engine), options.draining.clone());
        tokio::spawn(async move {
            let stopped = async {
                let _ = metrics_stopped.await;
            };
            if let Err(e) = server::serve_metrics(metrics_listener, engine, draining, stopped).await {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        });
    }
    let http = match args.http {
        Some(addr) => {
            let http = server::connections::bind(addr, options.connections.listen_backlog)?;
            tracing::info!(http = %http.local_addr()?, tls = options.tls.is_some(), "serving the HTTP API");
            Some(http)
        }
        None => None,
    };
    tracing::info!(
        listen = %listener.local_addr()?,
        default_model = engine.registry().default_model(),
        tls = options.tls.is_some(),
        api_keys = options.api_keys.as_ref().map_or(0, |k| k.len()),
        store = store.as_ref().map_or("none", |s| s.backend()),
        data_dir = %options.data_dir.as_deref().map_or("none".into(), |d| d.display().to_string()),
        "bindery serving"
    );
    let listeners = server::Listeners { grpc: listener, http };
    server::serve_all(engine, listeners, &options, store, shutdown).await?;
    let _ = stop_metrics.send(());
    tracing::info!("bindery stopped");
    Ok(())
}

/// A future that resolves on SIGINT or SIGTERM; both are caught from the moment this returns.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received; shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM received; shutting down"),
        }
    })
}

/// A future that resolves on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// The input-limit flags every registered modality declares, read into [`InputLimits`].
#[derive(Debug, Clone, Default)]
pub struct InputLimitFlags(pub InputLimits);

impl clap::FromArgMatches for InputLimitFlags {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        InputLimits::from_flags(matches).map(Self)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.0 = InputLimits::from_flags(matches)?;
        Ok(())
    }
}

impl Args for InputLimitFlags {
    fn augment_args(command: clap::Command) -> clap::Command {
        InputLimits::flags(command)
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        InputLimits::flags(command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_options(args: &[&str]) -> Result<ServerOptions, clap::Error> {
        let cli = Cli::try_parse_from(["bindery", "serve"].iter().chain(args))?;
        match cli.command {
            Command::Serve(args) => Ok(args.options()),
            _ => unreachable!("parsed a serve command"),
        }
    }

    #[test]
    fn precision_is_chosen_by_flag_and_fp16_stays_an_alias() {
        assert_eq!(serve_options(&[]).unwrap().towers.precision, Precision::Fp32);
        assert_eq!(serve_options(&["--precision", "int8"]).unwrap().towers.precision, Precision::Int8);
        assert_eq!(serve_options(&["--fp16"]).unwrap().towers.precision, Precision::Fp16);
        let both = serve_options(&["--fp16", "--precision", "int8"]).expect_err("conflicting flags");
        assert_eq!(both.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert!(serve_options(&["--precision", "int4"]).is_err());
    }

    #[test]
    fn cores_size_both_pools_unless_one_side_is_given() {
        let options = serve_options(&["--cores", "3"]).unwrap();
        assert_eq!((options.engine.cpu_workers, options.towers.intra_threads), (3, 3));
        let options = serve_options(&["--cores", "3", "--cpu-workers", "1"]).unwrap();
        assert_eq!((options.engine.cpu_workers, options.towers.intra_threads), (1, 3));
        let options = serve_options(&["--cores", "4", "--intra-threads", "2"]).unwrap();
        assert_eq!((options.engine.cpu_workers, options.towers.intra_threads), (4, 2));
        let options = serve_options(&[]).unwrap();
        let cores = available_cores();
        assert_eq!((options.engine.cpu_workers, options.towers.intra_threads), (cores, cores));
        assert_eq!(options.towers.thread_pools, ThreadPools::Shared);
    }

    #[test]
    fn cores_must_be_a_positive_count() {
        for bad in ["0", "-1", "two", "70000"] {
            let error = serve_options(&[&format!("--cores={bad}")]).expect_err(bad);
            assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        }
        for flag in ["--cpu-workers", "--intra-threads"] {
            assert!(serve_options(&[flag, "0"]).is_err(), "{flag} 0");
        }
    }

    #[test]
    fn onnx_runtime_memory_flags_reach_the_tower_options() {
        let options = serve_options(&[]).unwrap();
        assert_eq!((options.towers.arena, options.towers.memory_pattern), (Arena::Keep, false));
        let options = serve_options(&["--ort-arena", "shrink", "--ort-memory-pattern"]).unwrap();
        assert_eq!((options.towers.arena, options.towers.memory_pattern), (Arena::Shrink, true));
        assert!(serve_options(&["--ort-arena", "huge"]).is_err());
        let options = serve_options(&["--ort-thread-pools", "per-session"]).unwrap();
        assert_eq!(options.towers.thread_pools, ThreadPools::PerSession);
    }
}
