//! Sending the load: the RPC callers (unary or stream) and the closed- and open-loop schedules.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressFinish, ProgressStyle};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status, Streaming};

use super::generate;
use super::in_process::InProcess;
use super::stats::{Outcome, Recorder, StageMicros, Stats};
use super::workload::Workload;
use super::{LoadError, Mode};
use crate::client::connect::Client;
use crate::shared::{CACHE_HITS_KEY, TIMING_KEYS, pb};

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoadModel {
    /// `concurrency` workers, each sending its next request when the previous one returns.
    Closed {
        /// Workers.
        concurrency: usize,
    },
    /// Requests sent at fixed intervals whatever the server does.
    Open {
        /// Requests per second.
        rate: f64,
        /// Most requests outstanding at once.
        max_in_flight: usize,
    },
}

impl LoadModel {
    /// A short name of the level, e.g. "concurrency 4" or "rate 100/s".
    pub fn label(&self) -> String {
        match self {
            LoadModel::Closed { concurrency } => format!("concurrency {concurrency}"),
            LoadModel::Open { rate, .. } => format!("rate {rate}/s"),
        }
    }
}

/// One run of a load test.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// Pacing.
    pub load: LoadModel,
    /// Warm-up left out of the figures.
    pub warmup: Duration,
    /// Measured length (after the warm-up).
    pub duration: Option<Duration>,
    /// Measured requests.
    pub requests: Option<u64>,
    /// Deadline of each request from its (intended) send time.
    pub timeout: Duration,
    /// Seed of the request draws.
    pub seed: u64,
}

/// Time marks of a run.
#[derive(Debug, Clone, Copy)]
struct Clock {
    start: Instant,
    measure_from: Instant,
    stop_at: Option<Instant>,
}

/// The figures of one run.
#[derive(Debug)]
pub struct RunStats {
    /// Measured figures.
    pub stats: Stats,
    /// From the end of the warm-up to the completion of the last measured request.
    pub elapsed: Duration,
}

/// An open `EmbedStream` call used for one request at a time.
struct StreamConn {
    tx: mpsc::Sender<pb::EmbedRequest>,
    rx: Streaming<pb::EmbedResponse>,
}

/// Sends requests over the chosen RPC and turns replies into outcomes.
#[derive(Clone)]
pub struct Caller {
    clients: Arc<Vec<Client>>,
    /// Set for the in-process baseline: requests go straight to the encoders.
    local: Option<Arc<InProcess>>,
    mode: Mode,
    /// Idle streams, reused across requests so that stream set-up is not timed each time.
    streams: Arc<Mutex<Vec<StreamConn>>>,
}

fn code_name(code: Code) -> String {
    format!("{code:?}")
}

/// Reads the server stage timings from response metadata, when all are there.
fn stage_micros(metadata: &MetadataMap) -> Option<StageMicros> {
    let mut out = [0u64; 4];
    for (slot, key) in out.iter_mut().zip(TIMING_KEYS) {
        *slot = metadata.get(key)?.to_str().ok()?.parse().ok()?;
    }
    Some(out)
}

/// Inputs the server answered from its cache, from response metadata.
fn cache_hits(metadata: &MetadataMap) -> Option<u64> {
    metadata.get(CACHE_HITS_KEY)?.to_str().ok()?.parse().ok()
}

impl Caller {
    /// A caller spreading requests over `clients` (one per connection).
    pub fn new(clients: Vec<Client>, mode: Mode) -> Self {
        Caller { clients: Arc::new(clients), local: None, mode, streams: Arc::default() }
    }

    /// A caller that embeds in this process instead of calling a server.
    pub fn in_process(local: InProcess) -> Self {
        Caller {
            clients: Arc::default(),
            local: Some(Arc::new(local)),
            mode: Mode::Unary,
            streams: Arc::default(),
        }
    }

    fn client(&self, lane: usize) -> Option<Client> {
        self.clients.get(lane % self.clients.len().max(1)).cloned()
    }

