//! Dynamic batching per encoder.
//!
//! Each encoder (model x modality) has an admission queue and two threads. The *assembler* takes
//! up to `max_batch_size` queued inputs from any number of requests, answers cache hits, and
//! preprocesses the rest on the shared CPU pool straight into the slots of one batch tensor. The
//! *runner* feeds staged batches to the ONNX tower and hands each row back to its request. The
//! two are joined by a rendezvous channel, so one batch is preprocessed while the previous one
//! runs and no more is prepared ahead, and each batch is sized against what the tower still has
//! to run: inputs prepared further ahead would age past their deadlines before the tower reached
//! them.
//!
//! Which requests are admitted and which inputs are dropped unprocessed is decided from the
//! encoder's recent pace (see `admission`).
//!
//! A panic on either thread fails only the inputs it touched (one input when its preprocessing
//! panics, the whole batch otherwise) with an internal error; the threads go on serving.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SendError, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use tokio::sync::oneshot;

use super::admission::PaceMeter;
use super::cache::{CacheKey, CachedEmbedding, EmbeddingCache};
use super::encoder::{Batch, EncodedItem, StageTimes, Stages, l2_normalize};
use super::error::EngineError;
use super::{Item, LoadError};
use crate::metrics::{EncoderLabels, Metrics, StageLabels};
use crate::modality::{Modality, Observed};
use crate::shared::panic::reason as panic_reason;

/// What a finished job hands back: one embedding per item, in order, and its stage times.
pub(crate) type JobResult = Result<(Vec<EncodedItem>, StageTimes), EngineError>;

/// Inputs taken for a batch: each as its job and its index within the job.
type Entries = Vec<(Arc<Job>, usize)>;

/// The inputs of one request that go to one encoder.
pub(crate) struct Job {
    items: Vec<Item>,
    normalize: bool,
    use_cache: bool,
    deadline: Option<Instant>,
    admitted: Instant,
    cancelled: AtomicBool,
    state: Mutex<JobState>,
}

struct JobState {
    results: Vec<Option<EncodedItem>>,
    remaining: usize,
    times: StageTimes,
    reply: Option<oneshot::Sender<JobResult>>,
}

/// Locks `m`, recovering the data if a thread panicked while holding it: every critical section
/// here leaves the state consistent, so the data is still valid.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Job {
    /// A job for `items` and the receiver its result arrives on.
    pub(crate) fn new(
        items: Vec<Item>,
        normalize: bool,
        use_cache: bool,
        deadline: Option<Instant>,
    ) -> (Arc<Self>, oneshot::Receiver<JobResult>) {
        let (tx, rx) = oneshot::channel();
        let n = items.len();
        let job = Arc::new(Self {
            items,
            normalize,
            use_cache,
            deadline,
            admitted: Instant::now(),
            cancelled: AtomicBool::new(false),
            state: Mutex::new(JobState {
                results: (0..n).map(|_| None).collect(),
                remaining: n,
                times: StageTimes::default(),
                reply: Some(tx),
            }),
        });
        (job, rx)
    }

    /// Marks the job as abandoned by its caller: its queued inputs are skipped.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Whether anyone still waits for this job's results.
    fn is_live(&self) -> bool {
        !self.cancelled.load(Ordering::Relaxed) && lock(&self.state).reply.is_some()
    }

    /// Whether the job's deadline falls at or before `finish`: work that would end then is late.
    fn expired(&self, finish: Instant) -> bool {
        self.deadline.is_some_and(|d| finish >= d)
    }

    /// Fails the whole job (first failure wins; later results are ignored).
    fn fail(&self, error: EngineError) {
        if let Some(reply) = lock(&self.state).reply.take() {
            let _ = reply.send(Err(error));
        }
    }

    /// Records the embedding of item `index`, replying when it was the last one.
    fn complete(&self, index: usize, item: EncodedItem, times: &StageTimes) {
        let mut state = lock(&self.state);
        if state.reply.is_none() || state.results[index].is_some() {
            return;
        }
        state.results[index] = Some(item);
        state.remaining -= 1;
        state.times.queue = state.times.queue.max(times.queue);
        state.times.preprocess = state.times.preprocess.max(times.preprocess);
        state.times.inference = state.times.inference.max(times.inference);
        if state.remaining == 0
            && let Some(reply) = state.reply.take()
        {
            let results: Option<Vec<EncodedItem>> = std::mem::take(&mut state.results).into_iter().collect();
            let outcome = results.ok_or_else(|| EngineError::Internal("an input got no embedding".into()));
            let _ = reply.send(outcome.map(|r| (r, state.times)));
        }
    }
}

/// Batching settings of one encoder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchSettings {
    /// Most inputs per tower run.
    pub max_batch_size: usize,
    /// Longest an input waits for more inputs to join its batch once the encoder is free.
    pub max_batch_delay: Duration,
    /// Most inputs admitted and waiting.
    pub queue_capacity: usize,
}

struct QueueState {
    /// Admitted jobs and, for each, the index of its first input not yet taken into a batch.
    pending: VecDeque<(Arc<Job>, usize)>,
    /// Inputs admitted and not yet taken.
    queued: usize,
    closed: bool,
}

