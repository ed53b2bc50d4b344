//! rtinfer: a real-time CNN inference daemon for embedded Linux boards, and the tooling of the
//! study it grew out of (Gealy & George, ACM TECS 2024).
//!
//! The crate is a library so integration tests and benchmarks drive the very code the binary
//! runs; `src/main.rs` is only the CLI edge. `unsafe` is denied here and allowed only inside the
//! FFI modules that mount foreign code.
#![deny(unsafe_code)]

pub mod backend;
pub mod capture;
pub mod causes;
pub mod config;
pub mod daemon;
pub mod governor;
pub mod invalid_key;
pub mod misslog;
pub mod models;
pub mod mqtt;
pub mod onnx;
pub mod pipeline;
pub mod postprocess;
pub mod power;
pub mod preprocess;
pub mod rt;
pub mod signals;
pub mod slot;
pub mod source;
pub mod state;
pub mod stats;
pub mod status;
pub mod study;
pub mod system;
pub mod systemd;
pub mod tensor;
pub mod time;
pub mod units;
pub mod watchdog;
