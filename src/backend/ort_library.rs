//! Finding and loading `libonnxruntime.so` at run time.
//!
//! rtinfer links nothing from ONNX Runtime at build time (ort's `load-dynamic`), so one binary runs
//! on any board with ONNX Runtime 1.17 or newer. The library is looked for in a fixed, documented
//! order; ort's lazy loader would panic on a bad library, so we always go through
//! `ort::init_from`, which returns an error, and when nothing loads the error lists every place
//! tried together with the one-line fix.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a candidate came from, reported in the "tried" list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Config,
    EnvVar,
    BesideExecutable,
    SystemDir,
    PythonPackage,
    SystemLoader,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Config => "config onnxruntime.library",
            Origin::EnvVar => "ORT_DYLIB_PATH",
            Origin::BesideExecutable => "next to the executable",
            Origin::SystemDir => "/usr/lib/rtinfer",
            Origin::PythonPackage => "Python onnxruntime package",
            Origin::SystemLoader => "system loader",
        })
    }
}

/// One place looked at, and what happened there.
pub type Attempt = crate::backend::search::Attempt<Origin>;

/// No candidate loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub struct LibraryError {
    pub attempts: Vec<Attempt>,
}

impl fmt::Display for LibraryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "no usable ONNX Runtime library (libonnxruntime.so, version 1.17 or newer); tried:"
        )?;
        crate::backend::search::write_attempts(f, &self.attempts)?;
        write!(
            f,
            "fix: run scripts/setup.sh (fetches 1.31.1 from PyPI), or set ORT_DYLIB_PATH / \
             onnxruntime.library to your libonnxruntime.so"
        )
    }
}

/// The library that loaded, for logs and `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub path: PathBuf,
    pub origin: Origin,
}

/// Candidates in search order: config, `ORT_DYLIB_PATH`, beside the executable,
/// `/usr/lib/rtinfer/`, a Python `onnxruntime` install, then bare names for the system loader.
pub fn candidates(configured: Option<&Path>) -> Vec<(Origin, PathBuf)> {
    let mut out = Vec::new();
    if let Some(p) = configured {
        out.push((Origin::Config, p.to_path_buf()));
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        out.push((Origin::EnvVar, PathBuf::from(p)));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        for name in library_names(&dir) {
            out.push((Origin::BesideExecutable, name));
        }
    }
    for name in library_names(Path::new("/usr/lib/rtinfer")) {
        out.push((Origin::SystemDir, name));
    }
    for dir in python_capi_dirs() {
        for name in library_names(&dir) {
            out.push((Origin::PythonPackage, name));
        }
    }
    for bare in ["libonnxruntime.so", "libonnxruntime.so.1"] {
        out.push((Origin::SystemLoader, PathBuf::from(bare)));
    }
    out
}

/// Loads the first candidate that works into ort's global slot. Safe to call more than once: after
/// a success, later calls return the same library without reloading.
pub fn load(configured: Option<&Path>) -> Result<Loaded, LibraryError> {
    use std::sync::OnceLock;
    static LOADED: OnceLock<Loaded> = OnceLock::new();
    if let Some(l) = LOADED.get() {
        return Ok(l.clone());
    }
    let mut attempts = Vec::new();
    for (origin, path) in candidates(configured) {
        let is_bare = path.components().count() == 1 && origin == Origin::SystemLoader;
        if !is_bare && !path.exists() {
            attempts.push(Attempt {
                origin,
                path,
                outcome: "not found".into(),
            });
            continue;
        }
        match ort::init_from(&path) {
            Ok(builder) => match builder
                .with_name("rtinfer")
                .with_logger(super::ort_log::logger())
                .build()
            {
                Ok(env) => {
                    ENVIRONMENT.get_or_init(|| env);
                    let loaded = Loaded { path, origin };
                    log::info!(
                        "ONNX Runtime loaded from {} ({})",
                        loaded.path.display(),
                        loaded.origin
                    );
                    return Ok(LOADED.get_or_init(|| loaded).clone());
                }
                Err(e) => attempts.push(Attempt {
                    origin,
                    path,
                    outcome: format!("environment failed: {e}"),
                }),
            },
            Err(e) => attempts.push(Attempt {
                origin,
                path,
                outcome: super::error_chain(&e),
            }),
        }
    }
    Err(LibraryError { attempts })
}

static ENVIRONMENT: std::sync::OnceLock<ort::environment::Environment> = std::sync::OnceLock::new();

/// The process's ONNX Runtime environment, once [`load`] succeeded.
pub fn environment() -> Option<&'static ort::environment::Environment> {
    ENVIRONMENT.get()
}

/// `libonnxruntime.so`, then versioned files (`libonnxruntime.so.1.31.1`) in a directory, newest
/// name last so the plain name wins when both exist.
fn library_names(dir: &Path) -> Vec<PathBuf> {
    let mut names = vec![dir.join("libonnxruntime.so")];
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut versioned: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libonnxruntime.so.") && !n.ends_with(".part"))
            })
            .collect();
        versioned.sort();
        versioned.reverse();
        names.extend(versioned);
    }
    names
}

/// `site-packages/onnxruntime/capi` directories of Python installs that exist on this machine:
/// an active virtualenv or conda environment, the user site, pyenv's versions, and the
/// system/local prefixes.
fn python_capi_dirs() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(prefix) = std::env::var_os(var) {
            roots.push(PathBuf::from(prefix).join("lib"));
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        let home = PathBuf::from(home);
        roots.push(home.join(".local/lib"));
        if let Ok(rd) = std::fs::read_dir(home.join(".pyenv/versions")) {
            let mut versions: Vec<PathBuf> = rd.flatten().map(|e| e.path().join("lib")).collect();
            versions.sort();
            roots.extend(versions);
        }
    }
    roots.extend(["/usr/lib", "/usr/local/lib"].map(PathBuf::from));
    let mut out = Vec::new();
    for root in roots {
        let Ok(rd) = std::fs::read_dir(&root) else {
            continue;
        };
        let mut pythons: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("python3"))
            })
            .collect();
        pythons.sort();
        for py in pythons {
            for pkgs in ["site-packages", "dist-packages"] {
                let capi = py.join(pkgs).join("onnxruntime/capi");
                if capi.is_dir() {
                    out.push(capi);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_path_comes_first_and_bare_names_last() {
        let c = candidates(Some(Path::new("/opt/x/libonnxruntime.so")));
        assert_eq!(
            c[0],
            (Origin::Config, PathBuf::from("/opt/x/libonnxruntime.so"))
        );
        assert_eq!(c.last().map(|x| x.0.clone()), Some(Origin::SystemLoader));
        assert!(
            c.iter()
                .any(|(o, p)| *o == Origin::SystemDir && p.starts_with("/usr/lib/rtinfer"))
        );
    }

    #[test]
    fn error_lists_every_attempt_and_the_fix() {
        let e = LibraryError {
            attempts: vec![
                Attempt {
                    origin: Origin::EnvVar,
                    path: "/nope/libonnxruntime.so".into(),
                    outcome: "not found".into(),
                },
                Attempt {
                    origin: Origin::SystemLoader,
                    path: "libonnxruntime.so".into(),
                    outcome: "dlopen failed".into(),
                },
            ],
        };
        let s = e.to_string();
        assert!(
            s.contains("/nope/libonnxruntime.so (ORT_DYLIB_PATH): not found"),
            "{s}"
        );
        assert!(
            s.contains("libonnxruntime.so (system loader): dlopen failed"),
            "{s}"
        );
        assert!(s.contains("scripts/setup.sh"), "{s}");
    }
}
