"""Python tooling for bindery: reference ImageBind model, ONNX export helpers and golden files."""
