//! Build steps of the tensorrt backend (only when one of its cargo features is on).
//!
//! `tensorrt` compiles `cpp/trt_engine.cc` against the real SDK, found from `TENSORRT_ROOT` /
//! `TENSORRT_INCLUDE_DIR` / `TENSORRT_LIB_DIR` and `CUDA_ROOT` (default `/usr/local/cuda`), then
//! JetPack's Debian layout (`/usr/include/<multiarch>`, `/usr/lib/<multiarch>`), all under
//! `RTINFER_SYSROOT` when cross-building. When nothing is found the build stops with one message
//! naming those variables, instead of a compiler error about a missing `NvInfer.h`.
//!
//! `tensorrt-double` compiles the same file against the CPU test double in `cpp/trt_double/`, in
//! the shape `RTINFER_TRT_DOUBLE` selects (`8.5`, `10.3` or `10.16`; `10` is `10.3`, the default).
//! Either feature sets the `rtinfer_trt` cfg the Rust side is gated on.

/// Compiles and links what the tensorrt backend needs; a no-op in the default build.
pub fn configure() {
    println!("cargo:rerun-if-changed=build/tensorrt.rs");
    println!("cargo::rustc-check-cfg=cfg(rtinfer_trt)");
    #[cfg(any(feature = "tensorrt", feature = "tensorrt-double"))]
    enabled::configure();
}

#[cfg(any(feature = "tensorrt", feature = "tensorrt-double"))]
mod enabled {
    use std::path::PathBuf;

    const BRIDGE: &str = "src/backend/tensorrt/bridge.rs";
    const DOUBLE_BRIDGE: &str = "src/backend/tensorrt/double.rs";
    const LAYER: &str = "cpp/trt_engine.cc";

    /// Reads an environment variable and tells cargo to rerun when it changes; empty = unset.
    fn env(name: &str) -> Option<String> {
        println!("cargo:rerun-if-env-changed={name}");
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }

    fn rerun_on(paths: &[&str]) {
        for p in paths {
            println!("cargo:rerun-if-changed={p}");
        }
    }

    pub fn configure() {
        println!("cargo:rustc-cfg=rtinfer_trt");
        rerun_on(&[BRIDGE, LAYER, "cpp/trt_engine.h"]);
        if cfg!(feature = "tensorrt-double") {
            if cfg!(feature = "tensorrt") {
                println!(
                    "cargo:warning=features tensorrt and tensorrt-double are both on: building against the test double"
                );
            }
            double();
        } else {
            real();
        }
    }

    /// The TensorRT version (major, minor) the double imitates: 8.5.2, 10.3.0 or 10.16.1.
    fn double_shape() -> (&'static str, &'static str) {
        match env("RTINFER_TRT_DOUBLE").as_deref() {
            None | Some("10") | Some("10.3") | Some("10.3.0") => ("10", "3"),
            Some("10.16") | Some("10.16.1") => ("10", "16"),
            Some("8") | Some("8.5") | Some("8.5.2") => ("8", "5"),
            Some(other) => fail(&format!(
                "RTINFER_TRT_DOUBLE={other}: expected 8.5, 10.3 or 10.16 (the TensorRT API shape of the test double)"
            )),
        }
    }

    fn double() {
        let (major, minor) = double_shape();
        rerun_on(&[
            DOUBLE_BRIDGE,
            "cpp/trt_double/trt_double.cc",
            "cpp/trt_double/control_bridge.cc",
            "cpp/trt_double/control_bridge.h",
            "cpp/trt_double/include",
        ]);
        cxx_build::bridges([BRIDGE, DOUBLE_BRIDGE])
            .file(LAYER)
            .file("cpp/trt_double/trt_double.cc")
            .file("cpp/trt_double/control_bridge.cc")
            // As system headers, like a real SDK's: a deprecated API used by the layer still warns
            // at the layer's line; the double's own inline code does not.
            .flag("-isystem")
            .flag("cpp/trt_double/include")
            .define("TRT_DOUBLE_MAJOR", major)
            .define("TRT_DOUBLE_MINOR", minor)
            .std("c++17")
            // The double marks what its version deprecates (tests/trt_headers.rs holds the 10.x
            // marks to the real headers): the layer must not use any of it.
            .flag_if_supported("-Werror=deprecated-declarations")
            .warnings(false)
            .compile("rtinfer_trt");
    }

    struct Sdk {
        include: Vec<PathBuf>,
        lib: Vec<PathBuf>,
    }

