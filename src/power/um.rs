//! RuiDeng UM24C / UM25C / UM34C over Bluetooth SPP (`rfcomm bind` gives `/dev/rfcommN`), 9600 8N1.
//!
//! Protocol facts (sigrok's `rdtech-um` driver; no code taken): the byte `0xF0` is answered with a
//! 130-byte big-endian frame: model id u16 @0 (0x0963 UM24C, 0x09C9 UM25C, 0x0D4C UM34C),
//! voltage u16 @2 (UM25C 1e-3 V, others 1e-2 V), current u16 @4 (UM25C 1e-4 A, others 1e-3 A),
//! power u32 @6 (1e-3 W). UM24C/UM25C frames end in `FF F1`; the UM34C's last byte is the XOR of
//! 32 fixed positions. The model id and the end check are how a garbled Bluetooth frame is told
//! from a good one.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serialport::SerialPort;

use super::{Meter, MeterError, Reading, serial};

pub const FRAME_LEN: usize = 130;
pub const BAUD: u32 = 9600;
/// The poll request.
pub const REQUEST: u8 = 0xF0;
/// 130 bytes at 9600 baud take 135 ms; Bluetooth adds latency.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(1000);
/// Bytes XOR-ed into the UM34C's last byte.
const UM34C_XOR_AT: [usize; 32] = [
    1, 3, 7, 9, 15, 17, 19, 23, 31, 39, 41, 45, 49, 53, 55, 57, 59, 63, 67, 69, 73, 79, 83, 89, 97,
    99, 109, 111, 113, 119, 121, 127,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UmModel {
    Um24c,
    Um25c,
    Um34c,
}

impl FromStr for UmModel {
    type Err = String;
    fn from_str(s: &str) -> Result<UmModel, String> {
        match s.to_ascii_lowercase().as_str() {
            "um24c" => Ok(UmModel::Um24c),
            "um25c" => Ok(UmModel::Um25c),
            "um34c" => Ok(UmModel::Um34c),
            _ => Err(format!("{s:?} is not um24c, um25c or um34c")),
        }
    }
}

impl UmModel {
    pub fn id(self) -> u16 {
        match self {
            UmModel::Um24c => 0x0963,
            UmModel::Um25c => 0x09C9,
            UmModel::Um34c => 0x0D4C,
        }
    }

    /// (counts per volt, counts per amp): dividing by an exact power of ten rounds correctly.
    fn scales(self) -> (f64, f64) {
        match self {
            UmModel::Um25c => (1e3, 1e4),
            UmModel::Um24c | UmModel::Um34c => (1e2, 1e3),
        }
    }

    fn check_end(self, f: &[u8; FRAME_LEN]) -> Result<(), String> {
        match self {
            UmModel::Um24c | UmModel::Um25c => {
                if f[FRAME_LEN - 2..] == [0xFF, 0xF1] {
                    Ok(())
                } else {
                    Err(format!(
                        "end marker {:02X} {:02X}, expected FF F1",
                        f[128], f[129]
                    ))
                }
            }
            UmModel::Um34c => {
                let x = UM34C_XOR_AT.iter().fold(0u8, |a, &i| a ^ f[i]);
                if x == f[FRAME_LEN - 1] {
                    Ok(())
                } else {
                    Err(format!("checksum {x:02X}, frame says {:02X}", f[129]))
                }
            }
        }
    }
}

/// The UM34C's checksum byte of a frame (for emulators and tests).
pub fn um34c_checksum(f: &[u8; FRAME_LEN]) -> u8 {
    UM34C_XOR_AT.iter().fold(0u8, |a, &i| a ^ f[i])
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Decodes one answer of `model`.
pub fn decode(model: UmModel, f: &[u8; FRAME_LEN]) -> Result<Reading, String> {
    let id = be16(f, 0);
    if id != model.id() {
        return Err(format!("model id {id:#06x}, expected {:#06x}", model.id()));
    }
    model.check_end(f)?;
    let (vs, is) = model.scales();
    let power = u32::from_be_bytes([f[6], f[7], f[8], f[9]]);
    Ok(Reading {
        watts: f64::from(power) / 1e3,
        volts: Some(f64::from(be16(f, 2)) / vs),
        amps: Some(f64::from(be16(f, 4)) / is),
    })
}

/// A connected UM meter.
pub struct Um {
    model: UmModel,
    path: PathBuf,
    port: Box<dyn SerialPort>,
    buf: [u8; FRAME_LEN],
}

impl Um {
    pub fn open(model: UmModel, path: &Path) -> Result<Um, MeterError> {
        let mut port = serial::open(path, BAUD)?;
        serial::resync(&mut *port, path)?;
        Ok(Um {
            model,
            path: path.to_path_buf(),
            port,
            buf: [0; FRAME_LEN],
        })
    }

    fn bad(&mut self, reason: String) -> MeterError {
        serial::bad_and_resync(&mut *self.port, &self.path, reason)
    }
}

impl Meter for Um {
    fn read(&mut self) -> Result<Option<Reading>, MeterError> {
        serial::send(&mut *self.port, &self.path, &[REQUEST])?;
        let n = serial::read_until(
            &mut *self.port,
            &self.path,
            &mut self.buf,
            Instant::now() + ANSWER_TIMEOUT,
        )?;
        if n < FRAME_LEN {
            return Err(self.bad(format!("short answer: {n} of {FRAME_LEN} bytes")));
        }
        match decode(self.model, &self.buf) {
            Ok(r) => Ok(Some(r)),
            Err(reason) => Err(self.bad(reason)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: u16, v: u16, i: u16, p: u32) -> [u8; FRAME_LEN] {
        let mut f = [0u8; FRAME_LEN];
        f[0..2].copy_from_slice(&id.to_be_bytes());
        f[2..4].copy_from_slice(&v.to_be_bytes());
        f[4..6].copy_from_slice(&i.to_be_bytes());
        f[6..10].copy_from_slice(&p.to_be_bytes());
        f
    }

    #[test]
    fn um25c_has_finer_scales() {
        let mut f = frame(0x09C9, 5123, 4567, 2340);
        f[128] = 0xFF;
        f[129] = 0xF1;
        let r = decode(UmModel::Um25c, &f).unwrap();
        assert_eq!(r.watts, 2.34);
        assert_eq!(r.volts, Some(5.123));
        assert_eq!(r.amps, Some(0.4567));
        assert!(
            decode(UmModel::Um24c, &f).is_err(),
            "wrong model id accepted"
        );
        f[129] = 0xF0;
        assert!(decode(UmModel::Um25c, &f).is_err());
    }

    #[test]
    fn um34c_checksum_by_hand() {
        // id 0x0D4C puts 0x4C at byte 1 (an XOR position); v = 0x01F4 puts 0xF4 at byte 3;
        // power 0x00000457 puts 0x57 at byte 9. XOR: 0x4C ^ 0xF4 ^ 0x57 = 0xEF.
        let mut f = frame(0x0D4C, 500, 0, 0x457);
        f[129] = 0xEF;
        let r = decode(UmModel::Um34c, &f).unwrap();
        assert_eq!(r.watts, 1.111);
        assert_eq!(r.volts, Some(5.0));
        f[129] = 0xEE;
        assert!(decode(UmModel::Um34c, &f).is_err());
    }
}
