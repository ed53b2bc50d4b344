//! Real-time setup: SCHED_FIFO for the pipeline thread, CPU affinity, memory locking.
//!
//! Each knob is optional and each may be refused (no CAP_SYS_NICE, a CPU that does not exist, a
//! small RLIMIT_MEMLOCK). A refusal is never fatal: the daemon warns once and runs on, and
//! `/status` `realtime` reports only what really took effect, so an operator reading the status
//! of a board that misses deadlines sees at once whether real-time scheduling was in force.
//!
//! Memory locking is the dangerous one: `mlockall(MCL_CURRENT | MCL_FUTURE)` under a small
//! RLIMIT_MEMLOCK can succeed and then make every later mapping (an ONNX Runtime arena growing, a
//! model swap, a new thread's stack) fail, and an allocation failure aborts the process. So we
//! lock only after the model is loaded, and only when the limit cannot bite: CAP_IPC_LOCK (the
//! limit does not apply), an unlimited limit, or one at least [`MEMLOCK_HEADROOM`] times what the
//! process maps now.

use std::sync::Mutex;
use std::time::Duration;

use crate::invalid_key::InvalidKey;

mod sys;

/// The limit must be this many times the current mapped size before we lock with MCL_FUTURE.
pub const MEMLOCK_HEADROOM: u64 = 2;

/// Capability bits of `/proc/self/status` `CapEff`.
const CAP_IPC_LOCK: u32 = 14;
const CAP_SYS_NICE: u32 = 23;

/// `[realtime]` as written.
#[derive(Debug, Default, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawRealtime {
    /// SCHED_FIFO priority 1..=99 of the pipeline thread.
    pub priority: Option<i32>,
    /// CPUs: the pipeline thread runs on the first; ONNX Runtime intra-op thread k on `cpus[k % n]`.
    pub cpus: Option<Vec<usize>>,
    /// mlockall once the model is loaded (when RLIMIT_MEMLOCK allows it safely).
    pub lock_memory: Option<bool>,
    /// Cancel an inference still running this long after its frame was captured (off by default).
    pub cancel_after_ms: Option<f64>,
}

/// Checked `[realtime]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RealtimeOptions {
    pub priority: Option<i32>,
    pub cpus: Option<Vec<usize>>,
    pub lock_memory: bool,
    pub cancel_after: Option<Duration>,
}

impl RawRealtime {
    /// Checks the section; an error names its key.
    pub fn check(&self) -> Result<RealtimeOptions, InvalidKey> {
        let raw = self;
        if let Some(p) = raw.priority
            && !(1..=99).contains(&p)
        {
            return Err(InvalidKey::new(
                "realtime.priority",
                format!("{p} is not in 1..=99"),
            ));
        }
        if let Some(c) = &raw.cpus {
            if c.is_empty() {
                return Err(InvalidKey::new(
                    "realtime.cpus",
                    "an empty list pins nothing",
                ));
            }
            if let Some(bad) = c.iter().find(|c| **c >= 1024) {
                return Err(InvalidKey::new(
                    "realtime.cpus",
                    format!("CPU {bad} is beyond 1023"),
                ));
            }
        }
        let cancel_after = match raw.cancel_after_ms {
            None => None,
            Some(v) => Some(
                crate::units::millis(v, 0.0, 60_000.0)
                    .map_err(|e| InvalidKey::new("realtime.cancel_after_ms", e))?,
            ),
        };
        Ok(RealtimeOptions {
            priority: raw.priority,
            cpus: raw.cpus.clone(),
            lock_memory: raw.lock_memory.unwrap_or(false),
            cancel_after,
        })
    }
}

/// What took effect (`/status` `realtime`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RealtimeReport {
    /// The SCHED_FIFO priority in force, or `None`.
    pub priority: Option<i32>,
    /// The pipeline thread's CPU, and the intra-op list, as applied; `None` when not pinned.
    pub cpus: Option<Vec<usize>>,
    pub memory_locked: bool,
    /// Whether locking was decided already (locked or refused): it is decided once, when the
    /// first model is in memory.
    pub lock_decided: bool,
    /// One line per refused knob.
    pub warnings: Vec<String>,
}

/// The report, filled from the pipeline thread and the start-up path, read by `/status`.
#[derive(Debug, Default)]
pub struct RealtimeState(Mutex<RealtimeReport>);

impl RealtimeState {
    pub fn get(&self) -> RealtimeReport {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut RealtimeReport)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn warn(&self, line: String) {
        log::warn!("{line}");
        self.update(|r| r.warnings.push(line));
    }

