//! The engine: resolves the model, groups a request's inputs by modality and admits each group
//! to its encoder's queue, where the encoder batches inputs across requests (see `batcher`);
//! then reassembles the vectors in request order.

mod admission;
mod batcher;
mod cache;
mod encoder;
mod error;
mod limits;
mod registry;
mod trim;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::metrics::{EncoderLabels, Metrics, RejectLabels};
use batcher::{BatchSettings, EncoderContext, EncoderQueue, EncoderWorkers, Job};
pub use cache::{CacheKey, CachedEmbedding, EmbeddingCache};

pub use encoder::{EncodedItem, Encoder, StageTimes};
pub use error::{EngineError, LoadError, PreprocessError};
pub use limits::{ItemLimitError, Limits, check_count};
pub use registry::{LoadedModel, Registry};

use crate::modality::{self, Modality, Observed, Part};
pub use crate::modality::{Payload, Span};

/// One input: a client id and its payload.
#[derive(Debug, Clone)]
pub struct Item {
    /// Client id (never empty: the API fills in the position when the client left it empty).
    pub id: String,
    /// What to embed.
    pub payload: Payload,
}

/// One embedding of an input: the input's only one, or one of the parts it asked for (see
/// [`EmbedOptions::split`]).
#[derive(Debug, Clone)]
pub struct ItemEmbedding {
    /// Client id of the input (every part of an input carries it).
    pub id: String,
    /// Position of the input in the request.
    pub input: usize,
    /// Modality of the embedded part: the input's own, or another one the input holds (a
    /// video's sound track is embedded as audio).
    pub modality: Modality,
    /// The time range of the input this embedding covers; `None`: the whole input.
    pub span: Option<Span>,
    /// The vector.
    pub vector: Vec<f32>,
    /// What preprocessing observed (dropped points, text tokens and truncation).
    pub observed: Observed,
}

/// Engine-wide execution settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Threads of the CPU pool that decodes, resamples, tokenizes and groups inputs.
    pub cpu_workers: usize,
    /// Bytes the embedding cache may hold (0 disables it).
    pub cache_bytes: u64,
    /// Overrides every encoder's `max_batch_delay` from its manifest.
    pub max_batch_delay: Option<Duration>,
    /// Overrides every encoder's admission queue capacity from its manifest.
    pub queue_capacity: Option<usize>,
    /// When every tower runs its warm-up item.
    pub warm_up: WarmUp,
}

/// When each tower runs its warm-up: one all-zero item, which pays for ONNX Runtime's lazy
/// session set-up (kernel selection, first allocations) so the first request does not. One item,
/// not a full batch: on a large model a full batch per tower took minutes before the port opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WarmUp {
    /// No warm-up: every encoder reports serving at once.
    Off,
    /// Before [`Engine::new`] returns.
    Before,
    /// On a background thread once [`Engine::new`] has returned: the server listens at once, and
    /// each encoder reports NOT_SERVING until its warm-up ran (or a batch succeeded).
    Background,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            cpu_workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            cache_bytes: 256 << 20,
            max_batch_delay: None,
            queue_capacity: None,
            warm_up: WarmUp::Before,
        }
    }
}

/// Per-request options of [`Engine::embed`].
#[derive(Debug, Clone, Copy)]
pub struct EmbedOptions {
    /// Scale every vector to unit L2 norm.
    pub normalize: bool,
    /// Use the embedding cache (when the server has one).
    pub use_cache: bool,
    /// Drop the work and fail with `DeadlineExceeded` once this passes.
    pub deadline: Option<Instant>,
    /// Accept inputs that ask for several embeddings (a video's sound track too, one per time
    /// window; see [`modality::Pipeline::split`]): each part gets its own [`ItemEmbedding`],
    /// after the ones before it in request order. When false such an input is refused, for
    /// callers that need exactly one vector per input.
    pub split: bool,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        Self { normalize: true, use_cache: true, deadline: None, split: false }
    }
}

