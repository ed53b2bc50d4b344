//! Build steps of the vitis backend: none. The backend is in every build because it only
//! `dlopen`s our VART shim at run time, and its bindings (`src/backend/vitis/ffi.rs`) are
//! committed bindgen output, so no build needs libclang or a Vitis AI SDK (the test
//! `vitis::bindings` keeps them equal to `ffi/vart_shim.h`). The shim itself is built on the
//! board by `cpp/Makefile`.

/// Nothing to compile or link for the vitis backend.
pub fn configure() {
    println!("cargo:rerun-if-changed=build/vitis.rs");
}
