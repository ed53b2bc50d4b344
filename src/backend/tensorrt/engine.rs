//! The backend proper: `.onnx` → (cached) plan → engine, `.engine`/`.plan` → engine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cxx::UniquePtr;

use super::bridge::ffi::{self, BuildPath};
use super::cache::{KeyParts, sha256_file, sha256_files, sha256_text};
use super::calib::{CalibSource, image_files};
use super::precision;
use super::{TensorRtOptions, TrtPrecision, load_err};
use crate::backend::onnx::model_name;
use crate::backend::{
    Backend, BackendError, BackendKind, ElementType, Engine, EngineMemory, LoadOptions, ModelInfo,
    Precision, TensorInfo, image_input_spec,
};
use crate::preprocess::PreprocessOptions;
use crate::tensor::{InputBufMut, InputElement, InputSpec, Layout};

pub use ffi::{MemoryFigures, RuntimeInfo, TensorDesc};

const LOG: &str = "rtinfer::backend::tensorrt";

/// TensorRT's version and the GPU it runs on; fails without a CUDA device.
pub fn runtime_info() -> Result<RuntimeInfo, String> {
    ffi::runtime_info().map_err(|e| e.what().to_string())
}

/// The TensorRT backend: builds or loads engines with these settings.
pub struct TrtBackend {
    opts: TensorRtOptions,
    pre: PreprocessOptions,
}

impl TrtBackend {
    /// `pre` is how frames are preprocessed: int8 calibration feeds images the same way.
    pub fn new(opts: TensorRtOptions, pre: PreprocessOptions) -> TrtBackend {
        TrtBackend { opts, pre }
    }
}

impl Backend for TrtBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::TensorRt
    }

    fn load(&self, path: &Path, load: &LoadOptions) -> Result<Box<dyn Engine>, BackendError> {
        if !path.is_file() {
            return Err(BackendError::ModelMissing {
                path: path.to_path_buf(),
            });
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let (plan, precision, graph) = match ext {
            "onnx" => {
                let (_, plan) = cached_plan(path, &self.opts, &self.pre)?;
                // The graph tells what a plan cannot: the op behind the output, the weights, the
                // class names. TensorRT built the plan, so a graph our reader cannot decode costs
                // only those.
                let graph = crate::onnx::pb::read_model(path)
                    .inspect_err(|e| {
                        log::warn!(
                            target: LOG,
                            "{}: graph not readable ({e}): no final-op, weight count or class names from it",
                            path.display()
                        )
                    })
                    .ok();
                (plan, precision_of(self.opts.precision), graph)
            }
            "engine" | "plan" => {
                let plan = std::fs::read(path).map_err(|e| load_err(path, e))?;
                (plan, precision_from_name(path), None)
            }
            _ => {
                return Err(BackendError::Unsupported {
                    path: path.to_path_buf(),
                    reason: "TensorRT loads .onnx (built on the device), .engine or .plan".into(),
                });
            }
        };
        let chosen = Chosen {
            output: load.output.as_deref(),
            graph: graph.as_ref(),
        };
        Ok(Box::new(TrtEngine::from_plan_choosing(
            path, &plan, &self.opts, precision, &chosen,
        )?))
    }
}

fn precision_of(p: TrtPrecision) -> Precision {
    match p {
        TrtPrecision::Fp32 => Precision::Fp32,
        TrtPrecision::Fp16 => Precision::Fp16,
        // TensorRT keeps layers without an int8 kernel in float: the study's "mixed" engines.
        TrtPrecision::Int8 => Precision::Mixed,
    }
}

/// A plan file does not say how it was built; its name may (`NAME.int8.engine`).
fn precision_from_name(path: &Path) -> Precision {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.contains(".int8.") {
        Precision::Mixed
    } else if name.contains(".fp16.") {
        Precision::Fp16
    } else {
        Precision::Fp32
    }
}

