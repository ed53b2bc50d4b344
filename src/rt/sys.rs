//! The seven libc calls real-time setup needs that nix does not wrap (SCHED_FIFO, a thread's nice
//! value, `malloc_trim`, `mallopt`) or that would need extra nix features (RLIMIT_MEMLOCK, mlockall): kept
//! tiny so the policy stays safe code.
#![allow(unsafe_code)]

use std::io;

/// `sched_setscheduler(0, SCHED_FIFO, priority)` on the calling thread.
pub fn set_fifo(priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // pid 0 names the calling thread; the call does not retain the pointer.
    // SAFETY: `param` is a valid, initialised sched_param that outlives the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The scheduling policy of a thread (by tid; 0 = calling thread).
pub fn policy(tid: i32) -> io::Result<i32> {
    // SAFETY: sched_getscheduler takes a plain pid and touches no memory of ours.
    let rc = unsafe { libc::sched_getscheduler(tid) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The soft RLIMIT_MEMLOCK in bytes; `None` when unlimited.
pub fn memlock_limit() -> io::Result<Option<u64>> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur))
}

/// `mlockall(MCL_CURRENT | MCL_FUTURE)`.
pub fn lock_all() -> io::Result<()> {
    // SAFETY: mlockall takes only flags and touches no memory of ours.
    let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub const SCHED_FIFO: i32 = libc::SCHED_FIFO;

/// Lowers the calling thread's scheduling priority to `nice` (SCHED_OTHER; Linux applies
/// `setpriority(PRIO_PROCESS, tid)` to that one thread).
pub fn set_thread_nice(nice: i32) -> io::Result<()> {
    let tid = nix::unistd::gettid().as_raw();
    // `tid` is the calling thread, alive for the whole call.
    // SAFETY: setpriority takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Returns the C heap's free pages to the kernel (`malloc_trim(0)`). Loading a model frees
/// megabytes of parse buffers inside glibc's heap, where they would otherwise stay resident.
/// Whether anything was released; always false off glibc.
pub fn trim_heap() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // malloc_trim only walks glibc's own arenas, under their locks.
        // SAFETY: it takes no pointer of ours and may be called from any thread at any time.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

/// Caps glibc's malloc arenas (`mallopt(M_ARENA_MAX, arenas)`). Whether the cap was set; always
/// false off glibc.
pub fn limit_arenas(arenas: i32) -> bool {
    #[cfg(target_env = "gnu")]
    {
        // mallopt changes a global of glibc's allocator under its own lock.
        // SAFETY: it takes no pointer of ours; M_ARENA_MAX with a positive value is a valid request.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        let _ = arenas;
        false
    }
}
