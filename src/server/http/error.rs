//! gRPC statuses as HTTP replies: the HTTP status of each code (Google's `google.rpc.Code`
//! mapping), the same message, and a JSON body OpenAI clients also understand.

use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use tonic::{Code, Status};

use crate::api::RETRY_AFTER_KEY;

/// A refused HTTP call: the status the gRPC service (or the HTTP edge) refused it with, and its
/// HTTP status ([`http_status`] of its code unless the edge knows better).
#[derive(Debug)]
pub struct HttpError(pub Status, pub Option<StatusCode>);

impl From<Status> for HttpError {
    fn from(status: Status) -> Self {
        Self(status, None)
    }
}

impl HttpError {
    /// INVALID_ARGUMENT with `message`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self(Status::invalid_argument(message), None)
    }

    /// A request over a size limit: RESOURCE_EXHAUSTED, as gRPC says it, but HTTP 413.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self(Status::resource_exhausted(message), Some(StatusCode::PAYLOAD_TOO_LARGE))
    }

    /// `status` answered with the HTTP status `http`.
    pub fn with_http_status(status: Status, http: StatusCode) -> Self {
        Self(status, Some(http))
    }
}

/// The HTTP status of a gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        // nginx's "client closed request"; the client is gone and rarely reads it.
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The `type` OpenAI's error objects carry for a code.
fn openai_type(code: Code) -> &'static str {
    match code {
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange | Code::AlreadyExists => {
            "invalid_request_error"
        }
        Code::Unauthenticated => "authentication_error",
        Code::PermissionDenied => "permission_error",
        Code::NotFound => "not_found_error",
        Code::ResourceExhausted => "rate_limit_error",
        _ => "server_error",
    }
}

/// The gRPC name of a code (`INVALID_ARGUMENT`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl IntoResponse for HttpError {
    /// `{"error": {"code": "INVALID_ARGUMENT", "message": "...", "type": "invalid_request_error"}}`
    /// with the mapped status; a rate refusal also carries `Retry-After` (seconds, rounded up)
    /// and bindery's `retry-after-ms`.
    fn into_response(self) -> Response {
        let code = self.0.code();
        let body = serde_json::json!({
            "error": {
                "code": code_name(code),
                "message": self.0.message(),
                "type": openai_type(code),
            }
        });
        let mut response = (self.1.unwrap_or_else(|| http_status(code)), body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(ms) = self.0.metadata().get(RETRY_AFTER_KEY).and_then(|v| v.to_str().ok())
            && let Ok(ms) = ms.parse::<u64>()
        {
            headers.insert(RETRY_AFTER, HeaderValue::from(ms.div_ceil(1000).max(1)));
            headers.insert(RETRY_AFTER_KEY, HeaderValue::from(ms));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_the_google_rpc_http_statuses() {
        assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(Code::ResourceExhausted), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(http_status(Code::DeadlineExceeded), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(http_status(Code::Unimplemented), StatusCode::NOT_IMPLEMENTED);
        assert_eq!(http_status(Code::Cancelled).as_u16(), 499);
    }

    #[test]
    fn a_rate_refusal_carries_retry_after_in_seconds_rounded_up() {
        let mut status = Status::resource_exhausted("slow down");
        status.metadata_mut().insert(RETRY_AFTER_KEY, 1500u64.into());
        let response = HttpError::from(status).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "2");
        assert_eq!(response.headers()[RETRY_AFTER_KEY], "1500");
    }
}
