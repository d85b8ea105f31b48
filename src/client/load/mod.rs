//! `bindery load`: a gRPC load generator for bindery servers.
//!
//! It drives a running server with a configurable modality mix, either in a closed loop (a fixed
//! number of requests kept in flight) or in an open loop (requests sent on a fixed schedule, with
//! latency counted from each request's intended send time so that a slow server cannot hide its
//! queueing), and reports throughput, an HDR latency histogram, errors by gRPC status and the server's
//! own stage timings.

mod driver;
mod generate;
mod in_process;
mod report;
mod stats;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use driver::{Caller, LoadModel, RunPlan};
pub use report::RunReport;
use workload::Workload;
pub use workload::{GeneratorOptions, Mix};

use crate::client::connect::{ConnectArgs, ConnectError};

/// Exit status when a run misses one of the `--max-*` objectives.
const SLO_MISSED_EXIT: u8 = 2;

/// Options of `bindery load`.
#[derive(Debug, Args)]
#[command(after_help = "\
Load models: --concurrency N keeps N requests in flight (closed loop); --rate R sends R requests/s \
on a fixed schedule (open loop) and measures latency from each request's intended send time, even \
while --max-in-flight holds it back. A comma-separated list of levels runs a sweep, one run per level.

Exit status: 0 when every run meets the objectives, 2 when one misses --max-p99 or \
--max-error-rate, 1 on any other failure.")]
pub struct LoadArgs {
    /// Server to call, and how.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Model to call (default: the server's default model).
    #[arg(long, default_value = "")]
    pub model: String,
    /// Modality mix as weights, e.g. `text=0.5,image=0.3,audio=0.1,point_cloud=0.1`; a bare name
    /// weighs 1. Each input of a request draws its modality from the mix.
    #[arg(long, default_value = "text=1")]
    pub mix: Mix,
    /// Payload file or folder (repeatable; folders are searched recursively). Files go to a
    /// modality by extension (.txt lines are texts); modalities without files use the built-in
    /// generator.
    #[arg(long, value_name = "PATH")]
    pub payloads: Vec<PathBuf>,
    /// Inputs per request.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Run the baseline instead of calling a server: load the models of this folder and call the
    /// same preprocessing and ONNX towers directly, `--concurrency` blocking loops at `--batch`
    /// inputs per call, without gRPC or batching across requests.
    #[arg(long, value_name = "MODELS_DIR", conflicts_with_all = ["mode", "connections"])]
    pub in_process: Option<PathBuf>,
    /// Ask the server to bypass its embedding cache, so repeated payloads are embedded every time.
    #[arg(long)]
    pub no_cache: bool,
    /// RPC to call: `unary` (Embed) or `stream` (EmbedStream, one request at a time per stream).
    #[arg(long, value_enum, default_value_t = Mode::Unary)]
    pub mode: Mode,
    /// Closed loop: requests kept in flight. A list (`1,2,4,8`) runs a sweep. Default: 1.
    #[arg(long, value_delimiter = ',', value_name = "N[,N...]", conflicts_with = "rate")]
    pub concurrency: Vec<usize>,
    /// Open loop: requests per second on a fixed schedule. A list runs a sweep.
    #[arg(long, value_delimiter = ',', value_name = "R[,R...]")]
    pub rate: Vec<f64>,
    /// Open loop: most requests outstanding at once. Requests held back by it still count their
    /// latency from their intended send time.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// Measured length of each run, after the warm-up (default 10s when --requests is not given).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Measured requests per run, after the warm-up; with --duration, whichever comes first.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Warm-up before each run's measurement; its requests are left out of the figures.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Deadline of each request, counted from its (intended) send time; late requests count as
    /// DeadlineExceeded errors.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// HTTP/2 connections to spread the requests over.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Write the results as JSON to FILE (`-`: stdout): one object per run, an array for a sweep.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw a latency (p50, p99) versus throughput (items/s) chart of the runs to FILE.svg.
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<PathBuf>,
    /// Objective: exit with status 2 when a run's p99 latency exceeds this (e.g. `50ms`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub max_p99: Option<Duration>,
    /// Objective: exit with status 2 when a run's share of failed requests exceeds this (0-1).
    #[arg(long)]
    pub max_error_rate: Option<f64>,
    /// No progress line or payload notes on stderr (missed objectives are still reported there).
    #[arg(long)]
    pub quiet: bool,
    /// Built-in payload generators (last: their help heading applies to what follows).
    #[command(flatten)]
    pub generator: Box<GeneratorOptions>,
}

/// Which RPC carries the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// `Embed`, one call per request.
    Unary,
    /// `EmbedStream`, one request at a time on each open stream.
    Stream,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Unary => "unary",
            Mode::Stream => "stream",
        }
    }
}

/// Encoding of generated images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImageEncoding {
    /// JPEG.
    Jpeg,
    /// PNG.
    Png,
}

