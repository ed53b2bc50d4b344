//! Text meters: anything that prints lines (an INA219/INA226 sketch on a microcontroller, a SCPI
//! bench meter answering `MEAS:POW?`, `sigrok-cli`, `tegrastats`). Rather than one parser per
//! product, the user gives a regex with named groups; the same parser serves `exec`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use regex::Regex;
use serialport::SerialPort;

use super::{Meter, MeterError, Reading, serial};

/// Without `regex=`: the first number on the line is watts.
pub const DEFAULT_REGEX: &str = r"(?P<watts>[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)";
/// Longest line kept; longer is garbage.
const MAX_LINE: usize = 4096;

/// A regex with named groups `watts`, or `volts` and `amps`; the watts are multiplied by `scale`
/// (e.g. `0.001` for a sketch printing milliwatts).
#[derive(Debug, Clone)]
pub struct LineParser {
    re: Regex,
    scale: f64,
    by_watts: bool,
}

impl PartialEq for LineParser {
    fn eq(&self, o: &LineParser) -> bool {
        self.re.as_str() == o.re.as_str() && self.scale == o.scale
    }
}

impl LineParser {
    pub fn new(pattern: Option<&str>, scale: f64) -> Result<LineParser, String> {
        let pattern = pattern.unwrap_or(DEFAULT_REGEX);
        let re = Regex::new(pattern).map_err(|e| format!("regex {pattern:?}: {e}"))?;
        let has = |g: &str| re.capture_names().flatten().any(|n| n == g);
        let by_watts = has("watts");
        let by_volts_amps = has("volts") && has("amps");
        if !(by_watts || by_volts_amps) {
            return Err(format!(
                "regex {pattern:?} needs a named group (?P<watts>...) or both (?P<volts>...) and (?P<amps>...)"
            ));
        }
        Ok(LineParser {
            re,
            scale,
            by_watts,
        })
    }

    pub fn pattern(&self) -> &str {
        self.re.as_str()
    }

    /// One line to a reading; `Err` says why the line is garbage.
    pub fn parse(&self, line: &str) -> Result<Reading, String> {
        let c = self
            .re
            .captures(line)
            .ok_or_else(|| format!("no match in {:?}", truncate(line)))?;
        let num = |g: &str| -> Result<f64, String> {
            let s = c.name(g).map_or("", |m| m.as_str()).trim();
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("{g}={s:?} is not a number"))
        };
        if self.by_watts {
            let mut r = Reading::watts(num("watts")? * self.scale);
            r.volts = num("volts").ok();
            r.amps = num("amps").ok();
            Ok(r)
        } else {
            let (v, a) = (num("volts")?, num("amps")?);
            Ok(Reading {
                watts: v * a * self.scale,
                volts: Some(v),
                amps: Some(a),
            })
        }
    }
}

fn truncate(s: &str) -> &str {
    let end = s.char_indices().nth(60).map_or(s.len(), |(i, _)| i);
    &s[..end]
}

/// Splits a byte stream into lines (CR, LF or CRLF), keeping one buffer.
#[derive(Debug, Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The next complete, non-empty line that is not a comment (`;` or `#` first, as in
    /// `sigrok-cli -O csv`'s preamble: its version numbers must not read as watts); `Err` when
    /// garbage overflowed the buffer.
    pub fn next_line(&mut self) -> Result<Option<String>, String> {
        loop {
            let Some(i) = self.pending.iter().position(|&b| b == b'\n' || b == b'\r') else {
                if self.pending.len() > MAX_LINE {
                    self.pending.clear();
                    return Err(format!("no line end in {MAX_LINE} bytes"));
                }
                return Ok(None);
            };
            let line: Vec<u8> = self.pending.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line[..i]).trim().to_string();
            if !text.is_empty() && !text.starts_with([';', '#']) {
                return Ok(Some(text));
            }
        }
    }

    pub fn clear(&mut self) {
        self.pending.clear();
    }
}

