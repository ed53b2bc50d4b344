//! Process and board figures for `/status`: resident memory, CPU load, temperature.
//!
//! They explain latency (a board that throttles at 85 °C misses deadlines; a leak shows as RSS
//! growth) but reading them means walking `/proc` and `/sys`, which allocates and makes
//! syscalls, so a housekeeping or status thread samples them about once a second, never the
//! frame loop. Every figure is optional: a board without thermal zones or a sandbox without
//! `/proc` still serves its status, with `null` where a figure is unknown.
//!
//! `cpu_load` is this process's CPU time as a percentage of the whole machine's capacity
//! (0–100: 100 means every core busy with this process), i.e. sysinfo's per-core figure divided
//! by the number of CPUs. sysinfo needs two earlier refreshes before it can tell, so the first
//! two samples report `None`. Temperatures come from `/sys/class/thermal/thermal_zone*/temp`
//! (what Jetson and most ARM boards expose), else from hwmon's `temp*_input`, in millidegrees.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// One sample; serialises as `{"rss_bytes":..,"cpu_load":..,"temperature_c":..}`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct SystemFigures {
    pub rss_bytes: Option<u64>,
    /// Percent of the whole machine (see the module docs).
    pub cpu_load: Option<f64>,
    /// Hottest plausible sensor, °C.
    pub temperature_c: Option<f64>,
}

/// This process's resident memory now, from `VmRSS` in `/proc/self/status` (one read, no
/// process table): what a model load adds is the difference of two readings. `None` off Linux.
pub fn rss_bytes_now() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Samples [`SystemFigures`] for the current process.
#[derive(Debug)]
pub struct SystemSampler {
    /// `None` when sysinfo cannot read this platform's process table.
    sys: Option<(System, Pid)>,
    /// Process refreshes that read CPU times so far (the third is the first with a usable load).
    cpu_refreshes: u32,
    last_cpu: Option<(Instant, Option<f64>)>,
    /// The `/sys/class` directory holding `thermal/` and `hwmon/`.
    sys_class: PathBuf,
}

impl Default for SystemSampler {
    fn default() -> Self {
        SystemSampler::new()
    }
}

impl SystemSampler {
    /// A sampler reading `/proc` (through sysinfo) and `/sys/class`. Never fails: figures that
    /// cannot be read are `None` (logged once at debug level).
    pub fn new() -> SystemSampler {
        SystemSampler::with_sys_class(Path::new("/sys/class"))
    }

    /// Like [`new`](Self::new) with temperatures read under another `/sys/class` (for tests).
    pub fn with_sys_class(sys_class: &Path) -> SystemSampler {
        let sys = match (System::new(), sysinfo::get_current_pid()) {
            (Ok(sys), Ok(pid)) => Some((sys, pid)),
            (Err(e), _) | (_, Err(e)) => {
                log::debug!(
                    "process figures unavailable (sysinfo: {e}); rss_bytes and cpu_load will be null"
                );
                None
            }
        };
        SystemSampler {
            sys,
            cpu_refreshes: 0,
            last_cpu: None,
            sys_class: sys_class.to_path_buf(),
        }
    }

    /// Reads the figures now. Call it off the frame loop, about once a second: CPU load is
    /// measured between calls, and calls closer than sysinfo's minimum interval (200 ms) repeat
    /// the previous load.
    pub fn sample(&mut self) -> SystemFigures {
        let (rss_bytes, cpu_load) = self.process_figures();
        SystemFigures {
            rss_bytes,
            cpu_load,
            temperature_c: hottest_temperature(&self.sys_class),
        }
    }

    fn process_figures(&mut self) -> (Option<u64>, Option<f64>) {
        let Some((sys, pid)) = self.sys.as_mut() else {
            return (None, None);
        };
        let pid = *pid;
        let now = Instant::now();
        let cpu_due = self
            .last_cpu
            .is_none_or(|(at, _)| now.duration_since(at) >= sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let kind = if cpu_due {
            ProcessRefreshKind::nothing().with_memory().with_cpu()
        } else {
            ProcessRefreshKind::nothing().with_memory()
        };
        sys.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), false, kind);
        let Some(process) = sys.process(pid) else {
            return (None, None);
        };
        let rss = Some(process.memory()).filter(|m| *m > 0);
        if !cpu_due {
            return (rss, self.last_cpu.and_then(|(_, load)| load));
        }
        self.cpu_refreshes = self.cpu_refreshes.saturating_add(1);
        let cpus = sys.cpus().len();
        let load = (self.cpu_refreshes >= 3 && cpus > 0)
            .then(|| f64::from(process.cpu_usage()) / cpus as f64);
        self.last_cpu = Some((now, load));
        (rss, load)
    }
}

