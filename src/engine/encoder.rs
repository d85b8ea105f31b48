//! One encoder: a modality's preprocessor feeding one ONNX tower.

use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::error::{EngineError, PreprocessError};
use super::{Item, Payload};
use crate::modality::Modality;
use crate::modality::audio::AudioPreprocessor;
use crate::modality::image::ImagePreprocessor;
use crate::modality::point_cloud::{Colors, PointCloudInput, PointCloudPreprocessor};
use crate::modality::text::TextPreprocessor;
use crate::model::tower::{NamedInput, Tower, TowerInput};

/// Whether bindery has a preprocessing pipeline for `modality` at all.
pub(crate) fn has_pipeline(modality: Modality) -> bool {
    matches!(modality, Modality::Text | Modality::Image | Modality::Audio | Modality::PointCloud)
}

/// The preprocessing stage of an encoder.
pub enum Preprocessor {
    /// Tokenizer (boxed: the tokenizer is much larger than the other variants).
    Text(Box<TextPreprocessor>),
    /// Image decoder and transform.
    Image(ImagePreprocessor),
    /// Audio decoder, resampler and filterbank.
    Audio(AudioPreprocessor),
    /// Point-cloud parser, sampler and grouper.
    PointCloud(PointCloudPreprocessor),
}

/// A batch tensor in the tower's input element type.
enum BatchBuffer {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// The preprocessed batch: one buffer per tower input, and per item the number of points dropped
/// as non-finite (always 0 outside point clouds).
struct Batch {
    tensors: Vec<BatchBuffer>,
    dropped_points: Vec<u64>,
}

impl Batch {
    fn single(buffer: BatchBuffer, items: usize) -> Self {
        Self { tensors: vec![buffer], dropped_points: vec![0; items] }
    }
}

impl Preprocessor {
    fn item_len(&self) -> usize {
        match self {
            Preprocessor::Text(t) => t.context_length(),
            Preprocessor::Image(i) => i.tensor_len(),
            Preprocessor::Audio(a) => a.tensor_len(),
            Preprocessor::PointCloud(p) => p.neighborhood_len(),
        }
    }

    /// Preprocesses `items` in parallel straight into one batch tensor. On failure returns the
    /// index (within `items`) of the first bad item and its error.
    fn batch(&self, items: &[Item]) -> Result<Batch, (usize, PreprocessError)> {
        let len = self.item_len();
        match self {
            Preprocessor::Text(t) => fill(len, items, |payload, slot: &mut [i64]| match payload {
                Payload::Text(text) => t.encode_into(text, slot).map_err(PreprocessError::from),
                _ => unreachable_payload(),
            })
            .map(|buf| Batch::single(BatchBuffer::I64(buf), items.len())),
            Preprocessor::Image(p) => fill(len, items, |payload, slot: &mut [f32]| match payload {
                Payload::Image(bytes) => p.preprocess_into(bytes, slot).map_err(PreprocessError::from),
                _ => unreachable_payload(),
            })
            .map(|buf| Batch::single(BatchBuffer::F32(buf), items.len())),
            Preprocessor::Audio(p) => fill(len, items, |payload, slot: &mut [f32]| match payload {
                Payload::Audio { data, format_hint } => {
                    let hint = (!format_hint.is_empty()).then_some(format_hint.as_str());
                    p.preprocess_into(data, hint, slot).map_err(PreprocessError::from)
                }
                _ => unreachable_payload(),
            })
            .map(|buf| Batch::single(BatchBuffer::F32(buf), items.len())),
            Preprocessor::PointCloud(p) => {
                let center_len = p.center_len();
                let mut neighborhoods = vec![0f32; len * items.len()];
                let mut centers = vec![0f32; center_len * items.len()];
                let results: Vec<Result<u64, PreprocessError>> = neighborhoods
                    .par_chunks_mut(len)
                    .zip(centers.par_chunks_mut(center_len))
                    .zip(items.par_iter())
                    .map(|((neighborhood, center), item)| match &item.payload {
                        Payload::PointCloud(cloud) => p
                            .preprocess_into(cloud.as_input(), neighborhood, center)
                            .map(|stats| stats.dropped_points)
                            .map_err(PreprocessError::from),
                        _ => unreachable_payload().map(|()| 0),
                    })
                    .collect();
                let mut dropped_points = Vec::with_capacity(items.len());
                for (i, r) in results.into_iter().enumerate() {
                    dropped_points.push(r.map_err(|e| (i, e))?);
                }
                Ok(Batch {
                    tensors: vec![BatchBuffer::F32(neighborhoods), BatchBuffer::F32(centers)],
                    dropped_points,
                })
            }
        }
    }
}

/// A point cloud payload owned by the request.
#[derive(Debug, Clone, Default)]
pub struct PointCloudPayload {
    /// Encoded file bytes (empty when arrays are used).
    pub data: Vec<u8>,
    /// Format hint (may be empty).
    pub format_hint: String,
    /// Packed coordinates.
    pub xyz: Vec<f32>,
    /// Packed float colours.
    pub rgb: Vec<f32>,
    /// Packed byte colours.
    pub rgb_u8: Vec<u8>,
}

impl PointCloudPayload {
    /// The borrowed form the preprocessor takes: the file when one was sent, else the arrays.
    pub fn as_input(&self) -> PointCloudInput<'_> {
        if !self.data.is_empty() || self.xyz.is_empty() {
            let hint = (!self.format_hint.is_empty()).then_some(self.format_hint.as_str());
            return PointCloudInput::File { data: &self.data, format_hint: hint };
        }
        let colors = if !self.rgb.is_empty() {
            Some(Colors::Float(&self.rgb))
        } else if !self.rgb_u8.is_empty() {
            Some(Colors::Bytes(&self.rgb_u8))
        } else {
            None
        };
        PointCloudInput::Arrays { xyz: &self.xyz, colors }
    }
}