/// A text meter on a serial port.
pub struct SerialLine {
    path: PathBuf,
    port: Box<dyn SerialPort>,
    parser: LineParser,
    request: Option<Vec<u8>>,
    lines: LineBuffer,
}

impl SerialLine {
    pub fn open(
        path: &Path,
        baud: u32,
        parser: LineParser,
        request: Option<String>,
    ) -> Result<SerialLine, MeterError> {
        Ok(SerialLine {
            path: path.to_path_buf(),
            port: serial::open(path, baud)?,
            parser,
            // SCPI and sketches end a command with a newline.
            request: request.map(|r| format!("{}\n", r.trim_end()).into_bytes()),
            lines: LineBuffer::default(),
        })
    }

    /// Waits up to `wait` for a complete line.
    fn line(&mut self, wait: Duration) -> Result<Option<String>, MeterError> {
        let deadline = Instant::now() + wait;
        let mut chunk = [0u8; 256];
        loop {
            if let Some(l) = self
                .lines
                .next_line()
                .map_err(|r| serial::bad(&self.path, r))?
            {
                return Ok(Some(l));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            let n = serial::read_some(&mut *self.port, &self.path, &mut chunk)?;
            self.lines.push(&chunk[..n]);
        }
    }
}

impl Meter for SerialLine {
    fn read(&mut self) -> Result<Option<Reading>, MeterError> {
        if let Some(req) = &self.request {
            // An answer that came late belongs to an old request.
            self.lines.clear();
            serial::send(&mut *self.port, &self.path, req)?;
        }
        match self.line(Duration::from_secs(1))? {
            Some(l) => self
                .parser
                .parse(&l)
                .map(Some)
                .map_err(|r| serial::bad(&self.path, r)),
            None if self.request.is_some() => {
                serial::still_there(&self.path)?;
                Err(serial::bad(&self.path, "no answer to the request"))
            }
            None => serial::still_there(&self.path).map(|()| None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_regex_takes_the_first_number() {
        let p = LineParser::new(None, 1.0).unwrap();
        assert_eq!(p.parse("P: 4.25 W, 5.1 V").unwrap().watts, 4.25);
        assert_eq!(p.parse("1.5e1").unwrap().watts, 15.0);
        assert!(p.parse("no digits here").is_err());
    }

    #[test]
    fn volts_times_amps_and_scale() {
        let p = LineParser::new(Some(r"V=(?P<volts>[0-9.]+) I=(?P<amps>[0-9.]+)"), 1.0).unwrap();
        let r = p.parse("V=5.0 I=0.5").unwrap();
        assert_eq!((r.watts, r.volts, r.amps), (2.5, Some(5.0), Some(0.5)));
        // tegrastats prints milliwatts: VDD_IN 5123mW/5001mW
        let t = LineParser::new(Some(r"VDD_IN (?P<watts>\d+)mW"), 0.001).unwrap();
        let w = t.parse("RAM 1/2MB VDD_IN 5123mW/5001mW").unwrap().watts;
        assert!((w - 5.123).abs() < 1e-12);
    }

    #[test]
    fn line_buffer_splits_on_any_line_end() {
        let mut b = LineBuffer::default();
        b.push(b"1.0\r\n\r\n2.0\n3.");
        assert_eq!(b.next_line().unwrap().as_deref(), Some("1.0"));
        assert_eq!(b.next_line().unwrap().as_deref(), Some("2.0"));
        assert_eq!(b.next_line().unwrap(), None);
        b.push(b"5\r");
        assert_eq!(b.next_line().unwrap().as_deref(), Some("3.5"));
        b.push(&[b'x'; 5000]);
        assert!(b.next_line().is_err());
    }

    #[test]
    fn comment_lines_are_not_readings() {
        // A CSV preamble as sigrok-cli writes one: its version number is not 0.5 W.
        let mut b = LineBuffer::default();
        b.push(b"; CSV generated by libsigrok 0.5.2\n# note 7\n4.75\n");
        assert_eq!(b.next_line().unwrap().as_deref(), Some("4.75"));
        assert_eq!(b.next_line().unwrap(), None);
    }
}
