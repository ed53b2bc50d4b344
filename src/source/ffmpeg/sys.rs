//! The one thing std cannot say about a child process: die when we die.
//!
//! A SIGKILLed daemon runs no destructor, so its ffmpeg child would be orphaned and go on
//! decoding a camera for nobody. `PR_SET_PDEATHSIG` asks the kernel to SIGKILL the child when
//! the thread that spawned it ends (the thread, not the process: every spawn happens on a
//! thread that lives as long as the source, the main thread at start-up or the capture thread
//! on a reconnect). Kept tiny so the policy stays safe code.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the spawned child receive SIGKILL when the spawning thread ends.
pub fn die_with_parent(cmd: &mut Command) {
    // The parent's pid, taken before the fork: if it is gone by the time the child runs
    // prctl (the parent died in between), the child exits at once instead of living on.
    let parent = std::process::id() as libc::pid_t;
    let hook = move || {
        // SAFETY: prctl and getppid are async-signal-safe and take no pointers of ours; this
        // runs in the forked child before exec, where only such calls are allowed.
        let (rc, ppid) = unsafe {
            (
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ),
                libc::getppid(),
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if ppid != parent {
            return Err(std::io::Error::other("parent exited before exec"));
        }
        Ok(())
    };
    // SAFETY: the hook above only calls async-signal-safe functions and allocates nothing on
    // its success path (the error path allocates once, then the child exits).
    unsafe {
        cmd.pre_exec(hook);
    }
}
