//! The cxx bridge to `cpp/trt_engine.{h,cc}`: declarations only. Everything that can fail on the
//! C++ side is declared `-> Result<T>` (cxx turns the C++ exception into `Err`; without it a
//! throw would call `std::terminate`).
#![allow(unsafe_code)]

#[cxx::bridge(namespace = "rtinfer::trt")]
pub mod ffi {
    // ---- Shared enums ----

    /// The precision an engine is built at (`tensorrt.precision`).
    #[derive(Debug)]
    #[repr(u8)]
    enum Precision {
        Fp32,
        Fp16,
        /// int8 with float layers where int8 has no kernel: the study's mixed engines.
        Int8,
    }

    /// How the layer builds a [`Precision`] with the TensorRT it was compiled against
    /// ([`build_path`]): each version's supported way, nothing it deprecates.
    #[derive(Debug)]
    #[repr(u8)]
    enum BuildPath {
        /// A weakly typed network without precision flags.
        Fp32,
        /// `BuilderFlag::kFP16` (TensorRT 8.x and 10.0-10.11).
        Fp16Flag,
        /// A strongly typed network from a float16 model: TensorRT 10.12+, where `kFP16` is
        /// deprecated ("superseded by strong typing").
        Fp16StronglyTyped,
        /// Implicit quantization: `kINT8` and the entropy calibrator (TensorRT 8.x).
        Int8Calibrated,
        /// Explicit quantization: a strongly typed network from a Q/DQ model, no calibrator and
        /// no `kINT8` (TensorRT 10.x, which deprecates both).
        Int8Explicit,
    }

    /// `ILogger::Severity`.
    #[derive(Debug)]
    #[repr(u8)]
    enum Severity {
        InternalError,
        Error,
        Warning,
        Info,
        Verbose,
    }

    /// An I/O tensor's element type (`nvinfer1::DataType`; the 10.x types included).
    #[derive(Debug)]
    #[repr(u8)]
    enum DataType {
        Float32,
        Float16,
        Int8,
        Int32,
        Bool,
        Uint8,
        Int64,
        Bfloat16,
        Fp8,
        Int4,
        /// A type newer than this layer.
        Other,
    }

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
        /// The output to copy back and read (`postprocess.output`); empty: the first.
        output: String,
    }

    /// How an engine is built from ONNX.
    #[derive(Debug, Clone)]
    struct BuildOptions {
        precision: Precision,
        /// Also allow fp16 kernels in a calibrated int8 build (no effect on other paths).
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
        element: DataType,
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
        /// TensorRT's `ILogger` messages (from any thread), into `log`.
        fn trt_log(severity: Severity, msg: &[u8]);
    }

    // ---- C++ types and functions ----
    unsafe extern "C++" {
        include!("rtinfer/cpp/trt_engine.h");

        type TrtEngine;

        fn runtime_info() -> Result<RuntimeInfo>;
        /// The build path for `precision`, fixed by the headers the layer was compiled against.
        fn build_path(precision: Precision) -> BuildPath;
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

impl From<super::TrtPrecision> for ffi::Precision {
    fn from(p: super::TrtPrecision) -> Self {
        match p {
            super::TrtPrecision::Fp32 => ffi::Precision::Fp32,
            super::TrtPrecision::Fp16 => ffi::Precision::Fp16,
            super::TrtPrecision::Int8 => ffi::Precision::Int8,
        }
    }
}

impl ffi::DataType {
    /// The element type's name as rtinfer reports it (`float32`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ffi::DataType::Float32 => "float32",
            ffi::DataType::Float16 => "float16",
            ffi::DataType::Int8 => "int8",
            ffi::DataType::Int32 => "int32",
            ffi::DataType::Bool => "bool",
            ffi::DataType::Uint8 => "uint8",
            ffi::DataType::Int64 => "int64",
            ffi::DataType::Bfloat16 => "bfloat16",
            ffi::DataType::Fp8 => "fp8",
            ffi::DataType::Int4 => "int4",
            _ => "other",
        }
    }
}

fn trt_log(severity: ffi::Severity, msg: &[u8]) {
    let level = match severity {
        ffi::Severity::InternalError | ffi::Severity::Error => log::Level::Error,
        ffi::Severity::Warning => log::Level::Warn,
        // TensorRT's kINFO is a flood during builds: debug here.
        ffi::Severity::Info => log::Level::Debug,
        _ => log::Level::Trace,
    };
    log::log!(target: "rtinfer::backend::tensorrt", level, "{}", String::from_utf8_lossy(msg));
}