/// The admission queue of one encoder.
pub(crate) struct EncoderQueue {
    model: String,
    modality: Modality,
    settings: BatchSettings,
    state: Mutex<QueueState>,
    ready: Condvar,
    /// Inputs taken into a batch that is still being preprocessed.
    preprocessing: Arc<AtomicUsize>,
    /// Inputs preprocessed whose tower run has not ended.
    running: Arc<AtomicUsize>,
    /// The encoder's recent pace, recorded by its runner and fed back by the engine.
    pub(crate) pace: PaceMeter,
}

/// The inputs of one batch, counted in one of the queue's in-flight counters until this is
/// dropped (after the batch's tower run, or when nothing of it is left to run) or moved on.
struct InFlight {
    count: Arc<AtomicUsize>,
    items: usize,
}

impl InFlight {
    fn new(count: &Arc<AtomicUsize>, items: usize) -> Self {
        count.fetch_add(items, Ordering::AcqRel);
        Self { count: Arc::clone(count), items }
    }

    /// The same `items` inputs, now counted in `count` instead.
    fn move_to(self, count: &Arc<AtomicUsize>) -> Self {
        Self::new(count, self.items)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.count.fetch_sub(self.items, Ordering::AcqRel);
    }
}

/// What one take hands the assembler.
struct Taken {
    /// The inputs of the batch.
    entries: Entries,
    /// Inputs still queued after the take.
    left: usize,
    /// Jobs dropped because they could not finish before their deadline even in a batch of
    /// their own, with the inputs of each that were dropped.
    expired: Vec<(Arc<Job>, usize)>,
    in_flight: InFlight,
}

impl EncoderQueue {
    fn new(model: &str, modality: Modality, settings: BatchSettings) -> Self {
        Self {
            model: model.to_string(),
            modality,
            settings,
            state: Mutex::new(QueueState { pending: VecDeque::new(), queued: 0, closed: false }),
            ready: Condvar::new(),
            preprocessing: Arc::new(AtomicUsize::new(0)),
            running: Arc::new(AtomicUsize::new(0)),
            pace: PaceMeter::default(),
        }
    }

    /// Queues `job`, or refuses it when the queue is full or, for a job with a deadline, when
    /// the inputs ahead of it cannot be done in time at the encoder's recent pace. A job larger
    /// than the whole capacity is still admitted into an empty queue, so no valid request is
    /// refused forever.
    pub(crate) fn admit(&self, job: Arc<Job>) -> Result<usize, EngineError> {
        let n = job.items.len();
        let pace = self.pace.pace();
        let mut state = lock(&self.state);
        if state.closed {
            return Err(EngineError::ShuttingDown { model: self.model.clone(), modality: self.modality });
        }
        if state.queued > 0 && state.queued + n > self.settings.queue_capacity {
            return Err(EngineError::Overloaded {
                model: self.model.clone(),
                modality: self.modality,
                queued: state.queued,
                capacity: self.settings.queue_capacity,
                retry_after: pace.map(|p| p.drain_time(state.queued + n - self.settings.queue_capacity)),
            });
        }
        if let (Some(deadline), Some(pace)) = (job.deadline, pace) {
            // Inputs past the slower stage no longer hold this request back.
            let mut ahead = state.queued + self.preprocessing.load(Ordering::Acquire);
            if pace.tower_bound() {
                ahead += self.running.load(Ordering::Acquire);
            }
            pace.check_deadline(Instant::now(), deadline, ahead, n).map_err(|refusal| {
                EngineError::DeadlineUnmeetable {
                    model: self.model.clone(),
                    modality: self.modality,
                    ahead,
                    wait: refusal.wait,
                    remaining: refusal.remaining,
                    retry_after: refusal.retry_after,
                }
            })?;
        }
        state.pending.push_back((job, 0));
        state.queued += n;
        let depth = state.queued;
        drop(state);
        self.ready.notify_one();
        Ok(depth)
    }

