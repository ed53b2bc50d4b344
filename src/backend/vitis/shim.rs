//! Safe handles over the shim's C ABI: the only place the Vitis backend calls foreign code.
//!
//! Every status goes through one funnel ([`Shim::check`]) that turns it into a [`ShimError`]
//! carrying the shim's own message, so no call site can forget `rtv_last_error`. A [`Model`] owns
//! its handle and closes it on drop, and keeps the library loaded for as long as it lives.

use std::ffi::{CStr, CString, c_char};
use std::fmt;
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};
use std::sync::Arc;

use super::ffi;
use super::library::{self, LibraryError, Origin};
use crate::backend::ElementType;

/// Inputs or outputs a model may have (the run call passes pointer arrays on the stack).
pub const MAX_TENSORS: usize = 8;

/// A failed call into the shim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimError {
    pub call: &'static str,
    pub status: i32,
    pub message: String,
}

impl ShimError {
    fn status_name(&self) -> &'static str {
        match self.status {
            ffi::RTV_ERR_ARGUMENT => "bad argument",
            ffi::RTV_ERR_OPEN => "cannot open",
            ffi::RTV_ERR_MODEL => "unsupported model",
            ffi::RTV_ERR_RUN => "run failed",
            ffi::RTV_ERR_TIMEOUT => "timed out",
            ffi::RTV_ERR_INTERNAL => "internal error",
            _ => "unknown status",
        }
    }
}

impl fmt::Display for ShimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = if self.message.is_empty() {
            "(no message)"
        } else {
            &self.message
        };
        write!(
            f,
            "{} ({}, status {}): {msg}",
            self.call,
            self.status_name(),
            self.status
        )
    }
}

/// A loaded shim library.
pub struct Shim {
    lib: ffi::VartShim,
    pub path: PathBuf,
    pub origin: Origin,
    /// What the implementation says it is (`rtv_version`).
    pub version: String,
}

impl Shim {
    /// Finds and opens the library (see [`library`]).
    pub fn load(configured: Option<&Path>) -> Result<Shim, LibraryError> {
        let (lib, origin, path) = library::load(configured)?;
        // rtv_version returns a static NUL-terminated string, or null (handled by `owned`).
        // SAFETY: rtv_version has no preconditions.
        let version = unsafe { owned(lib.rtv_version()) };
        Ok(Shim {
            lib,
            path,
            origin,
            version,
        })
    }

    /// The funnel: `RTV_OK` or the shim's message for this thread's last failure.
    fn check(&self, call: &'static str, status: i32) -> Result<(), ShimError> {
        if status == ffi::RTV_OK {
            return Ok(());
        }
        // rtv_last_error returns this thread's NUL-terminated message, valid until the next call
        // on this thread.
        // SAFETY: the message is copied (`owned`) before any other call.
        let message = unsafe { owned(self.lib.rtv_last_error()) };
        Err(ShimError {
            call,
            status,
            message,
        })
    }
}

/// Copies a C string (null reads as empty).
///
/// # Safety
/// `p` is null or points to a NUL-terminated string that stays valid during the call.
unsafe fn owned(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null and NUL-terminated per this function's contract.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Input or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Input,
    Output,
}

impl Direction {
    fn raw(self) -> i32 {
        match self {
            Direction::Input => ffi::RTV_INPUT,
            Direction::Output => ffi::RTV_OUTPUT,
        }
    }
}

/// One tensor of the DPU subgraph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorDesc {
    pub name: String,
    /// Batch first; NHWC for images.
    pub dims: Vec<i64>,
    /// `int8`, `uint8`, `float32` or `other`.
    pub element: ElementType,
    pub fix_point: Option<i32>,
    /// Bytes of one batch element.
    pub batch_bytes: usize,
}

impl TensorDesc {
    fn from_raw(t: &ffi::rtv_tensor_info) -> TensorDesc {
        // `c_char` is i8 on x86_64 and u8 on aarch64: the cast is needed on one, a no-op on the other.
        #[allow(clippy::unnecessary_cast)]
        let name_bytes: Vec<u8> = t.name.iter().map(|c| *c as u8).collect();
        let name = CStr::from_bytes_until_nul(&name_bytes)
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_else(|_| String::from_utf8_lossy(&name_bytes).into_owned());
        let n = (t.ndims.max(0) as usize).min(t.dims.len());
        TensorDesc {
            name,
            dims: t.dims[..n].iter().map(|d| i64::from(*d)).collect(),
            element: match t.dtype {
                ffi::RTV_DTYPE_INT8 => ElementType::Int8,
                ffi::RTV_DTYPE_UINT8 => ElementType::Uint8,
                ffi::RTV_DTYPE_FLOAT32 => ElementType::Float32,
                _ => ElementType::Other,
            },
            fix_point: (t.has_fix_point != 0).then_some(t.fix_point),
            batch_bytes: usize::try_from(t.batch_bytes).unwrap_or(0),
        }
    }
}

