//! Build steps of the tensorrt backend (only when its cargo feature is on).

/// Compiles and links what the tensorrt backend needs; a no-op in the default build.
pub fn configure() {
    println!("cargo:rerun-if-changed=build/tensorrt.rs");
}