    /// Waits for inputs and takes up to `max_batch_size` of them, waiting up to `max_batch_delay`
    /// after the oldest input's admission for the batch to fill. Once the encoder's pace is
    /// known, the batch is kept small enough to finish before the tightest deadline among its
    /// inputs, and jobs that could not finish even alone are dropped. Jobs whose caller left are
    /// skipped. `None` once closed and drained.
    fn take(&self) -> Option<Taken> {
        let mut state = lock(&self.state);
        while state.pending.is_empty() {
            if state.closed {
                return None;
            }
            state = self.ready.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        let delay = self.settings.max_batch_delay;
        if !delay.is_zero()
            && let Some((oldest, _)) = state.pending.front()
        {
            let until = oldest.admitted + delay;
            while state.queued < self.settings.max_batch_size && !state.closed {
                let now = Instant::now();
                if now >= until {
                    break;
                }
                state = self.ready.wait_timeout(state, until - now).unwrap_or_else(|p| p.into_inner()).0;
            }
        }
        let pace = self.pace.pace();
        let now = Instant::now();
        let max = self.settings.max_batch_size;
        let mut taken: Entries = Vec::with_capacity(max.min(state.queued));
        let mut expired = Vec::new();
        // The tightest deadline among the inputs taken so far.
        let mut tightest: Option<Instant> = None;
        while taken.len() < max {
            let Some((job, next)) = state.pending.front() else { break };
            let (job, next) = (Arc::clone(job), *next);
            let left_in_job = job.items.len() - next;
            let skip = if !job.is_live() {
                Some(false)
            } else {
                let alone_too_slow = match (&pace, job.deadline) {
                    (Some(pace), Some(deadline)) => pace.hopeless(now, deadline),
                    (None, Some(deadline)) => now >= deadline,
                    (_, None) => false,
                };
                alone_too_slow.then_some(true)
            };
            if let Some(is_expired) = skip {
                state.pending.pop_front();
                state.queued -= left_in_job;
                if is_expired {
                    expired.push((job, left_in_job));
                }
                continue;
            }
            let tight = match (tightest, job.deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let mut count = left_in_job.min(max - taken.len());
            if let (Some(pace), Some(tight)) = (&pace, tight) {
                // The first input always goes (it is not hopeless: checked above); more join
                // only while the batch would end in time even if slow.
                let least = usize::from(taken.is_empty());
                while count > least && pace.batch_end_high(now, taken.len() + count) > tight {
                    count -= 1;
                }
            }
            if count == 0 {
                break;
            }
            tightest = tight;
            taken.extend((next..next + count).map(|i| (Arc::clone(&job), i)));
            state.queued -= count;
            if count == left_in_job {
                state.pending.pop_front();
            } else if let Some(front) = state.pending.front_mut() {
                front.1 = next + count;
                // The rest of this job does not fit before the batch's deadline.
                break;
            }
        }
        let in_flight = InFlight::new(&self.preprocessing, taken.len());
        Some(Taken { entries: taken, left: state.queued, expired, in_flight })
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.ready.notify_all();
    }

    /// Closes the queue and fails every job still in it with `error()`. Returns whether the queue
    /// was still open, i.e. whether the encoder stopped without being shut down.
    fn abandon(&self, error: impl Fn() -> EngineError) -> bool {
        let (was_open, pending) = {
            let mut state = lock(&self.state);
            let was_open = !std::mem::replace(&mut state.closed, true);
            state.queued = 0;
            (was_open, std::mem::take(&mut state.pending))
        };
        self.ready.notify_all();
        for (job, _) in pending {
            job.fail(error());
        }
        was_open
    }
}

/// A batch preprocessed and waiting for the tower.
struct Staged {
    entries: Entries,
    keys: Vec<Option<CacheKey>>,
    batch: Batch,
    taken_at: Instant,
    preprocessed_at: Instant,
    /// Keeps the batch's inputs counted as running until it is dropped.
    _in_flight: InFlight,
}

/// Shared state the encoder threads need.
pub(crate) struct EncoderContext {
    /// Model name.
    pub model: String,
    pub modality: Modality,
    /// The encoder's preprocessor and tower.
    pub stages: Arc<dyn Stages>,
    pub pool: Arc<rayon::ThreadPool>,
    pub cache: Option<Arc<EmbeddingCache>>,
    pub metrics: Arc<Metrics>,
    /// Set while the encoder's last tower run succeeded.
    pub healthy: Arc<AtomicBool>,
    /// Bumped whenever an encoder's health flips, so the server can update its health service.
    pub health_changed: Arc<tokio::sync::watch::Sender<u64>>,
}

impl EncoderContext {
    fn labels(&self) -> EncoderLabels {
        EncoderLabels::new(&self.model, self.modality.as_str())
    }

    /// An internal error saying that this encoder `what` ("stopped", "failed while ...").
    fn internal(&self, what: &str) -> EngineError {
        EngineError::Internal(format!("the {}/{} encoder {what}", self.model, self.modality))
    }

    fn set_health(&self, up: bool) {
        self.metrics.encoder_up.get_or_create(&self.labels()).set(i64::from(up));
        if self.healthy.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!(model = %self.model, modality = %self.modality, "encoder serving again");
            }
            self.health_changed.send_modify(|generation| *generation += 1);
        }
    }
}

/// An encoder's queue and its two threads. Dropping it closes the queue and joins the threads
/// once the work already admitted is done.
pub(crate) struct EncoderWorkers {
    pub queue: Arc<EncoderQueue>,
    threads: Vec<JoinHandle<()>>,
}

impl EncoderWorkers {
    /// Starts the assembler and runner threads of one encoder.
    pub(crate) fn start(context: EncoderContext, settings: BatchSettings) -> Result<Self, LoadError> {
        let queue = Arc::new(EncoderQueue::new(&context.model, context.modality, settings));
        // Rendezvous: a preprocessed batch waits for the tower in the assembler's hands, and no
        // further batch is taken meanwhile. A buffer of one more batch measured no more capacity
        // on the fixture model, and held inputs past their deadlines about three times as often.
        let (staged_tx, staged_rx) = sync_channel::<Staged>(0);
        let context = Arc::new(context);
        let name = format!("{}/{}", context.model, context.modality);
        let spawn_err = |e: std::io::Error| LoadError::Threads(format!("cannot start {name} threads: {e}"));
        let assembler = {
            let (context, queue) = (Arc::clone(&context), Arc::clone(&queue));
            std::thread::Builder::new()
                .name(format!("bindery-batch-{}", context.modality))
                .spawn(move || assemble(&context, &queue, &staged_tx))
                .map_err(spawn_err)?
        };
        let runner = {
            let (context, queue) = (Arc::clone(&context), Arc::clone(&queue));
            std::thread::Builder::new()
                .name(format!("bindery-run-{}", context.modality))
                .spawn(move || run(&context, &queue.pace, &staged_rx))
                .map_err(spawn_err)?
        };
        Ok(Self { queue, threads: vec![assembler, runner] })
    }
}

