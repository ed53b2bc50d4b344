//! One abstraction over every inference runtime rtinfer drives.
//!
//! Modelled on tract's `Runtime → Runnable → State`: a [`Backend`] is the runtime (ONNX Runtime,
//! TensorRT, Vitis AI VART), [`Backend::load`] turns a model file into an [`Engine`] (for TensorRT
//! that is where an engine gets built; for the DPU where an `.xmodel` subgraph gets a runner), and
//! the engine owns everything one frame needs: its host input buffer (which preprocessing fills in
//! place, in the layout and element type the engine declares in [`ModelInfo::input`]), any device
//! buffers, and its output buffer. Nothing is allocated per frame; a loaded engine is moved to the
//! pipeline thread and used by that thread alone.
//!
//! [`open`] turns [`Settings`] into the backend a model needs ([`BackendChoice`] says how `auto`
//! chooses). A backend that is not compiled into a build still exists as a value: its `load` returns
//! [`BackendError::NotCompiled`], so `--backend tensorrt` on a CPU-only build says so instead of
//! failing to link.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use crate::postprocess::PostprocessOptions;
use crate::preprocess::PreprocessOptions;
use crate::tensor::{InputBufMut, InputSpec};

pub mod labels;
pub mod onnx;
pub mod onnx_cancel;
pub mod ort_library;
pub mod ort_log;
pub mod ort_telemetry;
pub mod search;
pub mod tensorrt;
pub mod vitis;

/// Which runtime a backend wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    OnnxRuntime,
    TensorRt,
    Vitis,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::OnnxRuntime => "onnxruntime",
            BackendKind::TensorRt => "tensorrt",
            BackendKind::Vitis => "vitis",
        }
    }

    /// The backend a model file's extension selects (DESIGN.md: `.onnx` → ONNX Runtime,
    /// `.engine`/`.plan` → TensorRT, `.xmodel` → Vitis AI).
    pub fn for_path(path: &Path) -> Option<BackendKind> {
        match path.extension()?.to_str()? {
            "onnx" => Some(BackendKind::OnnxRuntime),
            "engine" | "plan" => Some(BackendKind::TensorRt),
            "xmodel" => Some(BackendKind::Vitis),
            _ => None,
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `--backend` choice: one runtime strictly, or `auto`.
///
/// `auto` picks the one runtime a model file's extension names (DESIGN.md: `.onnx` → ONNX
/// Runtime, `.engine`/`.plan` → TensorRT, `.xmodel` → Vitis AI; any other extension → ONNX
/// Runtime), logs that choice, and tries nothing else: a TensorRT plan or a DPU `.xmodel` has no
/// other runtime to fall back to, and an `.onnx` file is not silently built into a TensorRT engine
/// (minutes on a board). A runtime that fails (not compiled in, library missing) fails the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    #[default]
    Auto,
    Only(BackendKind),
}

impl BackendChoice {
    /// The runtime this choice opens `model` with (logged for `auto`).
    pub fn kind_for(self, model: &Path) -> BackendKind {
        match self {
            BackendChoice::Only(k) => k,
            BackendChoice::Auto => {
                let k = BackendKind::for_path(model).unwrap_or(BackendKind::OnnxRuntime);
                log::info!(
                    "backend auto: {k} selected by the extension of {}",
                    model.display()
                );
                k
            }
        }
    }
}

/// How models are opened: the `--backend` choice and each runtime's own settings. Built by
/// `config.rs` from `run.backend`, `run.threads`, `[onnxruntime]`, `[tensorrt]`, `[vitis]` and
/// `[preprocess]`; nothing below `config.rs` sees the whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub choice: BackendChoice,
    /// Intra-op threads (0 = the runtime's default).
    pub threads: usize,
    pub ort: onnx::OrtOptions,
    pub tensorrt: tensorrt::TensorRtOptions,
    pub vitis: vitis::VitisOptions,
    /// How frames are preprocessed; TensorRT's int8 calibration feeds its images the same way.
    pub preprocess: PreprocessOptions,
    /// `model.input_shape`: the shape symbolic input dims are pinned to, for every runtime.
    pub input_shape: Option<Vec<i64>>,
    /// `[postprocess]`: which output is read and what it means.
    pub postprocess: PostprocessOptions,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            choice: BackendChoice::Auto,
            threads: 1,
            ort: onnx::OrtOptions::default(),
            tensorrt: tensorrt::TensorRtOptions::default(),
            vitis: vitis::VitisOptions::default(),
            preprocess: PreprocessOptions::default(),
            input_shape: None,
            postprocess: PostprocessOptions::default(),
        }
    }
}

