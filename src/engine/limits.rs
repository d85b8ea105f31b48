//! Request limits enforced before any expensive work.

use crate::modality::InputLimits;

/// Per-request and per-input limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most inputs in one request.
    pub max_items_per_request: usize,
    /// Per-input limits of each modality.
    pub inputs: InputLimits,
    /// Most labels in one `Classify` call.
    pub max_labels: usize,
    /// Most prompt templates in one `Classify` call.
    pub max_templates: usize,
    /// Most label prompts (labels x templates) one `Classify` call may ask to embed: each one is
    /// a text inference the first time it is seen.
    pub max_label_prompts: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_items_per_request: 256,
            inputs: InputLimits::default(),
            max_labels: 4096,
            max_templates: 256,
            // ImageNet's 1000 classes with CLIP's 80 templates fit.
            max_label_prompts: 128 * 1024,
        }
    }
}

impl Limits {
    /// Checks that a request's `count` entries (inputs, items, ids, ...) fit
    /// `max_items_per_request`, which bounds the work and the reply of every RPC.
    pub fn check_items(&self, what: &'static str, count: usize) -> Result<(), ItemLimitError> {
        check_count(what, count, self.max_items_per_request)
    }
}

/// Checks `count` entries of `what` against `limit`.
pub fn check_count(what: &'static str, count: usize, limit: usize) -> Result<(), ItemLimitError> {
    if count > limit { Err(ItemLimitError { what, count, limit }) } else { Ok(()) }
}

/// A request carries more entries of one kind than a limit allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("request has {count} {what}, more than the limit of {limit} per request")]
pub struct ItemLimitError {
    /// What was counted, e.g. `items` or `ids`.
    pub what: &'static str,
    /// How many the request has.
    pub count: usize,
    /// The configured limit.
    pub limit: usize,
}