impl Drop for EncoderWorkers {
    fn drop(&mut self) {
        self.queue.close();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Fails whatever is left in the queue when the assembler stops, for whatever reason, so no
/// caller waits on work that will never run.
struct AbandonOnExit<'a> {
    context: &'a EncoderContext,
    queue: &'a EncoderQueue,
}

impl Drop for AbandonOnExit<'_> {
    fn drop(&mut self) {
        if self.queue.abandon(|| self.context.internal("stopped")) {
            tracing::error!(model = %self.context.model, modality = %self.context.modality,
                "encoder threads stopped; the encoder no longer serves");
            self.context.set_health(false);
        }
    }
}

/// The jobs of `entries`, each once per entry: what to fail when their batch is lost.
fn jobs_of(entries: &Entries) -> Vec<Arc<Job>> {
    entries.iter().map(|(job, _)| Arc::clone(job)).collect()
}

/// The assembler thread: queue -> cache -> preprocessing -> staged batch.
fn assemble(context: &EncoderContext, queue: &EncoderQueue, staged: &SyncSender<Staged>) {
    let _abandon = AbandonOnExit { context, queue };
    let labels = context.labels();
    while let Some(Taken { entries, left, expired, in_flight }) = queue.take() {
        context.metrics.queue_depth.get_or_create(&labels).set(left as i64);
        if !expired.is_empty() {
            let inputs: usize = expired.iter().map(|(_, n)| n).sum();
            context.metrics.expired.get_or_create(&StageLabels::new(&labels, "queue")).inc_by(inputs as u64);
            for (job, _) in expired {
                job.fail(EngineError::DeadlineExceeded { stage: "in the queue" });
            }
        }
        if entries.is_empty() {
            continue;
        }
        let jobs = jobs_of(&entries);
        // Preprocessing catches panics per input; this catches any other panic in assembling,
        // which loses the whole batch but not the thread.
        match catch_unwind(AssertUnwindSafe(|| stage(context, queue, &labels, entries, in_flight))) {
            Ok(Some(batch)) => {
                queue.pace.staged(batch.entries.len());
                if let Err(SendError(batch)) = staged.send(batch) {
                    for (job, _) in &batch.entries {
                        job.fail(context.internal("stopped"));
                    }
                    return;
                }
            }
            Ok(None) => {}
            Err(payload) => {
                tracing::error!(model = %context.model, modality = %context.modality,
                    panic = panic_reason(&*payload), "assembling a batch panicked; its inputs fail");
                for job in jobs {
                    job.fail(context.internal("failed while preparing a batch"));
                }
            }
        }
    }
}

/// Answers cache hits among `taken` and preprocesses the rest into a batch for the runner;
/// `None` when nothing is left to run.
fn stage(
    context: &EncoderContext,
    queue: &EncoderQueue,
    labels: &EncoderLabels,
    taken: Entries,
    in_flight: InFlight,
) -> Option<Staged> {
    let taken_at = Instant::now();
    // Callers may have left or run out of time since the take.
    let mut entries = Vec::with_capacity(taken.len());
    for (job, index) in taken {
        if !job.is_live() {
            continue;
        }
        if job.expired(taken_at) {
            job.fail(EngineError::DeadlineExceeded { stage: "in the queue" });
            context.metrics.expired.get_or_create(&StageLabels::new(labels, "queue")).inc();
            continue;
        }
        entries.push((job, index));
    }
    if entries.is_empty() {
        return None;
    }
    let keys: Vec<Option<CacheKey>> = match &context.cache {
        Some(_) => context.pool.install(|| {
            entries
                .par_iter()
                .map(|(job, i)| {
                    job.use_cache.then(|| CacheKey::of(&context.model, context.modality, &job.items[*i]))
                })
                .collect()
        }),
        None => vec![None; entries.len()],
    };
    // Cache hits are answered now and take no slot in the batch.
    let mut misses = Vec::with_capacity(entries.len());
    let mut miss_keys = Vec::with_capacity(entries.len());
    for ((job, index), key) in entries.into_iter().zip(keys) {
        let hit = key.and_then(|k| context.cache.as_ref().and_then(|c| c.get(&k)));
        match (key, hit) {
            (Some(_), Some(cached)) => {
                context.metrics.cache_hits.get_or_create(labels).inc();
                let mut vector = cached.vector.to_vec();
                if job.normalize {
                    l2_normalize(&mut vector);
                }
                let times = StageTimes { queue: taken_at - job.admitted, ..StageTimes::default() };
                job.complete(index, EncodedItem { vector, observed: cached.observed, cached: true }, &times);
            }
            _ => {
                if key.is_some() {
                    context.metrics.cache_misses.get_or_create(labels).inc();
                }
                misses.push((job, index));
                miss_keys.push(key);
            }
        }
    }
    if misses.is_empty() {
        return None;
    }
    let items: Vec<&Item> = misses.iter().map(|(job, i)| &job.items[*i]).collect();
    let mut batch = context.pool.install(|| context.stages.preprocess(&items));
    drop(items);
    let preprocessed_at = Instant::now();
    context
        .metrics
        .preprocess_seconds
        .get_or_create(labels)
        .observe((preprocessed_at - taken_at).as_secs_f64());
    if batch.len() != misses.len() {
        // Results that cannot be matched to their inputs; failing them all beats a caller
        // waiting forever for a row that never comes.
        let error = format!("gave {} preprocessing results for {} inputs", batch.len(), misses.len());
        for (job, _) in &misses {
            job.fail(context.internal(&error));
        }
        return None;
    }
    // A bad input fails its own request; the rest of the batch goes on without it.
    let mut keep = vec![true; batch.len()];
    for ((slot, outcome), (job, index)) in batch.outcomes.iter_mut().enumerate().zip(&misses) {
        if outcome.is_err()
            && let Err(source) = std::mem::replace(outcome, Ok(Observed::default()))
        {
            job.fail(EngineError::InvalidInput {
                id: job.items[*index].id.clone(),
                modality: context.modality,
                source,
            });
            keep[slot] = false;
        }
    }
    let (entries, keys) = retain_entries(&mut batch, misses, miss_keys, &keep);
    if batch.is_empty() {
        return None;
    }
    let running = in_flight.move_to(&queue.running);
    Some(Staged { entries, keys, batch, taken_at, preprocessed_at, _in_flight: running })
}

