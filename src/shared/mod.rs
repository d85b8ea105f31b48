//! What every layer may use: the modality tag, the generated `bindery.v1` protobuf types, their
//! codec and the wire constants both sides of a call agree on, and small error helpers.
//!
//! This is the leaf of the crate: nothing here imports any other bindery module, so the store,
//! the engine, the API edge and the client side can all share these without depending on each
//! other.

pub mod codec;
mod modality;
pub(crate) mod panic;
#[cfg(test)]
mod proto_compat;

pub use modality::{Modality, UnknownModality};

/// Largest gRPC message a server accepts and a client sends by default (a batch of large images
/// or audio files).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Response metadata key: how many of the request's inputs were answered from the server's
/// embedding cache (`bindery load` reports it, since cached answers do not measure embedding).
pub const CACHE_HITS_KEY: &str = "bindery-cache-hits";

/// Response metadata keys carrying the server-side stage timings of an embed call, in
/// microseconds: queue, preprocess, inference, total.
pub const TIMING_KEYS: [&str; 4] =
    ["bindery-queue-us", "bindery-preprocess-us", "bindery-inference-us", "bindery-total-us"];

/// `error` and its sources joined, since transport errors say little on their own. A source
/// whose message the text already ends with (an error that prints its source itself) is not
/// repeated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let message = e.to_string();
        if !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = e.source();
    }
    text
}

/// Generated `bindery.v1` types, client and server.
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("bindery.v1");
    // Canonical protobuf JSON (lowerCamelCase names, enums by name, 64-bit integers and bytes as
    // strings), for the HTTP API.
    include!(concat!(env!("OUT_DIR"), "/bindery.v1.serde.rs"));

    /// Encoded file descriptor set served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("bindery_descriptor");
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot load: {source}")]
    struct Prints {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot load")]
    struct Wraps {
        #[source]
        cause: std::io::Error,
    }

    #[test]
    fn sources_are_joined_once() {
        let io = || std::io::Error::other("disk full");
        assert_eq!(error_chain(&Wraps { cause: io() }), "cannot load: disk full");
        // An error that prints its source itself does not get it twice.
        assert_eq!(error_chain(&Prints { source: io() }), "cannot load: disk full");
    }
}
