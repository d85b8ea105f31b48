//! Engine errors: what went wrong with a request, and what went wrong loading models.

use std::path::PathBuf;
use std::time::Duration;

use crate::modality::Modality;
pub use crate::modality::PreprocessError;
use crate::model::manifest::ManifestError;
use crate::model::runtime::RuntimeError;
use crate::model::tower::TowerError;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No model of that name.
    #[error("model {name:?} not found; loaded models: {available}")]
    ModelNotFound {
        /// Requested name.
        name: String,
        /// Names of the loaded models.
        available: String,
    },
    /// The request carried no inputs.
    #[error("request has no inputs")]
    NoInputs,
    /// The request carried more inputs than allowed.
    #[error("request has {count} inputs, more than the limit of {limit} per request")]
    TooManyInputs {
        /// Inputs sent.
        count: usize,
        /// Configured limit.
        limit: usize,
    },
    /// A request option that cannot be honoured (the message names it).
    #[error("{0}")]
    InvalidRequest(String),
    /// An input has no payload set.
    #[error(
        "input {id:?}: no payload set (set one of text, image, audio, point_cloud, depth_map, thermal_image, imu, video)"
    )]
    MissingPayload {
        /// Input id.
        id: String,
    },
    /// An input is invalid.
    #[error("input {id:?} ({modality}): {source}")]
    InvalidInput {
        /// Input id.
        id: String,
        /// Its modality.
        modality: Modality,
        /// What is wrong.
        source: PreprocessError,
    },
    /// The model has no tower for this modality.
    #[error("input {id:?}: model {model:?} has no {modality} encoder (it serves: {served})")]
    ModalityNotServed {
        /// Input id.
        id: String,
        /// Its modality.
        modality: Modality,
        /// Model name.
        model: String,
        /// Modalities the model serves.
        served: String,
    },
    /// bindery has no pipeline for this modality yet.
    #[error("input {id:?}: {modality} inputs are not implemented in this version of bindery")]
    ModalityUnimplemented {
        /// Input id.
        id: String,
        /// Its modality.
        modality: Modality,
    },
    /// The tower failed.
    #[error("{model}/{modality} encoder failed: {source}")]
    Inference {
        /// Model name.
        model: String,
        /// Modality.
        modality: Modality,
        /// What failed.
        source: TowerError,
    },
    /// The encoder's admission queue is full.
    #[error(
        "the {model}/{modality} encoder is saturated: {queued} inputs queued, capacity {capacity}; \
         retry {} or with fewer inputs",
        retry_after.map_or("later".to_string(), |d| format!("in {} ms", millis_up(d)))
    )]
    Overloaded {
        /// Model name.
        model: String,
        /// Modality.
        modality: Modality,
        /// Inputs already queued.
        queued: usize,
        /// Queue capacity, in inputs.
        capacity: usize,
        /// When enough of the queue will have drained, at the encoder's recent pace (unknown
        /// before its first batch).
        retry_after: Option<Duration>,
    },
    /// The inputs queued ahead of the request cannot be done before its deadline: it is refused
    /// at once rather than admitted to expire in the queue (load shedding).
    #[error(
        "the {model}/{modality} encoder cannot finish this request before its deadline: {} ahead of \
         it, about {} ms of work, and the deadline is {} ms away; retry in {} ms",
        if *ahead == 1 { "1 input is".to_string() } else { format!("{ahead} inputs are") },
        millis_up(*wait),
        remaining.as_millis(),
        millis_up(*retry_after)
    )]
    DeadlineUnmeetable {
        /// Model name.
        model: String,
        /// Modality.
        modality: Modality,
        /// Inputs ahead of it: queued, or taken into a batch that has not finished.
        ahead: usize,
        /// Predicted time until the request would be done.
        wait: Duration,
        /// Time left before its deadline.
        remaining: Duration,
        /// When a retry could be admitted if nothing else arrived meanwhile.
        retry_after: Duration,
    },
    /// The caller's deadline passed before the work was done; the remaining work was dropped.
    #[error("deadline exceeded {stage}; the request's remaining work was dropped")]
    DeadlineExceeded {
        /// Where the deadline was noticed ("before admission", "in the queue", "before inference").
        stage: &'static str,
    },
    /// The server is shutting down and no longer runs new work.
    #[error("the {model}/{modality} encoder is shutting down")]
    ShuttingDown {
        /// Model name.
        model: String,
        /// Modality.
        modality: Modality,
    },
    /// A bug or an unexpected runtime failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    /// When a retry of the refused request could succeed, for the refusals that know it.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            EngineError::Overloaded { retry_after, .. } => *retry_after,
            EngineError::DeadlineUnmeetable { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// `d` in whole milliseconds, rounded up: a retry after the hint must not come too early.
pub(crate) fn millis_up(d: Duration) -> u128 {
    d.as_nanos().div_ceil(1_000_000)
}

/// Why the models could not be loaded at start-up.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The ONNX Runtime library is unavailable.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The models folder cannot be read.
    #[error("cannot read models folder {path}: {source}")]
    ModelsDir {
        /// Folder.
        path: PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
    /// No model folder found.
    #[error("no model found in {0} (expected subfolders holding a model.toml)")]
    NoModels(PathBuf),
    /// A manifest is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Two folders declare the same model name.
    #[error("model name {name:?} is declared by both {first} and {second}")]
    DuplicateName {
        /// The name.
        name: String,
        /// First folder.
        first: PathBuf,
        /// Second folder.
        second: PathBuf,
    },
    /// A tower failed to load.
    #[error("model {model:?}, {modality} encoder: {source}")]
    Tower {
        /// Model name.
        model: String,
        /// Modality.
        modality: Modality,
        /// What failed.
        source: TowerError,
    },
    /// A manifest section describes a pipeline bindery cannot build (a tokenizer that does not
    /// load, parameters the filterbank cannot use).
    #[error("model {model:?}, {modality} encoder: {source}")]
    Pipeline {
        /// Model name.
        model: String,
        /// Modality.
        modality: Modality,
        /// What is wrong.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The configured default model is not loaded.
    #[error("default model {name:?} is not among the loaded models ({available})")]
    DefaultMissing {
        /// Requested default.
        name: String,
        /// Loaded names.
        available: String,
    },
    /// Worker threads could not be started.
    #[error("{0}")]
    Threads(String),
}
