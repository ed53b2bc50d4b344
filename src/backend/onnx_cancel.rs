//! Cross-thread cancellation of an ONNX Runtime run.
//!
//! ort makes `RunOptions<HasSelectedOutputs>` `!Sync` (the preallocated outputs inside are not
//! thread-safe), so the safe `terminate()` cannot be reached from a watchdog thread while the
//! pipeline thread runs. The termination flag itself is the C API's documented cross-thread
//! mechanism (`RunOptionsSetTerminate` / `RunOptionsUnsetTerminate` only store an atomic flag the
//! running graph polls between nodes). This module keeps the raw `OrtRunOptions` pointer and
//! calls exactly those two functions; the engine revokes the pointer (under the same lock) before
//! its `RunOptions` is released, so a late cancel can never touch freed memory.
#![allow(unsafe_code)]

use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use ort::AsPointer;
use ort::session::{HasSelectedOutputs, RunOptions};
use ort::sys::{OrtRunOptions, OrtStatusPtr};

use crate::backend::Canceller;

/// The raw run options, or `None` once the owning engine is being dropped.
struct RawOptions(Option<NonNull<OrtRunOptions>>);

// SAFETY: the pointer is only dereferenced by ONNX Runtime in RunOptionsSetTerminate /
// RunOptionsUnsetTerminate, which the C API documents as callable from any thread while a run is
// in progress (they set an atomic flag); access to the pointer itself is serialised by the Mutex.
unsafe impl Send for RawOptions {}

/// A cancel handle on one engine's `OrtRunOptions`.
pub struct OrtCanceller {
    raw: Mutex<RawOptions>,
    /// Set from a cancel until the reset: a run that fails meanwhile was cancelled. ONNX Runtime
    /// reports a terminated run with the generic `ORT_FAIL` code, so this is how the engine tells
    /// a cancel from a failure without reading the message.
    terminated: AtomicBool,
}

impl OrtCanceller {
    /// A handle on `options`. The owner must call [`OrtCanceller::revoke`] before dropping them.
    pub fn new(options: &RunOptions<HasSelectedOutputs>) -> OrtCanceller {
        OrtCanceller {
            raw: Mutex::new(RawOptions(NonNull::new(options.ptr().cast_mut()))),
            terminated: AtomicBool::new(false),
        }
    }

    /// Whether a cancel is in force (set, not yet reset).
    pub fn terminated(&self) -> bool {
        self.terminated.load(Ordering::SeqCst)
    }

    /// Forgets the pointer; later cancels do nothing. Called by the engine before it drops its
    /// `RunOptions`.
    pub fn revoke(&self) {
        self.raw.lock().unwrap_or_else(|p| p.into_inner()).0 = None;
    }

    fn call(&self, set: bool) {
        let g = self.raw.lock().unwrap_or_else(|p| p.into_inner());
        let Some(ptr) = g.0 else {
            return;
        };
        let api = ort::api();
        let status: OrtStatusPtr = if set {
            // The engine owns `ptr` and revokes it under this lock (held here) before releasing
            // it; RunOptionsSetTerminate is the C API's thread-safe cancel and only sets a flag.
            // SAFETY: `ptr` is a live OrtRunOptions while the lock is held (see above).
            unsafe { (api.RunOptionsSetTerminate)(ptr.as_ptr()) }
        } else {
            // SAFETY: as above; RunOptionsUnsetTerminate only clears the same flag.
            unsafe { (api.RunOptionsUnsetTerminate)(ptr.as_ptr()) }
        };
        if !status.0.is_null() {
            // A non-null status from the C API belongs to the caller, to release once; not kept.
            // SAFETY: `status` is that status, released exactly once, here.
            unsafe { (api.ReleaseStatus)(status.0) };
        }
    }
}

impl Canceller for OrtCanceller {
    fn cancel(&self) {
        self.terminated.store(true, Ordering::SeqCst);
        self.call(true);
    }

    fn reset(&self) {
        self.call(false);
        self.terminated.store(false, Ordering::SeqCst);
    }
}