/// Preprocesses `items` in parallel, each straight into its `len`-sized slot of one batch buffer.
/// On failure returns the index of the first bad item and its error.
fn fill<T: Default + Clone + Send>(
    len: usize,
    items: &[Item],
    write: impl Fn(&Payload, &mut [T]) -> Result<(), PreprocessError> + Sync,
) -> Result<Vec<T>, (usize, PreprocessError)> {
    let mut buf = vec![T::default(); len * items.len()];
    let results: Vec<_> = buf
        .par_chunks_mut(len)
        .zip(items.par_iter())
        .map(|(slot, item)| write(&item.payload, slot))
        .collect();
    match results.into_iter().enumerate().find_map(|(i, r)| r.err().map(|e| (i, e))) {
        Some(failure) => Err(failure),
        None => Ok(buf),
    }
}

// Items are grouped by `Payload::modality` before they reach an encoder, so a payload of another
// modality here is a bug in the grouping; report it as an error rather than panicking.
fn unreachable_payload() -> Result<(), PreprocessError> {
    Err(PreprocessError::Internal("payload routed to an encoder of another modality".into()))
}

/// A modality's preprocessor and tower within one model.
pub struct Encoder {
    /// Modality served.
    pub modality: Modality,
    /// Preprocessing stage.
    pub preprocessor: Preprocessor,
    /// ONNX tower.
    pub tower: Tower,
    /// Logit scale of this modality in the reference model.
    pub logit_scale: f32,
    /// Largest batch sent to the tower at once.
    pub max_batch_size: usize,
    /// Embedding dimension.
    pub dim: usize,
    /// The tower's inputs: name and the shape of one item's tensor (without the batch axis), in
    /// the order the preprocessor fills them.
    pub inputs: Vec<(String, Vec<usize>)>,
}

/// Time a request spent in each stage (summed over its batches).
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    /// Waiting for a worker thread.
    pub queue: Duration,
    /// Decoding, resampling, tokenizing, grouping.
    pub preprocess: Duration,
    /// ONNX runs.
    pub inference: Duration,
}

impl StageTimes {
    /// Adds `other`'s durations to these.
    pub fn add(&mut self, other: &StageTimes) {
        self.queue += other.queue;
        self.preprocess += other.preprocess;
        self.inference += other.inference;
    }
}

/// An embedded item: its vector and what preprocessing observed.
#[derive(Debug, Clone)]
pub struct EncodedItem {
    /// The vector.
    pub vector: Vec<f32>,
    /// Points dropped as non-finite (point clouds only).
    pub dropped_points: u64,
}

impl Encoder {
    /// Preprocesses and embeds `items` on the calling (blocking) thread, in tower-sized batches.
    /// Adds the time spent in each stage to `times`.
    pub fn embed_blocking(
        &self,
        model: &str,
        items: &[Item],
        normalize: bool,
        times: &mut StageTimes,
    ) -> Result<Vec<EncodedItem>, EngineError> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(self.max_batch_size.max(1)) {
            let started = Instant::now();
            let batch = self.preprocessor.batch(chunk).map_err(|(i, source)| EngineError::InvalidInput {
                id: chunk[i].id.clone(),
                modality: self.modality,
                source,
            })?;
            if batch.tensors.len() != self.inputs.len() {
                return Err(EngineError::Internal(format!(
                    "{} preprocessor produced {} tensors for a tower with {} inputs",
                    self.modality,
                    batch.tensors.len(),
                    self.inputs.len()
                )));
            }
            let named: Vec<NamedInput<'_>> = batch
                .tensors
                .iter()
                .zip(&self.inputs)
                .map(|(buffer, (name, item_shape))| {
                    let mut shape = Vec::with_capacity(item_shape.len() + 1);
                    shape.push(chunk.len());
                    shape.extend_from_slice(item_shape);
                    let data = match buffer {
                        BatchBuffer::F32(b) => TowerInput::F32(b),
                        BatchBuffer::I64(b) => TowerInput::I64(b),
                    };
                    NamedInput { name, shape, data }
                })
                .collect();
            let preprocessed = Instant::now();
            times.preprocess += preprocessed - started;
            let flat = self.tower.run(chunk.len(), &named).map_err(|source| EngineError::Inference {
                model: model.to_string(),
                modality: self.modality,
                source,
            })?;
            times.inference += preprocessed.elapsed();
            for (row, dropped_points) in flat.chunks(self.dim).zip(&batch.dropped_points) {
                let mut vector = row.to_vec();
                if normalize {
                    l2_normalize(&mut vector);
                }
                out.push(EncodedItem { vector, dropped_points: *dropped_points });
            }
        }
        Ok(out)
    }
}

/// Scales `v` to unit L2 norm (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    if norm > 0.0 {
        let inv = (1.0 / norm) as f32;
        v.iter_mut().for_each(|x| *x *= inv);
    }
}
