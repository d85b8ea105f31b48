//! One encoder: a modality's preprocessor feeding one ONNX tower.

use std::panic::{AssertUnwindSafe, catch_unwind};
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
use crate::panic::reason as panic_reason;

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

impl BatchBuffer {
    fn len(&self) -> usize {
        match self {
            BatchBuffer::F32(b) => b.len(),
            BatchBuffer::I64(b) => b.len(),
        }
    }

    /// Keeps the item slots whose `keep` flag is set, moved to the front in order.
    fn retain_slots(&mut self, keep: &[bool]) {
        fn compact<T: Copy>(buf: &mut Vec<T>, keep: &[bool]) {
            let len = buf.len() / keep.len().max(1);
            let mut write = 0;
            for (read, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
                if read != write {
                    buf.copy_within(read * len..(read + 1) * len, write * len);
                }
                write += 1;
            }
            buf.truncate(write * len);
        }
        match self {
            BatchBuffer::F32(b) => compact(b, keep),
            BatchBuffer::I64(b) => compact(b, keep),
        }
    }
}

/// A preprocessed batch: one buffer per tower input, each item in its own slot, and per item
/// the outcome of its preprocessing (points dropped as non-finite, or why it failed).
pub(crate) struct Batch {
    tensors: Vec<BatchBuffer>,
    /// Per item: the number of points dropped as non-finite (0 outside point clouds), or the error.
    pub outcomes: Vec<Result<u64, PreprocessError>>,
}

impl Batch {
    fn single(buffer: BatchBuffer, results: Vec<Result<(), PreprocessError>>) -> Self {
        Self { tensors: vec![buffer], outcomes: results.into_iter().map(|r| r.map(|()| 0)).collect() }
    }

    /// A batch of one float tensor, `len` values per item, each item written by `write` straight
    /// into its slot (in parallel on the current rayon pool). A failed or panicking item leaves
    /// its slot zeroed and its error in `outcomes`.
    pub(crate) fn fill_f32(
        len: usize,
        items: &[&Item],
        write: impl Fn(&Payload, &mut [f32]) -> Result<(), PreprocessError> + Sync,
    ) -> Self {
        let (buf, results) = fill(len, items, write);
        Self::single(BatchBuffer::F32(buf), results)
    }

    /// The values of float input `input` (tests check what reached the tower).
    #[cfg(test)]
    pub(crate) fn f32_tensor(&self, input: usize) -> Option<&[f32]> {
        match self.tensors.get(input)? {
            BatchBuffer::F32(b) => Some(b),
            BatchBuffer::I64(_) => None,
        }
    }

