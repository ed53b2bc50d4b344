//! The ONNX Runtime backend (the study's CPU platform: a Cortex-A72 running ORT fp32 and int8).
//!
//! Per frame the engine does exactly one `Run`: the input tensor and the output tensor are made
//! once per loaded model and reused, the output is preallocated through ort's `OutputSelector` so
//! ONNX Runtime writes into it rather than handing back a fresh value, and the scores are copied
//! into a fixed buffer. Spinning of the intra-op pool is off by default: on a board paced at
//! 60 FPS a spinning pool burns a core between frames for nothing.

use std::path::{Path, PathBuf};

use ort::memory::Allocator;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::{Tensor, TensorElementType, ValueType};

use super::{
    Backend, BackendError, BackendKind, ElementType, Engine, LoadOptions, ModelInfo, Precision,
    TensorInfo, image_input_spec, ort_library,
};
use crate::invalid_key::InvalidKey;
use crate::tensor::{InputBufMut, InputElement, Layout};

/// Graph optimisation level (`onnxruntime.optimization`): `disable`, `basic`, `extended`, `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptLevel {
    Disable,
    Basic,
    Extended,
    #[default]
    All,
}

impl std::str::FromStr for OptLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "disable" => Ok(OptLevel::Disable),
            "basic" => Ok(OptLevel::Basic),
            "extended" => Ok(OptLevel::Extended),
            "all" => Ok(OptLevel::All),
            o => Err(format!(
                "unknown optimization level '{o}' (disable, basic, extended, all)"
            )),
        }
    }
}

/// ONNX Runtime settings (config section `[onnxruntime]`).
#[derive(Debug, Clone, PartialEq)]
pub struct OrtOptions {
    /// Explicit path of `libonnxruntime.so` (searched first).
    pub library: Option<PathBuf>,
    pub optimization: OptLevel,
    /// Intra-op pool spinning; off by default.
    pub spinning: bool,
    /// `realtime.cpus`: CPUs the intra-op pool threads are pinned to (empty: not pinned).
    pub cpus: Vec<usize>,
}

impl Default for OrtOptions {
    fn default() -> Self {
        OrtOptions {
            library: None,
            optimization: OptLevel::All,
            spinning: false,
            cpus: Vec::new(),
        }
    }
}

/// `[onnxruntime]` as written.
#[derive(Debug, Default, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawOrt {
    pub library: Option<PathBuf>,
    pub optimization: Option<String>,
    pub spinning: Option<bool>,
}

impl RawOrt {
    /// Checks the section; an error names its key. `cpus` (from `[realtime]`) is left empty.
    pub fn check(self) -> Result<OrtOptions, InvalidKey> {
        let optimization = match self.optimization.as_deref() {
            None => OptLevel::All,
            Some(s) => s
                .parse()
                .map_err(|e| InvalidKey::new("onnxruntime.optimization", e))?,
        };
        Ok(OrtOptions {
            library: self.library,
            optimization,
            spinning: self.spinning.unwrap_or(false),
            cpus: Vec::new(),
        })
    }
}

/// The ONNX Runtime backend; holds the loaded library's environment.
pub struct OnnxBackend {
    opts: OrtOptions,
    loaded: ort_library::Loaded,
}

impl OnnxBackend {
    /// Finds and loads `libonnxruntime.so` (see [`ort_library`]); fails with every place tried.
    pub fn new(opts: OrtOptions) -> Result<OnnxBackend, BackendError> {
        let loaded = ort_library::load(opts.library.as_deref())?;
        Ok(OnnxBackend { opts, loaded })
    }

    /// Which library file this backend runs on.
    pub fn library(&self) -> &ort_library::Loaded {
        &self.loaded
    }
}

impl Backend for OnnxBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::OnnxRuntime
    }

    fn load(&self, path: &Path, opts: &LoadOptions) -> Result<Box<dyn Engine>, BackendError> {
        Ok(Box::new(OnnxEngine::load(path, &self.opts, opts, &|_| {})?))
    }

    fn load_cancellable(
        &self,
        path: &Path,
        opts: &LoadOptions,
        cancellable: &dyn Fn(std::sync::Arc<dyn super::Canceller>),
    ) -> Result<Box<dyn Engine>, BackendError> {
        Ok(Box::new(OnnxEngine::load(
            path,
            &self.opts,
            opts,
            cancellable,
        )?))
    }
}

