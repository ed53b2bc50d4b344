//! The error every config section's `check()` returns: which key is wrong and why.
//!
//! Each section (`[power]`, `[tensorrt]`, `[models]`, ...) is checked beside its own option type,
//! which knows nothing of the file it came from; `config.rs` adds the path. This type is the only
//! thing the sections and `config.rs` share, so it sits below both.

/// A config key whose value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct InvalidKey {
    /// `section.key`, as written in the file (`power.meter`).
    pub key: &'static str,
    /// Why, naming the value.
    pub message: String,
}

impl InvalidKey {
    pub fn new(key: &'static str, message: impl Into<String>) -> InvalidKey {
        InvalidKey {
            key,
            message: message.into(),
        }
    }
}
