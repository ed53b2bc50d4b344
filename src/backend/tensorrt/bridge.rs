//! The cxx bridge to `cpp/trt_engine.{h,cc}`: declarations only. Everything that can fail on the
//! C++ side is declared `-> Result<T>` (cxx turns the C++ exception into `Err`; without it a
//! throw would call `std::terminate`).
#![allow(unsafe_code)]

#[cxx::bridge(namespace = "rtinfer::trt")]
pub mod ffi {
    // ---- Shared structs ----

    /// TensorRT and GPU identity: part of every engine-cache key.
    #[derive(Debug, Clone)]
    struct RuntimeInfo {
        /// `MAJOR.MINOR.PATCH.BUILD` of the headers the layer was compiled against.
        version: String,
        /// `NV_TENSORRT_VERSION` of the headers and `getInferLibVersion()` of the loaded library.
        header_version: i32,
        library_version: i32,
        device: String,
        /// `MAJOR.MINOR`, e.g. `7.2` on Xavier, `8.7` on Orin.
        compute_capability: String,
        integrated: bool,
    }

    /// How a plan is loaded.
    #[derive(Debug, Clone)]
    struct EngineOptions {
        /// Mapped host memory instead of device buffers and copies (integrated GPUs).
        zero_copy: bool,
        /// DLA core for plans built for one, or -1.
        dla_core: i32,
    }

    /// How an engine is built from ONNX.
    #[derive(Debug, Clone)]
    struct BuildOptions {
        /// 0 fp32, 1 fp16, 2 int8 (float fallback: the study's mixed engines).
        precision: u8,
        /// Also allow fp16 kernels in an int8 build.
        fp16_fallback: bool,
        /// `kWORKSPACE` memory-pool limit; 0 = TensorRT's default.
        workspace_bytes: u64,
        dla_core: i32,
        gpu_fallback: bool,
        /// Shape of dynamic inputs (min = opt = max); empty = batch 1, others fixed.
        profile_shape: Vec<i64>,
        /// Calibration cache file (read when `read_cache`, written after calibrating); may be empty.
        calibration_cache: String,
        read_cache: bool,
    }

    /// One I/O tensor as the execution context sees it (dynamic batch fixed to 1).
    #[derive(Debug, Clone)]
    struct TensorDesc {
        name: String,
        input: bool,
        shape: Vec<i64>,
        /// As the engine declares it (-1 for dynamic dimensions).
        declared_shape: Vec<i64>,
        element: String,
    }

    /// The study's memory figure: serialized + persistent + activation.
    #[derive(Debug, Clone, Default)]
    struct MemoryFigures {
        serialized_bytes: u64,
        persistent_bytes: u64,
        activation_bytes: u64,
        /// How `persistent_bytes` was measured (TensorRT 8.5/10.0 have no getter for it).
        persistent_source: String,
    }

    // ---- Rust functions C++ calls ----
    extern "Rust" {
        /// Calibration images, preprocessed one at a time (see `calib.rs`).
        type CalibSource;
        fn next_batch(self: &mut CalibSource, dst: &mut [f32]) -> bool;
        /// TensorRT's `ILogger` messages, into `log`.
        fn trt_log(severity: i32, msg: &[u8]);
    }

    // ---- C++ types and functions ----
    unsafe extern "C++" {
        include!("rtinfer/cpp/trt_engine.h");

        type TrtEngine;

        fn runtime_info() -> Result<RuntimeInfo>;
        fn new_engine(plan: &[u8], opts: &EngineOptions) -> Result<UniquePtr<TrtEngine>>;
        fn build_engine(
            onnx: &[u8],
            opts: &BuildOptions,
            calib: &mut CalibSource,
        ) -> Result<Vec<u8>>;

        fn tensors(self: &TrtEngine) -> Vec<TensorDesc>;
        fn memory(self: &TrtEngine) -> MemoryFigures;
        fn input(self: Pin<&mut TrtEngine>) -> &mut [f32];
        fn output(self: &TrtEngine) -> &[f32];
        fn run(self: Pin<&mut TrtEngine>) -> Result<()>;
        fn last_gpu_ms(self: &TrtEngine) -> f32;
    }
}

// SAFETY: a `TrtEngine` owns its runtime, engine, context, stream and buffers and is used by one
// thread at a time (`Engine: Send`, not `Sync`; every method takes `&mut` or is a read between
// runs). TensorRT allows an execution context and a CUDA stream to be driven from any thread as
// long as calls do not overlap, and the CUDA runtime's primary context is current on every thread.
unsafe impl Send for ffi::TrtEngine {}

use super::calib::CalibSource;

fn next_batch_impl(src: &mut CalibSource, dst: &mut [f32]) -> bool {
    src.next(dst)
}

impl CalibSource {
    fn next_batch(&mut self, dst: &mut [f32]) -> bool {
        next_batch_impl(self, dst)
    }
}

/// TensorRT severities: 0 internal error, 1 error, 2 warning, 3 info, 4 verbose.
fn trt_log(severity: i32, msg: &[u8]) {
    let level = match severity {
        0 | 1 => log::Level::Error,
        2 => log::Level::Warn,
        // TensorRT's kINFO is a flood during builds: debug here.
        3 => log::Level::Debug,
        _ => log::Level::Trace,
    };
    log::log!(target: "rtinfer::backend::tensorrt", level, "{}", String::from_utf8_lossy(msg));
}
