//! Onboard power monitors read through sysfs: the Jetson AGX Xavier's INA3221 (JetPack 5 hwmon
//! layout, and JetPack 4's `ina3221x` iio layout) and the ZCU104's INA226.
//!
//! Boards number their hwmon devices differently from boot to boot, so channels are found by
//! driver and label, never by `hwmonN`. On Xavier the rails are the module's (GPU, CPU, SOC, CV,
//! VDDRQ, SYS5V): there is no total-input rail, so their sum is the module's power, not the wall's.

use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::{Meter, MeterError, Reading};

/// Which chip `hwmon://CHIP` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HwmonChip {
    Ina3221,
    Ina226,
}

impl FromStr for HwmonChip {
    type Err = String;
    fn from_str(s: &str) -> Result<HwmonChip, String> {
        match s {
            "ina3221" => Ok(HwmonChip::Ina3221),
            "ina226" => Ok(HwmonChip::Ina226),
            _ => Err(format!(
                "hwmon://{s}: supported chips are ina3221 and ina226"
            )),
        }
    }
}

/// How one rail's power is read.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// `in<k>_input` mV times `curr<k>_input` mA = µW.
    VoltsAmps { mv: PathBuf, ma: PathBuf },
    /// One file in `unit` watts per count (µW: 1e-6, mW: 1e-3).
    Power { path: PathBuf, per_watt: f64 },
}

/// A named rail.
#[derive(Debug, Clone, PartialEq)]
pub struct Rail {
    pub label: String,
    source: Source,
}

/// The selected rails of a board; a reading is their sum.
pub struct Hwmon {
    rails: Vec<Rail>,
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// Sub-directories of `dir` whose names start with `prefix`, sorted.
fn subdirs(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

/// JetPack 5: `/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in<k>_{label,input}`, `curr<k>_input`.
fn ina3221_hwmon(root: &Path) -> Vec<Rail> {
    let drv = root.join("bus/i2c/drivers/ina3221");
    let mut rails = Vec::new();
    for dev in subdirs(&drv, "") {
        for hw in subdirs(&dev.join("hwmon"), "hwmon") {
            for k in 1..=8 {
                let mv = hw.join(format!("in{k}_input"));
                let ma = hw.join(format!("curr{k}_input"));
                if mv.is_file() && ma.is_file() {
                    let label = read_trim(&hw.join(format!("in{k}_label")))
                        .unwrap_or_else(|| format!("in{k}"));
                    rails.push(Rail {
                        label,
                        source: Source::VoltsAmps { mv, ma },
                    });
                }
            }
        }
    }
    rails
}

/// JetPack 4: `/sys/bus/i2c/drivers/ina3221x/*/iio:device*/rail_name_<k>`, `in_power<k>_input` mW.
fn ina3221_iio(root: &Path) -> Vec<Rail> {
    let drv = root.join("bus/i2c/drivers/ina3221x");
    let mut rails = Vec::new();
    for dev in subdirs(&drv, "") {
        for iio in subdirs(&dev, "iio:device") {
            for k in 0..8 {
                let path = iio.join(format!("in_power{k}_input"));
                if path.is_file() {
                    let label = read_trim(&iio.join(format!("rail_name_{k}")))
                        .unwrap_or_else(|| format!("power{k}"));
                    rails.push(Rail {
                        label,
                        source: Source::Power {
                            path,
                            per_watt: 1e3,
                        },
                    });
                }
            }
        }
    }
    rails
}

/// `/sys/class/hwmon/hwmon*/` named `ina226`: `power1_input` µW; the label is `power1_label`, else
/// the I2C device (`device` link), else the hwmon directory.
fn ina226(root: &Path) -> Vec<Rail> {
    let mut rails = Vec::new();
    for hw in subdirs(&root.join("class/hwmon"), "hwmon") {
        let path = hw.join("power1_input");
        if read_trim(&hw.join("name")).as_deref() != Some("ina226") || !path.is_file() {
            continue;
        }
        let label = read_trim(&hw.join("power1_label"))
            .or_else(|| {
                fs::canonicalize(hw.join("device"))
                    .ok()
                    .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            })
            .unwrap_or_else(|| hw.file_name().unwrap_or_default().to_string_lossy().into());
        rails.push(Rail {
            label,
            source: Source::Power {
                path,
                per_watt: 1e6,
            },
        });
    }
    rails
}

impl Hwmon {
    /// Finds the chip's rails under `root` (normally `/sys`) and keeps those named in `select`
    /// (case-insensitive), or all of them.
    pub fn open(
        root: &Path,
        chip: HwmonChip,
        select: Option<&[String]>,
    ) -> Result<Hwmon, MeterError> {
        let found = match chip {
            HwmonChip::Ina3221 => {
                let r = ina3221_hwmon(root);
                if r.is_empty() { ina3221_iio(root) } else { r }
            }
            HwmonChip::Ina226 => ina226(root),
        };
        let what = format!("{chip:?} rails").to_lowercase();
        if found.is_empty() {
            return Err(MeterError::NoSensors {
                root: root.to_path_buf(),
                what,
            });
        }
        let rails = match select {
            None => found,
            Some(names) => {
                let mut out = Vec::new();
                for n in names {
                    match found.iter().find(|r| r.label.eq_ignore_ascii_case(n)) {
                        Some(r) => out.push(r.clone()),
                        None => {
                            let have: Vec<&str> = found.iter().map(|r| r.label.as_str()).collect();
                            return Err(MeterError::NoSensors {
                                root: root.to_path_buf(),
                                what: format!("rail {n:?} (found: {})", have.join(", ")),
                            });
                        }
                    }
                }
                out
            }
        };
        log::info!(
            "hwmon {what}: {}",
            rails
                .iter()
                .map(|r| r.label.as_str())
                .collect::<Vec<_>>()
                .join(" + ")
        );
        Ok(Hwmon { rails })
    }

    /// The labels of the selected rails.
    pub fn labels(&self) -> Vec<&str> {
        self.rails.iter().map(|r| r.label.as_str()).collect()
    }
}

fn number(p: &Path) -> Result<f64, MeterError> {
    let text = fs::read_to_string(p).map_err(|source| MeterError::Lost {
        device: p.display().to_string(),
        source,
    })?;
    text.trim()
        .parse::<f64>()
        .map_err(|_| MeterError::BadFrame {
            device: p.display().to_string(),
            reason: format!("{:?} is not a number", text.trim()),
        })
}

impl Meter for Hwmon {
    fn read(&mut self) -> Result<Option<Reading>, MeterError> {
        let mut watts = 0.0;
        for r in &self.rails {
            watts += match &r.source {
                Source::VoltsAmps { mv, ma } => number(mv)? * number(ma)? / 1e6,
                Source::Power { path, per_watt } => number(path)? / per_watt,
            };
        }
        Ok(Some(Reading::watts(watts)))
    }
}
