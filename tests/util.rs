//! Shared helpers for the integration tests: the binary under test, per-test temp dirs, and
//! the ONNX Runtime library fetched by `scripts/setup.sh`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The `rtinfer` binary cargo built for these tests.
pub fn rtinfer() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rtinfer"));
    c.env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()));
    c
}

/// A fresh temporary directory removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("rtinfer-test-").tempdir().expect("create temp dir")
}

/// Path of the ONNX Runtime shared library for this host, as fetched by `scripts/setup.sh`
/// into `.cache/onnxruntime/<arch>/`. `ORT_DYLIB_PATH` wins when set.
pub fn ort_library() -> PathBuf {
    if let Ok(p) = std::env::var("ORT_DYLIB_PATH") {
        return PathBuf::from(p);
    }
    let arch = std::env::consts::ARCH;
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".cache/onnxruntime")
        .join(arch)
        .join("libonnxruntime.so.1.31.1");
    assert!(p.exists(), "{} missing: run scripts/setup.sh first", p.display());
    p
}
