//! The Vitis AI backend: int8 `.xmodel` files on the DPU of a Zynq UltraScale+ board (the
//! study's ZCU104, Vitis AI 3.0, one runner, batch 1).
//!
//! VART is C++ and only exists on the board, so rtinfer never links it: it opens our own small C
//! ABI (`ffi/vart_shim.h`, implemented over VART by `cpp/vart_shim.cc`) at run time through
//! bindgen's dynamic-loading bindings on libloading. The backend is therefore part of every build
//! and simply reports where it looked when no shim is installed.
//!
//! The DPU wants NHWC int8 quantised with a power-of-two scale, so the engine declares exactly
//! that as its input ([`InputElement::I8`] with `scale = 2^fix_point`, [`Layout::Nhwc`]) and
//! preprocessing writes it straight into the engine's buffer; outputs are dequantised with
//! `2^-fix_point` into a reused score buffer. A DPU job cannot be interrupted (on the ZCU104
//! `execute_async` runs the job synchronously and `wait` ignores its timeout), so the engine has
//! no canceller: a late frame is counted as missed, never cancelled.

#[rustfmt::skip]
#[allow(
    unsafe_code,
    unsafe_op_in_unsafe_fn,
    non_camel_case_types,
    non_upper_case_globals,
    dead_code,
    clippy::all,
    clippy::undocumented_unsafe_blocks
)]
mod ffi;
#[allow(unsafe_code)]
pub mod library;
#[allow(unsafe_code)]
pub mod shim;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{
    Backend, BackendError, BackendKind, ElementType, Engine, LoadOptions, ModelInfo, Precision,
    TensorInfo, image_input_spec,
};
use crate::invalid_key::InvalidKey;
use crate::tensor::{InputBufMut, InputElement, Layout};
pub use library::LibraryError;
use shim::{Direction, Model, Shim, TensorDesc};

/// The largest |fix_point| accepted: beyond it 2^fix_point is no meaningful int8 scale.
pub const MAX_FIX_POINT: i32 = 30;

/// Vitis AI settings (config section `[vitis]`).
#[derive(Debug, Clone, PartialEq)]
pub struct VitisOptions {
    /// Explicit path of `librtinfer_vart.so` (searched first).
    pub library: Option<PathBuf>,
    /// Passed to the runner's `wait`; the ZCU104's runner ignores it (the job is synchronous).
    pub timeout: Duration,
}

impl Default for VitisOptions {
    fn default() -> Self {
        VitisOptions {
            library: None,
            timeout: Duration::from_millis(1000),
        }
    }
}

/// `[vitis]` as written: the VART shim library and the runner's wait timeout.
#[derive(Debug, Default, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawVitis {
    pub library: Option<PathBuf>,
    pub timeout_ms: Option<u64>,
}

impl RawVitis {
    /// Checks the section; an error names its key.
    pub fn check(self) -> Result<VitisOptions, InvalidKey> {
        let timeout_ms = self.timeout_ms.unwrap_or(1000);
        if !(1..=600_000).contains(&timeout_ms) {
            return Err(InvalidKey::new(
                "vitis.timeout_ms",
                format!("{timeout_ms} is not a timeout in [1, 600000] ms"),
            ));
        }
        Ok(VitisOptions {
            library: self.library,
            timeout: Duration::from_millis(timeout_ms),
        })
    }
}

/// The backend, as `--backend vitis` selects it.
pub fn backend(opts: &VitisOptions) -> Result<Box<dyn Backend>, BackendError> {
    Ok(Box::new(VitisBackend::new(opts.clone())?))
}

/// The Vitis AI backend: a loaded shim library.
pub struct VitisBackend {
    opts: VitisOptions,
    shim: Arc<Shim>,
}