/// Keeps the batch slots, entries and keys whose `keep` flag is set.
fn retain_entries(
    batch: &mut Batch,
    entries: Entries,
    keys: Vec<Option<CacheKey>>,
    keep: &[bool],
) -> (Entries, Vec<Option<CacheKey>>) {
    batch.retain(keep);
    entries.into_iter().zip(keys).zip(keep).filter(|(_, k)| **k).map(|(pair, _)| pair).unzip()
}

/// The runner thread: staged batch -> tower -> each caller.
fn run(context: &EncoderContext, pace: &PaceMeter, staged: &Receiver<Staged>) {
    let labels = context.labels();
    for batch in staged.iter() {
        pace.unstaged();
        let jobs = jobs_of(&batch.entries);
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| run_batch(context, &labels, pace, batch))) {
            context.set_health(false);
            tracing::error!(model = %context.model, modality = %context.modality,
                panic = panic_reason(&*payload), "running a batch panicked; its inputs fail");
            for job in jobs {
                job.fail(context.internal("failed while running a batch"));
            }
        }
    }
}

/// Runs one staged batch through the tower and hands each row to its caller.
fn run_batch(context: &EncoderContext, labels: &EncoderLabels, pace: &PaceMeter, staged: Staged) {
    let Staged { entries, keys, mut batch, taken_at, preprocessed_at, _in_flight } = staged;
    let started = Instant::now();
    // Last check before the expensive part: callers that left, or whose deadline falls before
    // the tower run could end.
    let earliest_finish = started + pace.pace().map_or(Duration::ZERO, |p| p.inference(entries.len()));
    let mut expired = 0;
    let keep: Vec<bool> = entries
        .iter()
        .map(|(job, _)| {
            if job.is_live() && job.expired(earliest_finish) {
                job.fail(EngineError::DeadlineExceeded { stage: "before inference" });
                expired += 1;
            }
            job.is_live()
        })
        .collect();
    if expired > 0 {
        context.metrics.expired.get_or_create(&StageLabels::new(labels, "inference")).inc_by(expired);
    }
    let (entries, keys) = retain_entries(&mut batch, entries, keys, &keep);
    if entries.is_empty() {
        return;
    }
    context.metrics.batch_size.get_or_create(labels).observe(entries.len() as f64);
    pace.tower_started(entries.len());
    let outcome = context.stages.run(&context.model, &batch);
    let finished = Instant::now();
    pace.record(taken_at, preprocessed_at, started, finished, entries.len());
    context.metrics.inference_seconds.get_or_create(labels).observe((finished - started).as_secs_f64());
    let dim = context.stages.dim();
    let flat = match outcome {
        Ok(flat) if dim > 0 && flat.len() == entries.len() * dim => {
            context.set_health(true);
            flat
        }
        outcome => {
            let error = outcome.map_or_else(
                |e| e,
                |flat| {
                    context.internal(&format!(
                        "returned {} floats for {} inputs of dimension {dim}",
                        flat.len(),
                        entries.len()
                    ))
                },
            );
            context.set_health(false);
            tracing::warn!(model = %context.model, modality = %context.modality, error = %error, "batch failed");
            let message = error.to_string();
            for (job, _) in &entries {
                job.fail(match &error {
                    EngineError::Inference { model, modality, source } => EngineError::Inference {
                        model: model.clone(),
                        modality: *modality,
                        source: source.clone(),
                    },
                    _ => EngineError::Internal(message.clone()),
                });
            }
            return;
        }
    };
    context.metrics.items.get_or_create(labels).inc_by(entries.len() as u64);
    for (((job, index), key), (row, outcome)) in
        entries.iter().zip(&keys).zip(flat.chunks(dim).zip(&batch.outcomes))
    {
        let observed = outcome.as_ref().copied().unwrap_or_default();
        if let (Some(key), Some(cache)) = (key, &context.cache) {
            cache.insert(*key, CachedEmbedding { vector: row.into(), observed });
        }
        let mut vector = row.to_vec();
        if job.normalize {
            l2_normalize(&mut vector);
        }
        let queue = (taken_at - job.admitted.min(taken_at)) + (started - preprocessed_at);
        context.metrics.queue_seconds.get_or_create(labels).observe(queue.as_secs_f64());
        let times =
            StageTimes { queue, preprocess: preprocessed_at - taken_at, inference: finished - started };
        job.complete(*index, EncodedItem { vector, observed, cached: false }, &times);
    }
    if let Some(cache) = &context.cache {
        context.metrics.cache_bytes.set(cache.bytes() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modality::text::{Text, payload as text};
    use crate::modality::{Observed, Payload, Pipeline, PreprocessError, Slot, TensorSpec};

    fn job(n: usize) -> (Arc<Job>, oneshot::Receiver<JobResult>) {
        let items = (0..n).map(|i| Item { id: format!("#{i}"), payload: text(format!("t{i}")) }).collect();
        Job::new(items, true, true, None)
    }

    fn queue(max_batch_size: usize, queue_capacity: usize) -> EncoderQueue {
        let settings = BatchSettings { max_batch_size, max_batch_delay: Duration::ZERO, queue_capacity };
        EncoderQueue::new("m", Modality::Text, settings)
    }

    #[test]
    fn batches_take_inputs_across_jobs_in_order_and_split_large_jobs() {
        let q = queue(4, 100);
        let (a, _ra) = job(3);
        let (b, _rb) = job(3);
        q.admit(Arc::clone(&a)).unwrap();
        q.admit(Arc::clone(&b)).unwrap();
        let Taken { entries: first, left, .. } = q.take().unwrap();
        let positions: Vec<(bool, usize)> = first.iter().map(|(j, i)| (Arc::ptr_eq(j, &a), *i)).collect();
        assert_eq!(positions, vec![(true, 0), (true, 1), (true, 2), (false, 0)]);
        assert_eq!(left, 2);
        let Taken { entries: second, left, .. } = q.take().unwrap();
        let positions: Vec<usize> = second.iter().map(|(_, i)| *i).collect();
        assert_eq!(positions, vec![1, 2]);
        assert!(second.iter().all(|(j, _)| Arc::ptr_eq(j, &b)));
        assert_eq!(left, 0);
    }

    #[test]
    fn a_full_queue_refuses_but_an_empty_one_takes_an_oversized_job() {
        let q = queue(4, 5);
        let (big, _r) = job(8);
        assert_eq!(q.admit(big).unwrap(), 8, "an empty queue admits a job larger than its capacity");
        let (more, _r) = job(1);
        match q.admit(more) {
            Err(EngineError::Overloaded { queued, capacity, .. }) => assert_eq!((queued, capacity), (8, 5)),
            other => panic!("expected Overloaded, got {other:?}"),
        }
        q.close();
        let (late, _r) = job(1);
        assert!(matches!(q.admit(late), Err(EngineError::ShuttingDown { .. })));
        // Closing still lets the admitted work drain, then ends.
        assert_eq!(q.take().unwrap().entries.len(), 4);
        assert_eq!(q.take().unwrap().entries.len(), 4);
        assert!(q.take().is_none());
    }

    /// Queues `job` without the admission checks.
    fn enqueue(q: &EncoderQueue, job: &Arc<Job>) {
        let mut state = lock(&q.state);
        state.queued += job.items.len();
        state.pending.push_back((Arc::clone(job), 0));
    }

    fn job_due_in(n: usize, millis: Option<u64>) -> (Arc<Job>, oneshot::Receiver<JobResult>) {
        let items = (0..n).map(|i| Item { id: format!("#{i}"), payload: text(format!("t{i}")) });
        let deadline = millis.map(|ms| Instant::now() + Duration::from_millis(ms));
        Job::new(items.collect(), true, true, deadline)
    }

    #[test]
    fn a_batch_is_kept_small_enough_for_its_tightest_deadline_and_hopeless_jobs_are_dropped() {
        let q = queue(32, 100);
        // A known pace: a batch takes 10 ms per input from take to tower end.
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        q.pace.record(t0, at(30), at(30), at(40), 4);
        let (hopeless, _r1) = job_due_in(2, Some(5));
        let (tight, _r2) = job_due_in(3, Some(35));
        let (loose, _r3) = job_due_in(5, None);
        for job in [&hopeless, &tight, &loose] {
            enqueue(&q, job);
        }
        let Taken { entries, left, expired, in_flight } = q.take().unwrap();
        assert_eq!(expired.len(), 1, "a job that cannot finish even alone is dropped");
        assert!(Arc::ptr_eq(&expired[0].0, &hopeless) && expired[0].1 == 2);
        assert!(
            entries.iter().all(|(j, _)| Arc::ptr_eq(j, &tight)),
            "3 inputs take 30 ms: one more would miss"
        );
        assert_eq!((entries.len(), left), (3, 5));
        assert_eq!(q.preprocessing.load(Ordering::Relaxed), 3, "taken inputs count as being preprocessed");
        let running = in_flight.move_to(&q.running);
        assert_eq!(q.preprocessing.load(Ordering::Relaxed), 0);
        assert_eq!(q.running.load(Ordering::Relaxed), 3);
        drop(running);
        assert_eq!(q.running.load(Ordering::Relaxed), 0);
        // Without a deadline in the batch, the rest goes together.
        let Taken { entries, left, .. } = q.take().unwrap();
        assert!(entries.iter().all(|(j, _)| Arc::ptr_eq(j, &loose)));
        assert_eq!((entries.len(), left), (5, 0));
    }

    #[test]
    fn a_request_behind_work_it_cannot_outwait_is_refused_and_the_refusal_says_when_to_retry() {
        let q = queue(32, 100);
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        q.pace.record(t0, at(30), at(30), at(40), 4);
        let (ahead, _r) = job_due_in(10, None);
        q.admit(ahead).unwrap();
        let (late, _r) = job_due_in(1, Some(50));
        match q.admit(late) {
            Err(EngineError::DeadlineUnmeetable { ahead, wait, remaining, retry_after, .. }) => {
                assert_eq!(ahead, 10);
                assert!(
                    wait > remaining && retry_after >= wait - remaining,
                    "{wait:?} {remaining:?} {retry_after:?}"
                );
            }
            other => panic!("expected DeadlineUnmeetable, got {other:?}"),
        }
        let (patient, _r) = job_due_in(1, Some(10_000));
        assert_eq!(q.admit(patient).unwrap(), 11, "a deadline the queue allows is admitted");
    }

    #[test]
    fn a_job_replies_once_with_results_in_order_or_with_its_first_failure() {
        let (j, rx) = job(2);
        let times = StageTimes::default();
        j.complete(
            1,
            EncodedItem { vector: vec![2.0], observed: Observed::default(), cached: false },
            &times,
        );
        j.complete(
            0,
            EncodedItem {
                vector: vec![1.0],
                observed: Observed { dropped_points: 3, ..Observed::default() },
                cached: false,
            },
            &times,
        );
        let (items, _) = rx.blocking_recv().unwrap().unwrap();
        assert_eq!(items.iter().map(|e| e.vector[0]).collect::<Vec<_>>(), vec![1.0, 2.0]);
        assert_eq!(items[0].observed.dropped_points, 3);

        let (j, rx) = job(2);
        j.fail(EngineError::DeadlineExceeded { stage: "in the queue" });
        j.complete(
            0,
            EncodedItem { vector: vec![1.0], observed: Observed::default(), cached: false },
            &times,
        );
        j.fail(EngineError::Internal("second".into()));
        assert!(matches!(rx.blocking_recv().unwrap(), Err(EngineError::DeadlineExceeded { .. })));
        assert!(!j.is_live(), "a failed job takes no more work");

        let (j, _rx) = job(1);
        j.cancel();
        assert!(!j.is_live());
    }

    #[test]
    fn abandoning_the_queue_answers_every_waiting_job() {
        let q = queue(4, 100);
        let (a, ra) = job(2);
        let (b, rb) = job(1);
        q.admit(a).unwrap();
        q.admit(b).unwrap();
        assert!(q.abandon(|| EngineError::Internal("stopped".into())), "the queue was open");
        for rx in [ra, rb] {
            assert!(matches!(rx.blocking_recv().unwrap(), Err(EngineError::Internal(_))));
        }
        let (late, _r) = job(1);
        assert!(matches!(q.admit(late), Err(EngineError::ShuttingDown { .. })));
        assert!(!q.abandon(|| EngineError::Internal("stopped".into())), "already closed");
    }

    /// Stages that panic on demand. Text "panic" panics while being preprocessed, "panic-batch"
    /// panics outside the per-input guard, and the tower panics once when `panic_next_run` is
    /// set. Each row is [text length, 1].
    #[derive(Default)]
    struct Fragile {
        panic_next_run: AtomicBool,
    }

    /// Text of a test payload ("" for any other).
    fn text_of(payload: &Payload) -> &str {
        payload.value::<Text>().map_or("", |t| t.0.as_str())
    }

    /// The preprocessing of [`Fragile`]: one float per input, its text length.
    struct FragilePipeline([TensorSpec; 1]);

    impl Pipeline for FragilePipeline {
        fn tensors(&self) -> &[TensorSpec] {
            &self.0
        }

        fn preprocess_into(
            &self,
            payload: &Payload,
            slots: &mut [Slot<'_>],
        ) -> Result<Observed, PreprocessError> {
            let t = text_of(payload);
            if t == "panic" {
                panic!("injected panic while preprocessing");
            }
            crate::modality::slot(slots, 0)?.f32()?[0] = t.len() as f32;
            Ok(Observed::default())
        }
    }

    impl Stages for Fragile {
        fn preprocess(&self, items: &[&Item]) -> Batch {
            if items.iter().any(|i| text_of(&i.payload) == "panic-batch") {
                panic!("injected panic while assembling");
            }
            Batch::preprocess(&FragilePipeline([TensorSpec::f32("x", vec![1])]), items)
        }

        fn run(&self, _model: &str, batch: &Batch) -> Result<Vec<f32>, EngineError> {
            if self.panic_next_run.swap(false, Ordering::SeqCst) {
                panic!("injected panic while running");
            }
            let values = batch.f32_tensor(0).ok_or_else(|| EngineError::Internal("no tensor".into()))?;
            Ok(values.iter().flat_map(|v| [*v, 1.0]).collect())
        }

        fn dim(&self) -> usize {
            2
        }
    }

    /// Text workers over `stages` whose batches are exactly `batch` inputs (the delay is long
    /// enough that a batch always fills).
    fn fragile_workers(stages: &Arc<Fragile>, batch: usize) -> (EncoderWorkers, Arc<AtomicBool>) {
        let healthy = Arc::new(AtomicBool::new(true));
        let context = EncoderContext {
            model: "m".into(),
            modality: Modality::Text,
            stages: Arc::clone(stages) as Arc<dyn Stages>,
            pool: Arc::new(rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap()),
            cache: None,
            metrics: Arc::new(Metrics::new()),
            healthy: Arc::clone(&healthy),
            health_changed: Arc::new(tokio::sync::watch::channel(0u64).0),
        };
        let settings = BatchSettings {
            max_batch_size: batch,
            max_batch_delay: Duration::from_secs(60),
            queue_capacity: 100,
        };
        (EncoderWorkers::start(context, settings).unwrap(), healthy)
    }

    /// Admits one single-text job per entry of `texts`, all before any can be batched alone.
    fn submit(workers: &EncoderWorkers, texts: &[&str]) -> Vec<oneshot::Receiver<JobResult>> {
        texts
            .iter()
            .map(|t| {
                let item = Item { id: (*t).into(), payload: text((*t).into()) };
                let (job, rx) = Job::new(vec![item], false, false, None);
                workers.queue.admit(job).unwrap();
                rx
            })
            .collect()
    }

    /// The job's answer; fails the test instead of hanging when none comes.
    fn answer(mut rx: oneshot::Receiver<JobResult>) -> JobResult {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            match rx.try_recv() {
                Ok(result) => return result,
                Err(oneshot::error::TryRecvError::Empty) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("the job got no answer: {e:?}"),
            }
        }
    }

    fn vector(result: JobResult) -> Vec<f32> {
        let (mut items, _) = result.expect("embedded");
        items.remove(0).vector
    }

    #[test]
    fn a_panic_preprocessing_one_input_fails_only_that_input() {
        let stages = Arc::new(Fragile::default());
        let (workers, _) = fragile_workers(&stages, 3);
        let mut answers = submit(&workers, &["ab", "panic", "abcd"]).into_iter().map(answer);
        assert_eq!(vector(answers.next().unwrap()), vec![2.0, 1.0]);
        match answers.next().unwrap() {
            Err(e @ EngineError::InvalidInput { source: PreprocessError::Panicked, .. }) => {
                assert!(!matches!(&e, EngineError::InvalidInput { source, .. } if source.is_input_error()));
                assert_eq!(
                    e.to_string(),
                    "input \"panic\" (text): internal error while preprocessing this input"
                );
            }
            other => panic!("expected an internal preprocessing error, got {other:?}"),
        }
        assert_eq!(vector(answers.next().unwrap()), vec![4.0, 1.0], "its batch neighbours are served");
        let later: Vec<Vec<f32>> =
            submit(&workers, &["a", "bb", "ccc"]).into_iter().map(answer).map(vector).collect();
        assert_eq!(later, vec![vec![1.0, 1.0], vec![2.0, 1.0], vec![3.0, 1.0]], "the encoder still serves");
    }

    #[test]
    fn a_panic_while_assembling_fails_that_batch_and_the_encoder_goes_on() {
        let stages = Arc::new(Fragile::default());
        let (workers, _) = fragile_workers(&stages, 2);
        for result in submit(&workers, &["a", "panic-batch"]).into_iter().map(answer) {
            match result {
                Err(EngineError::Internal(message)) => {
                    assert_eq!(message, "the m/text encoder failed while preparing a batch");
                }
                other => panic!("expected an internal error, got {other:?}"),
            }
        }
        let later: Vec<Vec<f32>> =
            submit(&workers, &["a", "bb"]).into_iter().map(answer).map(vector).collect();
        assert_eq!(later, vec![vec![1.0, 1.0], vec![2.0, 1.0]]);
    }

    #[test]
    fn a_panicking_tower_run_fails_its_batch_and_later_batches_are_served() {
        let stages = Arc::new(Fragile::default());
        let (workers, healthy) = fragile_workers(&stages, 2);
        stages.panic_next_run.store(true, Ordering::SeqCst);
        for result in submit(&workers, &["a", "bb"]).into_iter().map(answer) {
            match result {
                Err(EngineError::Internal(message)) => {
                    assert_eq!(message, "the m/text encoder failed while running a batch");
                }
                other => panic!("expected an internal error, got {other:?}"),
            }
        }
        assert!(!healthy.load(Ordering::Relaxed), "a panicking run marks the encoder not serving");
        let later: Vec<Vec<f32>> =
            submit(&workers, &["ccc", "d"]).into_iter().map(answer).map(vector).collect();
        assert_eq!(later, vec![vec![3.0, 1.0], vec![1.0, 1.0]]);
        assert!(healthy.load(Ordering::Relaxed), "the next good batch marks it serving again");
    }

    #[test]
    fn the_batch_delay_waits_for_more_inputs_only_up_to_its_bound() {
        let settings = BatchSettings {
            max_batch_size: 8,
            max_batch_delay: Duration::from_millis(30),
            queue_capacity: 100,
        };
        let q = Arc::new(EncoderQueue::new("m", Modality::Text, settings));
        let (a, _ra) = job(1);
        q.admit(a).unwrap();
        let feeder = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(5));
                let (b, rb) = job(2);
                q.admit(b).unwrap();
                rb
            })
        };
        let started = Instant::now();
        let taken = q.take().unwrap().entries;
        let _rb = feeder.join().unwrap();
        assert_eq!(taken.len(), 3, "inputs arriving within the delay join the batch");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