/// The engine for `onnx` from the cache, building and caching it when missing. Returns the
/// cache file (which may not exist if the cache directory is not writable) and the plan.
pub fn cached_plan(
    onnx: &Path,
    opts: &TensorRtOptions,
    pre: &PreprocessOptions,
) -> Result<(PathBuf, Vec<u8>), BackendError> {
    let info = runtime_info().map_err(|e| load_err(onnx, e))?;
    let path = precision::path_for(opts.precision.into());
    let parts = key_parts(onnx, opts, pre, &info)?;
    let file = opts.engine_cache.join(parts.file_name(&model_name(onnx)));
    if let Ok(plan) = std::fs::read(&file) {
        log::info!(target: LOG, "engine cache hit: {}", file.display());
        return Ok((file, plan));
    }
    log::info!(
        target: LOG,
        "building a {} engine for {} (TensorRT {}, {} sm_{}; {}); this can take minutes",
        opts.precision.name(),
        onnx.display(),
        info.version,
        info.device,
        info.compute_capability.replace('.', ""),
        precision::describe(path)
    );
    let plan = build_engine(onnx, opts, pre)?;
    if let Err(e) = store(&file, &plan, &parts.describe()) {
        log::warn!(
            target: LOG,
            "engine cache {}: {e}; the engine is used but will be rebuilt next time",
            file.display()
        );
    }
    Ok((file, plan))
}

/// Writes the plan atomically (temporary file + rename) and its key text beside it.
fn store(file: &Path, plan: &[u8], key_text: &str) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = file.with_extension("engine.tmp");
    std::fs::write(&tmp, plan)?;
    std::fs::rename(&tmp, file)?;
    std::fs::write(file.with_extension("key"), key_text)
}

/// Every input of the cache key for building `onnx` with `opts` on this device.
pub fn key_parts(
    onnx: &Path,
    opts: &TensorRtOptions,
    pre: &PreprocessOptions,
    info: &RuntimeInfo,
) -> Result<KeyParts, BackendError> {
    let model_sha256 = sha256_file(onnx).map_err(|e| load_err(onnx, e))?;
    let path = precision::path_for(opts.precision.into());
    // Explicit quantization takes its ranges from the model (hashed above), not from data.
    let calibration_sha256 = if precision::calibrates(path) {
        Some(calibration_hash(onnx, opts, pre)?)
    } else {
        None
    };
    Ok(KeyParts {
        model_sha256,
        tensorrt: format!("{} (library {})", info.version, info.library_version),
        compute_capability: info.compute_capability.clone(),
        precision: opts.precision.name().into(),
        build_path: precision::describe(path).into(),
        fp16_fallback: opts.fp16_fallback && precision::takes_fp16_fallback(path),
        dla_core: opts.dla_core.map_or(-1, |d| d as i32),
        gpu_fallback: opts.dla_core.is_some(),
        workspace_bytes: opts.workspace_bytes,
        profile_shape: opts.input_shape.clone().unwrap_or_default(),
        calibration_sha256,
    })
}

/// The calibration data's hash: the images when a folder is set; for a source, its URI and
/// frame count (live frames are not known before they are read: an engine calibrated on a camera
/// is reused until the URI or the count changes, or the cached engine is deleted); either way
/// with the preprocessing that turns them into tensors (other mean/std, another calibration).
/// Else the cache file.
fn calibration_hash(
    onnx: &Path,
    opts: &TensorRtOptions,
    pre: &PreprocessOptions,
) -> Result<String, BackendError> {
    if let Some(dir) = &opts.calibration_images {
        let files = image_files(dir, opts.calibration_max_images).map_err(|e| load_err(onnx, e))?;
        let images = sha256_files(&files).map_err(|e| load_err(onnx, e))?;
        return Ok(prepared(&images, pre));
    }
    if let Some(src) = &opts.calibration_source {
        let source = format!("source {}\nframes {}", src.uri, opts.calibration_max_images);
        return Ok(prepared(&source, pre));
    }
    match &opts.calibration_cache {
        Some(c) if c.is_file() => sha256_file(c).map_err(|e| load_err(onnx, e)),
        _ => Err(load_err(
            onnx,
            "an int8 build needs tensorrt.calibration_images, tensorrt.calibration_source or an \
             existing tensorrt.calibration_cache",
        )),
    }
}

