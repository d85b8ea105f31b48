//! Models: manifests, ONNX sessions and the registry of loaded models.

pub mod manifest;