impl VitisBackend {
    /// Finds and opens the shim library; fails with every place tried.
    pub fn new(opts: VitisOptions) -> Result<VitisBackend, BackendError> {
        let shim = Shim::load(opts.library.as_deref())?;
        log::info!(
            "Vitis AI shim {} ({}): {}",
            shim.path.display(),
            shim.origin,
            shim.version
        );
        Ok(VitisBackend {
            opts,
            shim: Arc::new(shim),
        })
    }

    /// The library file in use.
    pub fn library_path(&self) -> &Path {
        &self.shim.path
    }

    /// The implementation's own description (`rtv_version`).
    pub fn version(&self) -> &str {
        &self.shim.version
    }
}

impl Backend for VitisBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Vitis
    }

    fn load(&self, path: &Path, opts: &LoadOptions) -> Result<Box<dyn Engine>, BackendError> {
        if opts.threads > 1 {
            log::debug!(
                "the DPU runs one job at a time: threads = {} does not apply",
                opts.threads
            );
        }
        Ok(Box::new(VitisEngine::load(
            Arc::clone(&self.shim),
            path,
            &self.opts,
            opts.output.as_deref(),
        )?))
    }
}

/// A model on the DPU with its reused int8 buffers.
pub struct VitisEngine {
    info: ModelInfo,
    model: Model,
    input: Vec<i8>,
    outputs: Vec<Vec<i8>>,
    scores: Vec<f32>,
    /// Which of `outputs` is read (`postprocess.output`, else the first).
    chosen: usize,
    /// `2^-fix_point` of that output.
    out_scale: f32,
    timeout_ms: i32,
}

impl VitisEngine {
    fn load(
        shim: Arc<Shim>,
        path: &Path,
        opts: &VitisOptions,
        output: Option<&str>,
    ) -> Result<VitisEngine, BackendError> {
        if !path.is_file() {
            return Err(BackendError::ModelMissing {
                path: path.to_path_buf(),
            });
        }
        let load_err = |e: shim::ShimError| BackendError::load(path, BackendKind::Vitis, e);
        let model = Model::open(shim, path).map_err(load_err)?;
        let inputs = model.tensors(Direction::Input).map_err(load_err)?;
        let outputs = model.tensors(Direction::Output).map_err(load_err)?;
        let infos: Vec<TensorInfo> = outputs.iter().map(tensor_info).collect();
        let chosen = super::choose_output(path, &infos, output)?;
        let checked = check_tensors(path, &inputs, &outputs, chosen)?;
        let out = &outputs[chosen];
        let info = ModelInfo {
            name: super::onnx::model_name(path),
            path: path.to_path_buf(),
            backend: BackendKind::Vitis,
            precision: Precision::Int8,
            inputs: inputs.iter().map(tensor_info).collect(),
            outputs: infos,
            input: checked.spec,
            classes: out.batch_bytes,
            output: chosen,
            // Flattened: a DPU subgraph's NHWC output ([1, 1, 1, C] for a classifier) reads as
            // the class vector it is; `postprocess.kind` decides anything else.
            output_shape: vec![1, out.batch_bytes as i64],
            output_op: None,
            params: None,
            labels: super::labels::find(path, []),
            can_cancel: false,
        };
        let mut engine = VitisEngine {
            info,
            model,
            input: vec![0; inputs[0].batch_bytes],
            outputs: outputs.iter().map(|t| vec![0; t.batch_bytes]).collect(),
            scores: vec![0.0; out.batch_bytes],
            chosen,
            out_scale: checked.out_scale,
            timeout_ms: i32::try_from(opts.timeout.as_millis()).unwrap_or(i32::MAX),
        };
        // One run proves the runner executes before anyone relies on it.
        engine.run()?;
        Ok(engine)
    }
}

