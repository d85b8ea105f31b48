//! `bindery.v1.Embedder`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::media_url::MediaFetcher;
use super::pb::embedder_server::Embedder;
use super::{StreamBudget, convert, fetch, pb, similarity, status};
use crate::engine::{EmbedOptions, Embedded, Engine, EngineError, ItemEmbedding, StageTimes};
use crate::metrics::{EncoderLabels, StatusLabels};
use crate::service::Similarity;
use crate::service::compact::{self, Encoding};
use crate::shared::Modality;

/// How many stream requests may be in flight (embedding) at once per `EmbedStream` call; the
/// stream stops reading from the client while they are, which is its flow control.
const STREAM_IN_FLIGHT: usize = 4;

/// Embeddings per `EmbedStream` reply when a message's inputs ask for more than one each
/// (segment mode): a long file's windows come back as they are done.
const STREAM_CHUNK: usize = 8;

/// Chunks of one message embedding at once, so the next chunk is under way while one is sent.
const STREAM_CHUNKS_IN_FLIGHT: usize = 2;

/// Implementation of the Embedder service over an [`Engine`].
#[derive(Clone)]
pub struct EmbedderService {
    engine: Arc<Engine>,
    similarity: Arc<Similarity>,
    media: MediaFetcher,
}

impl EmbedderService {
    /// A service backed by `engine`, fetching media URLs with `media`.
    pub fn new(engine: Arc<Engine>, media: MediaFetcher) -> Self {
        Self { similarity: Arc::new(Similarity::new(Arc::clone(&engine))), engine, media }
    }
}

pub use crate::shared::{CACHE_HITS_KEY, TIMING_KEYS};

async fn embed(
    engine: &Engine,
    request: pb::EmbedRequest,
    deadline: Option<Instant>,
) -> Result<(pb::EmbedResponse, Served), EngineError> {
    let started = Instant::now();
    let span = tracing::info_span!(
        "embed",
        model = %request.model,
        inputs = request.inputs.len(),
        queue_us = tracing::field::Empty,
        preprocess_us = tracing::field::Empty,
        inference_us = tracing::field::Empty,
        total_us = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    let mut record = RequestRecord {
        engine,
        model: model_label(engine, &request.model),
        modalities: request_modalities(&request.inputs),
        started,
        code: None,
    };
    let outcome = embed_inner(engine, request, deadline).instrument(span.clone()).await;
    let code = match &outcome {
        Ok((_, Served { times, .. })) => {
            span.record("queue_us", times.queue.as_micros() as u64);
            span.record("preprocess_us", times.preprocess.as_micros() as u64);
            span.record("inference_us", times.inference.as_micros() as u64);
            tonic::Code::Ok
        }
        Err(e) => status::to_status(e).code(),
    };
    span.record("total_us", started.elapsed().as_micros() as u64);
    span.record("status", status::code_label(code));
    record.code = Some(code);
    outcome
}

/// Counts a request in the metrics when it ends, including when its future is dropped because
/// the client went away (counted as `cancelled`).
struct RequestRecord<E: std::ops::Deref<Target = Engine>> {
    engine: E,
    model: String,
    modalities: Vec<&'static str>,
    started: Instant,
    code: Option<tonic::Code>,
}

impl<E: std::ops::Deref<Target = Engine>> Drop for RequestRecord<E> {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(tonic::Code::Cancelled);
        let metrics = self.engine.metrics();
        for modality in &self.modalities {
            let labels = StatusLabels {
                model: self.model.clone(),
                modality: modality.to_string(),
                status: status::code_label(code).to_string(),
            };
            metrics.requests.get_or_create(&labels).inc();
            if code == tonic::Code::Ok {
                let encoder = EncoderLabels::new(&self.model, modality);
                metrics.request_seconds.get_or_create(&encoder).observe(self.started.elapsed().as_secs_f64());
            }
        }
    }
}

/// The model label of a request's metrics: the resolved name, or `unknown` for a name that is
/// not loaded (clients must not be able to create unbounded label values).
fn model_label(engine: &Engine, requested: &str) -> String {
    match engine.registry().resolve(requested) {
        Ok(model) => model.name.clone(),
        Err(_) => "unknown".to_string(),
    }
}