impl Settings {
    /// The options every runtime's [`Backend::load`] takes.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            threads: self.threads,
            input_shape: self.input_shape.clone(),
            output: self.postprocess.output.clone(),
        }
    }
}

/// `[model]` as written: what a runtime needs to know about a model that its file leaves open.
#[derive(Debug, Default, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// `[1, 3, 48, 192]` or `"1x3x48x192"`.
    pub input_shape: Option<ShapeValue>,
}

/// A shape as a TOML array or as `NxCxHxW` text.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(untagged)]
pub enum ShapeValue {
    Dims(Vec<i64>),
    Text(String),
}

impl RawModel {
    /// Checks the section; an error names its key.
    pub fn check(self) -> Result<Option<Vec<i64>>, crate::invalid_key::InvalidKey> {
        let bad = |e: String| crate::invalid_key::InvalidKey::new("model.input_shape", e);
        match self.input_shape {
            None => Ok(None),
            Some(ShapeValue::Text(t)) => crate::tensor::parse_shape(&t).map(Some).map_err(bad),
            Some(ShapeValue::Dims(d)) => {
                crate::tensor::check_shape(&d).map_err(bad)?;
                Ok(Some(d))
            }
        }
    }
}

/// Opens the runtime `settings.choice` selects for `model` (see [`BackendChoice`]).
pub fn open(settings: &Settings, model: &Path) -> Result<Box<dyn Backend>, BackendError> {
    match settings.choice.kind_for(model) {
        BackendKind::OnnxRuntime => Ok(Box::new(onnx::OnnxBackend::new(settings.ort.clone())?)),
        BackendKind::TensorRt => {
            // `model.input_shape` is the shape of every runtime; `tensorrt.input_shape` wins.
            let mut trt = settings.tensorrt.clone();
            if trt.input_shape.is_none() {
                trt.input_shape.clone_from(&settings.input_shape);
            }
            tensorrt::backend(&trt, settings.preprocess)
        }
        BackendKind::Vitis => vitis::backend(&settings.vitis),
    }
}

/// [`open`]s the runtime and loads `model` into an engine.
pub fn load(settings: &Settings, model: &Path) -> Result<Box<dyn Engine>, BackendError> {
    open(settings, model)?.load(model, &settings.load_options())
}

/// [`load`] through [`Backend::load_cancellable`].
pub fn load_cancellable(
    settings: &Settings,
    model: &Path,
    cancellable: &dyn Fn(Arc<dyn Canceller>),
) -> Result<Box<dyn Engine>, BackendError> {
    open(settings, model)?.load_cancellable(model, &settings.load_options(), cancellable)
}

impl FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "onnxruntime" | "onnx" | "ort" => Ok(BackendChoice::Only(BackendKind::OnnxRuntime)),
            "tensorrt" | "trt" => Ok(BackendChoice::Only(BackendKind::TensorRt)),
            "vitis" | "vart" => Ok(BackendChoice::Only(BackendKind::Vitis)),
            other => Err(format!(
                "unknown backend '{other}' (expected auto, onnxruntime, tensorrt or vitis)"
            )),
        }
    }
}

/// Numeric precision the engine runs at (the contract's `model.precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    Fp16,
    Int8,
    /// float32 and int8 layers in one engine (TensorRT from a calibration cache, ORT QDQ models
    /// with float islands).
    Mixed,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
            Precision::Mixed => "mixed",
        }
    }
}

/// A tensor's element type as a runtime reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementType {
    Float32,
    Float16,
    Float64,
    Int8,
    Uint8,
    Int32,
    Int64,
    Bool,
    Bfloat16,
    /// 8-bit float (TensorRT's FP8).
    Fp8,
    Int4,
    /// An ONNX value that is not a tensor (a sequence or a map).
    NonTensor,
    /// Any type rtinfer has no use for.
    Other,
}

