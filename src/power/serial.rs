//! The thin device layer under the serial meters: open, timed reads, and telling "unplugged" from
//! "garbled". A meter that vanishes mid-read surfaces as an I/O error (a pty whose master closed
//! reads as `BrokenPipe`/`EIO`, a USB CDC device as `ENODEV`); a timeout while the device node
//! still exists is a short frame, not a disconnection.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use serialport::{ClearBuffer, SerialPort};

use super::MeterError;

/// How long one blocking read or write may take.
pub const IO_TIMEOUT: Duration = Duration::from_millis(200);

/// Opens `path` at `baud` 8N1, raw, with a short timeout.
pub fn open(path: &Path, baud: u32) -> Result<Box<dyn SerialPort>, MeterError> {
    serialport::new(path.to_string_lossy(), baud)
        .timeout(IO_TIMEOUT)
        .open()
        .map_err(|e| MeterError::Open {
            device: path.display().to_string(),
            source: io::Error::from(e),
        })
}

/// Maps an I/O failure: timeouts are `Ok` (the caller decides), anything else is a disconnection.
pub fn lost(path: &Path, e: io::Error) -> MeterError {
    MeterError::Lost {
        device: path.display().to_string(),
        source: e,
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Writes a request.
pub fn send(port: &mut dyn SerialPort, path: &Path, bytes: &[u8]) -> Result<(), MeterError> {
    port.write_all(bytes).map_err(|e| lost(path, e))
}

/// Fills `buf` or stops at `deadline`; returns how many bytes arrived.
pub fn read_until(
    port: &mut dyn SerialPort,
    path: &Path,
    buf: &mut [u8],
    deadline: Instant,
) -> Result<usize, MeterError> {
    let mut n = 0;
    while n < buf.len() {
        match port.read(&mut buf[n..]) {
            Ok(0) => return Err(lost(path, io::ErrorKind::UnexpectedEof.into())),
            Ok(k) => n += k,
            Err(e) if is_timeout(&e) => {
                if Instant::now() >= deadline {
                    break;
                }
            }
            Err(e) => return Err(lost(path, e)),
        }
    }
    Ok(n)
}

/// Reads whatever is there, up to `buf.len()`, waiting at most one timeout.
pub fn read_some(
    port: &mut dyn SerialPort,
    path: &Path,
    buf: &mut [u8],
) -> Result<usize, MeterError> {
    match port.read(buf) {
        Ok(0) => Err(lost(path, io::ErrorKind::UnexpectedEof.into())),
        Ok(k) => Ok(k),
        Err(e) if is_timeout(&e) => Ok(0),
        Err(e) => Err(lost(path, e)),
    }
}

/// After a bad frame: let the rest of it arrive, then drop it, so the next request starts
/// aligned. A node that disappeared meanwhile is a disconnection.
pub fn resync(port: &mut dyn SerialPort, path: &Path) -> Result<(), MeterError> {
    std::thread::sleep(Duration::from_millis(50));
    let mut junk = [0u8; 256];
    while read_some(port, path, &mut junk)? > 0 {}
    let _ = port.clear(ClearBuffer::Input);
    still_there(path)
}

/// `Lost` when the device node is gone (unplugged; the symlink points nowhere).
pub fn still_there(path: &Path) -> Result<(), MeterError> {
    if path.exists() {
        Ok(())
    } else {
        Err(lost(path, io::ErrorKind::NotFound.into()))
    }
}

/// A bad-frame error for `path`.
pub fn bad(path: &Path, reason: impl Into<String>) -> MeterError {
    MeterError::BadFrame {
        device: path.display().to_string(),
        reason: reason.into(),
    }
}

/// A garbled or short frame of a request/answer meter: drops whatever is left of it so the next
/// request starts on a frame boundary, and reports the bad frame — or `Lost` when the device
/// went away meanwhile.
pub fn bad_and_resync(
    port: &mut dyn SerialPort,
    path: &Path,
    reason: impl Into<String>,
) -> MeterError {
    match resync(port, path) {
        Ok(()) => bad(path, reason),
        Err(lost) => lost,
    }
}