/// The hash of calibration data `data` as preprocessed by `pre`.
fn prepared(data: &str, pre: &PreprocessOptions) -> String {
    sha256_text(&format!("{data}\npreprocess {pre:?}"))
}

/// The stamp beside a calibration cache naming the model and the calibration data it was
/// computed from: a cache made for another model or from other data is not reused (TensorRT
/// would, silently).
fn stamp_path(cache: &Path) -> PathBuf {
    let mut s = cache.as_os_str().to_owned();
    s.push(".images-sha256");
    PathBuf::from(s)
}

/// Builds `onnx` into a serialized plan on this device (fp32, fp16 or int8 as `opts` says, the
/// way this TensorRT wants it: see [`precision`]). Slow (minutes on a Xavier): call it from a
/// loader thread, never the pipeline thread.
pub fn build_engine(
    onnx: &Path,
    opts: &TensorRtOptions,
    pre: &PreprocessOptions,
) -> Result<Vec<u8>, BackendError> {
    let path = precision::path_for(opts.precision.into());
    precision::check_file(onnx, path)?;
    log::info!(target: LOG, "{}: {}", onnx.display(), precision::describe(path));
    if opts.fp16_fallback && !precision::takes_fp16_fallback(path) {
        log::warn!(
            target: LOG,
            "tensorrt.fp16_fallback has no effect on this build ({}): the model's types decide",
            precision::describe(path)
        );
    }
    if path == BuildPath::Int8Explicit
        && (opts.calibration_images.is_some() || opts.calibration_source.is_some())
    {
        log::info!(
            target: LOG,
            "calibration images/source unused: explicit quantization takes the model's Q/DQ scales"
        );
    }
    let bytes = std::fs::read(onnx).map_err(|e| load_err(onnx, e))?;
    let mut calib = CalibSource::empty();
    let mut read_cache = true;
    let mut calib_stamp = None;
    if precision::calibrates(path) {
        let max = opts.calibration_max_images;
        let fed = if let Some(dir) = &opts.calibration_images {
            let spec = onnx_input_spec(onnx, opts.input_shape.as_deref())?;
            let c =
                CalibSource::from_folder(dir, max, spec, *pre).map_err(|e| load_err(onnx, e))?;
            // The hash of the very files it will feed.
            let hash = sha256_files(c.files()).map_err(|e| load_err(onnx, e))?;
            Some((c, prepared(&hash, pre)))
        } else if let Some(src) = &opts.calibration_source {
            let spec = onnx_input_spec(onnx, opts.input_shape.as_deref())?;
            let c =
                CalibSource::from_source(src, max, spec, *pre).map_err(|e| load_err(onnx, e))?;
            Some((c, calibration_hash(onnx, opts, pre)?))
        } else {
            calibration_hash(onnx, opts, pre)?; // an existing cache, or the error saying what is missing
            None
        };
        if let Some((fed, data_hash)) = fed {
            calib = fed;
            let model_hash = sha256_file(onnx).map_err(|e| load_err(onnx, e))?;
            let stamp = format!("model {model_hash} data {data_hash}");
            read_cache = opts.calibration_cache.as_ref().is_some_and(|c| {
                std::fs::read_to_string(stamp_path(c)).is_ok_and(|s| s.trim() == stamp)
            });
            calib_stamp = Some(stamp);
        }
    }
    let cache = opts.calibration_cache.as_ref();
    let bo = ffi::BuildOptions {
        precision: opts.precision.into(),
        fp16_fallback: opts.fp16_fallback,
        workspace_bytes: opts.workspace_bytes,
        dla_core: opts.dla_core.map_or(-1, |d| d as i32),
        gpu_fallback: opts.dla_core.is_some(),
        profile_shape: opts.input_shape.clone().unwrap_or_default(),
        calibration_cache: cache.map(|c| c.display().to_string()).unwrap_or_default(),
        read_cache,
    };
    let plan = ffi::build_engine(&bytes, &bo, &mut calib).map_err(|e| load_err(onnx, e.what()))?;
    if let (Some(hash), Some(c)) = (calib_stamp, cache)
        && calib.used() > 0
    {
        log::info!(
            target: LOG,
            "calibrated on {} {}; cache {}",
            calib.used(),
            if opts.calibration_source.is_some() {
                "frames"
            } else {
                "images"
            },
            c.display()
        );
        if let Err(e) = std::fs::write(stamp_path(c), format!("{hash}\n")) {
            log::warn!(target: LOG, "calibration cache stamp {}: {e}", c.display());
        }
    }
    Ok(plan)
}

