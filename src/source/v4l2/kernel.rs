//! The real device layer: `/dev/videoN` through the `v4l` crate, mmap streaming.
//!
//! Not exercised on hardware here (no camera on the build machines); the logic above it is
//! tested through a fake [`super::device::Device`].

use std::io;
use std::path::Path;
use std::time::Duration;

use v4l::buffer::{Flags, Type};
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Format, FourCC, Fraction};

use super::convert::FourCc;
use super::device::{Device, Granted, Opener};
use crate::time::MonoTime;

/// Driver buffers in the mmap queue: one being filled, one with us, two spare for bursts.
pub const BUFFERS: u32 = 4;

/// Opens real devices.
pub struct KernelOpener;

impl Opener for KernelOpener {
    fn open(&mut self, path: &Path) -> io::Result<Box<dyn Device>> {
        let dev = v4l::Device::with_path(path)?;
        Ok(Box::new(KernelDevice {
            dev,
            stream: None,
            started: false,
        }))
    }
}

struct KernelDevice {
    dev: v4l::Device,
    stream: Option<Stream<'static>>,
    started: bool,
}

impl Device for KernelDevice {
    fn formats(&mut self) -> io::Result<Vec<FourCc>> {
        Ok(self
            .dev
            .enum_formats()?
            .into_iter()
            .map(|d| d.fourcc.repr)
            .collect())
    }

    fn start(&mut self, fourcc: FourCc, size: (u32, u32), fps: Option<f64>) -> io::Result<Granted> {
        let want = Format::new(size.0, size.1, FourCC::new(&fourcc));
        let got = self.dev.set_format(&want)?;
        let mut granted_fps = None;
        if let Some(f) = fps {
            // Rates are intervals: ask for 1000/(1000*fps) so 29.97 survives.
            let params = v4l::video::capture::Parameters::new(Fraction::new(
                1000,
                (f * 1000.0).round() as u32,
            ));
            if let Ok(p) = self.dev.set_params(&params) {
                granted_fps = (p.interval.numerator > 0)
                    .then(|| f64::from(p.interval.denominator) / f64::from(p.interval.numerator));
            }
        }
        self.stream = Some(Stream::with_buffers(
            &self.dev,
            Type::VideoCapture,
            BUFFERS,
        )?);
        self.started = false;
        Ok(Granted {
            fourcc: got.fourcc.repr,
            width: got.width,
            height: got.height,
            stride: got.stride as usize,
            fps: granted_fps,
        })
    }

    fn next(
        &mut self,
        timeout: Duration,
        f: &mut dyn FnMut(&[u8], Option<MonoTime>),
    ) -> io::Result<bool> {
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| io::Error::other("stream not started"))?;
        if self.started {
            // Poll first: the crate re-queues the last buffer inside `next`, so a timeout there
            // would queue it twice.
            let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            if stream.handle().poll(libc::POLLIN, ms)? == 0 {
                return Ok(false);
            }
        } else {
            // The first `next` queues every buffer and starts streaming.
            stream.set_timeout(Duration::from_secs(2));
            self.started = true;
        }
        let (data, meta) = CaptureStream::next(stream)?;
        let used = (meta.bytesused as usize).min(data.len());
        let monotonic = meta.flags & Flags::TIMESTAMP_MASK == Flags::TIMESTAMP_MONOTONIC;
        // time_t is i32 on 32-bit ARM and i64 here: widen without a lint-tripping cast.
        #[allow(clippy::useless_conversion)]
        let (sec, usec) = (
            i64::from(meta.timestamp.sec),
            i64::from(meta.timestamp.usec),
        );
        let at = monotonic.then(|| MonoTime::from_timespec(sec, usec * 1000));
        f(&data[..used], at);
        stream.clear_timeout();
        Ok(true)
    }
}