    /// Sends `request` on connection `lane` and waits for its reply until `deadline`.
    pub async fn call(&self, lane: usize, request: pb::EmbedRequest, deadline: Instant) -> Outcome {
        let items = request.inputs.len() as u64;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Outcome::Failed(code_name(Code::DeadlineExceeded));
        }
        if let Some(local) = &self.local {
            return local.call(request).await;
        }
        let Some(client) = self.client(lane) else {
            return Outcome::Failed(code_name(Code::Unavailable));
        };
        match self.mode {
            Mode::Unary => Self::unary(client, request, items, remaining).await,
            Mode::Stream => self.stream(client, request, items, remaining).await,
        }
    }

    async fn unary(
        mut client: Client,
        request: pb::EmbedRequest,
        items: u64,
        remaining: Duration,
    ) -> Outcome {
        // The deadline travels with the call (grpc-timeout), as any gRPC client's does, so the
        // server can refuse or drop what it cannot finish in time.
        let mut request = tonic::Request::new(request);
        request.set_timeout(remaining);
        match tokio::time::timeout(remaining, client.embed(request)).await {
            Err(_) => Outcome::Failed(code_name(Code::DeadlineExceeded)),
            Ok(Err(status)) => Outcome::Failed(code_name(status.code())),
            Ok(Ok(reply)) => Outcome::Ok {
                items,
                stages: stage_micros(reply.metadata()),
                cache_hits: cache_hits(reply.metadata()),
            },
        }
    }

    async fn stream(
        &self,
        mut client: Client,
        request: pb::EmbedRequest,
        items: u64,
        remaining: Duration,
    ) -> Outcome {
        let idle = self.streams.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let exchange = async move {
            let mut conn = match idle {
                Some(conn) => conn,
                None => {
                    // Capacity 1: the stream carries one request at a time.
                    let (tx, rx) = mpsc::channel(1);
                    let rx = client.embed_stream(ReceiverStream::new(rx)).await?.into_inner();
                    StreamConn { tx, rx }
                }
            };
            conn.tx.send(request).await.map_err(|_| Status::unavailable("request stream closed"))?;
            match conn.rx.message().await? {
                Some(reply) => Ok((conn, reply)),
                None => Err(Status::unavailable("response stream ended")),
            }
        };
        // A stream that failed or timed out is dropped: a late reply would be taken for the next
        // request's.
        match tokio::time::timeout(remaining, exchange).await {
            Err(_) => Outcome::Failed(code_name(Code::DeadlineExceeded)),
            Ok(Err(status)) => Outcome::Failed(code_name(status.code())),
            Ok(Ok((conn, reply))) => {
                self.streams.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
                match reply.error {
                    Some(error) => Outcome::Failed(code_name(Code::from_i32(error.code))),
                    None => Outcome::Ok { items, stages: None, cache_hits: None },
                }
            }
        }
    }
}

fn later(t: Instant, d: Duration, what: &str) -> Result<Instant, LoadError> {
    t.checked_add(d).ok_or_else(|| LoadError::Invalid(format!("{what} is too long")))
}

/// Runs one plan to completion and returns its figures.
pub async fn execute(
    plan: &RunPlan,
    workload: &Arc<Workload>,
    caller: &Caller,
    progress: bool,
) -> Result<RunStats, LoadError> {
    let recorder = Arc::new(Recorder::new()?);
    // Checks that every deadline fits in an Instant before anything is sent.
    let start = Instant::now();
    later(start, plan.timeout, "--timeout")?;
    let measure_from = later(start, plan.warmup, "--warmup")?;
    let stop_at = plan.duration.map(|d| later(measure_from, d, "--duration")).transpose()?;
    later(stop_at.unwrap_or(measure_from), plan.timeout, "--timeout")?;
    let clock = Clock { start, measure_from, stop_at };

    let ticker =
        progress.then(|| tokio::spawn(report_progress(plan.load.label(), Arc::clone(&recorder), clock)));
    match plan.load {
        LoadModel::Closed { concurrency } => {
            closed(plan, concurrency, clock, workload, caller, &recorder).await;
        }
        LoadModel::Open { rate, max_in_flight } => {
            open(plan, rate, max_in_flight, clock, workload, caller, &recorder).await;
        }
    }
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    let stats = recorder.finish();
    let elapsed = stats.last_done.map_or(Duration::ZERO, |t| t.saturating_duration_since(measure_from));
    Ok(RunStats { stats, elapsed })
}

