//! Signals: SIGINT/SIGTERM stop gracefully, SIGHUP asks for a configuration reload.
//!
//! `ctrlc` handles SIGINT (without its `termination` feature, which would turn SIGHUP into a
//! shutdown). SIGTERM and SIGHUP are blocked in the calling thread, so every thread spawned
//! afterwards (ONNX Runtime's pool included) inherits the mask, and one thread takes them with
//! `sigwait`: no async-signal-safety puzzles, and a signal never lands on an inference thread.
//! Call [`install`] first thing in `run`, before any other thread exists.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::sys::signal::{SigSet, Signal};

/// Flags the main loop polls.
#[derive(Debug, Default)]
pub struct SignalFlags {
    /// SIGINT or SIGTERM arrived.
    pub stop: AtomicBool,
    /// Which signal asked to stop (for the log), 0 if none.
    pub stop_signal: AtomicU64,
    /// Count of SIGHUPs; the main loop reloads when it changes.
    pub reloads: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("cannot block SIGTERM/SIGHUP: {0}")]
    Mask(nix::Error),
    #[error("cannot install the SIGINT handler: {0}")]
    Ctrlc(#[from] ctrlc::Error),
    #[error("cannot start the signal thread: {0}")]
    Thread(std::io::Error),
}

/// Installs the handlers and returns the flags they set.
pub fn install() -> Result<Arc<SignalFlags>, SignalError> {
    let flags = Arc::new(SignalFlags::default());
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set.thread_block().map_err(SignalError::Mask)?;

    let f = Arc::clone(&flags);
    ctrlc::set_handler(move || request_stop(&f, Signal::SIGINT))?;

    let f = Arc::clone(&flags);
    std::thread::Builder::new()
        .name("rtinfer-signals".into())
        .spawn(move || {
            loop {
                match set.wait() {
                    Ok(Signal::SIGHUP) => {
                        f.reloads.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(sig) => request_stop(&f, sig),
                    Err(e) => {
                        log::error!("sigwait failed, SIGTERM/SIGHUP are no longer handled: {e}");
                        return;
                    }
                }
            }
        })
        .map_err(SignalError::Thread)?;
    Ok(flags)
}

fn request_stop(f: &SignalFlags, sig: Signal) {
    f.stop_signal.store(sig as i32 as u64, Ordering::SeqCst);
    f.stop.store(true, Ordering::SeqCst);
}

/// The name of the signal that asked to stop, if one did.
pub fn stop_signal_name(f: &SignalFlags) -> Option<&'static str> {
    let n = f.stop_signal.load(Ordering::SeqCst) as i32;
    Signal::try_from(n).ok().map(|s| s.as_str())
}
