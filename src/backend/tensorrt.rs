//! The TensorRT backend (the study's GPU platform: a Jetson AGX Xavier with TensorRT 8.5.2).
//!
//! TensorRT is C++, so a small C++ layer (`cpp/trt_engine.{h,cc}`) does the talking and a cxx
//! bridge ([`bridge`]) carries plain data across; this module turns that into a [`Backend`].
//! Engines are tied to the TensorRT version and the GPU, so an `.onnx` model is built into an
//! engine on the device ([`build_engine`]) and the result cached under a key of everything that
//! changes it ([`cache`]); `.engine`/`.plan` files are loaded as they are.
//!
//! Compiled only with the `tensorrt` feature (real SDK) or `tensorrt-double` (the CPU test double
//! in `cpp/trt_double/`); otherwise [`backend`] says it is not compiled in.

use std::path::PathBuf;

use super::{Backend, BackendError, BackendKind};

#[cfg(rtinfer_trt)]
mod bridge;
#[cfg(rtinfer_trt)]
pub mod cache;
#[cfg(rtinfer_trt)]
pub mod calib;
pub mod config;
#[cfg(all(rtinfer_trt, feature = "tensorrt-double"))]
pub mod double;
#[cfg(rtinfer_trt)]
mod engine;
#[cfg(rtinfer_trt)]
pub mod precision;

#[cfg(rtinfer_trt)]
pub use engine::{Chosen, TrtBackend, TrtEngine, build_engine, cached_plan, runtime_info};

/// Default engine cache (DESIGN.md's paths).
pub const DEFAULT_ENGINE_CACHE: &str = "/var/cache/rtinfer";

/// Precision an `.onnx` model is built at (`tensorrt.precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrtPrecision {
    #[default]
    Fp32,
    Fp16,
    /// int8 with float layers where int8 has no kernel (the study's mixed float32/int8
    /// engines): calibrated on TensorRT 8.x, explicitly quantized from a Q/DQ model on 10.x.
    Int8,
}

impl TrtPrecision {
    pub fn name(self) -> &'static str {
        match self {
            TrtPrecision::Fp32 => "fp32",
            TrtPrecision::Fp16 => "fp16",
            TrtPrecision::Int8 => "int8",
        }
    }
}

impl std::str::FromStr for TrtPrecision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fp32" => Ok(TrtPrecision::Fp32),
            "fp16" => Ok(TrtPrecision::Fp16),
            "int8" => Ok(TrtPrecision::Int8),
            o => Err(format!("unknown precision '{o}' (fp32, fp16, int8)")),
        }
    }
}

/// TensorRT settings (config section `[tensorrt]`).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRtOptions {
    pub precision: TrtPrecision,
    /// Let a calibrated int8 build (TensorRT 8.x) also pick fp16 kernels.
    pub fp16_fallback: bool,
    /// Folder of calibration images (PNG/JPEG, sorted by name) for int8 builds.
    pub calibration_images: Option<PathBuf>,
    /// Or: a source URI whose first frames calibrate, preprocessed like live frames (a camera,
    /// a recorded clip). Opened only when a calibration runs.
    pub calibration_source: Option<crate::source::SourceSpec>,
    /// How many images (or frames) to use (the study used 1,000 training images).
    pub calibration_max_images: usize,
    /// Calibration cache file, read (when it matches the images) and written by int8 builds.
    pub calibration_cache: Option<PathBuf>,
    /// Where built engines are cached.
    pub engine_cache: PathBuf,
    /// `kWORKSPACE` memory-pool limit in bytes (0 = TensorRT's default).
    pub workspace_bytes: u64,
    /// Build for and run on this DLA core (Xavier has two), falling back to the GPU per layer.
    pub dla_core: Option<u32>,
    /// Mapped host memory instead of device buffers plus copies (integrated GPUs).
    pub zero_copy: bool,
    /// Input shape for models with dynamic dimensions beyond the batch (NCHW).
    pub input_shape: Option<Vec<i64>>,
}

impl Default for TensorRtOptions {
    fn default() -> Self {
        TensorRtOptions {
            precision: TrtPrecision::Fp32,
            fp16_fallback: false,
            calibration_images: None,
            calibration_source: None,
            calibration_max_images: 1000,
            calibration_cache: None,
            engine_cache: PathBuf::from(DEFAULT_ENGINE_CACHE),
            workspace_bytes: 0,
            dla_core: None,
            zero_copy: false,
            input_shape: None,
        }
    }
}

/// The backend, when compiled in. `pre` is how frames are preprocessed (int8 calibration feeds
/// its images the same way).
pub fn backend(
    opts: &TensorRtOptions,
    pre: crate::preprocess::PreprocessOptions,
) -> Result<Box<dyn Backend>, BackendError> {
    #[cfg(rtinfer_trt)]
    {
        Ok(Box::new(TrtBackend::new(opts.clone(), pre)))
    }
    #[cfg(not(rtinfer_trt))]
    {
        let _ = (opts, pre);
        Err(BackendError::NotCompiled {
            backend: BackendKind::TensorRt,
        })
    }
}

/// An error about `path` from the TensorRT backend.
#[allow(dead_code)]
fn load_err(path: &std::path::Path, reason: impl std::fmt::Display) -> BackendError {
    BackendError::load(path, BackendKind::TensorRt, reason)
}
