//! Engine errors to gRPC statuses: the only place that decides status codes.

use tonic::{Code, Status};

use crate::engine::{EngineError, ItemLimitError, PreprocessError};
use crate::service::SimilarityError;
use crate::store::StoreError;

/// Metadata key of a refusal's retry hint, in milliseconds (in the trailers of a refused call).
pub const RETRY_AFTER_KEY: &str = "retry-after-ms";

/// The gRPC status a client receives for `error`; a refusal that knows when a retry could
/// succeed carries that hint in [`RETRY_AFTER_KEY`] metadata as well as in its message.
pub fn to_status(error: &EngineError) -> Status {
    let code = match error {
        EngineError::ModelNotFound { .. } => Code::NotFound,
        EngineError::InvalidInput { source: PreprocessError::Unimplemented(_), .. } => Code::Unimplemented,
        EngineError::InvalidInput { source, .. } if !source.is_input_error() => Code::Internal,
        EngineError::NoInputs
        | EngineError::InvalidRequest(_)
        | EngineError::TooManyInputs { .. }
        | EngineError::MissingPayload { .. }
        | EngineError::InvalidInput { .. }
        | EngineError::ModalityNotServed { .. } => Code::InvalidArgument,
        EngineError::ModalityUnimplemented { .. } => Code::Unimplemented,
        EngineError::Inference { .. } | EngineError::Internal(_) => Code::Internal,
        EngineError::Overloaded { .. } | EngineError::DeadlineUnmeetable { .. } => Code::ResourceExhausted,
        EngineError::DeadlineExceeded { .. } => Code::DeadlineExceeded,
        EngineError::ShuttingDown { .. } => Code::Unavailable,
    };
    let mut status = Status::new(code, error.to_string());
    if let Some(retry) = error.retry_after() {
        let millis = u64::try_from(retry.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        status.metadata_mut().insert(RETRY_AFTER_KEY, millis.into());
    }
    status
}

impl From<EngineError> for Status {
    fn from(error: EngineError) -> Self {
        to_status(&error)
    }
}

/// The gRPC status a client receives for a collection-store `error`.
pub fn store_status(error: &StoreError) -> Status {
    let code = match error {
        StoreError::CollectionNotFound { .. } => Code::NotFound,
        StoreError::CollectionExists { .. } => Code::AlreadyExists,
        StoreError::InvalidName { .. }
        | StoreError::InvalidSpec(_)
        | StoreError::NoItems
        | StoreError::NoIds
        | StoreError::DuplicateId { .. }
        | StoreError::InvalidItem { .. }
        | StoreError::Vector { .. }
        | StoreError::TopK { .. } => Code::InvalidArgument,
        // A collection whose log failed takes no writes until a restart: retrying cannot help.
        StoreError::Disabled
        | StoreError::ModelUnavailable { .. }
        | StoreError::ModelDimension { .. }
        | StoreError::LogUnusable { .. } => Code::FailedPrecondition,
        StoreError::Io { .. }
        | StoreError::Corrupt { .. }
        | StoreError::InUse { .. }
        | StoreError::Database(_)
        | StoreError::Internal(_) => Code::Internal,
        StoreError::Unavailable(_) => Code::Unavailable,
    };
    Status::new(code, error.to_string())
}

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Self {
        store_status(&error)
    }
}

impl From<ItemLimitError> for Status {
    fn from(error: ItemLimitError) -> Self {
        Status::new(Code::InvalidArgument, error.to_string())
    }
}

/// The gRPC status a client receives for a failed `Similarity` or `Classify`.
pub fn similarity_status(error: &SimilarityError) -> Status {
    match error {
        SimilarityError::Engine(e) => to_status(e),
        SimilarityError::Vector { .. }
        | SimilarityError::Empty { .. }
        | SimilarityError::MissingItem { .. }
        | SimilarityError::EmptyLabel { .. }
        | SimilarityError::Template { .. }
        | SimilarityError::TooMany { .. }
        | SimilarityError::TopK { .. }
        | SimilarityError::TemplateSet { .. }
        | SimilarityError::Scale(_) => Status::new(Code::InvalidArgument, error.to_string()),
    }
}

impl From<SimilarityError> for Status {
    fn from(error: SimilarityError) -> Self {
        similarity_status(&error)
    }
}

/// The snake-case name of a gRPC status code, as used in metric labels.
pub fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}