/// The distinct modalities of a request's inputs, in first-seen order (`none` when it has no
/// valid input).
fn request_modalities(inputs: &[pb::Input]) -> Vec<&'static str> {
    let mut seen: Vec<&'static str> = Vec::new();
    for input in inputs {
        let Some(payload) = &input.payload else { continue };
        let Some(modality) = Modality::of_input(payload) else { continue };
        let name = modality.as_str();
        if !seen.contains(&name) {
            seen.push(name);
        }
    }
    if seen.is_empty() {
        seen.push("none");
    }
    seen
}

/// What a request asks of its reply, besides the inputs.
#[derive(Clone, Copy)]
struct ReplyFormat {
    encoding: Encoding,
    dimensions: Option<usize>,
    normalize: bool,
}

/// The request's inputs, options and reply format, checked before any embedding is done.
fn parse(
    engine: &Engine,
    request: pb::EmbedRequest,
    deadline: Option<Instant>,
) -> Result<(String, Vec<crate::engine::Item>, EmbedOptions, ReplyFormat), EngineError> {
    let items = convert::items_with(request.inputs, convert::over_context(request.text_truncation)?)?;
    let encoding = convert::encoding(request.encoding)?;
    let normalize = request.normalize.unwrap_or(true);
    let dimensions = match request.dimensions.filter(|d| *d > 0) {
        Some(d) => {
            let model = engine.registry().resolve(&request.model)?;
            compact::check_dimensions(d as usize, model.dim, &model.name)
                .map_err(|e| EngineError::InvalidRequest(e.to_string()))?;
            Some(d as usize)
        }
        None => None,
    };
    let options = EmbedOptions { normalize, use_cache: request.cache.unwrap_or(true), deadline, split: true };
    Ok((request.model, items, options, ReplyFormat { encoding, dimensions, normalize }))
}

/// The reply carrying `embeddings` of `model`, in the request's format.
fn reply(model: &str, embeddings: Vec<ItemEmbedding>, format: ReplyFormat) -> pb::EmbedResponse {
    let ReplyFormat { encoding, dimensions, normalize } = format;
    pb::EmbedResponse {
        embeddings: embeddings
            .into_iter()
            .map(|e| {
                let mut vector = e.vector;
                if let Some(d) = dimensions {
                    compact::truncate(&mut vector, d, normalize);
                }
                let packed = compact::pack(&vector, encoding);
                let dimension = vector.len() as u32;
                pb::Embedding {
                    id: e.id,
                    modality: e.modality.to_pb() as i32,
                    model: model.to_string(),
                    vector: if encoding == Encoding::Float32 { vector } else { Vec::new() },
                    dropped_points: e.observed.dropped_points,
                    tokens: e.observed.tokens,
                    truncated: e.observed.truncated,
                    packed: packed.bytes,
                    scale: packed.scale,
                    dimension,
                    encoding: convert::encoding_to_pb(encoding) as i32,
                    span: e.span.map(|s| pb::Span { start_seconds: s.start, end_seconds: s.end }),
                }
            })
            .collect(),
        model: model.to_string(),
        error: None,
        more: false,
    }
}

async fn embed_inner(
    engine: &Engine,
    request: pb::EmbedRequest,
    deadline: Option<Instant>,
) -> Result<(pb::EmbedResponse, Served), EngineError> {
    let (model, items, options, format) = parse(engine, request, deadline)?;
    let Embedded { model, embeddings, times, cache_hits } = engine.embed(&model, items, options).await?;
    Ok((reply(&model.name, embeddings, format), Served { times, cache_hits }))
}

/// How a request was served: time per stage, and how many inputs came from the cache.
struct Served {
    times: StageTimes,
    cache_hits: usize,
}

/// The deadline a call's `grpc-timeout` header sets, if any.
///
/// tonic answers CANCELLED itself when the timeout passes while a handler is still running, so
/// the engine's deadline is set a little earlier (half the timeout, at most 1 ms) to let bindery
/// answer DEADLINE_EXCEEDED and drop the work first.
pub(crate) fn deadline_of(metadata: &tonic::metadata::MetadataMap) -> Option<Instant> {
    let timeout = parse_grpc_timeout(metadata.get("grpc-timeout")?.to_str().ok()?)?;
    let margin = (timeout / 2).min(Duration::from_millis(1));
    Some(Instant::now() + (timeout - margin))
}

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