/// The image input of an ONNX model (batch 1), with `shape` overriding dynamic dimensions.
fn onnx_input_spec(onnx: &Path, shape: Option<&[i64]>) -> Result<InputSpec, BackendError> {
    use crate::onnx::pb::{read_model, tensor_shape_proto::dimension::Value as Dim, type_proto};
    let model = read_model(onnx).map_err(|e| load_err(onnx, e))?;
    let graph = model
        .graph
        .ok_or_else(|| load_err(onnx, "the model has no graph"))?;
    let input = graph
        .input
        .iter()
        .find(|i| !graph.initializer.iter().any(|t| t.name == i.name))
        .ok_or_else(|| load_err(onnx, "the model has no input"))?;
    let mut dims: Vec<i64> = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t
            .shape
            .as_ref()
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match d.value {
                        Some(Dim::DimValue(v)) if v > 0 => v,
                        _ => -1,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    if let Some(s) = shape {
        dims = s.to_vec();
    }
    if let Some(b) = dims.first_mut().filter(|b| **b < 0) {
        *b = 1;
    }
    image_input_spec(onnx, &dims, Layout::Nchw, InputElement::F32)
}

/// A tensor's element type, from the layer's shared enum.
fn element_type(d: ffi::DataType) -> ElementType {
    match d {
        ffi::DataType::Float32 => ElementType::Float32,
        ffi::DataType::Float16 => ElementType::Float16,
        ffi::DataType::Int8 => ElementType::Int8,
        ffi::DataType::Int32 => ElementType::Int32,
        ffi::DataType::Bool => ElementType::Bool,
        ffi::DataType::Uint8 => ElementType::Uint8,
        ffi::DataType::Int64 => ElementType::Int64,
        ffi::DataType::Bfloat16 => ElementType::Bfloat16,
        ffi::DataType::Fp8 => ElementType::Fp8,
        ffi::DataType::Int4 => ElementType::Int4,
        _ => ElementType::Other,
    }
}

/// What a load knows beside the plan: the output to read and, for an `.onnx`, its graph.
#[derive(Debug, Default, Clone, Copy)]
pub struct Chosen<'a> {
    /// `postprocess.output` (`None`: the first output).
    pub output: Option<&'a str>,
    /// The ONNX model the plan was built from (`None` for `.engine`/`.plan` files).
    pub graph: Option<&'a crate::onnx::pb::ModelProto>,
}

/// A loaded TensorRT engine with its execution context, stream and I/O buffers.
pub struct TrtEngine {
    info: ModelInfo,
    inner: UniquePtr<ffi::TrtEngine>,
    memory: MemoryFigures,
    classes: usize,
}

impl TrtEngine {
    /// Deserializes `plan` (read from or built for `path`) and binds its buffers, reading the
    /// first output.
    pub fn from_plan(
        path: &Path,
        plan: &[u8],
        opts: &TensorRtOptions,
        precision: Precision,
    ) -> Result<TrtEngine, BackendError> {
        Self::from_plan_choosing(path, plan, opts, precision, &Chosen::default())
    }

