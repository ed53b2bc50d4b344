//! The daemon's state word (`/status` `state`), moved by the threads that witness each change:
//! the stats thread (`waiting` → `running` at the first result), the capture thread and its stall
//! watcher (`running` ⇄ `degraded`), the daemon (`stopping`). One atomic, so none of them needs
//! the others or the daemon to tell.

use std::sync::atomic::{AtomicU8, Ordering};

/// Daemon state of the contract (`state` in `/status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Starting = 0,
    Waiting = 1,
    Running = 2,
    Degraded = 3,
    Stopping = 4,
    /// Derived, never stored: the model's run has not returned for far longer than a frame
    /// (see `LoopControl::stalled`).
    Stalled = 5,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Waiting => "waiting",
            State::Running => "running",
            State::Degraded => "degraded",
            State::Stopping => "stopping",
            State::Stalled => "stalled",
        }
    }

    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Waiting,
            2 => State::Running,
            3 => State::Degraded,
            4 => State::Stopping,
            5 => State::Stalled,
            _ => State::Starting,
        }
    }
}

/// The state, shared between threads.
#[derive(Debug)]
pub struct StateCell(AtomicU8);

impl StateCell {
    pub fn new(s: State) -> StateCell {
        StateCell(AtomicU8::new(s as u8))
    }

    pub fn get(&self) -> State {
        State::from_u8(self.0.load(Ordering::Relaxed))
    }

    pub fn set(&self, s: State) {
        self.0.store(s as u8, Ordering::Relaxed);
    }

    /// Moves to `to` only from `from`; whether it did.
    pub fn change(&self, from: State, to: State) -> bool {
        self.0
            .compare_exchange(from as u8, to as u8, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_moves_only_from_the_expected_state() {
        let s = StateCell::new(State::Waiting);
        assert!(!s.change(State::Running, State::Degraded));
        assert_eq!(s.get(), State::Waiting);
        assert!(s.change(State::Waiting, State::Running));
        assert_eq!(s.get(), State::Running);
        s.set(State::Stopping);
        assert_eq!(s.get().name(), "stopping");
    }
}
