//! Tooling of the study the daemon grew out of: models are generated and inspected here rather
//! than exported from PyTorch, so every benchmark input can be rebuilt from a one-line spec.

pub mod advise;
pub mod bench;
pub mod eval;
pub mod fit;
pub mod inspect;
pub mod ladder;
pub mod neuralscale;
/// The ONNX messages under their former name here (they live in [`crate::onnx::pb`]).
pub use crate::onnx::pb as onnx_pb;
pub mod plot;
pub mod quantize;
pub mod shapes;
pub mod sweep;
pub mod zoo;
