//! Meter URIs (`power.meter`): one string names the meter, its device and its options, like the
//! source URIs. Parsing is pure (no device is touched), so `check-config` validates a meter on a
//! machine without it. Query values are percent-decoded, so a regex can carry `&` as `%26`.

use std::path::PathBuf;
use std::time::Duration;

use super::hwmon::HwmonChip;
use super::line::LineParser;
use super::um::UmModel;

/// A parsed meter URI.
#[derive(Debug, Clone, PartialEq)]
pub enum MeterSpec {
    /// `tc66c:///dev/ttyACM0`
    Tc66 { path: PathBuf },
    /// `um34c:///dev/rfcomm0`, `um24c://...`, `um25c://...`
    Um { model: UmModel, path: PathBuf },
    /// `line:///dev/ttyUSB0?baud=115200&regex=...&request=...&scale=...`
    Line {
        path: PathBuf,
        baud: u32,
        parser: LineParser,
        request: Option<String>,
    },
    /// `exec://?regex=...&scale=...` with `power.command`.
    Exec {
        command: Vec<String>,
        parser: LineParser,
    },
    /// `hwmon://ina3221?rails=GPU,CPU,SOC`, `hwmon://ina226`
    Hwmon {
        chip: HwmonChip,
        rails: Option<Vec<String>>,
    },
    /// `rapl://` or `rapl://?zones=package-0`
    Rapl { zones: Option<Vec<String>> },
}

/// Default baud rate of `line://`.
pub const DEFAULT_LINE_BAUD: u32 = 115_200;

impl MeterSpec {
    pub fn parse(uri: &str) -> Result<MeterSpec, String> {
        let (scheme, rest) = uri
            .split_once("://")
            .ok_or_else(|| format!("{uri:?}: expected SCHEME://..., e.g. tc66c:///dev/ttyACM0"))?;
        let (target, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut q = Query::parse(query)?;
        let spec = match scheme.to_ascii_lowercase().as_str() {
            "tc66c" | "tc66" => MeterSpec::Tc66 {
                path: device(target, uri)?,
            },
            "um24c" | "um25c" | "um34c" => MeterSpec::Um {
                model: scheme.parse()?,
                path: device(target, uri)?,
            },
            "line" => MeterSpec::Line {
                path: device(target, uri)?,
                baud: match q.take("baud") {
                    None => DEFAULT_LINE_BAUD,
                    Some(b) => b
                        .parse()
                        .ok()
                        .filter(|b| *b > 0)
                        .ok_or_else(|| format!("baud={b} is not a baud rate"))?,
                },
                request: q.take("request"),
                parser: parser(&mut q)?,
            },
            "exec" => {
                if !target.is_empty() {
                    return Err(format!(
                        "{uri:?}: exec:// takes no path; the command is power.command"
                    ));
                }
                MeterSpec::Exec {
                    command: Vec::new(),
                    parser: parser(&mut q)?,
                }
            }
            "hwmon" => MeterSpec::Hwmon {
                chip: target.parse()?,
                rails: q.take("rails").map(|r| list(&r)),
            },
            "rapl" => {
                if !target.is_empty() {
                    return Err(format!("{uri:?}: rapl:// takes no path (use ?zones=)"));
                }
                MeterSpec::Rapl {
                    zones: q.take("zones").map(|z| list(&z)),
                }
            }
            other => {
                return Err(format!(
                    "unknown meter scheme {other:?} (tc66c, um24c, um25c, um34c, line, exec, hwmon, rapl)"
                ));
            }
        };
        q.finish(uri)?;
        Ok(spec)
    }

    /// The meter's natural poll interval (zero for meters that stream).
    pub fn default_interval(&self) -> Duration {
        match self {
            // The TC66C answers at up to 10 Hz; the UM series at about 2 Hz.
            MeterSpec::Tc66 { .. } => Duration::from_millis(100),
            MeterSpec::Um { .. } => Duration::from_millis(500),
            MeterSpec::Line { request: None, .. } | MeterSpec::Exec { .. } => Duration::ZERO,
            MeterSpec::Line { .. } => Duration::from_millis(100),
            MeterSpec::Hwmon { .. } | MeterSpec::Rapl { .. } => Duration::from_millis(100),
        }
    }
}

fn device(target: &str, uri: &str) -> Result<PathBuf, String> {
    if target.starts_with('/') {
        Ok(PathBuf::from(target))
    } else {
        Err(format!(
            "{uri:?}: expected an absolute device path (three slashes: tc66c:///dev/ttyACM0)"
        ))
    }
}

fn parser(q: &mut Query) -> Result<LineParser, String> {
    let scale = match q.take("scale") {
        None => 1.0,
        Some(s) => s
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
            .ok_or_else(|| format!("scale={s} is not a positive number"))?,
    };
    LineParser::new(q.take("regex").as_deref(), scale)
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

/// `k=v&k=v` with percent-decoded values; every key must be consumed.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: &str) -> Result<Query, String> {
        let mut out = Vec::new();
        for part in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            out.push((k.to_string(), percent_decode(v)?));
        }
        Ok(Query(out))
    }

    fn take(&mut self, key: &str) -> Option<String> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(i).1)
    }

    fn finish(self, uri: &str) -> Result<(), String> {
        match self.0.first() {
            None => Ok(()),
            Some((k, _)) => Err(format!("{uri:?}: unknown option {k:?}")),
        }
    }
}