/// A loaded ONNX model with its reused input/output tensors.
pub struct OnnxEngine {
    info: ModelInfo,
    session: Session,
    input: Tensor<f32>,
    /// Owned, not shared: ort makes `RunOptions` with preallocated outputs `!Sync`; a watchdog
    /// reaches its terminate flag through `cancel` instead (see [`super::onnx_cancel`]).
    run_options: RunOptions<HasSelectedOutputs>,
    cancel: std::sync::Arc<super::onnx_cancel::OrtCanceller>,
    scores: Vec<f32>,
}

impl Drop for OnnxEngine {
    fn drop(&mut self) {
        // Before `run_options` is released: a watchdog holding the handle must not reach it.
        self.cancel.revoke();
    }
}

impl OnnxEngine {
    fn load(
        path: &Path,
        ort_opts: &OrtOptions,
        opts: &LoadOptions,
        cancellable: &dyn Fn(std::sync::Arc<dyn super::Canceller>),
    ) -> Result<OnnxEngine, BackendError> {
        if !path.is_file() {
            return Err(BackendError::ModelMissing {
                path: path.to_path_buf(),
            });
        }
        let env = ort_library::environment().ok_or_else(|| {
            BackendError::load(path, BackendKind::OnnxRuntime, "ONNX Runtime is not loaded")
        })?;
        let level = match ort_opts.optimization {
            OptLevel::Disable => GraphOptimizationLevel::Disable,
            OptLevel::Basic => GraphOptimizationLevel::Level1,
            OptLevel::Extended => GraphOptimizationLevel::Level2,
            OptLevel::All => GraphOptimizationLevel::All,
        };
        let mut builder = Session::builder(env)
            .and_then(|b| b.with_optimization_level(level).map_err(Into::into))
            .and_then(|b| b.with_intra_threads(opts.threads).map_err(Into::into))
            .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
            .and_then(|b| {
                b.with_intra_op_spinning(ort_opts.spinning)
                    .map_err(Into::into)
            })
            .and_then(|b| {
                b.with_inter_op_spinning(ort_opts.spinning)
                    .map_err(Into::into)
            })
            .and_then(
                |b| match crate::rt::ort_affinity(&ort_opts.cpus, opts.threads) {
                    Some(a) => b
                        .with_config_entry("session.intra_op_thread_affinities", a)
                        .map_err(Into::into),
                    None => Ok(b),
                },
            )
            .map_err(|e: ort::Error| BackendError::load(path, BackendKind::OnnxRuntime, e))?;
        let bytes = std::fs::read(path)
            .map_err(|e| BackendError::load(path, BackendKind::OnnxRuntime, e))?;
        let proto = crate::onnx::pb::decode(&bytes).ok();
        let pinned = pin(path, &bytes, proto.as_ref(), opts.input_shape.as_deref())?;
        drop(bytes);
        // From memory ONNX Runtime has no folder to resolve external weights against: give it
        // the model's own, which loading from the file would use (and check paths against).
        if pinned.is_some()
            && let Some(dir) = path.parent().and_then(|d| std::fs::canonicalize(d).ok())
        {
            builder = builder
                .with_config_entry(
                    "session.model_external_initializers_file_folder_path",
                    dir.to_string_lossy(),
                )
                .map_err(|e| BackendError::load(path, BackendKind::OnnxRuntime, e))?;
        }
        let mut session = match &pinned {
            Some(b) => builder.commit_from_memory(b),
            // From the file: external weights next to it are found.
            None => builder.commit_from_file(path),
        }
        .map_err(|e| BackendError::load(path, BackendKind::OnnxRuntime, e))?;
        drop(pinned);

        let inputs: Vec<TensorInfo> = session
            .inputs()
            .iter()
            .map(|o| tensor_info(o.name(), o.dtype()))
            .collect();
        let outputs: Vec<TensorInfo> = session
            .outputs()
            .iter()
            .map(|o| tensor_info(o.name(), o.dtype()))
            .collect();
        let unsupported = |reason: String| BackendError::Unsupported {
            path: path.to_path_buf(),
            reason,
        };
        if inputs.len() != 1 {
            return Err(unsupported(format!(
                "expected one image input, found {} ({})",
                inputs.len(),
                names(&inputs)
            )));
        }
        let first_in = &inputs[0];
        if first_in.element != ElementType::Float32 {
            return Err(unsupported(format!(
                "input '{}' is {} {:?}, expected a float32 image tensor",
                first_in.name, first_in.element, first_in.shape
            )));
        }
        let spec = image_input_spec(path, &first_in.shape, Layout::Nchw, InputElement::F32)?;
        let chosen = super::choose_output(path, &outputs, opts.output.as_deref())?;
        let first_out = &outputs[chosen];
        if first_out.element != ElementType::Float32 {
            return Err(unsupported(format!(
                "output '{}' is {}, expected float32",
                first_out.name, first_out.element
            )));
        }

        let allocator = Allocator::default();
        let in_shape = [
            1i64,
            spec.channels as i64,
            spec.height as i64,
            spec.width as i64,
        ];
        let input = Tensor::<f32>::new(&allocator, in_shape)
            .map_err(|e| BackendError::load(path, BackendKind::OnnxRuntime, e))?;
        let out_shape = match concrete_output_shape(&first_out.shape) {
            Some(s) => s,
            // Dims that depend on the input (a map of H x W): one run at this input tells.
            None => {
                let outs = session
                    .run(ort::inputs![&input])
                    .map_err(|e| BackendError::load(path, BackendKind::OnnxRuntime, e))?;
                let (shape, _) = outs[first_out.name.as_str()]
                    .try_extract_tensor::<f32>()
                    .map_err(|e| BackendError::load(path, BackendKind::OnnxRuntime, e))?;
                shape.iter().copied().collect()
            }
        };
        if out_shape.is_empty() || out_shape.iter().any(|d| *d <= 0) {
            return Err(unsupported(format!(
                "output '{}' has shape {out_shape:?} at this input",
                first_out.name
            )));
        }
        let classes: usize = out_shape.iter().product::<i64>().max(1) as usize;
        let output = Tensor::<f32>::new(&allocator, out_shape.clone())
            .map_err(|e| BackendError::load(path, BackendKind::OnnxRuntime, e))?;
        let selector = OutputSelector::no_default()
            .with(first_out.name.clone())
            .preallocate(first_out.name.clone(), output);
        let run_options = RunOptions::new()
            .map_err(|e| BackendError::load(path, BackendKind::OnnxRuntime, e))?
            .with_outputs(selector);

        let params = proto.as_ref().map(crate::onnx::graph::model_params);
        let precision = if inputs
            .iter()
            .chain(&outputs)
            .any(|t| t.element.is_8_bit_integer())
            || proto.as_ref().is_some_and(crate::onnx::graph::is_qdq)
        {
            Precision::Int8
        } else {
            guess_precision(path)
        };
        let output_op = proto
            .as_ref()
            .and_then(|m| crate::onnx::graph::final_op(m, &outputs[chosen].name))
            .map(str::to_string);
        let info = ModelInfo {
            name: model_name(path),
            path: path.to_path_buf(),
            backend: BackendKind::OnnxRuntime,
            precision,
            inputs,
            outputs,
            input: spec,
            classes,
            output_op,
            output: chosen,
            output_shape: out_shape,
            params,
            labels: super::labels::for_onnx(path, proto.as_ref()),
            // The terminate flag is reached from the watchdog through `onnx_cancel`.
            can_cancel: true,
        };
        let cancel = std::sync::Arc::new(super::onnx_cancel::OrtCanceller::new(&run_options));
        let mut engine = OnnxEngine {
            info,
            session,
            input,
            run_options,
            cancel,
            scores: vec![0.0; classes],
        };
        // One run proves the model executes with this input before anyone relies on it; it can
        // be cancelled like any other (a load abandoned for its time).
        cancellable(engine.cancel.clone());
        engine.run()?;
        Ok(engine)
    }
}

