//! Build script. The default build needs no vendor SDK: it records the target triple (for
//! `rtinfer --version`) and hands over to one small module per optional foreign backend, each of
//! which does nothing unless its cargo feature is enabled.

#[path = "build/tensorrt.rs"]
mod tensorrt;
#[path = "build/vitis.rs"]
mod vitis;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=RTINFER_TARGET={target}");
    tensorrt::configure();
    vitis::configure();
}
