//! The Vitis AI backend without a DPU: everything goes through libloading into the fake DPU
//! library (`cpp/fake_dpu/`), which implements the same C ABI as the real VART shim.

mod bindings; // the committed bindings are bindgen's output for ffi/vart_shim.h
