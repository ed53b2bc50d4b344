//! The ONNX file format, shared by the runtime and the study's tooling.

pub mod pb;
