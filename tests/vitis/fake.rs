//! The fake DPU library, compiled at test time, and fake model descriptions.
//!
//! Built by running the C compiler directly (`$CC`, else `cc`) rather than through the `cc`
//! crate: `cc` is made for build scripts and reads their environment (TARGET, OPT_LEVEL, ...),
//! which a test does not have, and one visible compiler command is easier to debug. Each variant
//! is built once per test run into cargo's per-target temp dir.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Which build of the fake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The complete ABI.
    Full,
    /// Built without `rtv_run`: a library missing a symbol.
    WithoutRun,
    /// Reports ABI version 99.
    OtherAbi,
}

impl Variant {
    fn dir_name(self) -> &'static str {
        match self {
            Variant::Full => "full",
            Variant::WithoutRun => "without-run",
            Variant::OtherAbi => "other-abi",
        }
    }

    fn defines(self) -> &'static [&'static str] {
        match self {
            Variant::Full => &[],
            Variant::WithoutRun => &["-DFAKE_DPU_WITHOUT_RUN"],
            Variant::OtherAbi => &["-DFAKE_DPU_ABI=99"],
        }
    }
}

static FULL: OnceLock<PathBuf> = OnceLock::new();
static WITHOUT_RUN: OnceLock<PathBuf> = OnceLock::new();
static OTHER_ABI: OnceLock<PathBuf> = OnceLock::new();

/// Path of the fake `librtinfer_vart.so` of a variant, compiled on first use.
pub fn library(v: Variant) -> PathBuf {
    let cell = match v {
        Variant::Full => &FULL,
        Variant::WithoutRun => &WITHOUT_RUN,
        Variant::OtherAbi => &OTHER_ABI,
    };
    cell.get_or_init(|| compile(v)).clone()
}

fn compile(v: Variant) -> PathBuf {
    let mut args = vec!["-std=c11"];
    args.extend(v.defines());
    crate::util::compile_shared(
        "cpp/fake_dpu/fake_dpu.c",
        &format!("fake_dpu/{}", v.dir_name()),
        "librtinfer_vart.so",
        &args,
    )
}

/// Writes a fake model description `NAME.xmodel` into `dir`.
pub fn model(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(format!("{name}.xmodel"));
    std::fs::write(&p, format!("fake-dpu 1\n{body}")).expect("write fake model");
    p
}

/// A config file pointing `vitis.library` at the fake.
pub fn config(dir: &Path, library: &Path) -> PathBuf {
    let p = dir.join("rtinfer.toml");
    std::fs::write(
        &p,
        format!(
            "[vitis]\nlibrary = \"{}\"\ntimeout_ms = 500\n",
            library.display()
        ),
    )
    .expect("write config");
    p
}