/// `%XX` escapes to bytes (UTF-8); `+` stays `+` (regexes need it).
pub fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape at byte {i} of {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_meters() {
        assert_eq!(
            MeterSpec::parse("tc66c:///dev/ttyACM0").unwrap(),
            MeterSpec::Tc66 {
                path: "/dev/ttyACM0".into()
            }
        );
        assert_eq!(
            MeterSpec::parse("um25c:///dev/rfcomm0").unwrap(),
            MeterSpec::Um {
                model: UmModel::Um25c,
                path: "/dev/rfcomm0".into()
            }
        );
        assert!(MeterSpec::parse("tc66c://dev/ttyACM0").is_err());
        assert!(MeterSpec::parse("tc66c:///dev/ttyACM0?baud=9600").is_err());
    }

    #[test]
    fn line_options_are_decoded() {
        let s = MeterSpec::parse(
            "line:///dev/ttyUSB0?baud=9600&request=MEAS:POW%3F&regex=P%3D(?P<watts>[0-9.]+)%26",
        )
        .unwrap();
        let MeterSpec::Line {
            path,
            baud,
            parser,
            request,
        } = s
        else {
            panic!("not a line meter")
        };
        assert_eq!(path, PathBuf::from("/dev/ttyUSB0"));
        assert_eq!(baud, 9600);
        assert_eq!(request.as_deref(), Some("MEAS:POW?"));
        assert_eq!(parser.pattern(), "P=(?P<watts>[0-9.]+)&");
        assert!(MeterSpec::parse("line:///dev/ttyUSB0?bogus=1").is_err());
        assert!(MeterSpec::parse("line:///dev/ttyUSB0?regex=(?P<x>1)").is_err());
    }

    #[test]
    fn sysfs_meters() {
        assert_eq!(
            MeterSpec::parse("hwmon://ina3221?rails=GPU, CPU,SOC").unwrap(),
            MeterSpec::Hwmon {
                chip: HwmonChip::Ina3221,
                rails: Some(vec!["GPU".into(), "CPU".into(), "SOC".into()])
            }
        );
        assert_eq!(
            MeterSpec::parse("rapl://").unwrap(),
            MeterSpec::Rapl { zones: None }
        );
        assert!(MeterSpec::parse("hwmon://lm75").is_err());
        assert!(MeterSpec::parse("rapl:///x").is_err());
    }
}