/// The result of [`Engine::embed`].
pub struct Embedded {
    /// The model that served the request.
    pub model: Arc<LoadedModel>,
    /// One embedding per input, in request order; an input split into parts has one per part,
    /// in the order its pipeline gave them.
    pub embeddings: Vec<ItemEmbedding>,
    /// Time spent per stage (the slowest modality group's, per stage).
    pub times: StageTimes,
    /// Inputs answered from the embedding cache.
    pub cache_hits: usize,
}

/// A request's inputs, admitted and split into the parts they are embedded as
/// ([`Engine::prepare`]).
pub struct Prepared {
    model: Arc<LoadedModel>,
    /// (input position, part, the input's time range it covers), in reply order.
    parts: Vec<(usize, Item, Option<Span>)>,
    split: bool,
}

impl Prepared {
    /// Parts left to embed.
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// True when no part is left.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Whether some input was split into parts (so there may be more parts than inputs).
    pub fn was_split(&self) -> bool {
        self.split
    }

    /// The model that serves the request.
    pub fn model(&self) -> &Arc<LoadedModel> {
        &self.model
    }

    /// Takes the first `n` parts (fewer when fewer are left) as a request of their own.
    pub fn take(&mut self, n: usize) -> Prepared {
        let rest = self.parts.split_off(n.min(self.parts.len()));
        let first = std::mem::replace(&mut self.parts, rest);
        Prepared { model: Arc::clone(&self.model), parts: first, split: self.split }
    }
}

/// Health of one encoder.
#[derive(Debug, Clone)]
pub struct EncoderHealth {
    /// Model name.
    pub model: String,
    /// Modality.
    pub modality: Modality,
    /// Whether its warm-up or last batch succeeded.
    pub serving: bool,
}

struct EncoderSlot {
    workers: EncoderWorkers,
    healthy: Arc<AtomicBool>,
}

/// Embeds inputs with the loaded models: admission, per-encoder dynamic batching, cache.
pub struct Engine {
    registry: Registry,
    limits: Limits,
    metrics: Arc<Metrics>,
    cache: Option<Arc<EmbeddingCache>>,
    encoders: HashMap<(String, Modality), EncoderSlot>,
    health_changed: Arc<watch::Sender<u64>>,
    warming: Arc<AtomicBool>,
    pool: Arc<rayon::ThreadPool>,
}

/// Cancels a job when its caller stops waiting (the request ended, failed or was dropped).
struct CancelOnDrop(Arc<Job>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// How an admitted request with a deadline ended, as far as its deadline is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeadlineOutcome {
    /// Still running (or abandoned by its caller).
    Pending,
    /// Finished before its deadline.
    Met,
    /// Failed with DEADLINE_EXCEEDED, or finished after its deadline.
    Missed,
    /// Failed for another reason.
    Failed,
}

/// When a request with a deadline ends, tells each encoder that admitted it whether the deadline
/// was met (so admission can correct its estimates), and counts each miss in
/// `bindery_late_total`: the share of admitted work that admission let in but could not serve in
/// time. A request abandoned by its caller counts only once its deadline has passed (gRPC
/// servers drop a call's handler at its deadline).
struct LateWatch<'a> {
    metrics: &'a Metrics,
    deadline: Option<Instant>,
    admitted: Vec<(EncoderLabels, Arc<EncoderQueue>)>,
    outcome: DeadlineOutcome,
}

impl LateWatch<'_> {
    fn settle<T>(&mut self, result: &Result<T, EngineError>) {
        let late = self.deadline.is_some_and(|d| Instant::now() >= d);
        self.outcome = match result {
            Ok(_) if late => DeadlineOutcome::Missed,
            Ok(_) => DeadlineOutcome::Met,
            Err(EngineError::DeadlineExceeded { .. }) => DeadlineOutcome::Missed,
            Err(_) => DeadlineOutcome::Failed,
        };
    }
}