    /// As JSON for `/status`.
    pub fn to_json(&self) -> serde_json::Value {
        let r = self.get();
        serde_json::json!({
            "priority": r.priority,
            "cpus": r.cpus,
            "memory_locked": r.memory_locked,
            "warnings": r.warnings,
        })
    }
}

/// On the pipeline thread: SCHED_FIFO and affinity as configured. Refusals warn once (here) and
/// are recorded; nothing fails.
pub fn apply_to_current_thread(opts: &RealtimeOptions, state: &RealtimeState) {
    if let Some(cpus) = &opts.cpus {
        match pin_current_thread(cpus[0]) {
            Ok(()) => state.update(|r| r.cpus = Some(cpus.clone())),
            Err(e) => state.warn(format!(
                "realtime.cpus: cannot pin the pipeline thread to CPU {}: {e}; running unpinned",
                cpus[0]
            )),
        }
    }
    if let Some(p) = opts.priority {
        match sys::set_fifo(p) {
            Ok(()) => {
                log::info!("pipeline thread runs SCHED_FIFO priority {p}");
                state.update(|r| r.priority = Some(p));
            }
            Err(e) => state.warn(format!(
                "realtime.priority: SCHED_FIFO {p} refused ({e}{}); running at normal priority",
                if has_capability(CAP_SYS_NICE) {
                    ""
                } else {
                    ", no CAP_SYS_NICE"
                }
            )),
        }
    }
}

/// Gives a helper thread the same SCHED_FIFO priority: the cancel watchdog (so it can preempt a
/// pipeline thread that overran) and the capture thread (so frames are stamped and paced on
/// time). Silent on refusal: the pipeline thread's warning covers it.
pub fn apply_priority_quietly(opts: &RealtimeOptions) {
    if let Some(p) = opts.priority {
        let _ = sys::set_fifo(p);
    }
}

/// Hands the C heap's free pages back to the kernel: called after a model is loaded and warmed
/// up, and after a retired engine is freed, when megabytes of parse buffers and old weights would
/// otherwise stay resident in glibc's heap. Whether anything was released.
pub fn trim_heap() -> bool {
    sys::trim_heap()
}

/// glibc arenas the daemon allows when `MALLOC_ARENA_MAX` does not say otherwise.
pub const MALLOC_ARENAS: i32 = 2;

/// Caps glibc's malloc arenas at [`MALLOC_ARENAS`], unless the environment sets
/// `MALLOC_ARENA_MAX` (then glibc already applied the user's value). Call it before any thread
/// starts. glibc gives threads up to 8 arenas per core; each thread that ever allocated (every
/// model load runs on a new loader thread, ONNX Runtime's pools, the status workers) may pin
/// its own, and the heap freed in one arena is not reused by another. A one-hour soak with a
/// swap every 30 s held 16 arenas and its RSS wandered by +-1 MiB on a rising floor; with two it
/// was 2.5 MiB lower and smooth. The frame loop allocates nothing, so the lock the threads now
/// share costs it nothing. Returns the cap set, if one was.
pub fn limit_malloc_arenas() -> Option<i32> {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return None;
    }
    sys::limit_arenas(MALLOC_ARENAS).then_some(MALLOC_ARENAS)
}

/// Wakes the calling thread on its timers' deadlines: the kernel's default 50 µs timer slack
/// for normal threads would otherwise show up as pacing jitter (SCHED_FIFO threads have none).
pub fn tighten_timer_slack() {
    if let Err(e) = nix::sys::prctl::set_timerslack(1) {
        log::debug!("PR_SET_TIMERSLACK: {e}");
    }
}

fn pin_current_thread(cpu: usize) -> Result<(), String> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).map_err(|e| e.to_string())?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(|e| e.to_string())
}

/// Whether the calling thread's policy is SCHED_FIFO.
pub fn is_fifo(tid: i32) -> bool {
    sys::policy(tid).is_ok_and(|p| p == sys::SCHED_FIFO)
}

/// ONNX Runtime's `session.intra_op_thread_affinities` for `threads` intra-op threads: one entry
/// per pool thread (the calling thread is not in the pool), 1-based processor ids. `None` when
/// nothing is pinned or there is no pool.
pub fn ort_affinity(cpus: &[usize], threads: usize) -> Option<String> {
    if cpus.is_empty() || threads < 2 {
        return None;
    }
    let entries: Vec<String> = (1..threads)
        .map(|k| (cpus[k % cpus.len()] + 1).to_string())
        .collect();
    Some(entries.join(";"))
}

