//! The engine-cache key. A TensorRT engine is only valid for the exact TensorRT build, GPU and
//! builder settings that made it, and an int8 engine also for its calibration data; reusing one
//! across any of those changes is a silent accuracy or compatibility bug. So the key is the
//! SHA-256 of a canonical text listing every such input (jetson-inference keys its cache the same
//! way), and that text is written next to the engine so a cache entry explains itself.

use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Everything that changes a built engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyParts {
    /// SHA-256 of the `.onnx` file.
    pub model_sha256: String,
    /// `MAJOR.MINOR.PATCH.BUILD` plus the loaded library's `getInferLibVersion()`.
    pub tensorrt: String,
    /// GPU compute capability (`7.2` Xavier, `8.7` Orin).
    pub compute_capability: String,
    pub precision: String,
    /// How this TensorRT builds that precision (`precision::describe`): calibrated int8 and
    /// explicit int8 are different engines.
    pub build_path: String,
    /// Only where the build path takes it (calibrated int8); false elsewhere.
    pub fp16_fallback: bool,
    /// `-1` = GPU only.
    pub dla_core: i32,
    pub gpu_fallback: bool,
    pub workspace_bytes: u64,
    /// The input shape profile (empty = the model's own shape, batch 1).
    pub profile_shape: Vec<i64>,
    /// SHA-256 of the calibration data (images or cache), for int8 builds.
    pub calibration_sha256: Option<String>,
}

impl KeyParts {
    /// The canonical text the key hashes: one `name=value` line per part, in this order.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let shape: Vec<String> = self.profile_shape.iter().map(i64::to_string).collect();
        let _ = writeln!(s, "model_sha256={}", self.model_sha256);
        let _ = writeln!(s, "tensorrt={}", self.tensorrt);
        let _ = writeln!(s, "compute_capability={}", self.compute_capability);
        let _ = writeln!(s, "precision={}", self.precision);
        let _ = writeln!(s, "build_path={}", self.build_path);
        let _ = writeln!(s, "fp16_fallback={}", self.fp16_fallback);
        let _ = writeln!(s, "dla_core={}", self.dla_core);
        let _ = writeln!(s, "gpu_fallback={}", self.gpu_fallback);
        let _ = writeln!(s, "workspace_bytes={}", self.workspace_bytes);
        let _ = writeln!(s, "profile_shape={}", shape.join("x"));
        let _ = writeln!(
            s,
            "calibration_sha256={}",
            self.calibration_sha256.as_deref().unwrap_or("none")
        );
        s
    }

    /// The key: hex SHA-256 of [`KeyParts::describe`].
    pub fn key(&self) -> String {
        hex(&Sha256::digest(self.describe().as_bytes()))
    }

    /// The cached engine's file name: `MODEL.PRECISION.KEY16.engine`.
    pub fn file_name(&self, model: &str) -> String {
        format!("{model}.{}.{}.engine", self.precision, &self.key()[..16])
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Hex SHA-256 of a string (a key made of names rather than file contents).
pub fn sha256_text(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// Hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Hex SHA-256 over a list of files: each file's name, its length and its bytes, in order, so
/// renaming, reordering or editing any image changes it.
pub fn sha256_files(paths: &[impl AsRef<Path>]) -> std::io::Result<String> {
    let mut h = Sha256::new();
    for p in paths {
        let p = p.as_ref();
        let bytes = std::fs::read(p)?;
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        h.update(name.as_bytes());
        h.update([0u8]);
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(hex(&h.finalize()))
}