impl Drop for LateWatch<'_> {
    fn drop(&mut self) {
        let Some(deadline) = self.deadline else { return };
        let met = match self.outcome {
            DeadlineOutcome::Met => true,
            DeadlineOutcome::Missed => false,
            DeadlineOutcome::Pending if Instant::now() >= deadline => false,
            // Failed for another reason, or abandoned early: says nothing about the estimates.
            DeadlineOutcome::Pending | DeadlineOutcome::Failed => return,
        };
        for (labels, queue) in &self.admitted {
            queue.pace.feedback(met);
            if !met {
                self.metrics.late.get_or_create(labels).inc();
            }
        }
    }
}

/// Runs `encoder`'s warm-up item; false (logged) when it failed.
fn warm_up(encoder: &Encoder, model: &str) -> bool {
    let started = Instant::now();
    match encoder.warm_up(model) {
        Ok(()) => {
            // Per encoder, because one large tower (a video item is many clips) can hold up /ready.
            tracing::info!(model = %model, modality = %encoder.modality,
                seconds = started.elapsed().as_secs_f64(), "encoder warmed up");
            true
        }
        Err(e) => {
            tracing::error!(model = %model, modality = %encoder.modality, error = %e,
                "warm-up failed; the encoder reports NOT_SERVING");
            false
        }
    }
}

