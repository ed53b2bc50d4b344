//! The Vitis AI backend without a DPU: everything goes through libloading into the fake DPU
//! library (`cpp/fake_dpu/`), which implements the same C ABI as the real VART shim.

mod bindings; // the committed bindings are bindgen's output for ffi/vart_shim.h
mod daemon; // the real daemon on the fake: a slow DPU job is missed, not cancelled; exit codes
mod engine; // int8 in and out, NHWC, failures, no allocation per run (in-process)
pub(crate) mod fake; // compiles the fake library at test time, writes fake model descriptions
