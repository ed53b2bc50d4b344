//! The ONNX file format, shared by the runtime and the study's tooling (as tract keeps its
//! protobuf in its format crate): the runtime reads a model's parameter count and quantisation
//! from the file it serves, `zoo` writes models, `inspect` and `quantize` walk graphs. The
//! runtime never imports the tooling; both import this.

pub mod graph;
pub mod pb;
