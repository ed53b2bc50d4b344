//! placeholder
pub struct Pacer;
