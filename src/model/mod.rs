//! Models: manifests, the ONNX Runtime library and ONNX towers.

pub mod family;
pub mod manifest;
pub mod runtime;
pub mod tower;
