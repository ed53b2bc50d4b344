//! The model serving now, as the loader, the pipeline thread and the status views share it.
//!
//! What a reader sees must be one model: its info, its engine memory and the names of the engine
//! generations sit behind one lock, so `/status` never pairs a new model with the old model's
//! memory. The engine itself travels through the [`SwapSlot`], which the pipeline thread only ever
//! `try_lock`s between two frames.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::backend::{EngineMemory, ModelInfo};
use crate::pipeline::{Pipeline, SwapSlot};

/// Generation names kept for results and `last_result`: a result names its model within
/// milliseconds, so older ones are never asked for, and a daemon that swaps every 30 s for a year
/// (or a governor that steps every few seconds) does not keep a million names.
pub const GENERATIONS_KEPT: usize = 64;

/// How long [`Serving::swap_in`] waits for the pipeline thread (it looks at least every 100 ms).
pub const SWAP_WAIT: Duration = Duration::from_secs(5);

/// The pipeline thread did not take a staged model.
#[derive(Debug, thiserror::Error)]
#[error("the pipeline thread did not take model {model} within {} s", waited.as_secs())]
pub struct SwapError {
    pub model: String,
    pub waited: Duration,
}

/// What a frame record's engine generation was: its model's name and class names.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub name: String,
    pub labels: Option<std::sync::Arc<crate::backend::labels::Labels>>,
}

/// The model serving now and the hand-over to the pipeline thread.
#[derive(Default)]
pub struct Serving {
    current: Mutex<Current>,
    swap: SwapSlot,
}

#[derive(Default)]
struct Current {
    /// `None` while waiting for the watch folder.
    model: Option<ModelInfo>,
    /// The engine's memory, when its backend reports it (TensorRT).
    memory: Option<EngineMemory>,
    /// Names of the newest engines numbered, oldest first: the one at index `i` is generation
    /// `numbered - len + 1 + i`. Bounded ([`GENERATIONS_KEPT`]): a governor that steps every few
    /// seconds for months numbers many engines, and only recent frames ask for a name.
    generations: VecDeque<Generation>,
    /// Engines numbered so far (the newest generation).
    numbered: u32,
    /// The generation serving now (0 before the first).
    serving: u32,
}

impl Serving {
    fn lock(&self) -> MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The model serving now.
    pub fn model(&self) -> Option<ModelInfo> {
        self.lock().model.clone()
    }

    /// The model serving now with its engine memory, read together.
    pub fn model_and_memory(&self) -> (Option<ModelInfo>, Option<EngineMemory>) {
        let c = self.lock();
        (c.model.clone(), c.memory.clone())
    }

    /// The engine generation serving now (0 before the first model), as frame records carry it.
    pub fn generation(&self) -> u32 {
        self.lock().serving
    }

    /// The model name of an engine generation.
    pub fn generation_name(&self, generation: u32) -> Option<String> {
        self.generation_of(generation).map(|g| g.name)
    }

    /// The model (name and class names) of an engine generation, while it is kept.
    pub fn generation_of(&self, generation: u32) -> Option<Generation> {
        let c = self.lock();
        let oldest = c.numbered + 1 - c.generations.len() as u32;
        c.generations
            .get(generation.checked_sub(oldest)? as usize)
            .cloned()
    }

    /// The hand-over slot the pipeline thread polls between frames.
    pub fn swap_slot(&self) -> &SwapSlot {
        &self.swap
    }

    /// Numbers `p` with the next generation.
    fn number(&self, p: &mut Pipeline) {
        let mut c = self.lock();
        if c.generations.len() == GENERATIONS_KEPT {
            c.generations.pop_front();
        }
        let info = p.engine.info();
        c.generations.push_back(Generation {
            name: info.name.clone(),
            labels: info.labels.clone(),
        });
        c.numbered += 1;
        p.generation = c.numbered;
    }

    /// Start-up: numbers `p` and records it as serving, before the pipeline thread owns it.
    pub fn install(&self, p: &mut Pipeline) {
        self.number(p);
        let mut c = self.lock();
        c.model = Some(p.engine.info().clone());
        c.memory = p.engine.memory();
        c.serving = p.generation;
    }

    /// Hands `p` to the pipeline thread and, once it took it (between two frames), records it as
    /// serving; returns the pipeline it replaced, for the caller to drop.
    pub fn swap_in(&self, mut p: Pipeline) -> Result<Option<Pipeline>, SwapError> {
        self.number(&mut p);
        let info = p.engine.info().clone();
        let memory = p.engine.memory();
        let generation = p.generation;
        self.swap.stage(p);
        match self.swap.wait_retired(SWAP_WAIT) {
            Some(old) => {
                let mut c = self.lock();
                c.model = Some(info);
                c.memory = memory;
                c.serving = generation;
                Ok(old)
            }
            None => {
                drop(self.swap.unstage());
                Err(SwapError {
                    model: info.name,
                    waited: SWAP_WAIT,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendError, BackendKind, Engine, Precision};
    use crate::preprocess::{PreprocessOptions, Preprocessor};
    use crate::tensor::{InputBufMut, InputElement, InputSpec, Layout};

    const SPEC: InputSpec = InputSpec {
        width: 2,
        height: 2,
        channels: 3,
        layout: Layout::Nchw,
        element: InputElement::F32,
    };

    struct Named(ModelInfo, Vec<f32>);

    impl Engine for Named {
        fn info(&self) -> &ModelInfo {
            &self.0
        }
        fn input(&mut self) -> InputBufMut<'_> {
            InputBufMut::F32(&mut self.1)
        }
        fn run(&mut self) -> Result<(), BackendError> {
            Ok(())
        }
        fn output(&self) -> &[f32] {
            &[]
        }
    }

    fn pipeline(name: &str) -> Pipeline {
        let info = ModelInfo {
            name: name.into(),
            path: format!("/m/{name}.onnx").into(),
            backend: BackendKind::OnnxRuntime,
            precision: Precision::Fp32,
            inputs: Vec::new(),
            outputs: Vec::new(),
            input: SPEC,
            classes: 1,
            output: 0,
            output_shape: vec![1, 1],
            output_op: None,
            params: None,
            labels: None,
            can_cancel: false,
        };
        let pre = Preprocessor::new(SPEC, PreprocessOptions::default()).expect("preprocessor");
        Pipeline::new(Box::new(Named(info, vec![0.0; SPEC.len()])), pre)
    }

    #[test]
    fn generation_names_are_kept_for_the_newest_engines_only() {
        let s = Serving::default();
        assert_eq!((s.generation(), s.generation_name(0)), (0, None));
        let mut first = pipeline("m0");
        s.install(&mut first);
        assert_eq!(s.generation(), 1);
        for i in 1..(GENERATIONS_KEPT as u32 + 10) {
            let mut p = pipeline(&format!("m{i}"));
            s.number(&mut p);
            assert_eq!(p.generation, i + 1);
        }
        let newest = GENERATIONS_KEPT as u32 + 10;
        assert_eq!(s.generation_name(newest), Some(format!("m{}", newest - 1)));
        assert_eq!(
            s.generation_name(newest - GENERATIONS_KEPT as u32 + 1)
                .as_deref(),
            Some("m10")
        );
        assert_eq!(s.generation_name(10), None, "older than the kept names");
        assert_eq!(s.generation_name(newest + 1), None);
        assert_eq!(s.generation(), 1, "numbered is not serving");
    }
}
