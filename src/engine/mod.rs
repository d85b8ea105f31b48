//! The engine: resolves the model, groups inputs by modality, preprocesses each group on the CPU
//! pool straight into a batch tensor, runs the tower and returns normalised vectors in request order.

mod encoder;
mod error;
mod limits;
mod registry;

use std::sync::Arc;
use std::time::Instant;

pub use encoder::{EncodedItem, Encoder, PointCloudPayload, Preprocessor, StageTimes};
pub use error::{EngineError, LoadError, PreprocessError};
pub use limits::Limits;
pub use registry::{LoadedModel, Registry};

use crate::modality::Modality;

/// What a client asked to embed.
#[derive(Debug, Clone)]
pub enum Payload {
    /// UTF-8 text.
    Text(String),
    /// Encoded image bytes.
    Image(Vec<u8>),
    /// Encoded audio bytes and an optional format hint.
    Audio {
        /// File bytes.
        data: Vec<u8>,
        /// Format hint (may be empty).
        format_hint: String,
    },
    /// A point cloud, as a file or arrays.
    PointCloud(PointCloudPayload),
    /// A depth map (no pipeline yet).
    Depth,
    /// A thermal image (no pipeline yet).
    Thermal,
    /// An IMU series (no pipeline yet).
    Imu,
}

impl Payload {
    /// The modality this payload belongs to.
    pub fn modality(&self) -> Modality {
        match self {
            Payload::Text(_) => Modality::Text,
            Payload::Image(_) => Modality::Image,
            Payload::Audio { .. } => Modality::Audio,
            Payload::PointCloud(_) => Modality::PointCloud,
            Payload::Depth => Modality::Depth,
            Payload::Thermal => Modality::Thermal,
            Payload::Imu => Modality::Imu,
        }
    }
}

/// One input: a client id and its payload.
#[derive(Debug, Clone)]
pub struct Item {
    /// Client id (never empty: the API fills in the position when the client left it empty).
    pub id: String,
    /// What to embed.
    pub payload: Payload,
}

/// The embedding of one input.
#[derive(Debug, Clone)]
pub struct ItemEmbedding {
    /// Client id of the input.
    pub id: String,
    /// Modality of the input.
    pub modality: Modality,
    /// The vector.
    pub vector: Vec<f32>,
    /// Points dropped as non-finite (point clouds only).
    pub dropped_points: u64,
}

/// Embeds batches of inputs with the loaded models.
pub struct Engine {
    registry: Registry,
    limits: Limits,
}

impl Engine {
    /// Wraps a loaded registry.
    pub fn new(registry: Registry, limits: Limits) -> Self {
        Self { registry, limits }
    }

    /// The loaded models.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Embeds `items` with `model` (empty: the default model). Returns the model, one embedding
    /// per item in order (unit L2 norm when `normalize` is set) and the time spent per stage.
    pub async fn embed(
        &self,
        model: &str,
        items: Vec<Item>,
        normalize: bool,
    ) -> Result<(Arc<LoadedModel>, Vec<ItemEmbedding>, StageTimes), EngineError> {
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
        // Group by modality, remembering each item's position so the reply keeps request order.
        let mut groups: Vec<(Modality, Vec<(usize, Item)>)> = Vec::new();
        for (position, item) in items.into_iter().enumerate() {
            let modality = item.payload.modality();
            self.check_item(&model, &item, modality)?;
            match groups.iter_mut().find(|(m, _)| *m == modality) {
                Some((_, group)) => group.push((position, item)),
                None => groups.push((modality, vec![(position, item)])),
            }
        }
        let total: usize = groups.iter().map(|(_, g)| g.len()).sum();
        let mut handles = Vec::with_capacity(groups.len());
        for (modality, group) in groups {
            let model = Arc::clone(&model);
            let submitted = Instant::now();
            handles.push(tokio::task::spawn_blocking(move || {
                let mut times = StageTimes { queue: submitted.elapsed(), ..StageTimes::default() };
                let encoder = model
                    .encoder(modality)
                    .ok_or_else(|| EngineError::Internal(format!("no {modality} encoder")))?;
                let (positions, items): (Vec<usize>, Vec<Item>) = group.into_iter().unzip();
                let vectors = encoder.embed_blocking(&model.name, &items, normalize, &mut times)?;
                let embedded =
                    positions.into_iter().zip(items).zip(vectors).map(move |((p, item), encoded)| {
                        let EncodedItem { vector, dropped_points } = encoded;
                        (p, ItemEmbedding { id: item.id, modality, vector, dropped_points })
                    });
                Ok::<_, EngineError>((embedded, times))
            }));
        }
        let mut slots: Vec<Option<ItemEmbedding>> = (0..total).map(|_| None).collect();
        let mut times = StageTimes::default();
        for handle in handles {
            let (done, group_times) =
                handle.await.map_err(|e| EngineError::Internal(format!("encoder task failed: {e}")))??;
            times.add(&group_times);
            for (position, embedding) in done {
                slots[position] = Some(embedding);
            }
        }
        let embeddings = slots
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| EngineError::Internal("an input got no embedding".into()))?;
        Ok((model, embeddings, times))
    }

    fn check_item(&self, model: &LoadedModel, item: &Item, modality: Modality) -> Result<(), EngineError> {
        if model.encoder(modality).is_none() {
            return Err(if encoder::has_pipeline(modality) {
                EngineError::ModalityNotServed {
                    id: item.id.clone(),
                    modality,
                    model: model.name.clone(),
                    served: model.modalities().iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", "),
                }
            } else {
                EngineError::ModalityUnimplemented { id: item.id.clone(), modality }
            });
        }
        if let Payload::Text(text) = &item.payload
            && text.len() > self.limits.max_text_bytes
        {
            return Err(EngineError::InvalidInput {
                id: item.id.clone(),
                modality,
                source: PreprocessError::TextTooLong { len: text.len(), limit: self.limits.max_text_bytes },
            });
        }
        Ok(())
    }
}
