//! `v4l2:///dev/video0?size=640x480&fps=60&format=YUYV`: live cameras.
//!
//! The source negotiates once at open (the format the URI names, else the first of
//! [`convert::PREFERRED`] the driver offers; the size and rate the driver grants closest to the
//! request, logged), then copies each buffer into the frame in the camera's own layout (MJPEG is
//! decoded); preprocessing resizes from that layout. Capture time is the driver's
//! buffer timestamp when it is CLOCK_MONOTONIC, so end-to-end latency includes the time a frame
//! waited in the driver queue.
//!
//! A camera that is unplugged (ENODEV, EIO) does not end the run: the source reports
//! `connected = false`, keeps answering [`Capture::Timeout`], and reopens the device with backoff
//! (1 s doubling to 30 s); when it is back, frames flow again at the same geometry if the driver
//! grants it. One log line per change (lost, back); failed retries log at debug.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    Capture, Frame, FrameLimits, PixelFormat, Source, SourceError, SourceInfo, SourceOptions,
};
use crate::time::MonoTime;

pub mod convert;
pub mod device;
pub mod jpeg;
pub mod kernel;
pub mod mjpeg;

use convert::{FourCc, Layout};
use device::{Device, Granted, Opener};

/// Size asked for when the URI gives none.
pub const DEFAULT_SIZE: (u32, u32) = (640, 480);
/// Reconnect backoff: first retry after 1 s, doubling up to 30 s.
pub const BACKOFF_START: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What the URI asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    pub format: Option<FourCc>,
    pub size: (u32, u32),
    pub fps: Option<f64>,
}

impl Request {
    pub fn from_options(o: &SourceOptions) -> Request {
        Request {
            format: o.format,
            size: o.size.unwrap_or(DEFAULT_SIZE),
            fps: o.fps,
        }
    }
}

/// A V4L2 camera with reconnect.
pub struct V4l2Source {
    path: PathBuf,
    uri: String,
    request: Request,
    opener: Box<dyn Opener>,
    device: Option<Box<dyn Device>>,
    granted: Granted,
    /// What a granted format may be (a driver may grant more than was asked).
    limits: FrameLimits,
    /// Buffers reused from MJPEG frame to MJPEG frame.
    jpeg_scratch: mjpeg::Scratch,
    /// The smallest picture the consumer needs ([`Source::set_min_size`]).
    min_size: Option<(u32, u32)>,
    backoff: Duration,
    backoff_start: Duration,
    backoff_max: Duration,
    retry_at: MonoTime,
    disconnects: u64,
    /// Frames skipped because they could not be decoded or copied (corrupt, truncated).
    skipped: u64,
    /// The skipped count last logged, and when (at most one line per [`SKIP_LOG_EVERY`]).
    skipped_logged: (u64, MonoTime),
}

/// How often a stream of corrupt frames is logged (the first one at once).
pub const SKIP_LOG_EVERY: Duration = Duration::from_secs(10);

/// Opens a real camera.
pub fn open(
    device: &Path,
    uri: &str,
    options: &SourceOptions,
) -> Result<Box<dyn Source>, SourceError> {
    let s = V4l2Source::open_with_limits(
        Box::new(kernel::KernelOpener),
        device,
        uri,
        Request::from_options(options),
        options.limits(),
    )?;
    Ok(Box::new(s))
}

