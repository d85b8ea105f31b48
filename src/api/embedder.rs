//! `bindery.v1.Embedder`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use super::pb::embedder_server::Embedder;
use super::{convert, pb, status};
use crate::engine::{Engine, EngineError, StageTimes};

/// How many stream requests may be in flight (embedding) at once per `EmbedStream` call; the
/// stream stops reading from the client while they are, which is its flow control.
const STREAM_IN_FLIGHT: usize = 4;

/// Implementation of the Embedder service over an [`Engine`].
#[derive(Clone)]
pub struct EmbedderService {
    engine: Arc<Engine>,
}

impl EmbedderService {
    /// A service backed by `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

/// Response metadata keys carrying the server-side stage timings, in microseconds.
pub const TIMING_KEYS: [&str; 4] =
    ["bindery-queue-us", "bindery-preprocess-us", "bindery-inference-us", "bindery-total-us"];

async fn embed(
    engine: &Engine,
    request: pb::EmbedRequest,
) -> Result<(pb::EmbedResponse, StageTimes), EngineError> {
    let items = convert::items(request.inputs)?;
    let normalize = request.normalize.unwrap_or(true);
    let (model, embeddings, times) = engine.embed(&request.model, items, normalize).await?;
    let reply = pb::EmbedResponse {
        embeddings: embeddings
            .into_iter()
            .map(|e| pb::Embedding {
                id: e.id,
                modality: convert::modality(e.modality) as i32,
                model: model.name.clone(),
                vector: e.vector,
                dropped_points: e.dropped_points,
            })
            .collect(),
        model: model.name.clone(),
        error: None,
    };
    Ok((reply, times))
}

type EmbedStreamOut = Pin<Box<dyn Stream<Item = Result<pb::EmbedResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Embedder for EmbedderService {
    async fn embed(&self, request: Request<pb::EmbedRequest>) -> Result<Response<pb::EmbedResponse>, Status> {
        let started = Instant::now();
        let (reply, times) = embed(&self.engine, request.into_inner()).await.map_err(|e| {
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
        Ok(response)
    }

    type EmbedStreamStream = EmbedStreamOut;

    async fn embed_stream(
        &self,
        request: Request<Streaming<pb::EmbedRequest>>,
    ) -> Result<Response<Self::EmbedStreamStream>, Status> {
        let engine = Arc::clone(&self.engine);
        let incoming = request.into_inner();
        let out = incoming
            .map(move |message| {
                let engine = Arc::clone(&engine);
                async move {
                    let request = message?;
                    Ok(match embed(&engine, request).await {
                        Ok((reply, _)) => reply,
                        Err(e) => {
                            let s = status::to_status(&e);
                            pb::EmbedResponse {
                                embeddings: Vec::new(),
                                model: String::new(),
                                error: Some(pb::Error {
                                    code: s.code() as i32,
                                    message: s.message().to_string(),
                                }),
                            }
                        }
                    })
                }
            })
            .buffered(STREAM_IN_FLIGHT);
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
                        modality: convert::modality(e.modality) as i32,
                        logit_scale: e.logit_scale,
                    })
                    .collect(),
                family: m.family.clone(),
                description: m.description.clone(),
                is_default: m.name == registry.default_model(),
            })
            .collect();
        Ok(Response::new(pb::ListModelsResponse {
            models,
            default_model: registry.default_model().to_string(),
        }))
    }
}