/// Closed loop: each worker sends its next request as soon as the previous one returns; latency
/// runs from the actual send time.
async fn closed(
    plan: &RunPlan,
    concurrency: usize,
    clock: Clock,
    workload: &Arc<Workload>,
    caller: &Caller,
    recorder: &Arc<Recorder>,
) {
    let issued = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for worker in 0..concurrency {
        let (workload, caller, recorder, issued) =
            (Arc::clone(workload), caller.clone(), Arc::clone(recorder), Arc::clone(&issued));
        let (requests, timeout) = (plan.requests, plan.timeout);
        let mut rng = generate::rng(plan.seed, 1000 + worker as u64);
        workers.spawn(async move {
            loop {
                let now = Instant::now();
                if clock.stop_at.is_some_and(|stop| now >= stop) {
                    break;
                }
                let seq = if now >= clock.measure_from {
                    let seq = issued.fetch_add(1, Ordering::Relaxed);
                    if requests.is_some_and(|n| seq >= n) {
                        break;
                    }
                    Some(seq)
                } else {
                    None
                };
                let request = workload.request(&mut rng);
                let deadline = now.checked_add(timeout).unwrap_or(now);
                let outcome = {
                    let _in_flight = recorder.start();
                    caller.call(worker, request, deadline).await
                };
                recorder.record(seq, now, Instant::now(), outcome);
            }
        });
    }
    while workers.join_next().await.is_some() {}
}

/// Open loop: request `i` is due at `start + i / rate`. Its latency runs from that intended time,
/// so time spent waiting for the server, or for a free slot under `max_in_flight`, is counted
/// instead of hidden (no coordinated omission).
#[allow(clippy::too_many_arguments)]
async fn open(
    plan: &RunPlan,
    rate: f64,
    max_in_flight: usize,
    clock: Clock,
    workload: &Arc<Workload>,
    caller: &Caller,
    recorder: &Arc<Recorder>,
) {
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let mut tasks = JoinSet::new();
    let mut rng = generate::rng(plan.seed, 999);
    let mut measured = 0u64;
    for i in 0u64.. {
        let due = Duration::try_from_secs_f64(i as f64 / rate).ok().and_then(|d| clock.start.checked_add(d));
        let Some(intended) = due else { break };
        if clock.stop_at.is_some_and(|stop| intended >= stop) {
            break;
        }
        let seq = if intended >= clock.measure_from {
            if plan.requests.is_some_and(|n| measured >= n) {
                break;
            }
            measured += 1;
            Some(measured - 1)
        } else {
            None
        };
        tokio::time::sleep_until(intended.into()).await;
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { break };
        let request = workload.request(&mut rng);
        let deadline = intended.checked_add(plan.timeout).unwrap_or(intended);
        let (caller, recorder) = (caller.clone(), Arc::clone(recorder));
        tasks.spawn(async move {
            let outcome = {
                let _in_flight = recorder.start();
                caller.call(i as usize, request, deadline).await
            };
            recorder.record(seq, intended, Instant::now(), outcome);
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// Shows progress on stderr once a second until aborted: a bar over the run's planned length when
/// stderr is a terminal, else one line per second (for logs).
async fn report_progress(label: String, recorder: Arc<Recorder>, clock: Clock) {
    let period = Duration::from_secs(1);
    let mut tick = tokio::time::interval_at((Instant::now() + period).into(), period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let bar = std::io::stderr().is_terminal().then(|| {
        let planned = clock.stop_at.map(|stop| stop.saturating_duration_since(clock.start).as_secs());
        let bar = match planned {
            Some(secs) => ProgressBar::new(secs.max(1)).with_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} s {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner(),
        };
        // Aborted at the end of the run: the summary replaces the bar.
        bar.with_finish(ProgressFinish::AndClear)
    });
    let mut last_done = 0;
    let mut last_at = Instant::now();
    loop {
        tick.tick().await;
        let now = Instant::now();
        let (live, p99) = recorder.live();
        let rate = (live.done - last_done) as f64 / now.duration_since(last_at).as_secs_f64().max(1e-9);
        (last_done, last_at) = (live.done, now);
        let phase = if now < clock.measure_from {
            "warm-up"
        } else if clock.stop_at.is_some_and(|stop| now >= stop) {
            "draining"
        } else {
            "measuring"
        };
        let p99 = p99.map_or_else(|| "-".to_string(), |ms| format!("{ms:.1} ms"));
        let elapsed = now.duration_since(clock.start).as_secs_f64();
        let status = format!(
            "{phase}: {} done ({rate:.1}/s), {} failed, {} in flight, p99 {p99}",
            live.done,
            live.failed,
            recorder.in_flight(),
        );
        match &bar {
            Some(bar) => {
                bar.set_position(elapsed as u64);
                bar.set_message(status);
            }
            None => {
                let line = format!("bindery load [{label}] {elapsed:>4.0}s {status}\n");
                // A closed stderr only loses the progress line.
                let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            }
        }
    }
}
