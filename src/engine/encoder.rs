//! One encoder: a modality's pipeline feeding one ONNX tower. Nothing here knows which modality
//! it serves: the pipeline says which tensors it fills, and each item fills its own slots.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::error::EngineError;
use super::{Item, trim};
use crate::modality::{ElementType, Modality, Observed, Pipeline, PreprocessError, Slot, TensorSpec};
use crate::model::tower::{NamedInput, Tower, TowerInput};
use crate::shared::panic::reason as panic_reason;

/// A batch tensor in the tower's input element type.
enum BatchBuffer {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl BatchBuffer {
    /// `len` zeros of `element`.
    fn zeros(element: ElementType, len: usize) -> Self {
        match element {
            ElementType::F32 => BatchBuffer::F32(vec![0.0; len]),
            ElementType::I64 => BatchBuffer::I64(vec![0; len]),
        }
    }

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

    /// The values, when they are integers.
    fn as_i64(&self) -> Option<&[i64]> {
        match self {
            BatchBuffer::I64(b) => Some(b),
            BatchBuffer::F32(_) => None,
        }
    }

    /// The slots of `rows`, in that order, each of `item_len` values; with `cut = (last, width)`,
    /// every run of `last` values along the slot's last axis keeps only its first `width`.
    fn gather(&self, item_len: usize, rows: &[usize], cut: Option<(usize, usize)>) -> Self {
        fn pick<T: Copy>(buf: &[T], item_len: usize, rows: &[usize], cut: Option<(usize, usize)>) -> Vec<T> {
            let mut out = Vec::with_capacity(rows.len() * item_len);
            for &row in rows {
                let slot = &buf[row * item_len..(row + 1) * item_len];
                match cut {
                    Some((last, width)) => slot.chunks(last).for_each(|r| out.extend_from_slice(&r[..width])),
                    None => out.extend_from_slice(slot),
                }
            }
            out
        }
        match self {
            BatchBuffer::F32(b) => BatchBuffer::F32(pick(b, item_len, rows, cut)),
            BatchBuffer::I64(b) => BatchBuffer::I64(pick(b, item_len, rows, cut)),
        }
    }
}

/// A preprocessed batch: one buffer per tower input, each item in its own slot, and per item
/// the outcome of its preprocessing (points dropped as non-finite, or why it failed).
pub(crate) struct Batch {
    tensors: Vec<BatchBuffer>,
    /// Per item: the number of points dropped as non-finite (0 outside point clouds), or the error.
    pub outcomes: Vec<Result<Observed, PreprocessError>>,
}

impl Batch {
    /// Preprocesses `items` with `pipeline` in parallel (on the current rayon pool), each
    /// straight into its slot of one batch tensor per tower input. A failed or panicking item
    /// leaves its slots zeroed and its error in `outcomes`.
    pub(crate) fn preprocess(pipeline: &dyn Pipeline, items: &[&Item]) -> Self {
        let specs = pipeline.tensors();
        let mut tensors: Vec<BatchBuffer> = specs
            .iter()
            .map(|spec| BatchBuffer::zeros(spec.element, spec.item_len() * items.len()))
            .collect();
        let mut slots: Vec<Vec<Slot<'_>>> = items.iter().map(|_| Vec::with_capacity(specs.len())).collect();
        for (tensor, spec) in tensors.iter_mut().zip(specs) {
            // Encoders refuse tensors of zero values at load, so every item gets a slot here.
            let len = spec.item_len().max(1);
            match tensor {
                BatchBuffer::F32(b) => {
                    b.chunks_mut(len).zip(&mut slots).for_each(|(c, s)| s.push(Slot::F32(c)))
                }
                BatchBuffer::I64(b) => {
                    b.chunks_mut(len).zip(&mut slots).for_each(|(c, s)| s.push(Slot::I64(c)))
                }
            }
        }
        let outcomes = slots
            .into_par_iter()
            .zip(items.par_iter())
            .map(|(mut item_slots, item)| {
                guarded(item, || pipeline.preprocess_into(&item.payload, &mut item_slots))
            })
            .collect();
        Batch { tensors, outcomes }
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

/// A modality's pipeline and tower within one model.
pub struct Encoder {
    /// Modality served.
    pub modality: Modality,
    /// Preprocessing stage.
    pub pipeline: Box<dyn Pipeline>,
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
        Batch::preprocess(self.pipeline.as_ref(), items)
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
    /// What preprocessing observed (dropped points, text tokens).
    pub observed: Observed,
    /// Answered from the embedding cache.
    pub cached: bool,
}

impl Encoder {
    /// Runs the tower on every item of `batch`. Returns `batch.len() * dim` floats, row-major.
    /// Where the pipeline marks a tensor's padding as cuttable, rows run in groups of similar
    /// length, each cut to its longest row (see `trim`), and come back in the batch's order.
    pub(crate) fn run(&self, model: &str, batch: &Batch) -> Result<Vec<f32>, EngineError> {
        let specs = self.pipeline.tensors();
        if batch.tensors.len() != specs.len() {
            return Err(EngineError::Internal(format!(
                "{} pipeline produced {} tensors for a tower with {} inputs",
                self.modality,
                batch.tensors.len(),
                specs.len()
            )));
        }
        let items = batch.len();
        let values: Vec<Option<&[i64]>> = batch.tensors.iter().map(BatchBuffer::as_i64).collect();
        let groups = trim::batch_lengths(specs, &values, items).and_then(|lengths| {
            let full =
                specs.iter().filter(|s| s.trailing_pad.is_some()).filter_map(|s| s.item_shape.last()).max();
            trim::plan(&lengths, full.copied().unwrap_or(0))
        });
        let Some(groups) = groups else {
            let whole: Vec<(&BatchBuffer, &[usize])> =
                batch.tensors.iter().zip(specs).map(|(b, spec)| (b, spec.item_shape.as_slice())).collect();
            return self.run_tensors(model, items, &whole);
        };
        let mut out = vec![0.0; items * self.dim];
        for group in groups {
            let cut: Vec<(BatchBuffer, Vec<usize>)> = batch
                .tensors
                .iter()
                .zip(specs)
                .map(|(buffer, spec)| {
                    let mut shape = spec.item_shape.clone();
                    let cut = match (spec.trailing_pad, shape.last_mut()) {
                        (Some(_), Some(last)) => {
                            let kept = (*last, group.width.min(*last));
                            *last = kept.1;
                            Some(kept)
                        }
                        _ => None,
                    };
                    (buffer.gather(spec.item_len(), &group.rows, cut), shape)
                })
                .collect();
            let refs: Vec<(&BatchBuffer, &[usize])> = cut.iter().map(|(b, s)| (b, s.as_slice())).collect();
            let flat = self.run_tensors(model, group.rows.len(), &refs)?;
            for (&row, vector) in group.rows.iter().zip(flat.chunks(self.dim)) {
                out[row * self.dim..(row + 1) * self.dim].copy_from_slice(vector);
            }
        }
        Ok(out)
    }

    /// Runs the tower once on `items` items: one buffer per input with its item shape.
    fn run_tensors(
        &self,
        model: &str,
        items: usize,
        tensors: &[(&BatchBuffer, &[usize])],
    ) -> Result<Vec<f32>, EngineError> {
        let named: Vec<NamedInput<'_>> = tensors
            .iter()
            .zip(self.pipeline.tensors())
            .map(|((buffer, item_shape), TensorSpec { name, .. })| {
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

    /// Runs one all-zero item through the tower, so the first requests do not pay for ONNX
    /// Runtime's lazy session set-up and kernel selection.
    pub(crate) fn warm_up(&self, model: &str) -> Result<(), EngineError> {
        let n = 1;
        let tensors = self
            .pipeline
            .tensors()
            .iter()
            .map(|spec| BatchBuffer::zeros(spec.element, n * spec.item_len()))
            .collect();
        let batch = Batch { tensors, outcomes: (0..n).map(|_| Ok(Observed::default())).collect() };
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
            let mut batch = Batch::preprocess(self.pipeline.as_ref(), &refs);
            if let Some(i) = batch.outcomes.iter().position(|o| o.is_err())
                && let Err(source) = std::mem::replace(&mut batch.outcomes[i], Ok(Observed::default()))
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
                out.push(EncodedItem {
                    vector,
                    observed: outcome.as_ref().copied().unwrap_or_default(),
                    cached: false,
                });
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
            outcomes: (0..4).map(|d| Ok(Observed { dropped_points: d, ..Observed::default() })).collect(),
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
        assert_eq!(
            batch.outcomes.iter().map(|o| o.as_ref().unwrap().dropped_points).collect::<Vec<_>>(),
            vec![1, 3]
        );
        batch.retain(&[false, false]);
        assert!(batch.is_empty() && batch.tensors.iter().all(|t| t.len() == 0));
    }
}