impl ElementType {
    /// The name used in messages (`float32`, `int8`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ElementType::Float32 => "float32",
            ElementType::Float16 => "float16",
            ElementType::Float64 => "float64",
            ElementType::Int8 => "int8",
            ElementType::Uint8 => "uint8",
            ElementType::Int32 => "int32",
            ElementType::Int64 => "int64",
            ElementType::Bool => "bool",
            ElementType::Bfloat16 => "bfloat16",
            ElementType::Fp8 => "fp8",
            ElementType::Int4 => "int4",
            ElementType::NonTensor => "non-tensor",
            ElementType::Other => "other",
        }
    }

    /// 8-bit integers: a quantised tensor.
    pub fn is_8_bit_integer(self) -> bool {
        matches!(self, ElementType::Int8 | ElementType::Uint8)
    }
}

impl fmt::Display for ElementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One input or output tensor as the runtime reports it. Dynamic dimensions are `-1`.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<i64>,
    pub element: ElementType,
}

/// What a loaded engine is, for the pipeline (input spec, classes) and for `/status` (`model`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    pub path: PathBuf,
    pub backend: BackendKind,
    pub precision: Precision,
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
    /// The image input preprocessing must fill.
    pub input: InputSpec,
    /// Number of values in [`Engine::output`] (scores of a classifier, elements of a map).
    pub classes: usize,
    /// Which of `outputs` [`Engine::output`] reads (`postprocess.output`, else the first).
    pub output: usize,
    /// That output's shape as run (dynamic dims resolved, batch 1).
    pub output_shape: Vec<i64>,
    /// The operator that produces it (looking through reshapes), when the graph is known:
    /// `Softmax` means its scores are already probabilities.
    pub output_op: Option<String>,
    /// Weight/bias elements, when the backend can count them.
    pub params: Option<u64>,
    /// Class names (a label file beside the model, or its metadata; see [`labels`]).
    pub labels: Option<Arc<labels::Labels>>,
    /// Whether an inference can be aborted from another thread (see [`Engine::canceller`]).
    pub can_cancel: bool,
}

/// Options every backend understands; backend-specific ones live in their own config sections.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// Intra-op threads (0 = the runtime's default).
    pub threads: usize,
    /// `model.input_shape` / `--input-shape`: symbolic input dims pinned to these.
    pub input_shape: Option<Vec<i64>>,
    /// `postprocess.output`: the output to read (`None`: the first).
    pub output: Option<String>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            threads: 1,
            input_shape: None,
            output: None,
        }
    }
}

/// Aborts the inference currently running on an engine, from another thread.
pub trait Canceller: Send + Sync {
    fn cancel(&self);
    /// Re-arms the engine after a cancelled run (ONNX Runtime's `unterminate`).
    fn reset(&self);
}

/// A loaded model, ready to run one frame at a time. Owned by one thread at a time.
pub trait Engine: Send {
    fn info(&self) -> &ModelInfo;
    /// The host input buffer preprocessing fills, laid out as `info().input` says.
    fn input(&mut self) -> InputBufMut<'_>;
    /// Runs one inference on the current input. Must not allocate in steady state.
    fn run(&mut self) -> Result<(), BackendError>;
    /// Values of the last run (the chosen output, dequantised to f32), `info().classes` long.
    fn output(&self) -> &[f32];
    /// A handle to abort a run from a watchdog thread, when the runtime supports it.
    fn canceller(&self) -> Option<Arc<dyn Canceller>> {
        None
    }
    /// The engine's memory as the study counted it, when the runtime can tell (TensorRT).
    fn memory(&self) -> Option<EngineMemory> {
        None
    }
    /// Accelerator time of the last run (CUDA events around the enqueue), beside host latency.
    fn device_time(&self) -> Option<std::time::Duration> {
        None
    }
}

/// Engine memory the way the study reported it: serialized engine + persistent + activation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EngineMemory {
    pub serialized_bytes: u64,
    pub persistent_bytes: u64,
    pub activation_bytes: u64,
    /// How `persistent_bytes` was measured.
    pub persistent_source: String,
}

impl EngineMemory {
    pub fn total_bytes(&self) -> u64 {
        self.serialized_bytes + self.persistent_bytes + self.activation_bytes
    }
}

/// A runtime that turns model files into engines.
pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;
    /// Opens, validates and prepares a model. May take long (engine builds); never called on the
    /// pipeline thread.
    fn load(&self, path: &Path, opts: &LoadOptions) -> Result<Box<dyn Engine>, BackendError>;

    /// [`Backend::load`], handing the engine's [`Canceller`] to `cancellable` as soon as it
    /// exists, before the runs a load may make itself (ONNX Runtime's proving run), so a load
    /// abandoned for its time can be cancelled. Backends without cancel just load.
    fn load_cancellable(
        &self,
        path: &Path,
        opts: &LoadOptions,
        cancellable: &dyn Fn(Arc<dyn Canceller>),
    ) -> Result<Box<dyn Engine>, BackendError> {
        let _ = cancellable;
        self.load(path, opts)
    }
}

