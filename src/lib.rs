//! bindery: embeds text, images, audio and 3D point clouds into one shared space and serves them
//! over gRPC.

pub mod api;
pub mod cli;
pub mod engine;
pub mod fuzzing;
pub mod load;
pub mod metrics;
pub mod modality;
pub mod model;
mod panic;
pub mod server;
pub mod store;