impl Engine for OnnxEngine {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn input(&mut self) -> InputBufMut<'_> {
        InputBufMut::F32(self.input.extract_tensor_mut().1)
    }

    fn run(&mut self) -> Result<(), BackendError> {
        let (name, cancel) = (&self.info.name, &self.cancel);
        let outputs = self
            .session
            .run_with_options(ort::inputs![&self.input], &self.run_options)
            .map_err(|e| run_error(name, cancel.terminated(), e))?;
        let (_, data) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| run_error(name, false, e))?;
        let n = data.len().min(self.scores.len());
        self.scores[..n].copy_from_slice(&data[..n]);
        Ok(())
    }

    fn output(&self) -> &[f32] {
        &self.scores
    }

    fn canceller(&self) -> Option<std::sync::Arc<dyn super::Canceller>> {
        Some(self.cancel.clone())
    }
}

/// The file's bytes with the image input's symbolic dims pinned to `model.input_shape`, when that
/// takes a rewrite; `None` to load the file as it is. A symbolic height, width or channel count
/// without a pinned shape is refused with the key to set and the dims the model declares.
fn pin(
    path: &Path,
    bytes: &[u8],
    proto: Option<&crate::onnx::pb::ModelProto>,
    shape: Option<&[i64]>,
) -> Result<Option<Vec<u8>>, BackendError> {
    use crate::onnx::shape::{check_pin, declared_dims, format_dims, pin_input, real_inputs};
    let unsupported = |reason: String| BackendError::Unsupported {
        path: path.to_path_buf(),
        reason,
    };
    let Some(proto) = proto else {
        return match shape {
            Some(_) => Err(unsupported(
                "model.input_shape is set but the file cannot be read as ONNX to pin it".into(),
            )),
            None => Ok(None),
        };
    };
    let inputs = real_inputs(proto);
    // More than one input is refused once the session tells its inputs.
    let [input] = inputs.as_slice() else {
        return Ok(None);
    };
    let declared = declared_dims(input);
    match shape {
        Some(s) => {
            check_pin(&declared, s).map_err(|e| {
                unsupported(format!(
                    "model.input_shape {}: {e}",
                    crate::onnx::shape::format_shape(s)
                ))
            })?;
            if declared.iter().all(|d| d.fixed().is_some()) {
                return Ok(None);
            }
            log::info!(
                "model {}: input '{}' {} pinned to {}",
                model_name(path),
                input.name,
                format_dims(&declared),
                crate::onnx::shape::format_shape(s)
            );
            pin_input(bytes, &input.name, s)
                .map(Some)
                .map_err(|e| unsupported(format!("cannot pin input '{}': {e}", input.name)))
        }
        None => match crate::onnx::shape::needs_pin(&input.name, &declared) {
            Some(reason) => Err(unsupported(reason)),
            None => Ok(None),
        },
    }
}

