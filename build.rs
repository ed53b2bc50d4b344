//! Build script. The default build needs no vendor SDK: it only records the target triple so
//! `rtinfer --version` can say what it was built for. Vendor backends (TensorRT via cxx, the VART
//! shim via bindgen) hook in here behind their cargo features.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=RTINFER_TARGET={target}");
}