type EmbedStreamOut = Pin<Box<dyn Stream<Item = Result<pb::EmbedResponse, Status>> + Send>>;

/// A stream of the one item `reply`.
fn one(reply: Result<pb::EmbedResponse, Status>) -> EmbedStreamOut {
    Box::pin(futures::stream::once(std::future::ready(reply)))
}

/// The replies to one `EmbedStream` message: one, or, when its inputs were split into parts
/// (segment mode), [`STREAM_CHUNK`] embeddings per reply in order, each sent once done (all but
/// the last with `more`). A failed chunk ends the message's replies with its error.
async fn stream_replies(
    engine: Arc<Engine>,
    request: pb::EmbedRequest,
    deadline: Option<Instant>,
) -> EmbedStreamOut {
    let failed = |e: &EngineError| one(Ok(error_reply(&status::to_status(e))));
    // The same span as a unary Embed, so a message's preprocessing and batches are traced under it.
    let span =
        tracing::info_span!("embed", model = %request.model, inputs = request.inputs.len(), stream = true);
    let mut record = RequestRecord {
        model: model_label(&engine, &request.model),
        modalities: request_modalities(&request.inputs),
        engine: Arc::clone(&engine),
        started: Instant::now(),
        code: None,
    };
    let (model, items, options, format) = match parse(&engine, request, deadline) {
        Ok(parsed) => parsed,
        Err(e) => {
            record.code = Some(status::to_status(&e).code());
            return failed(&e);
        }
    };
    let mut prepared = match engine.prepare(&model, items, options).instrument(span.clone()).await {
        Ok(prepared) => prepared,
        Err(e) => {
            record.code = Some(status::to_status(&e).code());
            return failed(&e);
        }
    };
    let name = prepared.model().name.clone();
    let size = if prepared.was_split() { STREAM_CHUNK } else { prepared.len() };
    let mut chunks = Vec::new();
    while !prepared.is_empty() {
        chunks.push(prepared.take(size));
    }
    let last = chunks.len().saturating_sub(1);
    let replies = futures::stream::iter(chunks.into_iter().enumerate())
        .map(move |(index, chunk)| {
            let (engine, span) = (Arc::clone(&engine), span.clone());
            async move { (index, engine.embed_prepared(chunk, options).instrument(span).await) }
        })
        .buffered(STREAM_CHUNKS_IN_FLIGHT)
        .scan(Some(record), move |record, (index, result)| {
            // The record counts the message once: when its last reply or its error goes out.
            let Some(mut open) = record.take() else { return std::future::ready(None) };
            let reply = match result {
                Ok(done) => {
                    let mut reply = reply(&name, done.embeddings, format);
                    reply.more = index != last;
                    if reply.more {
                        *record = Some(open);
                    } else {
                        open.code = Some(tonic::Code::Ok);
                    }
                    reply
                }
                Err(e) => {
                    let status = status::to_status(&e);
                    open.code = Some(status.code());
                    error_reply(&status)
                }
            };
            std::future::ready(Some(Ok(reply)))
        });
    Box::pin(replies)
}

/// The reply to one stream message that failed: the stream goes on, so the error travels in the
/// message rather than as the call's status.
fn error_reply(status: &Status) -> pb::EmbedResponse {
    pb::EmbedResponse {
        embeddings: Vec::new(),
        model: String::new(),
        error: Some(pb::Error { code: status.code() as i32, message: status.message().to_string() }),
        more: false,
    }
}

#[tonic::async_trait]
impl Embedder for EmbedderService {
    async fn embed(&self, request: Request<pb::EmbedRequest>) -> Result<Response<pb::EmbedResponse>, Status> {
        let started = Instant::now();
        let deadline = deadline_of(request.metadata());
        let mut request = request.into_inner();
        fetch::resolve(&self.media, request.inputs.iter_mut().collect()).await?;
        let (reply, Served { times, cache_hits }) =
            embed(&self.engine, request, deadline).await.map_err(|e| {
                tracing::debug!(error = %e, "embed request rejected");
                status::to_status(&e)
            })?;
        let mut response = Response::new(reply);
        let values = [times.queue, times.preprocess, times.inference, started.elapsed()];
        for (key, value) in TIMING_KEYS.iter().zip(values) {
            if let Ok(v) = MetadataValue::try_from(value.as_micros().to_string()) {
                response.metadata_mut().insert(*key, v);
            }
        }
        if let Ok(v) = MetadataValue::try_from(cache_hits.to_string()) {
            response.metadata_mut().insert(CACHE_HITS_KEY, v);
        }
        Ok(response)
    }

