//! Finding and opening `librtinfer_vart.so`, the shim over VART.
//!
//! VART is never linked: the shim is opened at run time so the same rtinfer binary runs on boards
//! with and without a DPU. Search order, as documented for users: config `vitis.library`, then
//! `/usr/lib/rtinfer/`, then the system loader's path. A candidate that opens but lacks a symbol or
//! speaks another ABI is not used; when nothing is usable the error lists every path tried with
//! what went wrong there (including each missing symbol by name).

use std::fmt;
use std::path::{Path, PathBuf};

use super::ffi;

/// File name of the shim library.
pub const LIBRARY_NAME: &str = "librtinfer_vart.so";
/// Where packages install it.
pub const SYSTEM_DIR: &str = "/usr/lib/rtinfer";

/// Every symbol of `ffi/vart_shim.h`, checked one by one so an error names all that are missing.
const SYMBOLS: [&str; 8] = [
    "rtv_abi_version",
    "rtv_version",
    "rtv_last_error",
    "rtv_open",
    "rtv_close",
    "rtv_tensor_count",
    "rtv_describe_tensor",
    "rtv_run",
];

/// Where a candidate came from, reported in the "tried" list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Config,
    SystemDir,
    SystemLoader,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Config => "config vitis.library",
            Origin::SystemDir => SYSTEM_DIR,
            Origin::SystemLoader => "system loader",
        })
    }
}

/// One place looked at, and what happened there.
pub type Attempt = crate::backend::search::Attempt<Origin>;

/// No candidate was usable.
#[derive(Debug, Clone, thiserror::Error)]
pub struct LibraryError {
    pub attempts: Vec<Attempt>,
}

impl fmt::Display for LibraryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "no usable Vitis AI shim library ({LIBRARY_NAME}, ABI {}); tried:",
            ffi::RTV_ABI_VERSION
        )?;
        crate::backend::search::write_attempts(f, &self.attempts)?;
        write!(
            f,
            "fix: build it on the board (make -C cpp && sudo make -C cpp install, see README \
             \"Vitis AI\"), or set vitis.library to its path"
        )
    }
}

/// Candidates in search order.
pub fn candidates(configured: Option<&Path>) -> Vec<(Origin, PathBuf)> {
    let mut out = Vec::new();
    if let Some(p) = configured {
        out.push((Origin::Config, p.to_path_buf()));
    }
    out.push((Origin::SystemDir, Path::new(SYSTEM_DIR).join(LIBRARY_NAME)));
    out.push((Origin::SystemLoader, PathBuf::from(LIBRARY_NAME)));
    out
}

/// Opens the first usable candidate.
pub fn load(configured: Option<&Path>) -> Result<(ffi::VartShim, Origin, PathBuf), LibraryError> {
    let mut attempts = Vec::new();
    for (origin, path) in candidates(configured) {
        // A bare name is for the loader to find; a path that does not exist is reported as such
        // rather than as the loader's longer message.
        if origin != Origin::SystemLoader && !path.exists() {
            attempts.push(Attempt {
                origin,
                path,
                outcome: "not found".into(),
            });
            continue;
        }
        match open(&path) {
            Ok(shim) => {
                for a in &attempts {
                    log::warn!(
                        "{} ({}) not used: {}",
                        a.path.display(),
                        a.origin,
                        a.outcome
                    );
                }
                return Ok((shim, origin, path));
            }
            Err(outcome) => attempts.push(Attempt {
                origin,
                path,
                outcome,
            }),
        }
    }
    Err(LibraryError { attempts })
}

/// Opens one library and checks its symbols and ABI version; the error text says what is wrong.
fn open(path: &Path) -> Result<ffi::VartShim, String> {
    // Opening a library runs its initialisers. The candidates are the configured path, our
    // install directory and our own library name: code the operator installed to be loaded here.
    // SAFETY: that is the precondition libloading asks callers to uphold.
    let lib = unsafe { libloading::Library::new(path) };
    let lib = lib.map_err(|e| crate::backend::error_chain(&e))?;
    let missing: Vec<&str> = SYMBOLS
        .iter()
        .copied()
        // SAFETY: the symbol is only looked up (as an untyped address) and never called here.
        .filter(|s| unsafe { lib.get::<*const ()>(s.as_bytes()) }.is_err())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing symbol{} {} (not an rtinfer VART shim, or an incomplete build)",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", ")
        ));
    }
    // Every symbol exists (checked above) and the library was built from ffi/vart_shim.h, whose
    // signatures the generated struct mirrors; the ABI check below rejects another revision.
    // SAFETY: the symbols have the signatures the struct declares.
    let shim = unsafe { ffi::VartShim::from_library(lib) };
    let shim = shim.map_err(|e| crate::backend::error_chain(&e))?;
    // SAFETY: rtv_abi_version takes no arguments and has no preconditions.
    let abi = unsafe { shim.rtv_abi_version() };
    if abi != ffi::RTV_ABI_VERSION {
        return Err(format!(
            "ABI version {abi}, this rtinfer needs {} (rebuild the shim from this release's \
             ffi/vart_shim.h)",
            ffi::RTV_ABI_VERSION
        ));
    }
    Ok(shim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_order_is_config_then_system_dir_then_loader() {
        let c = candidates(Some(Path::new("/opt/x/libshim.so")));
        assert_eq!(
            c,
            vec![
                (Origin::Config, PathBuf::from("/opt/x/libshim.so")),
                (
                    Origin::SystemDir,
                    PathBuf::from("/usr/lib/rtinfer/librtinfer_vart.so")
                ),
                (Origin::SystemLoader, PathBuf::from("librtinfer_vart.so")),
            ]
        );
        assert_eq!(candidates(None).len(), 2);
    }
}
