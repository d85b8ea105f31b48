//! bindery: embeds text, images, audio and 3D point clouds into one shared space and serves them
//! over gRPC.

pub mod api;
pub mod cli;
pub mod client;
pub mod engine;
pub mod fuzzing;
#[cfg(test)]
mod layering;
pub mod metrics;
pub mod modality;
pub mod model;
pub mod server;
pub mod service;
pub mod shared;
pub mod store;
