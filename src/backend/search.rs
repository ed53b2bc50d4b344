//! What the run-time library searches share (ONNX Runtime, the VART shim): one record per place
//! looked at, and one way to list them in the error, so a user reads the same shape of message
//! whichever backend could not load.

use std::fmt;
use std::path::PathBuf;

/// One place looked at, and what happened there; `O` says where the candidate came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt<O> {
    pub origin: O,
    pub path: PathBuf,
    pub outcome: String,
}

/// Writes `attempts` as the indented "tried" list of a library error, one line each.
pub fn write_attempts<O: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    attempts: &[Attempt<O>],
) -> fmt::Result {
    for a in attempts {
        writeln!(f, "  - {} ({}): {}", a.path.display(), a.origin, a.outcome)?;
    }
    Ok(())
}