/// What can stop a load test before or after it runs.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A command-line value is out of range.
    #[error("invalid option: {0}")]
    Invalid(String),
    /// The server address or TLS settings are unusable, or the server is unreachable.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A payload file or folder cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A payload file has an extension no modality takes.
    #[error("{0}: unknown payload type (no modality reads files with this extension)")]
    UnknownPayload(PathBuf),
    /// Generating a payload failed.
    #[error("cannot generate {what}: {message}")]
    Generate {
        /// Which payload.
        what: &'static str,
        /// Cause.
        message: String,
    },
    /// Writing the JSON report failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// Destination.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The latency histogram cannot be set up.
    #[error("cannot create the latency histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    /// Encoding the JSON report failed.
    #[error("cannot encode the JSON report: {0}")]
    Json(#[from] serde_json::Error),
    /// Drawing the chart failed.
    #[error("cannot draw the chart {path}: {message}")]
    Chart {
        /// Destination.
        path: PathBuf,
        /// Cause.
        message: String,
    },
}

/// Runs a load test; returns the process exit code (non-zero when an SLO is missed).
pub async fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let plans = plans(&args)?;
    if let Some(path) = &args.chart {
        report::check_chart_path(path)?;
    }
    let generator = (*args.generator).clone();
    let mix = args.mix.clone();
    let payloads = args.payloads.clone();
    let (batch, model) = (args.batch, args.model.clone());
    let workload =
        tokio::task::spawn_blocking(move || Workload::build(mix, &payloads, &generator, batch, model))
            .await??
            .with_cache(args.no_cache.then_some(false));
    for note in workload.notes().iter().filter(|_| !args.quiet) {
        note_line(&format!("bindery load: {note}\n"));
    }
    let caller = match &args.in_process {
        Some(models) => {
            let (models, model) = (models.clone(), args.model.clone());
            Caller::in_process(
                tokio::task::spawn_blocking(move || in_process::InProcess::load(&models, &model)).await??,
            )
        }
        None => Caller::new(args.connect.clients(args.connections).await?, args.mode),
    };
    let workload = Arc::new(workload);
    let json_to_stdout = args.json.as_deref().is_some_and(|p| p.as_os_str() == "-");

    let mut reports = Vec::with_capacity(plans.len());
    for plan in &plans {
        let stats = driver::execute(plan, &workload, &caller, !args.quiet).await?;
        let run = RunReport::new(plan, &args, &workload, &stats);
        if !args.quiet || !json_to_stdout {
            let text = run.summary();
            if json_to_stdout {
                note_line(&text);
            } else {
                report::stdout(&text)?;
            }
        }
        reports.push(run);
    }
    if reports.len() > 1 && !json_to_stdout {
        report::stdout(&report::sweep_table(&reports))?;
    }
    if let Some(path) = &args.json {
        report::write_json(path, &reports)?;
    }
    if let Some(path) = &args.chart {
        report::draw_chart(path, &reports)?;
    }

    let mut missed = false;
    for run in &reports {
        for objective in &run.slo.missed {
            note_line(&format!("bindery load: SLO missed ({}): {objective}\n", run.level()));
            missed = true;
        }
    }
    Ok(if missed { ExitCode::from(SLO_MISSED_EXIT) } else { ExitCode::SUCCESS })
}

/// Writes to stderr; a closed stderr only loses the message.
fn note_line(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// Checks the options and turns them into one plan per sweep level.
fn plans(args: &LoadArgs) -> Result<Vec<RunPlan>, LoadError> {
    let invalid = |m: &str| Err(LoadError::Invalid(m.to_string()));
    if args.batch == 0 {
        return invalid("--batch must be at least 1");
    }
    if args.connections == 0 {
        return invalid("--connections must be at least 1");
    }
    if args.max_in_flight == 0 {
        return invalid("--max-in-flight must be at least 1");
    }
    if args.duration.is_some_and(|d| d.is_zero()) || args.requests == Some(0) {
        return invalid("--duration and --requests must be positive");
    }
    if args.timeout.is_zero() {
        return invalid("--timeout must be positive");
    }
    if args.max_error_rate.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
        return invalid("--max-error-rate must lie between 0 and 1");
    }
    let g = &args.generator;
    if g.points == 0 || g.audio_sample_rate == 0 || g.audio_duration.is_zero() {
        return invalid("--points, --audio-sample-rate and --audio-duration must be positive");
    }
    let duration = match (args.duration, args.requests) {
        (None, None) => Some(Duration::from_secs(10)),
        (d, _) => d,
    };
    let models: Vec<LoadModel> = if !args.rate.is_empty() {
        if args.rate.iter().any(|r| !r.is_finite() || *r <= 0.0) {
            return invalid("--rate values must be positive");
        }
        args.rate.iter().map(|&rate| LoadModel::Open { rate, max_in_flight: args.max_in_flight }).collect()
    } else if args.concurrency.is_empty() {
        vec![LoadModel::Closed { concurrency: 1 }]
    } else {
        if args.concurrency.contains(&0) {
            return invalid("--concurrency values must be at least 1");
        }
        args.concurrency.iter().map(|&concurrency| LoadModel::Closed { concurrency }).collect()
    };
    Ok(models
        .into_iter()
        .map(|load| RunPlan {
            load,
            warmup: args.warmup,
            duration,
            requests: args.requests,
            timeout: args.timeout,
            seed: args.generator.seed,
        })
        .collect())
}