/// The format to use: the requested one if offered, else the first preferred one offered.
pub fn choose_format(offered: &[FourCc], wanted: Option<FourCc>) -> Result<FourCc, String> {
    let names = || {
        offered
            .iter()
            .map(|f| convert::name(*f))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match wanted {
        Some(w) if offered.contains(&w) && convert::PREFERRED.contains(&w) => Ok(w),
        Some(w) if !convert::PREFERRED.contains(&w) => Err(format!(
            "format {} is not supported (YUYV, UYVY, NV12, MJPG, RGB3, BGR3, GREY)",
            convert::name(w)
        )),
        Some(w) => Err(format!(
            "the camera does not offer {} (it offers {})",
            convert::name(w),
            names()
        )),
        None => convert::PREFERRED
            .iter()
            .copied()
            .find(|f| offered.contains(f))
            .ok_or_else(|| format!("the camera offers no format we convert ({})", names())),
    }
}

impl V4l2Source {
    /// Opens and negotiates through `opener` (the kernel, or a fake in tests).
    pub fn open_with(
        opener: Box<dyn Opener>,
        path: &Path,
        uri: &str,
        request: Request,
    ) -> Result<V4l2Source, SourceError> {
        V4l2Source::open_with_limits(opener, path, uri, request, FrameLimits::default())
    }

    /// [`V4l2Source::open_with`], refusing a granted format over `limits`.
    pub fn open_with_limits(
        mut opener: Box<dyn Opener>,
        path: &Path,
        uri: &str,
        request: Request,
        limits: FrameLimits,
    ) -> Result<V4l2Source, SourceError> {
        let open_err = |source: std::io::Error| SourceError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut dev = opener.open(path).map_err(open_err)?;
        let granted = negotiate(&mut *dev, &request, &limits).map_err(|e| match e {
            Negotiation::Io(source) => open_err(source),
            Negotiation::Format(reason) => SourceError::Format {
                uri: uri.to_string(),
                reason,
            },
            Negotiation::TooLarge(limit) => SourceError::TooLarge {
                uri: uri.to_string(),
                what: "the driver's granted format".into(),
                limit,
            },
        })?;
        log_granted(uri, &request, &granted);
        Ok(V4l2Source {
            path: path.to_path_buf(),
            uri: uri.to_string(),
            request,
            opener,
            device: Some(dev),
            granted,
            limits,
            jpeg_scratch: {
                let mut s = mjpeg::Scratch::default();
                s.prepare();
                s
            },
            min_size: None,
            backoff: BACKOFF_START,
            backoff_start: BACKOFF_START,
            backoff_max: BACKOFF_MAX,
            retry_at: MonoTime::now(),
            disconnects: 0,
            skipped: 0,
            skipped_logged: (0, MonoTime::from_nanos(0)),
        })
    }

    /// Overrides the reconnect backoff (tests use milliseconds).
    pub fn with_backoff(mut self, start: Duration, max: Duration) -> V4l2Source {
        self.backoff_start = start;
        self.backoff = start;
        self.backoff_max = max;
        self
    }

    /// What the driver granted at open.
    pub fn granted(&self) -> Granted {
        self.granted
    }

    /// How many times the camera was lost.
    pub fn disconnects(&self) -> u64 {
        self.disconnects
    }

    /// Counts a skipped frame; logs the first at once, then at most one line per
    /// [`SKIP_LOG_EVERY`] with the count since the last line.
    fn skip(&mut self, reason: &str) {
        self.skipped += 1;
        let now = MonoTime::now();
        let (logged, at) = self.skipped_logged;
        if logged == 0 || now.saturating_since(at) >= SKIP_LOG_EVERY {
            log::warn!(
                "{}: {} frame(s) skipped since the last report ({} in all); last: {reason}",
                self.uri,
                self.skipped - logged,
                self.skipped
            );
            self.skipped_logged = (self.skipped, now);
        } else {
            log::debug!("{}: frame skipped: {reason}", self.uri);
        }
    }

    fn lose(&mut self, e: &std::io::Error) {
        self.device = None;
        self.disconnects += 1;
        // First try after backoff_start, then each wait doubles: 1, 2, 4, ... 30 s.
        self.retry_at = MonoTime::now().plus(self.backoff_start);
        self.backoff = (self.backoff_start * 2).min(self.backoff_max);
        log::warn!(
            "{}: camera lost ({e}); reopening {} with backoff",
            self.uri,
            self.path.display()
        );
    }

    /// One reopen attempt when due; sleeps at most `timeout` otherwise.
    fn try_reopen(&mut self, timeout: Duration) {
        let now = MonoTime::now();
        if now < self.retry_at {
            now.plus(self.retry_at.saturating_since(now).min(timeout))
                .sleep_until();
            return;
        }
        let attempt = self
            .opener
            .open(&self.path)
            .map_err(Negotiation::Io)
            .and_then(|mut d| negotiate(&mut *d, &self.request, &self.limits).map(|g| (d, g)));
        match attempt {
            Ok((d, g)) => {
                log::info!(
                    "{}: camera back ({} {}x{})",
                    self.uri,
                    convert::name(g.fourcc),
                    g.width,
                    g.height
                );
                self.device = Some(d);
                self.granted = g;
                self.backoff = self.backoff_start;
            }
            Err(e) => {
                log::debug!(
                    "{}: reopen failed: {e:?}; next try in {:?}",
                    self.uri,
                    self.backoff
                );
                self.retry_at = now.plus(self.backoff);
                self.backoff = (self.backoff * 2).min(self.backoff_max);
            }
        }
    }
}

#[derive(Debug)]
enum Negotiation {
    Io(std::io::Error),
    Format(String),
    TooLarge(super::limits::TooLarge),
}

fn negotiate(
    dev: &mut dyn Device,
    req: &Request,
    limits: &FrameLimits,
) -> Result<Granted, Negotiation> {
    let offered = dev.formats().map_err(Negotiation::Io)?;
    let fourcc = choose_format(&offered, req.format).map_err(Negotiation::Format)?;
    let g = dev
        .start(fourcc, req.size, req.fps)
        .map_err(Negotiation::Io)?;
    if g.fourcc != fourcc {
        return Err(Negotiation::Format(format!(
            "asked for {}, the driver set {}",
            convert::name(fourcc),
            convert::name(g.fourcc)
        )));
    }
    if g.width == 0 || g.height == 0 {
        return Err(Negotiation::Format(
            "the driver granted an empty frame".into(),
        ));
    }
    limits
        .check(u64::from(g.width), u64::from(g.height))
        .map_err(Negotiation::TooLarge)?;
    Ok(g)
}

fn log_granted(uri: &str, req: &Request, g: &Granted) {
    log::info!(
        "{uri}: asked {}x{}{} {}, granted {}x{} at {} {}",
        req.size.0,
        req.size.1,
        req.fps.map_or(String::new(), |f| format!(" @{f}")),
        req.format.map_or("(any format)".into(), convert::name),
        g.width,
        g.height,
        g.fps
            .map_or("the driver's rate".into(), |f| format!("{f:.2} FPS")),
        convert::name(g.fourcc)
    );
}

/// The layout frames of a camera format arrive in: raw formats as they are; MJPEG as the 4:2:2
/// cameras send (`yuvj422p`). A JPEG in another sampling arrives in its own planes (`yuvj420p`,
/// `yuvj444p`, grey; RGB from the fallback decoder), and a DCT-scaled one smaller than the
/// granted size (see [`mjpeg`]); the preprocessor replans on the first such frame.
fn frame_format(fourcc: FourCc) -> PixelFormat {
    convert::pixel_format(fourcc).unwrap_or(PixelFormat::Yuv {
        chroma: crate::source::color::Chroma::C422,
        range: crate::source::color::ColorRange::Full,
    })
}

impl Source for V4l2Source {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            uri: self.uri.clone(),
            width: self.granted.width,
            height: self.granted.height,
            format: frame_format(self.granted.fourcc),
            fps: self.granted.fps.or(self.request.fps),
        }
    }

    fn connected(&self) -> bool {
        self.device.is_some()
    }

    /// How many frames were skipped because they could not be decoded (corrupt, truncated).
    fn skipped_frames(&self) -> u64 {
        self.skipped
    }

    fn set_min_size(&mut self, size: Option<(u32, u32)>) {
        if self.granted.fourcc == convert::MJPG && size != self.min_size {
            let (w, h) = (self.granted.width, self.granted.height);
            let k = mjpeg::scale_for(w, h, size);
            log::info!(
                "{}: MJPEG frames decoded at 1/{k} size ({}x{}) for a model input of {}",
                self.uri,
                w.div_ceil(k),
                h.div_ceil(k),
                size.map_or("(none)".into(), |(mw, mh)| format!("{mw}x{mh}"))
            );
        }
        self.min_size = size;
        self.jpeg_scratch.set_min_size(size);
    }

    fn next(&mut self, frame: &mut Frame, timeout: Duration) -> Result<Capture, SourceError> {
        let Some(dev) = self.device.as_mut() else {
            self.try_reopen(timeout);
            return Ok(Capture::Timeout);
        };
        let g = self.granted;
        if g.fourcc != convert::MJPG {
            frame.set_format(frame_format(g.fourcc), g.width, g.height);
        }
        let scratch = &mut self.jpeg_scratch;
        let mut converted: Result<(), String> = Ok(());
        let mut stamp = None;
        let got = dev.next(timeout, &mut |data, at| {
            stamp = at;
            converted = if g.fourcc == convert::MJPG {
                mjpeg::decode_frame(data, g.width, g.height, scratch, frame)
                    .map_err(|e| e.to_string())
            } else {
                let l = Layout {
                    width: g.width,
                    height: g.height,
                    stride: g.stride,
                };
                convert::copy_frame(g.fourcc, &l, data, &mut frame.data).map_err(|e| e.to_string())
            };
        });
        match got {
            Ok(false) => Ok(Capture::Timeout),
            Ok(true) => match converted {
                Ok(()) => {
                    frame.captured_at = stamp.unwrap_or_else(MonoTime::now);
                    Ok(Capture::Frame)
                }
                // A corrupt frame (a USB glitch) is skipped, not fatal.
                Err(reason) => {
                    self.skip(&reason);
                    Ok(Capture::Timeout)
                }
            },
            Err(e) if device::is_disconnect(&e) => {
                self.lose(&e);
                Ok(Capture::Timeout)
            }
            Err(source) => Err(SourceError::Io {
                uri: self.uri.clone(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_choice_prefers_raw_and_honours_the_request() {
        let offered = [convert::MJPG, convert::YUYV, *b"H264"];
        assert_eq!(choose_format(&offered, None), Ok(convert::YUYV));
        assert_eq!(
            choose_format(&offered, Some(convert::MJPG)),
            Ok(convert::MJPG)
        );
        let e = choose_format(&offered, Some(convert::NV12)).unwrap_err();
        assert!(e.contains("MJPG, YUYV, H264"), "{e}");
        assert!(choose_format(&offered, Some(*b"H264")).is_err());
        assert!(choose_format(&[*b"H264"], None).is_err());
    }
}
