//! The gRPC edge: generated protobuf types, the service implementations and the mapping of
//! internal errors to gRPC statuses.

mod collections;
mod convert;
mod embedder;
mod fetch;
pub mod media_url;
mod similarity;
mod status;

pub use crate::service::SimilarityError;
pub use collections::CollectionsService;
pub use embedder::{CACHE_HITS_KEY, EmbedderService, TIMING_KEYS};
pub use status::{RETRY_AFTER_KEY, to_status};

use std::sync::Arc;

use tonic::Status;

/// What each further message of a streaming call must pay: put in the request extensions by the
/// server's rate limiter (absent without a limit). The API edge charges it; the limiter decides,
/// and a refusal is the status the message is answered with.
#[derive(Clone)]
pub struct StreamBudget(Arc<dyn Fn() -> Result<(), Status> + Send + Sync>);

impl StreamBudget {
    /// A budget charged by calling `charge`.
    pub fn new(charge: impl Fn() -> Result<(), Status> + Send + Sync + 'static) -> Self {
        Self(Arc::new(charge))
    }

    /// Pays for one more message, or says why it may not be sent.
    pub fn charge(&self) -> Result<(), Status> {
        (self.0)()
    }
}

impl std::fmt::Debug for StreamBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamBudget")
    }
}

/// Generated `bindery.v1` types, client and server (they live in the leaf module `shared`).
pub use crate::shared::pb;
