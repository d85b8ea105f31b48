//! The gRPC edge: generated protobuf types, the service implementations and the mapping of
//! internal errors to gRPC statuses.

pub mod codec;
mod collections;
mod convert;
mod embedder;
mod similarity;
mod status;

pub use collections::CollectionsService;
/// Protobuf inputs to engine items (used by the in-process baseline of `bindery load`).
pub(crate) use convert::items as convert_items;
pub use embedder::{EmbedderService, TIMING_KEYS};
pub use similarity::SimilarityError;
pub use status::{RETRY_AFTER_KEY, to_status};

/// Generated `bindery.v1` types, client and server.
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("bindery.v1");

    /// Encoded file descriptor set served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("bindery_descriptor");
}
