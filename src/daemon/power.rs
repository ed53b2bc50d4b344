//! The daemon-facing glue kept here so `report.rs` needs one call per place.

use super::Shared;
use crate::state::State;

/// The contract's `state`: a running daemon whose meter is lost is `degraded`.
pub fn state(s: &Shared) -> State {
    match (s.state(), s.power()) {
        (State::Running, Some(p)) if !p.connected() => State::Degraded,
        (st, _) => st,
    }
}

/// `"\npower (...): ..."` for the final summary, empty without a meter.
pub fn summary_line(s: &Shared, processed: u64) -> String {
    s.power()
        .map_or_else(String::new, |p| format!("\n{}", p.summary_line(processed)))
}
