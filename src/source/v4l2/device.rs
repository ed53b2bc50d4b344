//! The thin device layer between the V4L2 source and the kernel.
//!
//! Everything the source decides (which format, what was granted, when the camera is gone, when
//! to retry) sits above this trait, so tests drive it with a fake camera that can be unplugged and
//! plugged back; only [`super::kernel`] talks to a real `/dev/videoN`.

use std::io;
use std::path::Path;
use std::time::Duration;

use super::convert::FourCc;
use crate::time::MonoTime;

/// What the driver agreed to (it picks the closest size and rate it supports).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Granted {
    pub fourcc: FourCc,
    pub width: u32,
    pub height: u32,
    /// Bytes per line of the first plane (0 = tightly packed or compressed).
    pub stride: usize,
    /// Frame rate in force, when the driver reports one.
    pub fps: Option<f64>,
}

/// An open capture device.
pub trait Device: Send {
    /// Pixel formats the driver offers.
    fn formats(&mut self) -> io::Result<Vec<FourCc>>;
    /// Sets format, size and rate (the driver adjusts them) and starts mmap streaming.
    fn start(&mut self, fourcc: FourCc, size: (u32, u32), fps: Option<f64>) -> io::Result<Granted>;
    /// Waits up to `timeout` for a filled buffer and hands it to `f` with the driver's timestamp
    /// (CLOCK_MONOTONIC) when it gives one. `Ok(false)` when nothing came in time.
    fn next(
        &mut self,
        timeout: Duration,
        f: &mut dyn FnMut(&[u8], Option<MonoTime>),
    ) -> io::Result<bool>;
}

/// Opens devices by path (the kernel, or a fake).
pub trait Opener: Send {
    fn open(&mut self, path: &Path) -> io::Result<Box<dyn Device>>;
}

/// Errors that mean the camera went away (unplugged, reset), not a bad request.
pub fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENODEV) | Some(libc::EIO) | Some(libc::ENXIO) | Some(libc::ENOENT)
    ) || e.kind() == io::ErrorKind::NotFound
}
