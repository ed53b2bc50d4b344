//! ONNX Runtime's own telemetry, switched off before the library is loaded.
//!
//! The official Linux builds (1.2x and later; 1.31.1 here) start a telemetry provider when the
//! runtime's environment is created: it writes a device id and an SQLite database under
//! `~/.cache/Microsoft/DeveloperTools/.onnxruntime/`, runs an uploader thread and sends events to
//! Microsoft. On a board that is a network call, a file in a home folder the service may not have,
//! and an extra thread beside a real-time loop, none of which the user asked for. ONNX Runtime
//! reads `ORT_DISABLE_TELEMETRY` with `getenv` while it initialises, and the C API's
//! `DisableTelemetryEvents` only acts after that, so the variable is the one switch that works.
//!
//! Setting a variable is the one unsafe step: C code may read the environment without Rust's
//! lock. It is done only while the process has a single thread (read from `/proc/self/status`):
//! then nothing else can read the environment, and nothing else can start a thread meanwhile.
#![allow(unsafe_code)]

/// The variable ONNX Runtime 1.31 reads.
pub const VARIABLE: &str = "ORT_DISABLE_TELEMETRY";

/// Sets `ORT_DISABLE_TELEMETRY=1` unless the user set it (`=0` keeps ONNX Runtime's default);
/// child processes (`bench`, `sweep`) inherit it. Call it first thing in `main`: once a second
/// thread exists it changes nothing. Whether the variable now disables telemetry.
pub fn disable_unless_chosen() -> bool {
    if let Some(v) = std::env::var_os(VARIABLE) {
        return v != "0";
    }
    if !single_threaded() {
        return false;
    }
    // Checked just above: this is the only thread, and only a thread of ours could start another.
    // SAFETY: no other thread exists to read the environment while it changes.
    unsafe { std::env::set_var(VARIABLE, "1") };
    true
}

/// Whether the process has exactly one thread.
fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .is_some_and(|n| n.trim() == "1")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_with_threads_is_left_alone() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || rx.recv());
        assert!(!single_threaded(), "two threads at least");
        if std::env::var_os(VARIABLE).is_none() {
            assert!(!disable_unless_chosen());
            assert!(std::env::var_os(VARIABLE).is_none());
        }
        drop(tx);
        let _ = other.join();
    }
}
