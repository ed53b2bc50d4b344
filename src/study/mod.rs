//! Tooling of the study the daemon grew out of: models are generated and inspected here rather
//! than exported from PyTorch, so every benchmark input can be rebuilt from a one-line spec.

pub mod onnx_pb;
pub mod quantize;
pub mod zoo;