/// A failed run: cancelled when the watchdog's terminate flag was set during it.
fn run_error(name: &str, cancelled: bool, e: ort::Error) -> BackendError {
    if cancelled {
        BackendError::Cancelled {
            name: name.to_string(),
        }
    } else {
        BackendError::Run {
            name: name.to_string(),
            reason: e.to_string(),
        }
    }
}

fn names(t: &[TensorInfo]) -> String {
    t.iter()
        .map(|t| format!("{} {:?}", t.name, t.shape))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The batch dimension may be dynamic (it becomes 1); any other dynamic dimension is refused.
fn concrete_output_shape(shape: &[i64]) -> Option<Vec<i64>> {
    let mut s = shape.to_vec();
    if let Some(b) = s.first_mut().filter(|b| **b < 0) {
        *b = 1;
    }
    if s.is_empty() || s.iter().any(|d| *d <= 0) {
        None
    } else {
        Some(s)
    }
}

fn tensor_info(name: &str, ty: &ValueType) -> TensorInfo {
    let shape = ty
        .tensor_shape()
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default();
    let element = ty
        .tensor_type()
        .map_or(ElementType::NonTensor, element_type);
    TensorInfo {
        name: name.to_string(),
        shape,
        element,
    }
}

fn element_type(t: TensorElementType) -> ElementType {
    match t {
        TensorElementType::Float32 => ElementType::Float32,
        TensorElementType::Float16 => ElementType::Float16,
        TensorElementType::Float64 => ElementType::Float64,
        TensorElementType::Int8 => ElementType::Int8,
        TensorElementType::Uint8 => ElementType::Uint8,
        TensorElementType::Int32 => ElementType::Int32,
        TensorElementType::Int64 => ElementType::Int64,
        TensorElementType::Bool => ElementType::Bool,
        _ => ElementType::Other,
    }
}

/// `NAME.int8.onnx` is the int8 variant of `NAME.onnx` (DESIGN.md naming rule).
fn guess_precision(path: &Path) -> Precision {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if stem.ends_with(".int8") {
        Precision::Int8
    } else {
        Precision::Fp32
    }
}

/// The model's name: the file name without its extension.
pub fn model_name(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("model")
        .to_string()
}
