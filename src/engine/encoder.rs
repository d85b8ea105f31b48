//! One encoder: a modality's preprocessor feeding one ONNX tower.

use rayon::prelude::*;

use super::error::{EngineError, PreprocessError};
use super::{Item, Payload};
use crate::modality::Modality;
use crate::modality::audio::AudioPreprocessor;
use crate::modality::image::ImagePreprocessor;
use crate::modality::text::TextPreprocessor;
use crate::model::tower::{Tower, TowerInput};

/// Whether bindery has a preprocessing pipeline for `modality` at all.
pub(crate) fn has_pipeline(modality: Modality) -> bool {
    matches!(modality, Modality::Text | Modality::Image | Modality::Audio)
}

/// The preprocessing stage of an encoder.
pub enum Preprocessor {
    /// Tokenizer.
    Text(TextPreprocessor),
    /// Image decoder and transform.
    Image(ImagePreprocessor),
    /// Audio decoder, resampler and filterbank.
    Audio(AudioPreprocessor),
}

/// A batch tensor in the tower's input element type.
enum BatchBuffer {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl Preprocessor {
    fn item_len(&self) -> usize {
        match self {
            Preprocessor::Text(t) => t.context_length(),
            Preprocessor::Image(i) => i.tensor_len(),
            Preprocessor::Audio(a) => a.tensor_len(),
        }
    }

    /// Preprocesses `items` in parallel straight into one batch tensor. On failure returns the
    /// index (within `items`) of the first bad item and its error.
    fn batch(&self, items: &[Item]) -> Result<BatchBuffer, (usize, PreprocessError)> {
        let len = self.item_len();
        let first_error = |results: Vec<Result<(), PreprocessError>>| {
            results.into_iter().enumerate().find_map(|(i, r)| r.err().map(|e| (i, e)))
        };
        match self {
            Preprocessor::Text(t) => {
                let mut buf = vec![0i64; len * items.len()];
                let results: Vec<_> = buf
                    .par_chunks_mut(len)
                    .zip(items.par_iter())
                    .map(|(slot, item)| match &item.payload {
                        Payload::Text(text) => t.encode_into(text, slot).map_err(PreprocessError::from),
                        _ => unreachable_payload(),
                    })
                    .collect();
                first_error(results).map_or(Ok(BatchBuffer::I64(buf)), Err)
            }
            Preprocessor::Image(p) => {
                let mut buf = vec![0f32; len * items.len()];
                let results: Vec<_> = buf
                    .par_chunks_mut(len)
                    .zip(items.par_iter())
                    .map(|(slot, item)| match &item.payload {
                        Payload::Image(bytes) => p.preprocess_into(bytes, slot).map_err(PreprocessError::from),
                        _ => unreachable_payload(),
                    })
                    .collect();
                first_error(results).map_or(Ok(BatchBuffer::F32(buf)), Err)
            }
            Preprocessor::Audio(p) => {
                let mut buf = vec![0f32; len * items.len()];
                let results: Vec<_> = buf
                    .par_chunks_mut(len)
                    .zip(items.par_iter())
                    .map(|(slot, item)| match &item.payload {
                        Payload::Audio { data, format_hint } => {
                            let hint = (!format_hint.is_empty()).then_some(format_hint.as_str());
                            p.preprocess_into(data, hint, slot).map_err(PreprocessError::from)
                        }
                        _ => unreachable_payload(),
                    })
                    .collect();
                first_error(results).map_or(Ok(BatchBuffer::F32(buf)), Err)
            }
        }
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
    /// Shape of one item's input tensor, without the batch axis.
    pub item_shape: Vec<usize>,
}

impl Encoder {
    /// Preprocesses and embeds `items` on the calling (blocking) thread, in tower-sized batches.
    pub fn embed_blocking(&self, model: &str, items: &[Item], normalize: bool) -> Result<Vec<Vec<f32>>, EngineError> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(self.max_batch_size.max(1)) {
            let batch = self.preprocessor.batch(chunk).map_err(|(i, source)| EngineError::InvalidInput {
                id: chunk[i].id.clone(),
                modality: self.modality,
                source,
            })?;
            let mut shape = Vec::with_capacity(self.item_shape.len() + 1);
            shape.push(chunk.len());
            shape.extend_from_slice(&self.item_shape);
            let input = match &batch {
                BatchBuffer::F32(b) => TowerInput::F32(b),
                BatchBuffer::I64(b) => TowerInput::I64(b),
            };
            let flat = self.tower.run(&shape, input).map_err(|source| EngineError::Inference {
                model: model.to_string(),
                modality: self.modality,
                source,
            })?;
            for row in flat.chunks(self.dim) {
                let mut v = row.to_vec();
                if normalize {
                    l2_normalize(&mut v);
                }
                out.push(v);
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
