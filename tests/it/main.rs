//! bindery's integration tests, linked into one binary: one module per area, sharing `common`.
//! `cargo test --test it` runs them all, `cargo test --test it embed_audio::` one area.

mod common;

mod api_errors;
mod audio_pipeline;
mod bad_inputs;
mod batching;
mod bind_mini;
mod collections;
mod collections_crash;
mod connections;
mod embed_audio;
mod embed_point_cloud;
mod embed_text_image;
mod fuzz_regressions;
mod image_preprocess;
mod limits;
mod load_tool;
mod overload;
mod panic_guard;
mod point_cloud_pipeline;
mod shutdown;
mod similarity;
mod startup;
mod tls_auth;