impl Engine {
    /// Starts the CPU pool and every encoder's batching threads over `registry`, warming up each
    /// tower as `options.warm_up` says. An encoder whose warm-up fails still starts, but reports
    /// not serving until a batch succeeds.
    pub fn new(
        registry: Registry,
        limits: Limits,
        options: &EngineOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Self, LoadError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.cpu_workers.max(1))
            .thread_name(|i| format!("bindery-cpu-{i}"))
            .build()
            .map_err(|e| LoadError::Threads(format!("cannot start the CPU pool: {e}")))?;
        let pool = Arc::new(pool);
        let cache = EmbeddingCache::new(options.cache_bytes).map(Arc::new);
        let (health_changed, _) = watch::channel(0u64);
        let health_changed = Arc::new(health_changed);
        let mut encoders = HashMap::new();
        let mut to_warm = Vec::new();
        for model in registry.models() {
            for encoder in model.shared_encoders() {
                let labels = EncoderLabels::new(&model.name, encoder.modality.as_str());
                let serving = match options.warm_up {
                    WarmUp::Off => true,
                    WarmUp::Before => warm_up(encoder, &model.name),
                    WarmUp::Background => {
                        to_warm.push((model.name.clone(), Arc::clone(encoder)));
                        false
                    }
                };
                metrics.encoder_up.get_or_create(&labels).set(i64::from(serving));
                metrics.queue_depth.get_or_create(&labels).set(0);
                let healthy = Arc::new(AtomicBool::new(serving));
                let settings = BatchSettings {
                    max_batch_size: encoder.max_batch_size.max(1),
                    max_batch_delay: options.max_batch_delay.unwrap_or(encoder.max_batch_delay),
                    queue_capacity: options.queue_capacity.unwrap_or(encoder.queue_capacity).max(1),
                };
                let context = EncoderContext {
                    model: model.name.clone(),
                    modality: encoder.modality,
                    stages: Arc::clone(encoder) as Arc<dyn encoder::Stages>,
                    pool: Arc::clone(&pool),
                    cache: cache.clone(),
                    metrics: Arc::clone(&metrics),
                    healthy: Arc::clone(&healthy),
                    health_changed: Arc::clone(&health_changed),
                };
                let workers = EncoderWorkers::start(context, settings)?;
                encoders.insert((model.name.clone(), encoder.modality), EncoderSlot { workers, healthy });
            }
        }
        let warming = Arc::new(AtomicBool::new(!to_warm.is_empty()));
        if !to_warm.is_empty() {
            let slots: Vec<_> = to_warm
                .into_iter()
                .filter_map(|(model, encoder)| {
                    let slot = encoders.get(&(model.clone(), encoder.modality))?;
                    Some((model, encoder, Arc::clone(&slot.healthy)))
                })
                .collect();
            let (metrics, health_changed, warming) =
                (Arc::clone(&metrics), Arc::clone(&health_changed), Arc::clone(&warming));
            std::thread::Builder::new()
                .name("bindery-warm-up".into())
                .spawn(move || {
                    let started = Instant::now();
                    for (model, encoder, healthy) in slots {
                        if warm_up(&encoder, &model) {
                            healthy.store(true, Ordering::Relaxed);
                            let labels = EncoderLabels::new(&model, encoder.modality.as_str());
                            metrics.encoder_up.get_or_create(&labels).set(1);
                        }
                        health_changed.send_modify(|generation| *generation += 1);
                    }
                    warming.store(false, Ordering::Release);
                    health_changed.send_modify(|generation| *generation += 1);
                    tracing::info!(seconds = started.elapsed().as_secs_f64(), "warm-up done");
                })
                .map_err(|e| LoadError::Threads(format!("cannot start the warm-up thread: {e}")))?;
        }
        Ok(Self { registry, limits, metrics, cache, encoders, health_changed, warming, pool })
    }

    /// Threads of the CPU pool that preprocesses inputs (`EngineOptions::cpu_workers`).
    pub fn cpu_threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// True while the background warm-up ([`WarmUp::Background`]) is still running.
    pub fn warming_up(&self) -> bool {
        self.warming.load(Ordering::Acquire)
    }

    /// The loaded models.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The request limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The embedding cache, when enabled.
    pub fn cache(&self) -> Option<&EmbeddingCache> {
        self.cache.as_deref()
    }

    /// Health of every encoder, in a stable order.
    pub fn encoder_health(&self) -> Vec<EncoderHealth> {
        let mut all: Vec<EncoderHealth> = self
            .encoders
            .iter()
            .map(|((model, modality), slot)| EncoderHealth {
                model: model.clone(),
                modality: *modality,
                serving: slot.healthy.load(Ordering::Relaxed),
            })
            .collect();
        all.sort_by(|a, b| (&a.model, a.modality).cmp(&(&b.model, b.modality)));
        all
    }

    /// Changes whenever an encoder's health flips.
    pub fn health_changes(&self) -> watch::Receiver<u64> {
        self.health_changed.subscribe()
    }

    /// Embeds `items` with `model` (empty: the default model): one embedding per item in order.
    /// Inputs join their encoder's queue and are batched with other requests' inputs.
    pub async fn embed(
        &self,
        model: &str,
        items: Vec<Item>,
        options: EmbedOptions,
    ) -> Result<Embedded, EngineError> {
        let prepared = self.prepare(model, items, options).await?;
        self.embed_prepared(prepared, options).await
    }

    /// The first half of [`Engine::embed`]: resolves the model, admits every input and splits
    /// those that ask for several embeddings into their parts. [`Engine::embed_prepared`] then
    /// embeds them, all at once or a chunk at a time ([`Prepared::take`]).
    pub async fn prepare(
        &self,
        model: &str,
        items: Vec<Item>,
        options: EmbedOptions,
    ) -> Result<Prepared, EngineError> {
        let model = self.registry.resolve(model)?;
        if items.is_empty() {
            return Err(EngineError::NoInputs);
        }
        if items.len() > self.limits.max_items_per_request {
            return Err(EngineError::TooManyInputs {
                count: items.len(),
                limit: self.limits.max_items_per_request,
            });
        }
        if options.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(EngineError::DeadlineExceeded { stage: "before admission" });
        }
        let count = items.len();
        let parts = self.split(&model, items, options.split).await?;
        Ok(Prepared { split: parts.len() != count || parts.iter().any(|p| p.2.is_some()), model, parts })
    }

    /// Embeds prepared parts (the second half of [`Engine::embed`]), one [`ItemEmbedding`] per
    /// part in order.
    pub async fn embed_prepared(
        &self,
        prepared: Prepared,
        options: EmbedOptions,
    ) -> Result<Embedded, EngineError> {
        let Prepared { model, parts, .. } = prepared;
        if parts.is_empty() {
            return Err(EngineError::NoInputs);
        }
        if options.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(EngineError::DeadlineExceeded { stage: "before admission" });
        }
        // Group by modality, remembering each part's position so the reply keeps request order.
        let mut groups: Vec<(Modality, Vec<usize>, Vec<Item>)> = Vec::new();
        let mut sources: Vec<(usize, Option<Span>)> = Vec::with_capacity(parts.len());
        for (position, (input, item, span)) in parts.into_iter().enumerate() {
            sources.push((input, span));
            let modality = item.payload.modality();
            match groups.iter_mut().find(|(m, _, _)| *m == modality) {
                Some((_, positions, group)) => {
                    positions.push(position);
                    group.push(item);
                }
                None => groups.push((modality, vec![position], vec![item])),
            }
        }
        let total: usize = groups.iter().map(|(_, p, _)| p.len()).sum();
        let mut ids: Vec<String> = Vec::with_capacity(total);
        ids.resize(total, String::new());
        for (_, positions, group) in &groups {
            for (position, item) in positions.iter().zip(group) {
                ids[*position] = item.id.clone();
            }
        }
        let mut waiting = Vec::with_capacity(groups.len());
        let mut guards = Vec::with_capacity(groups.len());
        let mut late = LateWatch {
            metrics: &self.metrics,
            deadline: options.deadline,
            admitted: Vec::with_capacity(groups.len()),
            outcome: DeadlineOutcome::Pending,
        };
        for (modality, positions, group) in groups {
            let slot = self
                .encoders
                .get(&(model.name.clone(), modality))
                .ok_or_else(|| EngineError::Internal(format!("no {modality} encoder queue")))?;
            let (job, done) = Job::new(group, options.normalize, options.use_cache, options.deadline);
            guards.push(CancelOnDrop(Arc::clone(&job)));
            let labels = EncoderLabels::new(&model.name, modality.as_str());
            match slot.workers.queue.admit(job) {
                Ok(depth) => {
                    self.metrics.queue_depth.get_or_create(&labels).set(depth as i64);
                    self.metrics.admitted.get_or_create(&labels).inc();
                    late.admitted.push((labels, Arc::clone(&slot.workers.queue)));
                }
                Err(e) => {
                    let reason = match e {
                        EngineError::Overloaded { .. } => Some("queue_full"),
                        EngineError::DeadlineUnmeetable { .. } => Some("deadline"),
                        _ => None,
                    };
                    if let Some(reason) = reason {
                        let labels = RejectLabels {
                            model: labels.model,
                            modality: labels.modality,
                            reason: reason.to_string(),
                        };
                        self.metrics.rejected.get_or_create(&labels).inc();
                    }
                    // The groups admitted before this one are cancelled by their guards; they
                    // did not miss a deadline.
                    late.outcome = DeadlineOutcome::Failed;
                    return Err(e);
                }
            }
            waiting.push((modality, positions, done));
        }
        let model_name = model.name.clone();
        let collect = async move {
            let mut slots: Vec<Option<ItemEmbedding>> = (0..total).map(|_| None).collect();
            let mut times = StageTimes::default();
            let mut cache_hits = 0;
            for (modality, positions, done) in waiting {
                let (encoded, group_times) = done
                    .await
                    .map_err(|_| EngineError::ShuttingDown { model: model_name.clone(), modality })??;
                times.max(&group_times);
                for (position, EncodedItem { vector, observed, cached }) in positions.into_iter().zip(encoded)
                {
                    cache_hits += usize::from(cached);
                    let id = std::mem::take(&mut ids[position]);
                    let (input, span) = sources[position];
                    slots[position] = Some(ItemEmbedding { id, input, modality, span, vector, observed });
                }
            }
            Ok::<_, EngineError>((slots, times, cache_hits))
        };
        let result = match options.deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), collect)
                .await
                .unwrap_or(Err(EngineError::DeadlineExceeded { stage: "in the queue" })),
            None => collect.await,
        };
        late.settle(&result);
        let (slots, times, cache_hits) = result?;
        drop(guards);
        let embeddings = slots
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| EngineError::Internal("an input got no embedding".into()))?;
        Ok(Embedded { model, embeddings, times, cache_hits })
    }

    /// Admits every input and replaces each one that asks for several embeddings by its parts
    /// (each admitted by the encoder of its own modality): `(input position, item, span)` in
    /// reply order. Splitting may demux or decode, so it runs on the blocking pool.
    async fn split(
        &self,
        model: &Arc<LoadedModel>,
        items: Vec<Item>,
        allowed: bool,
    ) -> Result<Vec<(usize, Item, Option<Span>)>, EngineError> {
        let mut splitting = Vec::new();
        for (position, item) in items.iter().enumerate() {
            let modality = item.payload.modality();
            self.check_item(model, item, modality)?;
            if model.encoder(modality).is_some_and(|e| e.pipeline.splits(&item.payload)) {
                if !allowed {
                    return Err(EngineError::InvalidRequest(format!(
                        "input {:?} ({modality}) asks for several embeddings (its sound track or time \
                         segments); only Embed, EmbedStream and collection upserts return them",
                        item.id
                    )));
                }
                splitting.push(position);
            }
        }
        if splitting.is_empty() {
            return Ok(items.into_iter().enumerate().map(|(i, item)| (i, item, None)).collect());
        }
        let jobs = splitting.iter().map(|&position| {
            let (model, payload) = (Arc::clone(model), items[position].payload.clone());
            let id = items[position].id.clone();
            tokio::task::spawn_blocking(move || {
                let modality = payload.modality();
                let encoder = model
                    .encoder(modality)
                    .ok_or_else(|| EngineError::Internal(format!("no {modality} encoder")))?;
                let split = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    encoder.pipeline.split(&payload)
                }))
                .unwrap_or_else(|panic| {
                    let reason = crate::shared::panic::reason(&*panic);
                    tracing::error!(%modality, reason, "splitting an input panicked");
                    Err(PreprocessError::Panicked)
                });
                split.map_err(|source| EngineError::InvalidInput { id, modality, source })
            })
        });
        let mut split: Vec<Option<Vec<Part>>> = (0..items.len()).map(|_| None).collect();
        for (&position, done) in splitting.iter().zip(futures::future::join_all(jobs).await) {
            let parts =
                done.map_err(|e| EngineError::Internal(format!("splitting an input failed: {e}")))??;
            split[position] = Some(parts);
        }
        let mut out = Vec::with_capacity(items.len());
        for ((position, item), parts) in items.into_iter().enumerate().zip(split) {
            let Some(parts) = parts else {
                out.push((position, item, None));
                continue;
            };
            for Part { payload, span } in parts {
                let part = Item { id: item.id.clone(), payload };
                self.check_item(model, &part, part.payload.modality())?;
                out.push((position, part, span));
            }
        }
        // The parts are the request's work and its reply: bounded as its inputs are.
        check_count(
            "embeddings to make (its inputs' segments and sound tracks)",
            out.len(),
            self.limits.max_items_per_request,
        )
        .map_err(|e| EngineError::InvalidRequest(e.to_string()))?;
        Ok(out)
    }

    fn check_item(&self, model: &LoadedModel, item: &Item, modality: Modality) -> Result<(), EngineError> {
        let Some(encoder) = model.encoder(modality) else {
            return Err(if modality::kind(modality).is_some() {
                EngineError::ModalityNotServed {
                    id: item.id.clone(),
                    modality,
                    model: model.name.clone(),
                    served: model.modalities().iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", "),
                }
            } else {
                EngineError::ModalityUnimplemented { id: item.id.clone(), modality }
            });
        };
        encoder.pipeline.admit(&item.payload).map_err(|source| EngineError::InvalidInput {
            id: item.id.clone(),
            modality,
            source,
        })?;
        Ok(())
    }
}
