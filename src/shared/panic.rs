//! Reading caught panics: every place that turns a panic into an error or a log line.

use std::any::Any;

/// The message a panic was raised with (`panic!` with a string literal or a formatted string);
/// `None` for any other payload.
pub(crate) fn message(payload: &(dyn Any + Send)) -> Option<&str> {
    payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied())
}

/// [`message`], or a placeholder for a payload without one (for log lines).
pub(crate) fn reason(payload: &(dyn Any + Send)) -> &str {
    message(payload).unwrap_or("non-string panic payload")
}
