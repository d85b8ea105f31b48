//! The contract between the engine and a modality: an opaque [`Payload`] in, tensor slots out.
//!
//! The engine never knows which modality it batches. It asks a [`Pipeline`] which tower inputs it
//! fills ([`TensorSpec`]), allocates one batch buffer per input, and hands each item its
//! [`Slot`]s to fill. A payload carries its modality tag and a value only its own modality reads.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::shared::Modality;

/// Element type of a tower input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    /// 32-bit float (pixels, filterbanks, points).
    F32,
    /// 64-bit integer (token ids).
    I64,
}

/// One tower input a pipeline fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Input name in the ONNX graph (from the manifest).
    pub name: String,
    /// Shape of one item's tensor, without the batch axis.
    pub item_shape: Vec<usize>,
    /// Element type.
    pub element: ElementType,
    /// Padding value of the last axis, when the tower takes that axis at any length and reads
    /// nothing past an item's first padding value after its last other value (a causal text
    /// tower pooled at its end id, which may be the padding id, or one that masks its padding
    /// out of attention): the engine then cuts each batch
    /// after the last column any of its rows uses. `None`: the tower always gets the whole axis.
    pub trailing_pad: Option<i64>,
}

impl TensorSpec {
    /// A float input.
    pub fn f32(name: impl Into<String>, item_shape: Vec<usize>) -> Self {
        Self { name: name.into(), item_shape, element: ElementType::F32, trailing_pad: None }
    }

    /// An integer input.
    pub fn i64(name: impl Into<String>, item_shape: Vec<usize>) -> Self {
        Self { name: name.into(), item_shape, element: ElementType::I64, trailing_pad: None }
    }

    /// This input, with its last axis cut after the last column that holds anything but `pad`
    /// (see [`TensorSpec::trailing_pad`]).
    pub fn with_trailing_pad(self, pad: i64) -> Self {
        Self { trailing_pad: Some(pad), ..self }
    }

    /// Values one item occupies.
    pub fn item_len(&self) -> usize {
        self.item_shape.iter().product()
    }
}

/// One item's slot in one batch tensor, zeroed before the pipeline writes it.
#[derive(Debug)]
pub enum Slot<'a> {
    /// Slot of a float input.
    F32(&'a mut [f32]),
    /// Slot of an integer input.
    I64(&'a mut [i64]),
}

impl Slot<'_> {
    /// The float slot; an error when the input is not float (a pipeline bug).
    pub fn f32(&mut self) -> Result<&mut [f32], PreprocessError> {
        match self {
            Slot::F32(s) => Ok(s),
            Slot::I64(_) => {
                Err(PreprocessError::Internal("expected a float slot, got an integer one".into()))
            }
        }
    }

    /// The integer slot; an error when the input is not integer (a pipeline bug).
    pub fn i64(&mut self) -> Result<&mut [i64], PreprocessError> {
        match self {
            Slot::I64(s) => Ok(s),
            Slot::F32(_) => {
                Err(PreprocessError::Internal("expected an integer slot, got a float one".into()))
            }
        }
    }
}

/// The slot `index` of `slots`; an error when the pipeline was handed fewer (a bug).
pub fn slot<'s, 'a>(slots: &'s mut [Slot<'a>], index: usize) -> Result<&'s mut Slot<'a>, PreprocessError> {
    let count = slots.len();
    slots
        .get_mut(index)
        .ok_or_else(|| PreprocessError::Internal(format!("slot {index} of {count} requested")))
}

/// What preprocessing observed about one input, besides the tensors it wrote; it travels with
/// the vector to the reply (and into the embedding cache).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    /// Points dropped as non-finite (point clouds; 0 elsewhere).
    pub dropped_points: u64,
    /// Tokens of the input before truncation, start and end tokens included (text; 0 elsewhere).
    pub tokens: u32,
    /// The input had more tokens than the context and was cut (text; false elsewhere).
    pub truncated: bool,
}

/// Why one input could not be preprocessed.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The input is unusable; the modality's error names the problem.
    #[error(transparent)]
    Input(Box<dyn std::error::Error + Send + Sync>),
    /// The server cannot preprocess it (configuration the manifest checks could not catch).
    #[error(transparent)]
    Server(Box<dyn std::error::Error + Send + Sync>),
    /// This build cannot preprocess the input at all (a modality behind a cargo feature that was
    /// off); the message says what to install.
    #[error("{0}")]
    Unimplemented(String),
    /// A bug in routing or in a pipeline; never caused by the input itself.
    #[error("internal error: {0}")]
    Internal(String),
    /// Preprocessing this input panicked: a server bug. The panic is logged, not sent.
    #[error("internal error while preprocessing this input")]
    Panicked,
}

impl PreprocessError {
    /// An input error carrying a modality's own error.
    pub fn input(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        PreprocessError::Input(Box::new(error))
    }

    /// False when the failure lies with the server (configuration, a bug) rather than the input.
    pub fn is_input_error(&self) -> bool {
        matches!(self, PreprocessError::Input(_))
    }
}

/// The value of a payload, read only by its own modality's pipeline.
pub trait PayloadValue: Any + Send + Sync + fmt::Debug {
    /// Feeds every byte preprocessing reads to `part`, one call per field, always in the same
    /// order: the embedding cache keys on them.
    fn key_parts(&self, part: &mut dyn FnMut(&[u8]));
}

