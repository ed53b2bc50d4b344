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

/// Generation names kept for results and `last_result` (frames of older engines are long gone).
pub const GENERATIONS_KEPT: usize = 256;

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
    /// Names of the newest engines numbered, oldest first: the one at index `i` is generation
    /// `numbered - len + 1 + i`. Bounded ([`GENERATIONS_KEPT`]): a governor that steps every few
    /// seconds for months numbers many engines, and only recent frames ask for a name.
    generations: VecDeque<String>,
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
        c.generations.push_back(p.engine.info().name.clone());
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