/// An opened model: a handle of the shim, closed on drop.
pub struct Model {
    shim: Arc<Shim>,
    handle: NonNull<ffi::rtv_model>,
}

// SAFETY: the C ABI allows a handle to move between threads as long as two threads never use it
// at once; `Model` is not `Sync` and every call that uses the handle mutably takes `&mut self`
// (the read-only calls only read tensor descriptions fixed at open).
unsafe impl Send for Model {}

impl Model {
    /// Opens an `.xmodel` (`rtv_open`).
    pub fn open(shim: Arc<Shim>, path: &Path) -> Result<Model, ShimError> {
        let c_path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| ShimError {
            call: "rtv_open",
            status: ffi::RTV_ERR_ARGUMENT,
            message: format!("{}: path contains a NUL byte", path.display()),
        })?;
        let mut raw: *mut ffi::rtv_model = ptr::null_mut();
        // SAFETY: `c_path` is NUL-terminated and outlives the call; `raw` is a valid out pointer.
        let status = unsafe { shim.lib.rtv_open(c_path.as_ptr(), &mut raw) };
        shim.check("rtv_open", status)?;
        let handle = NonNull::new(raw).ok_or_else(|| ShimError {
            call: "rtv_open",
            status: ffi::RTV_ERR_INTERNAL,
            message: "returned success without a handle".into(),
        })?;
        Ok(Model { shim, handle })
    }

    /// The tensors of one direction.
    pub fn tensors(&self, dir: Direction) -> Result<Vec<TensorDesc>, ShimError> {
        let mut n = 0i32;
        // SAFETY: the handle is live (owned by self); `n` is a valid out pointer.
        let status = unsafe {
            self.shim
                .lib
                .rtv_tensor_count(self.handle.as_ptr(), dir.raw(), &mut n)
        };
        self.shim.check("rtv_tensor_count", status)?;
        (0..n)
            .map(|i| {
                // SAFETY: plain-old-data struct of integers and chars: all-zero is a valid value.
                let mut t: ffi::rtv_tensor_info = unsafe { std::mem::zeroed() };
                // SAFETY: the handle is live; `t` is a valid out pointer of the declared type.
                let status = unsafe {
                    self.shim
                        .lib
                        .rtv_describe_tensor(self.handle.as_ptr(), dir.raw(), i, &mut t)
                };
                self.shim.check("rtv_describe_tensor", status)?;
                Ok(TensorDesc::from_raw(&t))
            })
            .collect()
    }

    /// Runs one frame. Allocates nothing: pointer arrays live on the stack.
    pub fn run(
        &mut self,
        inputs: &[&[i8]],
        outputs: &mut [Vec<i8>],
        timeout_ms: i32,
    ) -> Result<(), ShimError> {
        if inputs.len() > MAX_TENSORS || outputs.len() > MAX_TENSORS {
            return Err(ShimError {
                call: "rtv_run",
                status: ffi::RTV_ERR_ARGUMENT,
                message: format!("more than {MAX_TENSORS} inputs or outputs"),
            });
        }
        let mut in_ptrs = [ptr::null::<i8>(); MAX_TENSORS];
        let mut in_lens = [0i64; MAX_TENSORS];
        for (i, b) in inputs.iter().enumerate() {
            in_ptrs[i] = b.as_ptr();
            in_lens[i] = b.len() as i64;
        }
        let mut out_ptrs = [ptr::null_mut::<i8>(); MAX_TENSORS];
        let mut out_lens = [0i64; MAX_TENSORS];
        for (i, b) in outputs.iter_mut().enumerate() {
            out_ptrs[i] = b.as_mut_ptr();
            out_lens[i] = b.len() as i64;
        }
        // The handle is live and used by this thread only (&mut self). Each of the first
        // `inputs.len()` input pointers is valid for reads of its length and each of the first
        // `outputs.len()` output pointers for writes of its length (live slices borrowed for the
        // whole call); the shim checks the lengths against the tensors.
        // SAFETY: every pointer is valid for its length, and the shim touches nothing beyond it.
        let status = unsafe {
            self.shim.lib.rtv_run(
                self.handle.as_ptr(),
                in_ptrs.as_ptr(),
                in_lens.as_ptr(),
                inputs.len() as i32,
                out_ptrs.as_ptr(),
                out_lens.as_ptr(),
                outputs.len() as i32,
                timeout_ms,
            )
        };
        self.shim.check("rtv_run", status)
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // The library is still loaded: self.shim keeps it alive.
        // SAFETY: the handle came from rtv_open and is closed exactly once, here.
        unsafe { self.shim.lib.rtv_close(self.handle.as_ptr()) };
    }
}
