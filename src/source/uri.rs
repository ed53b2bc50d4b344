//! placeholder
use super::{Source, SourceError};
#[derive(Debug, Clone)]
pub enum SourceKind {}
#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub kind: SourceKind,
}
pub fn open(spec: &SourceSpec) -> Result<Box<dyn Source>, SourceError> {
    match spec.kind {}
}