    /// Items in the batch.
    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    /// Whether the batch holds no items.
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }

    /// Drops the items whose `keep` flag is clear (failed, cancelled or expired), so the tower
    /// only runs the rest. Moves slots within the buffers; nothing is reallocated.
    pub fn retain(&mut self, keep: &[bool]) {
        if keep.iter().all(|k| *k) {
            return;
        }
        for tensor in &mut self.tensors {
            tensor.retain_slots(keep);
        }
        let mut flags = keep.iter();
        self.outcomes.retain(|_| flags.next().copied().unwrap_or(false));
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

    /// Preprocesses `items` in parallel (on the current rayon pool), each straight into its slot
    /// of one batch tensor per tower input. A failed item leaves its slot zeroed and its error in
    /// `outcomes`.
    pub(crate) fn batch(&self, items: &[&Item]) -> Batch {
        let len = self.item_len();
        match self {
            Preprocessor::Text(t) => {
                let (buf, results) = fill(len, items, |payload, slot: &mut [i64]| match payload {
                    Payload::Text(text) => t.encode_into(text, slot).map_err(PreprocessError::from),
                    _ => unreachable_payload(),
                });
                Batch::single(BatchBuffer::I64(buf), results)
            }
            Preprocessor::Image(p) => Batch::fill_f32(len, items, |payload, slot| match payload {
                Payload::Image(bytes) => p.preprocess_into(bytes, slot).map_err(PreprocessError::from),
                _ => unreachable_payload(),
            }),
            Preprocessor::Audio(p) => Batch::fill_f32(len, items, |payload, slot| match payload {
                Payload::Audio { data, format_hint } => {
                    let hint = (!format_hint.is_empty()).then_some(format_hint.as_str());
                    p.preprocess_into(data, hint, slot).map_err(PreprocessError::from)
                }
                _ => unreachable_payload(),
            }),
            Preprocessor::PointCloud(p) => {
                let center_len = p.center_len();
                let mut neighborhoods = vec![0f32; len * items.len()];
                let mut centers = vec![0f32; center_len * items.len()];
                let outcomes: Vec<Result<u64, PreprocessError>> = neighborhoods
                    .par_chunks_mut(len)
                    .zip(centers.par_chunks_mut(center_len))
                    .zip(items.par_iter())
                    .map(|((neighborhood, center), item)| {
                        guarded(item, || match &item.payload {
                            Payload::PointCloud(cloud) => p
                                .preprocess_into(cloud.as_input(), neighborhood, center)
                                .map(|stats| stats.dropped_points)
                                .map_err(PreprocessError::from),
                            _ => unreachable_payload().map(|()| 0),
                        })
                    })
                    .collect();
                Batch { tensors: vec![BatchBuffer::F32(neighborhoods), BatchBuffer::F32(centers)], outcomes }
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
/// Returns the buffer and each item's result.
fn fill<T: Default + Clone + Send>(
    len: usize,
    items: &[&Item],
    write: impl Fn(&Payload, &mut [T]) -> Result<(), PreprocessError> + Sync,
) -> (Vec<T>, Vec<Result<(), PreprocessError>>) {
    let mut buf = vec![T::default(); len * items.len()];
    let results = buf
        .par_chunks_mut(len)
        .zip(items.par_iter())
        .map(|(slot, item)| guarded(item, || write(&item.payload, slot)))
        .collect();
    (buf, results)
}

/// Runs the preprocessing of one `item`, turning a panic into an error for that item alone: the
/// rest of its batch and the encoder thread go on. The slot the item was writing is discarded
/// with it, so whatever the panic left there never reaches the tower.
fn guarded<T>(
    item: &Item,
    preprocess: impl FnOnce() -> Result<T, PreprocessError>,
) -> Result<T, PreprocessError> {
    catch_unwind(AssertUnwindSafe(preprocess)).unwrap_or_else(|payload| {
        tracing::error!(input = %item.id, modality = %item.payload.modality(), panic = panic_reason(&*payload),
            "preprocessing panicked; the input fails with an internal error");
        Err(PreprocessError::Panicked)
    })
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
    /// Longest an input waits for others to join its batch.
    pub max_batch_delay: Duration,
    /// Most inputs waiting in the admission queue.
    pub queue_capacity: usize,
    /// Embedding dimension.
    pub dim: usize,
    /// The tower's inputs: name and the shape of one item's tensor (without the batch axis), in
    /// the order the preprocessor fills them.
    pub inputs: Vec<(String, Vec<usize>)>,
}

/// What an encoder's batching threads drive: preprocessing, then the tower. The loaded
/// [`Encoder`] in the server; tests substitute fakes that fail in chosen ways.
pub(crate) trait Stages: Send + Sync {
    /// Preprocesses `items` into one batch (on the current rayon pool). A failed item leaves its
    /// error in `outcomes`.
    fn preprocess(&self, items: &[&Item]) -> Batch;
    /// Runs the tower on `batch` (of model `model`): `batch.len() * dim()` floats, row-major.
    fn run(&self, model: &str, batch: &Batch) -> Result<Vec<f32>, EngineError>;
    /// Embedding dimension.
    fn dim(&self) -> usize;
}

impl Stages for Encoder {
    fn preprocess(&self, items: &[&Item]) -> Batch {
        self.preprocessor.batch(items)
    }

    fn run(&self, model: &str, batch: &Batch) -> Result<Vec<f32>, EngineError> {
        Encoder::run(self, model, batch)
    }

    fn dim(&self) -> usize {
        self.dim
    }
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

    /// Keeps the larger of each duration: groups of one request run concurrently.
    pub fn max(&mut self, other: &StageTimes) {
        self.queue = self.queue.max(other.queue);
        self.preprocess = self.preprocess.max(other.preprocess);
        self.inference = self.inference.max(other.inference);
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
    /// Runs the tower on every item of `batch`. Returns `batch.len() * dim` floats, row-major.
    pub(crate) fn run(&self, model: &str, batch: &Batch) -> Result<Vec<f32>, EngineError> {
        if batch.tensors.len() != self.inputs.len() {
            return Err(EngineError::Internal(format!(
                "{} preprocessor produced {} tensors for a tower with {} inputs",
                self.modality,
                batch.tensors.len(),
                self.inputs.len()
            )));
        }
        let items = batch.len();
        let named: Vec<NamedInput<'_>> = batch
            .tensors
            .iter()
            .zip(&self.inputs)
            .map(|(buffer, (name, item_shape))| {
                let mut shape = Vec::with_capacity(item_shape.len() + 1);
                shape.push(items);
                shape.extend_from_slice(item_shape);
                debug_assert_eq!(buffer.len(), shape.iter().product::<usize>());
                let data = match buffer {
                    BatchBuffer::F32(b) => TowerInput::F32(b),
                    BatchBuffer::I64(b) => TowerInput::I64(b),
                };
                NamedInput { name, shape, data }
            })
            .collect();
        self.tower.run(items, &named).map_err(|source| EngineError::Inference {
            model: model.to_string(),
            modality: self.modality,
            source,
        })
    }

    /// Runs one batch of `max_batch_size` all-zero items through the tower, so the first
    /// requests do not pay for ONNX Runtime's lazy allocations and kernel selection.
    pub(crate) fn warm_up(&self, model: &str) -> Result<(), EngineError> {
        let n = self.max_batch_size.max(1);
        let tensors = self
            .inputs
            .iter()
            .map(|(_, shape)| {
                let len = n * shape.iter().product::<usize>();
                match self.preprocessor {
                    Preprocessor::Text(_) => BatchBuffer::I64(vec![0; len]),
                    _ => BatchBuffer::F32(vec![0.0; len]),
                }
            })
            .collect();
        let batch = Batch { tensors, outcomes: (0..n).map(|_| Ok(0)).collect() };
        self.run(model, &batch).map(|_| ())
    }

    /// Preprocesses and embeds `items` on the calling thread (and the current rayon pool), in
    /// tower-sized batches, without any queueing: the in-process baseline the served path is
    /// compared with. Adds the time spent in each stage to `times`.
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
            let refs: Vec<&Item> = chunk.iter().collect();
            let mut batch = self.preprocessor.batch(&refs);
            if let Some(i) = batch.outcomes.iter().position(|o| o.is_err())
                && let Err(source) = std::mem::replace(&mut batch.outcomes[i], Ok(0))
            {
                return Err(EngineError::InvalidInput {
                    id: chunk[i].id.clone(),
                    modality: self.modality,
                    source,
                });
            }
            let preprocessed = Instant::now();
            times.preprocess += preprocessed - started;
            let flat = self.run(model, &batch)?;
            times.inference += preprocessed.elapsed();
            for (row, outcome) in flat.chunks(self.dim).zip(&batch.outcomes) {
                let mut vector = row.to_vec();
                if normalize {
                    l2_normalize(&mut vector);
                }
                out.push(EncodedItem { vector, dropped_points: *outcome.as_ref().unwrap_or(&0) });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retain_moves_kept_slots_to_the_front_of_every_tensor() {
        let mut batch = Batch {
            tensors: vec![
                BatchBuffer::F32((0..8).map(|v| v as f32).collect()),
                BatchBuffer::I64((0..4).collect()),
            ],
            outcomes: vec![Ok(0), Ok(1), Ok(2), Ok(3)],
        };
        batch.retain(&[false, true, false, true]);
        assert_eq!(batch.len(), 2);
        match &batch.tensors[0] {
            BatchBuffer::F32(b) => assert_eq!(b, &[2.0, 3.0, 6.0, 7.0]),
            BatchBuffer::I64(_) => panic!("wrong buffer type"),
        }
        match &batch.tensors[1] {
            BatchBuffer::I64(b) => assert_eq!(b, &[1, 3]),
            BatchBuffer::F32(_) => panic!("wrong buffer type"),
        }
        assert_eq!(batch.outcomes.iter().map(|o| *o.as_ref().unwrap()).collect::<Vec<_>>(), vec![1, 3]);
        batch.retain(&[false, false]);
        assert!(batch.is_empty() && batch.tensors.iter().all(|t| t.len() == 0));
    }
}