    fn multiarch() -> &'static str {
        match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
            Ok("aarch64") => "aarch64-linux-gnu",
            _ => "x86_64-linux-gnu",
        }
    }

    /// The first directory of `candidates` holding `file`.
    fn find(candidates: &[PathBuf], file: &str) -> Option<PathBuf> {
        candidates.iter().find(|d| d.join(file).is_file()).cloned()
    }

    fn locate(tried: &mut Vec<String>) -> Option<Sdk> {
        let sysroot = PathBuf::from(env("RTINFER_SYSROOT").unwrap_or_else(|| "/".into()));
        let under = |p: &str| sysroot.join(p.trim_start_matches('/'));
        let root = env("TENSORRT_ROOT").map(PathBuf::from);
        let mut inc: Vec<PathBuf> = Vec::new();
        let mut lib: Vec<PathBuf> = Vec::new();
        if let Some(d) = env("TENSORRT_INCLUDE_DIR") {
            inc.push(d.into());
        }
        if let Some(d) = env("TENSORRT_LIB_DIR") {
            lib.push(d.into());
        }
        if let Some(r) = &root {
            inc.push(r.join("include"));
            lib.push(r.join("lib"));
        }
        inc.push(under(&format!("/usr/include/{}", multiarch())));
        lib.push(under(&format!("/usr/lib/{}", multiarch())));
        let cuda = env("CUDA_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|| under("/usr/local/cuda"));
        let cuda_inc = vec![cuda.join("include")];
        let target_lib = if multiarch().starts_with("aarch64") {
            "targets/aarch64-linux/lib"
        } else {
            "targets/x86_64-linux/lib"
        };
        let cuda_lib = vec![cuda.join("lib64"), cuda.join(target_lib)];
        let show = |v: &[PathBuf]| {
            v.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let found = (
            find(&inc, "NvInfer.h"),
            find(&inc, "NvOnnxParser.h"),
            find(&lib, "libnvinfer.so"),
            find(&lib, "libnvonnxparser.so"),
            find(&cuda_inc, "cuda_runtime_api.h"),
            find(&cuda_lib, "libcudart.so"),
        );
        let names = [
            ("NvInfer.h", show(&inc)),
            ("NvOnnxParser.h", show(&inc)),
            ("libnvinfer.so", show(&lib)),
            ("libnvonnxparser.so", show(&lib)),
            ("cuda_runtime_api.h", show(&cuda_inc)),
            ("libcudart.so", show(&cuda_lib)),
        ];
        let hits = [&found.0, &found.1, &found.2, &found.3, &found.4, &found.5];
        for ((file, dirs), hit) in names.iter().zip(hits) {
            if hit.is_none() {
                tried.push(format!("{file} not in: {dirs}"));
            }
        }
        match found {
            (Some(i), Some(p), Some(l), Some(o), Some(ci), Some(cl)) => Some(Sdk {
                include: dedup(vec![i, p, ci]),
                lib: dedup(vec![l, o, cl]),
            }),
            _ => None,
        }
    }

    fn dedup(mut v: Vec<PathBuf>) -> Vec<PathBuf> {
        v.dedup();
        v
    }

    fn real() {
        let mut tried = Vec::new();
        let Some(sdk) = locate(&mut tried) else {
            fail(&format!(
                "feature `tensorrt` needs the TensorRT and CUDA SDKs, which were not found ({}). \
                 Set TENSORRT_ROOT (or TENSORRT_INCLUDE_DIR and TENSORRT_LIB_DIR) and CUDA_ROOT \
                 (default /usr/local/cuda); JetPack installs are found without them. For a cross \
                 build set RTINFER_SYSROOT to the board's root file system. Without a GPU, build \
                 with `--features tensorrt-double` instead.",
                tried.join("; ")
            ));
        };
        let mut b = cxx_build::bridge(BRIDGE);
        b.file(LAYER).std("c++17").warnings(false);
        for d in &sdk.include {
            b.include(d);
        }
        if let Some(s) = env("RTINFER_SYSROOT") {
            b.flag(format!("--sysroot={s}"));
        }
        b.compile("rtinfer_trt");
        for d in &sdk.lib {
            println!("cargo:rustc-link-search=native={}", d.display());
        }
        for l in ["nvinfer", "nvonnxparser", "cudart"] {
            println!("cargo:rustc-link-lib=dylib={l}");
        }
    }

    /// Stops the build with one message (cargo prints it as the build's only error and fails
    /// the build after the script ends; exiting 0 spares the user the script's whole output).
    fn fail(msg: &str) -> ! {
        println!("cargo::error={msg}");
        std::process::exit(0);
    }
}
