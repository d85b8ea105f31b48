//! Models: manifests, the ONNX Runtime library and ONNX towers.

pub mod manifest;
pub mod runtime;
pub mod tower;