impl Engine for VitisEngine {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn input(&mut self) -> InputBufMut<'_> {
        InputBufMut::I8(&mut self.input)
    }

    fn run(&mut self) -> Result<(), BackendError> {
        self.model
            .run(&[&self.input], &mut self.outputs, self.timeout_ms)
            .map_err(|e| BackendError::Run {
                name: self.info.name.clone(),
                reason: e.to_string(),
            })?;
        dequantise(&self.outputs[self.chosen], self.out_scale, &mut self.scores);
        Ok(())
    }

    fn output(&self) -> &[f32] {
        &self.scores
    }
}

/// `out[i] = q[i] * scale` (scale = 2^-fix_point: exact in f32 for every int8).
pub fn dequantise(q: &[i8], scale: f32, out: &mut [f32]) {
    for (o, q) in out.iter_mut().zip(q) {
        *o = f32::from(*q) * scale;
    }
}

/// `2^exp` for the fix points we accept (exact in f32).
pub fn pow2(exp: i32) -> f32 {
    2f32.powi(exp)
}

/// What the tensor checks yield.
struct Checked {
    spec: crate::tensor::InputSpec,
    out_scale: f32,
}

/// One NHWC int8 image input, int8 outputs, all with a usable fix point; `chosen` is read.
fn check_tensors(
    path: &Path,
    inputs: &[TensorDesc],
    outputs: &[TensorDesc],
    chosen: usize,
) -> Result<Checked, BackendError> {
    let unsupported = |reason: String| BackendError::Unsupported {
        path: path.to_path_buf(),
        reason,
    };
    if inputs.len() != 1 {
        return Err(unsupported(format!(
            "expected one image input on the DPU subgraph, found {}",
            inputs.len()
        )));
    }
    if outputs.is_empty() || outputs.len() > shim::MAX_TENSORS {
        return Err(unsupported(format!(
            "expected 1 to {} outputs, found {}",
            shim::MAX_TENSORS,
            outputs.len()
        )));
    }
    for t in inputs.iter().chain(outputs) {
        if t.element != ElementType::Int8 {
            return Err(unsupported(format!(
                "tensor '{}' is {} {:?}; the DPU path needs int8",
                t.name, t.element, t.dims
            )));
        }
        match t.fix_point {
            Some(f) if f.abs() <= MAX_FIX_POINT => {}
            Some(f) => {
                return Err(unsupported(format!(
                    "tensor '{}' has fix_point {f}, outside [-{MAX_FIX_POINT}, {MAX_FIX_POINT}]",
                    t.name
                )));
            }
            None => {
                return Err(unsupported(format!(
                    "tensor '{}' has no fix_point attribute",
                    t.name
                )));
            }
        }
        if t.batch_bytes == 0 {
            return Err(unsupported(format!("tensor '{}' is empty", t.name)));
        }
    }
    let input = &inputs[0];
    let in_fix = input.fix_point.unwrap_or(0);
    let spec = image_input_spec(
        path,
        &input.dims,
        Layout::Nhwc,
        InputElement::I8 {
            scale: pow2(in_fix),
        },
    )?;
    if spec.len() != input.batch_bytes {
        return Err(unsupported(format!(
            "input '{}' {:?} holds {} bytes per frame, expected {}",
            input.name,
            input.dims,
            input.batch_bytes,
            spec.len()
        )));
    }
    Ok(Checked {
        spec,
        out_scale: pow2(-outputs[chosen].fix_point.unwrap_or(0)),
    })
}

fn tensor_info(t: &TensorDesc) -> TensorInfo {
    TensorInfo {
        name: t.name.clone(),
        shape: t.dims.clone(),
        element: t.element,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dequantisation_is_exact_powers_of_two() {
        let mut out = [0f32; 5];
        dequantise(&[-128, -1, 0, 1, 127], pow2(-3), &mut out);
        assert_eq!(out, [-16.0, -0.125, 0.0, 0.125, 15.875]);
        dequantise(&[-128, -1, 0, 1, 127], pow2(2), &mut out);
        assert_eq!(out, [-512.0, -4.0, 0.0, 4.0, 508.0]);
    }
}
