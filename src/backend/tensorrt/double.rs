//! Fault injection into the TensorRT/CUDA test double (`cpp/trt_double/`), for tests: faults and
//! call counters are per thread, so parallel tests do not see each other's.
#![allow(unsafe_code)]

#[cxx::bridge(namespace = "trt_double")]
mod ffi {
    unsafe extern "C++" {
        include!("rtinfer/cpp/trt_double/control_bridge.h");
        fn bridge_inject(api: &str, fault: i32, nth: u32);
        fn bridge_reset();
        fn bridge_calls(api: &str) -> u64;
    }
}

/// How an injected call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The API's own failure report: null, false, or a CUDA error code.
    Fail = 0,
    /// A `std::runtime_error` (only from calls not declared `noexcept`: `IParser::parse`).
    Throw = 1,
    /// A C++ exception that is not a `std::exception` (`throw 42`).
    ThrowForeign = 2,
}

/// Makes the `nth` (0 = next) call of `api` on this thread fail. Instrumented: `parse`,
/// `buildSerializedNetwork`, `deserializeCudaEngine`, `createExecutionContext`,
/// `setTensorAddress`, `enqueueV3`, `createInferRuntime`, `createInferBuilder`, `cudaMalloc`,
/// `cudaHostAlloc`, `cudaMemcpy`, `cudaMemcpyAsync`, `cudaStreamCreate`,
/// `cudaStreamSynchronize`, `cudaGetDevice`.
pub fn inject(api: &str, fault: Fault, nth: u32) {
    ffi::bridge_inject(api, fault as i32, nth);
}

/// Clears this thread's faults and counters.
pub fn reset() {
    ffi::bridge_reset();
}

/// Calls of `api` on this thread since the last reset (`getBatch` counts calibrator batches).
pub fn calls(api: &str) -> u64 {
    ffi::bridge_calls(api)
}