    /// [`TrtEngine::from_plan`] reading `chosen.output`; with `chosen.graph`, the engine also
    /// knows the op behind that output (a final Softmax: probabilities) and its weight count.
    pub fn from_plan_choosing(
        path: &Path,
        plan: &[u8],
        opts: &TensorRtOptions,
        precision: Precision,
        chosen: &Chosen<'_>,
    ) -> Result<TrtEngine, BackendError> {
        let eo = ffi::EngineOptions {
            zero_copy: opts.zero_copy,
            dla_core: opts.dla_core.map_or(-1, |d| d as i32),
            output: chosen.output.unwrap_or_default().to_string(),
        };
        let inner = ffi::new_engine(plan, &eo).map_err(|e| load_err(path, e.what()))?;
        let tensors = inner.tensors();
        let info_of = |t: &TensorDesc| TensorInfo {
            name: t.name.clone(),
            shape: t.declared_shape.clone(),
            element: element_type(t.element),
        };
        let inputs: Vec<TensorInfo> = tensors.iter().filter(|t| t.input).map(info_of).collect();
        let outputs: Vec<TensorInfo> = tensors.iter().filter(|t| !t.input).map(info_of).collect();
        let unsupported = |reason: String| BackendError::Unsupported {
            path: path.to_path_buf(),
            reason,
        };
        if inputs.len() != 1 {
            return Err(unsupported(format!(
                "expected one image input, found {}",
                inputs.len()
            )));
        }
        let first_in = tensors.iter().find(|t| t.input).expect("one input");
        // The C++ layer bound the same choice (and refused an unknown name).
        let output = super::super::choose_output(path, &outputs, chosen.output)?;
        let out = tensors
            .iter()
            .filter(|t| !t.input)
            .nth(output)
            .expect("outputs come from tensors");
        let spec = image_input_spec(path, &first_in.shape, Layout::Nchw, InputElement::F32)?;
        let classes = out.shape.iter().skip(1).product::<i64>().max(1) as usize;
        let memory = inner.memory();
        let info = ModelInfo {
            name: model_name(path),
            path: path.to_path_buf(),
            backend: BackendKind::TensorRt,
            precision,
            inputs,
            outputs,
            input: spec,
            classes,
            output,
            output_shape: out.shape.clone(),
            output_op: chosen
                .graph
                .and_then(|m| crate::onnx::graph::final_op(m, &out.name))
                .map(str::to_string),
            params: chosen.graph.map(crate::onnx::graph::model_params),
            labels: crate::backend::labels::for_onnx(path, chosen.graph),
            can_cancel: false,
        };
        log::info!(
            target: LOG,
            "engine {}: serialized {} B + persistent {} B + activation {} B",
            info.name,
            memory.serialized_bytes,
            memory.persistent_bytes,
            memory.activation_bytes
        );
        let mut engine = TrtEngine {
            info,
            inner,
            memory,
            classes,
        };
        // One run proves the engine executes before anyone relies on it.
        engine.run()?;
        Ok(engine)
    }

    /// Every I/O tensor as the execution context binds it.
    pub fn tensors(&self) -> Vec<TensorDesc> {
        self.inner.tensors()
    }

    /// Serialized, persistent and activation memory (see [`MemoryFigures`]).
    pub fn memory_figures(&self) -> &MemoryFigures {
        &self.memory
    }

    /// GPU time of the last run's enqueue, by CUDA events (no copies).
    pub fn last_gpu_ms(&self) -> f32 {
        self.inner.last_gpu_ms()
    }
}

impl Engine for TrtEngine {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn input(&mut self) -> InputBufMut<'_> {
        InputBufMut::F32(self.inner.pin_mut().input())
    }

    fn run(&mut self) -> Result<(), BackendError> {
        self.inner.pin_mut().run().map_err(|e| BackendError::Run {
            name: self.info.name.clone(),
            reason: e.what().to_string(),
        })
    }

    fn output(&self) -> &[f32] {
        let out = self.inner.output();
        &out[..self.classes.min(out.len())]
    }

    fn memory(&self) -> Option<EngineMemory> {
        let m = &self.memory;
        Some(EngineMemory {
            serialized_bytes: m.serialized_bytes,
            persistent_bytes: m.persistent_bytes,
            activation_bytes: m.activation_bytes,
            persistent_source: m.persistent_source.clone(),
        })
    }

    fn device_time(&self) -> Option<Duration> {
        Some(
            Duration::try_from_secs_f64(f64::from(self.last_gpu_ms()) / 1000.0).unwrap_or_default(),
        )
    }
}
