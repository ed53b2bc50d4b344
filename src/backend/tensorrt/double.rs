//! Fault injection into the TensorRT/CUDA test double (`cpp/trt_double/`), for tests: faults and
//! call counters are per thread, so parallel tests do not see each other's.
#![allow(unsafe_code)]

#[cxx::bridge(namespace = "trt_double")]
mod ffi {
    unsafe extern "C++" {
        include!("rtinfer/cpp/trt_double/control_bridge.h");
        fn bridge_inject(api: &str, fault: i32, nth: u32) -> bool;
        fn bridge_can_throw(api: &str) -> bool;
        fn bridge_set_dla_cores(n: i32);
        fn bridge_misuse(kind: &str);
        fn bridge_reset();
        fn bridge_calls(api: &str) -> u64;
    }
}

/// How an injected call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The API's own failure report: null, false, or a CUDA error code.
    Fail = 0,
    /// A `std::runtime_error` (only from calls the imitated version does not declare `noexcept`:
    /// `IParser::parse` before 10.x, see [`can_throw`]).
    Throw = 1,
    /// A C++ exception that is not a `std::exception` (`throw 42`), under the same rule.
    ThrowForeign = 2,
}

/// Makes the `nth` (0 = next) call of `api` on this thread fail. Instrumented: `parse`,
/// `buildSerializedNetwork`, `deserializeCudaEngine`, `createExecutionContext`,
/// `setTensorAddress`, `enqueueV3`, `createInferRuntime`, `createInferBuilder`, `cudaMalloc`,
/// `cudaHostAlloc`, `cudaMemcpy`, `cudaMemcpyAsync`, `cudaStreamCreate`,
/// `cudaStreamSynchronize`, `cudaGetDevice`.
///
/// # Panics
/// When asked to throw from a call the imitated TensorRT declares `noexcept` (real TensorRT
/// cannot throw from it, so a test that relies on it would test nothing real).
pub fn inject(api: &str, fault: Fault, nth: u32) {
    assert!(
        ffi::bridge_inject(api, fault as i32, nth),
        "{api} is noexcept in the TensorRT version the double imitates: it cannot {fault:?}"
    );
}

/// Whether `api` can throw in the imitated TensorRT version.
pub fn can_throw(api: &str) -> bool {
    ffi::bridge_can_throw(api)
}

/// The number of DLA cores the double's device reports (default 0). Process-wide.
pub fn set_dla_cores(n: i32) {
    ffi::bridge_set_dla_cores(n);
}

/// Creates TensorRT objects and destroys them in an order the real API forbids; the double
/// aborts the process. `kind`: `builder_before_network`, `builder_before_config`,
/// `runtime_before_engine`, `engine_before_context`, `logger_before_runtime`. Run it in a child.
pub fn misuse(kind: &str) {
    ffi::bridge_misuse(kind);
}

/// Clears this thread's faults and counters.
pub fn reset() {
    ffi::bridge_reset();
}

/// Calls of `api` on this thread since the last reset (`getBatch` counts calibrator batches,
/// `setDLACore` the calls that took effect).
pub fn calls(api: &str) -> u64 {
    ffi::bridge_calls(api)
}
