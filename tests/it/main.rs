//! bindery's integration tests, linked into one binary: one module per area, sharing `common`.
//! `cargo test --test it` runs them all, `cargo test --test it embed_audio::` one area.
//!
//! The tests are threads of one process. What only a whole process shows (signals, an open-file
//! limit, its log) runs in a child `bindery serve` (`common::process`); a test that samples this
//! process's memory runs alone in a process of its own (`common::in_own_process`); tests that
//! time things, and the heaviest loads, hold `common::exclusive` so that no two of them overlap.

mod common;

mod api_errors;
mod audio_lossy;
mod audio_pipeline;
mod bad_inputs;
mod balancer;
mod batching;
mod bind_mini;
mod clap;
mod cli;
mod collections;
mod collections_crash;
mod compact;
mod connections;
mod embed_audio;
mod embed_depth;
mod embed_imu;
mod embed_point_cloud;
mod embed_text_image;
mod embed_thermal;
mod families;
mod fuzz_regressions;
mod http_api;
mod image_formats;
mod image_preprocess;
mod int8_towers;
mod languagebind_audio;
mod languagebind_video;
mod languagebind_vision;
mod limits;
mod load_tool;
mod media_url;
mod mixed_families;
mod overload;
mod panic_guard;
mod point_cloud_pipeline;
mod segments;
mod shutdown;
mod similarity;
mod startup;
mod text_trim;
mod tls_auth;
mod video;
