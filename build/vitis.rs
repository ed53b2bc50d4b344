//! Build steps of the vitis backend (only when its cargo feature is on).

/// Compiles and links what the vitis backend needs; a no-op in the default build.
pub fn configure() {
    println!("cargo:rerun-if-changed=build/vitis.rs");
}
