//! The vitis backend is not part of this build yet (issue 8): selecting it gives a clear error
//! instead of a missing symbol.

use super::{Backend, BackendError, BackendKind};
use crate::config::Config;

/// The backend, when compiled in.
pub fn backend(_cfg: &Config) -> Result<Box<dyn Backend>, BackendError> {
    Err(BackendError::NotCompiled {
        backend: BackendKind::Vitis,
    })
}