/// What a client asked to embed: a modality tag and a value only that modality reads. Cheap to
/// clone (the value is shared).
#[derive(Clone)]
pub struct Payload {
    modality: Modality,
    value: Arc<dyn PayloadValue>,
}

impl Payload {
    /// A payload of `modality` holding `value`.
    pub fn new(modality: Modality, value: impl PayloadValue) -> Self {
        Self { modality, value: Arc::new(value) }
    }

    /// The modality this payload belongs to.
    pub fn modality(&self) -> Modality {
        self.modality
    }

    /// The value, when it is a `T`.
    pub fn value<T: PayloadValue>(&self) -> Option<&T> {
        let any: &dyn Any = self.value.as_ref();
        any.downcast_ref()
    }

    /// The value as a `T`; an internal error naming the modality otherwise (a routing bug).
    pub fn expect_value<T: PayloadValue>(&self) -> Result<&T, PreprocessError> {
        self.value().ok_or_else(|| {
            PreprocessError::Internal(format!(
                "{} pipeline was handed a payload it cannot read",
                self.modality
            ))
        })
    }

    /// See [`PayloadValue::key_parts`].
    pub fn key_parts(&self, part: &mut dyn FnMut(&[u8])) {
        self.value.key_parts(part)
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payload").field("modality", &self.modality).field("value", &self.value).finish()
    }
}

/// A payload of a modality bindery has no pipeline for: it carries nothing, and the engine
/// answers it as unimplemented.
#[derive(Debug)]
pub struct Unsupported;

impl PayloadValue for Unsupported {
    fn key_parts(&self, _part: &mut dyn FnMut(&[u8])) {}
}

/// A time range of an input, in seconds from its start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// Start, in seconds.
    pub start: f64,
    /// End, in seconds.
    pub end: f64,
}

/// One of the embeddings an input asks for ([`Pipeline::split`]): what to embed, routed by its
/// own modality (a video's sound track goes to the model's audio tower), and the time range of
/// the input it covers (`None`: the whole input).
#[derive(Debug, Clone)]
pub struct Part {
    /// What to embed.
    pub payload: Payload,
    /// The range of the input it covers.
    pub span: Option<Span>,
}

impl Part {
    /// The whole of `payload`.
    pub fn whole(payload: Payload) -> Self {
        Self { payload, span: None }
    }
}

/// A modality's preprocessing within one model: payloads to the tensors its tower takes. Built
/// from the model's manifest section by the modality's [`super::Kind`].
pub trait Pipeline: Send + Sync {
    /// The tower inputs this pipeline fills, in the order of the slots it is handed.
    fn tensors(&self) -> &[TensorSpec];

    /// Tower rows one item occupies (a video's clips x crops: 15 for ImageBind); the encoder's
    /// batch size and queue capacity count rows, so a heavy item takes its share of a batch.
    fn rows_per_item(&self) -> usize {
        1
    }

    /// Cheap checks made when a request is admitted, before anything is queued (limits that need
    /// no decoding). Everything else is checked by [`Pipeline::preprocess_into`].
    fn admit(&self, _payload: &Payload) -> Result<(), PreprocessError> {
        Ok(())
    }

    /// Whether `payload` asks for more than one embedding (a video's sound track too, or one
    /// per time window); cheap, no decoding. When true the engine calls [`Pipeline::split`].
    fn splits(&self, _payload: &Payload) -> bool {
        false
    }

    /// The parts `payload` is embedded as, in reply order. Called off the async threads, and
    /// only when [`Pipeline::splits`] says so: it may demux or decode the input (to find its
    /// length, or take out its sound track) so that the parts share that work.
    fn split(&self, payload: &Payload) -> Result<Vec<Part>, PreprocessError> {
        Ok(vec![Part::whole(payload.clone())])
    }

    /// Preprocesses `payload` into `slots`, one per [`Pipeline::tensors`] entry, each zeroed and
    /// `item_len()` long. On error the slots are discarded.
    fn preprocess_into(&self, payload: &Payload, slots: &mut [Slot<'_>])
    -> Result<Observed, PreprocessError>;
}

/// Preprocessing that fills one f32 tensor from one payload value, as most modalities do;
/// wrapped in [`OneTensor`] it is a [`Pipeline`].
pub trait FillOne: Send + Sync + 'static {
    /// The payload value it reads.
    type Value: PayloadValue;

    /// Writes the tensor of `value` into `out` (the item's zeroed slot).
    fn fill(&self, value: &Self::Value, out: &mut [f32]) -> Result<(), PreprocessError>;
}

/// A [`Pipeline`] of one f32 tower input, filled by a [`FillOne`].
pub struct OneTensor<F> {
    tensors: [TensorSpec; 1],
    fill: F,
}

impl<F: FillOne> OneTensor<F> {
    /// The pipeline filling the input `name` of shape `item_shape` (per item) with `fill`.
    pub fn new(name: impl Into<String>, item_shape: Vec<usize>, fill: F) -> Self {
        Self { tensors: [TensorSpec::f32(name, item_shape)], fill }
    }
}

impl<F: FillOne> Pipeline for OneTensor<F> {
    fn tensors(&self) -> &[TensorSpec] {
        &self.tensors
    }

    fn preprocess_into(
        &self,
        payload: &Payload,
        slots: &mut [Slot<'_>],
    ) -> Result<Observed, PreprocessError> {
        let value = payload.expect_value::<F::Value>()?;
        self.fill.fill(value, slot(slots, 0)?.f32()?)?;
        Ok(Observed::default())
    }
}