/// Why a backend could not load or run a model. Every variant names the model or library.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "the {backend} backend is not compiled into this build (on the board: cargo build --release --features {backend}; README \"TensorRT\")"
    )]
    NotCompiled { backend: BackendKind },
    // Transparent: the tried-list is printed once, not again as the error's source.
    #[error(transparent)]
    Library(#[from] ort_library::LibraryError),
    #[error(transparent)]
    VitisLibrary(#[from] vitis::LibraryError),
    #[error("model {path}: file not found")]
    ModelMissing { path: PathBuf },
    #[error("model {path}: {backend} cannot load it: {reason}")]
    Load {
        path: PathBuf,
        backend: BackendKind,
        reason: String,
    },
    #[error("model {path}: unsupported: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("model {name}: inference failed: {reason}")]
    Run { name: String, reason: String },
    #[error("model {name}: inference cancelled")]
    Cancelled { name: String },
}

impl BackendError {
    /// `backend` could not load the model at `path`, for `reason`.
    pub fn load(path: &Path, backend: BackendKind, reason: impl fmt::Display) -> BackendError {
        BackendError::Load {
            path: path.to_path_buf(),
            backend,
            reason: reason.to_string(),
        }
    }
}

/// The index of the output to read: `want` (`postprocess.output`) among `outputs`, else the first,
/// saying in the log which one is read when there are several and none was named. An unknown
/// name is refused with every output and its shape, the same on every backend.
pub fn choose_output(
    path: &Path,
    outputs: &[TensorInfo],
    want: Option<&str>,
) -> Result<usize, BackendError> {
    let listed = || {
        outputs
            .iter()
            .map(|t| format!("{} {:?}", t.name, t.shape))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match want {
        Some(n) => {
            outputs
                .iter()
                .position(|o| o.name == n)
                .ok_or_else(|| BackendError::Unsupported {
                    path: path.to_path_buf(),
                    reason: format!(
                        "postprocess.output '{n}' is not one of its outputs: {}",
                        listed()
                    ),
                })
        }
        None => {
            let first = outputs.first().ok_or_else(|| BackendError::Unsupported {
                path: path.to_path_buf(),
                reason: "the model has no output".into(),
            })?;
            if outputs.len() > 1 {
                log::info!(
                    "model {}: {} outputs ({}); reading the first, '{}' (postprocess.output picks another)",
                    onnx::model_name(path),
                    outputs.len(),
                    listed(),
                    first.name
                );
            }
            Ok(0)
        }
    }
}

/// Turns an engine's first-input shape (NCHW or NHWC, batch 1) into an [`InputSpec`], or explains
/// why it is not an image input.
pub fn image_input_spec(
    path: &Path,
    shape: &[i64],
    layout: crate::tensor::Layout,
    element: crate::tensor::InputElement,
) -> Result<InputSpec, BackendError> {
    use crate::tensor::Layout;
    let bad = |why: &str| BackendError::Unsupported {
        path: path.to_path_buf(),
        reason: format!("input shape {shape:?} is not an image input: {why}"),
    };
    if shape.len() != 4 {
        return Err(bad(
            "expected 4 dimensions (batch, channels, height, width)",
        ));
    }
    if shape[0] != 1 && shape[0] != -1 {
        return Err(bad("batch must be 1 (or dynamic)"));
    }
    let (c, h, w) = match layout {
        Layout::Nchw => (shape[1], shape[2], shape[3]),
        Layout::Nhwc => (shape[3], shape[1], shape[2]),
    };
    if c != 3 && c != 1 {
        return Err(bad("channels must be 3 (RGB) or 1 (grey)"));
    }
    if h <= 0 || w <= 0 {
        return Err(bad("height and width must be fixed"));
    }
    Ok(InputSpec {
        width: w as u32,
        height: h as u32,
        channels: c as u32,
        layout,
        element,
    })
}

/// An error with its whole `source()` chain: libloading's (and ort's load error's) `Display`
/// hides the loader's reason one level down (DEPENDENCIES.md), and a library failure is only
/// useful with that reason.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    crate::causes::each_once(e)
}