/// Hottest plausible reading of the thermal zones under `sys_class`, else of its hwmon sensors.
pub fn hottest_temperature(sys_class: &Path) -> Option<f64> {
    let zones = readings(
        &sys_class.join("thermal"),
        |name| name.starts_with("thermal_zone"),
        |n| n == "temp",
    );
    zones.or_else(|| {
        readings(
            &sys_class.join("hwmon"),
            |name| name.starts_with("hwmon"),
            |n| n.starts_with("temp") && n.ends_with("_input"),
        )
    })
}

/// The maximum over `dir/<device>/<file>` files, for devices and files the predicates accept.
fn readings(dir: &Path, device: impl Fn(&str) -> bool, file: impl Fn(&str) -> bool) -> Option<f64> {
    let mut hottest: Option<f64> = None;
    for dev in std::fs::read_dir(dir).ok()?.flatten() {
        if !dev.file_name().to_str().is_some_and(&device) {
            continue;
        }
        let Ok(files) = std::fs::read_dir(dev.path()) else {
            continue;
        };
        for f in files.flatten() {
            if !f.file_name().to_str().is_some_and(&file) {
                continue;
            }
            let value = std::fs::read_to_string(f.path())
                .ok()
                .and_then(|s| parse_millidegrees(&s));
            if let Some(c) = value {
                hottest = Some(hottest.map_or(c, |h| h.max(c)));
            }
        }
    }
    hottest
}

/// `"45123\n"` → 45.123 °C; `None` for text that is not a number or an implausible value
/// (disabled sensors report things like -274000 or 0x7fffffff).
pub fn parse_millidegrees(text: &str) -> Option<f64> {
    let c = text.trim().parse::<i64>().ok()? as f64 / 1000.0;
    (-60.0..=200.0).contains(&c).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_positive_and_grows_with_touched_memory() {
        let mut s = SystemSampler::new();
        let before = s.sample().rss_bytes.expect("RSS readable on Linux");
        assert!(before > 0);
        const SIZE: usize = 64 << 20;
        let mut block = vec![0u8; SIZE];
        // Touch every page so it becomes resident (a zeroed allocation is not).
        for i in (0..SIZE).step_by(4096) {
            block[i] = (i >> 12) as u8;
        }
        std::hint::black_box(&block);
        let after = s.sample().rss_bytes.expect("RSS readable on Linux");
        // Other tests of this binary run concurrently and may free memory: allow 16 MiB of slack.
        assert!(
            after >= before + (48 << 20),
            "RSS {before} -> {after} after touching 64 MiB"
        );
        drop(block);
    }

    #[test]
    fn cpu_load_appears_from_the_third_sample() {
        let mut s = SystemSampler::new();
        let loads: Vec<Option<f64>> = (0..3)
            .map(|_| {
                // Burn some CPU so the third sample has something to measure.
                let t = Instant::now();
                let mut x = 0u64;
                while t.elapsed() < sysinfo::MINIMUM_CPU_UPDATE_INTERVAL {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
                s.sample().cpu_load
            })
            .collect();
        assert_eq!(loads[..2], [None, None]);
        let load = loads[2].expect("cpu load on the third sample");
        assert!(load > 0.0 && load <= 100.0, "load {load}");
    }

    #[test]
    fn hottest_thermal_zone_wins_and_bad_readings_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let zone = |n: &str, text: &str| {
            let d = dir.path().join("thermal").join(n);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("temp"), text).unwrap();
        };
        zone("thermal_zone0", "41500\n");
        zone("thermal_zone1", "67250\n");
        zone("thermal_zone2", "-274000\n"); // a disabled sensor
        zone("thermal_zone3", "garbage");
        zone("cooling_device0", "99000\n"); // not a zone
        assert_eq!(hottest_temperature(dir.path()), Some(67.25));
        let figures = SystemSampler::with_sys_class(dir.path()).sample();
        assert_eq!(figures.temperature_c, Some(67.25));
    }

    #[test]
    fn hwmon_is_the_fallback_and_nothing_gives_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(hottest_temperature(dir.path()), None);
        let d = dir.path().join("hwmon").join("hwmon2");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("temp1_input"), "38000\n").unwrap();
        std::fs::write(d.join("temp2_input"), "52000\n").unwrap();
        std::fs::write(d.join("temp2_crit"), "100000\n").unwrap();
        assert_eq!(hottest_temperature(dir.path()), Some(52.0));
    }

    #[test]
    fn figures_serialise_with_the_status_keys() {
        let v = serde_json::to_value(SystemFigures {
            rss_bytes: Some(1),
            cpu_load: None,
            temperature_c: Some(40.5),
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"rss_bytes": 1, "cpu_load": null, "temperature_c": 40.5})
        );
    }
}
