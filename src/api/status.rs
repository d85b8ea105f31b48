//! Engine errors to gRPC statuses: the only place that decides status codes.

use tonic::{Code, Status};

use crate::engine::EngineError;

/// The gRPC status a client receives for `error`.
pub fn to_status(error: &EngineError) -> Status {
    let code = match error {
        EngineError::ModelNotFound { .. } => Code::NotFound,
        EngineError::InvalidInput { source, .. } if !source.is_input_error() => Code::Internal,
        EngineError::NoInputs
        | EngineError::TooManyInputs { .. }
        | EngineError::MissingPayload { .. }
        | EngineError::InvalidInput { .. }
        | EngineError::ModalityNotServed { .. } => Code::InvalidArgument,
        EngineError::ModalityUnimplemented { .. } => Code::Unimplemented,
        EngineError::Inference { .. } | EngineError::Internal(_) => Code::Internal,
    };
    Status::new(code, error.to_string())
}

impl From<EngineError> for Status {
    fn from(error: EngineError) -> Self {
        to_status(&error)
    }
}
