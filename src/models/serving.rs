//! The model serving now, as the loader, the pipeline thread and the status views share it.
//!
//! What a reader sees must be one model: its info, its engine memory and the names of the engine
//! generations sit behind one lock, so `/status` never pairs a new model with the old model's
//! memory. The engine itself travels through the [`SwapSlot`], which the pipeline thread only ever
//! `try_lock`s between two frames.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::backend::{EngineMemory, ModelInfo};
use crate::pipeline::{Pipeline, SwapSlot};

/// How long [`Serving::swap_in`] waits for the pipeline thread (it looks at least every 100 ms).
pub const SWAP_WAIT: Duration = Duration::from_secs(5);

/// The pipeline thread did not take a staged model.
#[derive(Debug, thiserror::Error)]
#[error("the pipeline thread did not take model {model} within {} s", waited.as_secs())]
pub struct SwapError {
    pub model: String,
    pub waited: Duration,
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
    /// Names of the newest [`GENERATIONS_KEPT`] engine generations (generation, name): a result
    /// names its model within milliseconds, so older ones are never asked for, and a daemon that
    /// swaps every 30 s for a year does not keep a million names.
    generations: std::collections::VecDeque<(u32, String)>,
    /// The last generation numbered.
    last_generation: u32,
}

/// Engine generations whose names are kept.
pub const GENERATIONS_KEPT: usize = 64;

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

    /// The model name of an engine generation.
    pub fn generation_name(&self, generation: u32) -> Option<String> {
        let c = self.lock();
        c.generations
            .iter()
            .rev()
            .find(|(g, _)| *g == generation)
            .map(|(_, name)| name.clone())
    }

    /// The hand-over slot the pipeline thread polls between frames.
    pub fn swap_slot(&self) -> &SwapSlot {
        &self.swap
    }

    /// Numbers `p` with the next generation.
    fn number(&self, p: &mut Pipeline) {
        let mut c = self.lock();
        c.last_generation += 1;
        let g = c.last_generation;
        if c.generations.len() == GENERATIONS_KEPT {
            c.generations.pop_front();
        }
        c.generations.push_back((g, p.engine.info().name.clone()));
        p.generation = g;
    }

    /// Start-up: numbers `p` and records it as serving, before the pipeline thread owns it.
    pub fn install(&self, p: &mut Pipeline) {
        self.number(p);
        let mut c = self.lock();
        c.model = Some(p.engine.info().clone());
        c.memory = p.engine.memory();
    }

    /// Hands `p` to the pipeline thread and, once it took it (between two frames), records it as
    /// serving; returns the pipeline it replaced, for the caller to drop.
    pub fn swap_in(&self, mut p: Pipeline) -> Result<Option<Pipeline>, SwapError> {
        self.number(&mut p);
        let info = p.engine.info().clone();
        let memory = p.engine.memory();
        self.swap.stage(p);
        match self.swap.wait_retired(SWAP_WAIT) {
            Some(old) => {
                let mut c = self.lock();
                c.model = Some(info);
                c.memory = memory;
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
