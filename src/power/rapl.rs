//! Intel RAPL energy counters through powercap, for x86 development hosts.
//!
//! Only the top-level zones (`intel-rapl:N`, one per package, plus `psys` on some laptops) are
//! summed: the `intel-rapl:N:M` subzones (core, uncore, dram) are parts of their package and
//! would be counted twice. `psys` (the whole platform) contains the packages, so it is left out
//! unless selected by name. The counters are energies: power is the difference over time, and a
//! counter that wrapped passed `max_energy_range_uj`. Since Linux 5.10 `energy_uj` is readable by
//! root only (a side-channel fix); the README says how to grant read access.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{Meter, MeterError, Reading};
use crate::time::MonoTime;

struct Zone {
    name: String,
    energy: PathBuf,
    max_uj: u64,
}

/// The selected zones and the previous counter values.
pub struct Rapl {
    zones: Vec<Zone>,
    prev: Option<(MonoTime, Vec<u64>)>,
    cur: Vec<u64>,
}

/// The energy between two readings of a counter that wraps after `max_uj`.
pub fn energy_delta(prev: u64, now: u64, max_uj: u64) -> u64 {
    if now >= prev {
        now - prev
    } else {
        (max_uj - prev.min(max_uj)) + now
    }
}

fn top_level(name: &str) -> bool {
    name.strip_prefix("intel-rapl:")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn read_u64(p: &Path) -> Result<u64, MeterError> {
    let text = fs::read_to_string(p).map_err(|e| {
        if e.kind() == io::ErrorKind::PermissionDenied {
            MeterError::Permission {
                device: p.display().to_string(),
                hint: "energy_uj is readable by root only since Linux 5.10; see the README's \
                       Power meters section to grant read access"
                    .into(),
            }
        } else {
            MeterError::Lost {
                device: p.display().to_string(),
                source: e,
            }
        }
    })?;
    text.trim().parse().map_err(|_| MeterError::BadFrame {
        device: p.display().to_string(),
        reason: format!("{:?} is not a counter", text.trim()),
    })
}

impl Rapl {
    /// Finds the top-level zones under `root/class/powercap` (all but `psys`, or those named).
    pub fn open(root: &Path, select: Option<&[String]>) -> Result<Rapl, MeterError> {
        let base = root.join("class/powercap");
        let mut dirs: Vec<PathBuf> = fs::read_dir(&base)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| top_level(&e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .collect();
        dirs.sort();
        let mut zones = Vec::new();
        for d in dirs {
            let name = fs::read_to_string(d.join("name"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            let wanted = match select {
                Some(names) => names.iter().any(|n| n == &name),
                None => name != "psys",
            };
            if wanted {
                zones.push(Zone {
                    max_uj: read_u64(&d.join("max_energy_range_uj"))?,
                    energy: d.join("energy_uj"),
                    name,
                });
            }
        }
        if zones.is_empty() || select.is_some_and(|s| s.len() != zones.len()) {
            return Err(MeterError::NoSensors {
                root: base,
                what: match select {
                    Some(s) => format!("RAPL zones {s:?}"),
                    None => "top-level RAPL zones (intel-rapl:N)".into(),
                },
            });
        }
        for z in &zones {
            read_u64(&z.energy)?;
        }
        log::info!(
            "rapl zones: {}",
            zones
                .iter()
                .map(|z| z.name.as_str())
                .collect::<Vec<_>>()
                .join(" + ")
        );
        let n = zones.len();
        Ok(Rapl {
            zones,
            prev: None,
            cur: vec![0; n],
        })
    }

    /// Reads the counters at `now`: the mean power since the previous call (`None` the first
    /// time, or when no time passed).
    pub fn sample(&mut self, now: MonoTime) -> Result<Option<Reading>, MeterError> {
        for (c, z) in self.cur.iter_mut().zip(&self.zones) {
            *c = read_u64(&z.energy)?;
        }
        let reading = match &self.prev {
            Some((t, prev)) if now > *t => {
                let uj: u64 = self
                    .zones
                    .iter()
                    .zip(prev.iter().zip(&self.cur))
                    .map(|(z, (p, c))| energy_delta(*p, *c, z.max_uj))
                    .sum();
                Some(Reading::watts(
                    uj as f64 / 1e6 / now.saturating_since(*t).as_secs_f64(),
                ))
            }
            _ => None,
        };
        match &mut self.prev {
            Some((t, prev)) => {
                *t = now;
                prev.copy_from_slice(&self.cur);
            }
            None => self.prev = Some((now, self.cur.clone())),
        }
        Ok(reading)
    }
}

impl Meter for Rapl {
    fn read(&mut self) -> Result<Option<Reading>, MeterError> {
        self.sample(MonoTime::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_wraps_at_the_range() {
        assert_eq!(energy_delta(100, 350, 1000), 250);
        // 900 -> max 1000 is 100 µJ, then 0 -> 50 is 50 more.
        assert_eq!(energy_delta(900, 50, 1000), 150);
    }

    #[test]
    fn only_top_level_zone_names() {
        assert!(top_level("intel-rapl:0"));
        assert!(top_level("intel-rapl:12"));
        assert!(!top_level("intel-rapl:0:1"));
        assert!(!top_level("intel-rapl"));
        assert!(!top_level("intel-rapl-mmio:0"));
    }
}