/// Locks memory if `opts.lock_memory` and it is safe (see the module docs); records the outcome.
/// Call it once a model is loaded (at start, or when the watch folder's first model goes live):
/// the headroom check must see the model in the process. Decides once; later calls do nothing.
pub fn lock_memory(opts: &RealtimeOptions, state: &RealtimeState) {
    if !opts.lock_memory {
        return;
    }
    let mut decided = false;
    state.update(|r| decided = std::mem::replace(&mut r.lock_decided, true));
    if decided {
        return;
    }
    match memlock_decision(
        has_capability(CAP_IPC_LOCK),
        sys::memlock_limit().ok().flatten(),
        mapped_bytes(),
    ) {
        Err(why) => state.warn(format!("realtime.lock_memory: not locking: {why}")),
        Ok(()) => match sys::lock_all() {
            Ok(()) => {
                log::info!("memory locked (mlockall current and future)");
                state.update(|r| r.memory_locked = true);
            }
            Err(e) => state.warn(format!("realtime.lock_memory: mlockall failed: {e}")),
        },
    }
}

/// Whether locking is safe: with CAP_IPC_LOCK the limit does not apply; otherwise the limit must
/// be unlimited (`None`) or at least [`MEMLOCK_HEADROOM`] x what is mapped now.
pub fn memlock_decision(
    cap_ipc_lock: bool,
    limit: Option<u64>,
    mapped: Option<u64>,
) -> Result<(), String> {
    let (Some(limit), false) = (limit, cap_ipc_lock) else {
        return Ok(());
    };
    let Some(mapped) = mapped else {
        return Err("cannot read the process size (/proc/self/status VmSize)".into());
    };
    if limit >= mapped.saturating_mul(MEMLOCK_HEADROOM) {
        Ok(())
    } else {
        Err(format!(
            "RLIMIT_MEMLOCK is {} MiB but the process already maps {} MiB; locking would make \
             later allocations fail (raise LimitMEMLOCK= or grant CAP_IPC_LOCK)",
            limit >> 20,
            mapped >> 20
        ))
    }
}

/// `VmSize` of `/proc/self/status` in bytes: what MCL_CURRENT would lock.
fn mapped_bytes() -> Option<u64> {
    status_field("VmSize:")?
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

/// Whether capability bit `cap` is in the effective set.
fn has_capability(cap: u32) -> bool {
    status_field("CapEff:")
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .is_some_and(|bits| bits & (1 << cap) != 0)
}

fn status_field(key: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
}

/// How much lower than the pipeline a background loader runs (nice value).
pub const LOADER_NICE: i32 = 10;

/// Lets a background thread (a model load and warm-up) yield the CPU to the pipeline: on a
/// 2-core board a warm-up at the same priority shows up in the live model's p99. Failure only
/// costs that, so it is logged at debug.
pub fn run_in_background() {
    if let Err(e) = sys::set_thread_nice(LOADER_NICE) {
        log::debug!("cannot lower the loader thread's priority: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ort_affinity_lists_pool_threads_one_based() {
        assert_eq!(ort_affinity(&[0, 1], 2).as_deref(), Some("2"));
        assert_eq!(ort_affinity(&[1], 3).as_deref(), Some("2;2"));
        assert_eq!(ort_affinity(&[0, 1, 2], 4).as_deref(), Some("2;3;1"));
        assert_eq!(ort_affinity(&[0], 1), None);
        assert_eq!(ort_affinity(&[], 4), None);
    }

    #[test]
    fn memlock_needs_capability_unlimited_or_headroom() {
        let mib = 1u64 << 20;
        assert!(memlock_decision(true, Some(8 * mib), Some(500 * mib)).is_ok());
        assert!(memlock_decision(false, None, Some(500 * mib)).is_ok());
        assert!(memlock_decision(false, Some(1000 * mib), Some(500 * mib)).is_ok());
        let e = memlock_decision(false, Some(999 * mib), Some(500 * mib)).unwrap_err();
        assert!(e.contains("999 MiB") && e.contains("500 MiB"), "{e}");
        assert!(memlock_decision(false, Some(mib), None).is_err());
    }

    #[test]
    fn options_are_validated_with_their_key() {
        let raw = RawRealtime {
            priority: Some(0),
            ..RawRealtime::default()
        };
        assert_eq!(raw.check().unwrap_err().key, "realtime.priority");
        let raw = RawRealtime {
            cancel_after_ms: Some(-1.0),
            ..RawRealtime::default()
        };
        assert_eq!(raw.check().unwrap_err().key, "realtime.cancel_after_ms");
        let raw = RawRealtime {
            priority: Some(50),
            cpus: Some(vec![1]),
            lock_memory: Some(true),
            cancel_after_ms: Some(33.0),
        };
        let o = raw.check().expect("valid");
        assert_eq!(o.cancel_after, Some(Duration::from_millis(33)));
        assert!(o.lock_memory);
    }
}