    type EmbedStreamStream = EmbedStreamOut;

    async fn embed_stream(
        &self,
        request: Request<Streaming<pb::EmbedRequest>>,
    ) -> Result<Response<Self::EmbedStreamStream>, Status> {
        let engine = Arc::clone(&self.engine);
        let media = self.media.clone();
        // A stream's deadline covers the whole call, so every message shares it.
        let deadline = deadline_of(request.metadata());
        // Each message is a request and pays for itself; the call already paid for the first.
        let budget = request.extensions().get::<StreamBudget>().cloned();
        let mut first_covered = true;
        let incoming = request.into_inner();
        let out = incoming
            .map(move |message| {
                // Charged as each message is read, so in arrival order.
                let refused = match (&message, &budget) {
                    (Ok(_), Some(budget)) if !std::mem::take(&mut first_covered) => budget.charge().err(),
                    _ => None,
                };
                let (engine, media) = (Arc::clone(&engine), media.clone());
                async move {
                    let mut request = match message {
                        Ok(request) => request,
                        Err(status) => return one(Err(status)),
                    };
                    if let Some(refusal) = refused {
                        tracing::debug!("stream message over the rate limit");
                        return one(Ok(error_reply(&refusal)));
                    }
                    if let Err(refusal) = fetch::resolve(&media, request.inputs.iter_mut().collect()).await {
                        return one(Ok(error_reply(&refusal)));
                    }
                    stream_replies(engine, request, deadline).await
                }
            })
            .buffered(STREAM_IN_FLIGHT)
            .flatten();
        Ok(Response::new(Box::pin(out)))
    }

    async fn list_models(
        &self,
        _request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let registry = self.engine.registry();
        let models = registry
            .models()
            .map(|m| pb::ModelInfo {
                name: m.name.clone(),
                dimension: m.dim as u32,
                modalities: m
                    .encoders()
                    .map(|e| pb::ModalityInfo {
                        modality: e.modality.to_pb() as i32,
                        logit_scale: e.logit_scale,
                    })
                    .collect(),
                family: m.family.clone(),
                description: m.description.clone(),
                is_default: m.name == registry.default_model(),
                licence: m.licence.clone(),
            })
            .collect();
        Ok(Response::new(pb::ListModelsResponse {
            models,
            default_model: registry.default_model().to_string(),
        }))
    }

    async fn similarity(
        &self,
        request: Request<pb::SimilarityRequest>,
    ) -> Result<Response<pb::SimilarityResponse>, Status> {
        let mut request = request.into_inner();
        similarity::name_inputs("queries", &mut request.queries);
        similarity::name_inputs("candidates", &mut request.candidates);
        let inputs = request.queries.iter_mut().chain(&mut request.candidates).filter_map(|item| {
            match &mut item.item {
                Some(pb::similarity_item::Item::Input(input)) => Some(input),
                _ => None,
            }
        });
        fetch::resolve(&self.media, inputs.collect()).await?;
        Ok(Response::new(similarity::similarity(&self.similarity, request).await?))
    }

    async fn classify(
        &self,
        request: Request<pb::ClassifyRequest>,
    ) -> Result<Response<pb::ClassifyResponse>, Status> {
        let mut request = request.into_inner();
        fetch::resolve(&self.media, request.inputs.iter_mut().collect()).await?;
        Ok(Response::new(similarity::classify(&self.similarity, request).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_every_unit_and_refuse_junk() {
        assert_eq!(parse_grpc_timeout("1m"), Some(Duration::from_millis(1)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("500u"), Some(Duration::from_micros(500)));
        assert_eq!(parse_grpc_timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for junk in ["", "m", "1", "1x", "-1m", "123456789m", "1.5S"] {
            assert_eq!(parse_grpc_timeout(junk), None, "{junk:?}");
        }
    }
}
