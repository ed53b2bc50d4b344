//! An engine that runs instantly, for the loader's and the governor's unit tests: what they
//! exercise is the loading, swapping and stepping around an engine, never its inference.

use crate::backend::{BackendError, Engine, ModelInfo};
use crate::tensor::{InputBufMut, InputElement, InputSpec, Layout};

/// The 4x4 RGB float input every fake model takes.
pub const SPEC: InputSpec = InputSpec {
    width: 4,
    height: 4,
    channels: 3,
    layout: Layout::Nchw,
    element: InputElement::F32,
};

/// Described by `info`; its output is `classes` zeros.
pub struct Fake {
    info: ModelInfo,
    input: Vec<f32>,
    scores: Vec<f32>,
}

impl Fake {
    pub fn new(info: ModelInfo, classes: usize) -> Fake {
        Fake {
            info,
            input: vec![0.0; SPEC.len()],
            scores: vec![0.0; classes],
        }
    }
}

impl Engine for Fake {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn input(&mut self) -> InputBufMut<'_> {
        InputBufMut::F32(&mut self.input)
    }
    fn run(&mut self) -> Result<(), BackendError> {
        Ok(())
    }
    fn output(&self) -> &[f32] {
        &self.scores
    }
}
