//! Source URIs, jetson-inference style: one string names any input on the command line, in the
//! config file and in `/status`.
//!
//! Parsing is pure (it never touches the device) so `check-config` validates a URI on a machine
//! without the camera, and an error says what is wrong with the text. The one exception is a
//! `file://` path without a trailing slash: whether it names an image folder or a Y4M clip is
//! decided by looking at the file system, at parse time and again when opening. The first `?`
//! always starts the query, and paths are taken literally (no percent-decoding).

use std::fmt;
use std::path::{Path, PathBuf};

use super::ffmpeg::{self, Transport, args::network_scheme};
use super::{FrameLimits, Source, SourceError, images, sniff, synthetic, y4m};

/// The URIs a source can be named by, for `--help` (kept beside the parser it describes).
pub const USAGE: &str = "Sources (URIs): synthetic://WxH@FPS, file:///clip.y4m, file:///frames/ \
(PNG/JPEG), file:///clip.mp4 (any container or codec, decoded by an ffmpeg child), \
rtsp://, http(s)://, udp://, rtp:// (network streams through ffmpeg, reconnected when lost), \
pipe:// or - (Y4M on stdin, e.g. ffmpeg ... -f yuv4mpegpipe -), v4l2:///dev/video0 \
(a camera; a bare /dev/videoN too); options ?loop=true, ?fps=N, ?transport=tcp (RTSP).";

/// Largest synthetic frame side and highest rate we accept (anything beyond is a typo).
const MAX_SIDE: u32 = 16_384;
const MAX_FPS: f64 = 1000.0;
/// Rate of `synthetic://WxH` without `@FPS` or `?fps=`.
pub const DEFAULT_SYNTHETIC_FPS: f64 = 60.0;

/// What kind of input a URI names.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    /// `synthetic://WxH@FPS`: a generated moving pattern.
    Synthetic { width: u32, height: u32, fps: f64 },
    /// `file:///x.y4m` or a bare path to a file: YUV4MPEG2.
    Y4mFile { path: PathBuf },
    /// `file:///dir/` or a bare path to a directory: PNG/JPEG sorted by name.
    ImageFolder { path: PathBuf },
    /// `pipe://` or `-`: YUV4MPEG2 on stdin.
    Stdin,
    /// `v4l2:///dev/video0` or a bare `/dev/videoN`.
    V4l2 { device: PathBuf },
    /// `file:///x.mp4` or a bare path to a file that is not Y4M (by its first bytes, or by its
    /// extension while it does not exist): decoded by an ffmpeg child.
    VideoFile { path: PathBuf },
    /// `rtsp://`, `http(s)://`, `udp://`, `rtp://`, ...: a network stream decoded by an ffmpeg
    /// child, reconnected when lost. `url` keeps every query parameter that is not ours.
    Stream { url: String },
}

/// Query options (`?loop=true&fps=30`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SourceOptions {
    /// `loop=true`: restart a file or folder at its end.
    pub looping: bool,
    /// `fps=N`: pace at this rate instead of the file's own (or the folder default). For
    /// `synthetic://` the rate is folded into [`SourceKind::Synthetic`] and this is `None`.
    pub fps: Option<f64>,
    /// `reopen=true` on a named FIFO: at EOF wait for the next writer instead of ending.
    pub reopen: bool,
    /// `size=WxH` (cameras): the size to ask the driver for.
    pub size: Option<(u32, u32)>,
    /// `format=YUYV` (cameras): the FourCC to ask the driver for.
    pub format: Option<[u8; 4]>,
    /// `max_pixels=N`: the largest frame (width x height) a header may declare; see
    /// [`FrameLimits`] for the default.
    pub max_pixels: Option<u64>,
    /// `transport=tcp|udp` (RTSP): the lower transport ffmpeg asks the server for.
    pub transport: Option<Transport>,
}

impl SourceOptions {
    /// The frame-size limits every reader of this source checks before allocating.
    pub fn limits(&self) -> FrameLimits {
        FrameLimits::with_max_pixels(self.max_pixels)
    }
}

/// A parsed source URI.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    /// The URI as the user wrote it (reported in `/status`).
    pub uri: String,
    pub kind: SourceKind,
    pub options: SourceOptions,
}

impl SourceSpec {
    /// Parses a source URI or shorthand (see the module docs of [`crate::source`]).
    pub fn parse(uri: &str) -> Result<SourceSpec, SourceError> {
        let bad = |reason: String| SourceError::BadUri {
            uri: uri.to_owned(),
            reason,
        };
        let text = uri.trim();
        if text.is_empty() {
            return Err(bad("empty source URI".into()));
        }
        let (body, query) = text.split_once('?').unwrap_or((text, ""));
        // A camera URL may carry its own query (`rtsp://cam/live?channel=1`): for network
        // streams the keys that are not ours stay in the URL.
        let (query, foreign) = match network_scheme(body) {
            Some(_) => split_foreign(query),
            None => (query.to_string(), String::new()),
        };
        let mut options = parse_query(&query).map_err(bad)?;
        let kind = match body.split_once("://") {
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                "synthetic" => synthetic_kind(rest, options.fps).map_err(bad)?,
                "file" => file_kind(rest).map_err(bad)?,
                "pipe" if rest.is_empty() => SourceKind::Stdin,
                "pipe" => {
                    return Err(bad(
                        "pipe:// reads stdin and takes no path (use file:// for a FIFO)".into(),
                    ));
                }
                "v4l2" if rest.is_empty() => {
                    return Err(bad("v4l2:// needs a device, e.g. v4l2:///dev/video0".into()));
                }
                "v4l2" => SourceKind::V4l2 {
                    device: PathBuf::from(rest),
                },
                _ if network_scheme(body).is_some() => {
                    if rest.is_empty() {
                        return Err(bad(format!("{scheme}:// needs an address")));
                    }
                    SourceKind::Stream {
                        url: if foreign.is_empty() {
                            body.to_string()
                        } else {
                            format!("{body}?{foreign}")
                        },
                    }
                }
                _ => {
                    return Err(SourceError::UnknownScheme {
                        uri: uri.to_owned(),
                    });
                }
            },
            None if body == "-" => SourceKind::Stdin,
            None if is_video_device(body) => SourceKind::V4l2 {
                device: PathBuf::from(body),
            },
            None => file_kind(body).map_err(bad)?,
        };
        check_options(&kind, &options).map_err(bad)?;
        let requested = match kind {
            SourceKind::Synthetic { width, height, .. } => Some((width, height)),
            _ => options.size,
        };
        if let Some((w, h)) = requested {
            options
                .limits()
                .check(u64::from(w), u64::from(h))
                .map_err(|e| bad(format!("the size {e}")))?;
        }
        if let SourceKind::Synthetic { .. } = kind {
            options.fps = None; // folded into the kind
        }
        Ok(SourceSpec {
            uri: uri.to_owned(),
            kind,
            options,
        })
    }
}

impl SourceSpec {
    /// The new rate when `new` names the same paced input as `self` and differs only in its rate
    /// (`synthetic://WxH@FPS`, or `?fps=` on a file, a folder or a paced pipe): such a change
    /// re-paces the running source. `None` for anything else, which needs a restart (a camera's
    /// rate is the driver's, an unpaced pipe has no pacer, and dropping `?fps=` returns a file to
    /// its header rate, which only opening it tells).
    pub fn rate_change(&self, new: &SourceSpec) -> Option<f64> {
        let same_options = |a: &SourceOptions, b: &SourceOptions| {
            SourceOptions { fps: None, ..*a } == SourceOptions { fps: None, ..*b }
        };
        if !same_options(&self.options, &new.options) {
            return None;
        }
        match (&self.kind, &new.kind) {
            (
                SourceKind::Synthetic {
                    width: w0,
                    height: h0,
                    fps: f0,
                },
                SourceKind::Synthetic {
                    width: w1,
                    height: h1,
                    fps: f1,
                },
            ) if (w0, h0) == (w1, h1) => (f0 != f1).then_some(*f1),
            (
                SourceKind::Y4mFile { .. }
                | SourceKind::ImageFolder { .. }
                | SourceKind::VideoFile { .. },
                _,
            ) if self.kind == new.kind => new.options.fps.filter(|f| Some(*f) != self.options.fps),
            (SourceKind::Stdin, SourceKind::Stdin) if self.options.fps.is_some() => {
                new.options.fps.filter(|f| Some(*f) != self.options.fps)
            }
            _ => None,
        }
    }
}

/// `/dev/video0`, `/dev/video12`.
fn is_video_device(path: &str) -> bool {
    path.strip_prefix("/dev/video")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Our query keys, which a network URL's own query must leave to us.
const OUR_KEYS: [&str; 4] = ["loop", "fps", "transport", "max_pixels"];

/// Splits a network URL's query into (ours, the URL's own), each joined with `&`.
fn split_foreign(query: &str) -> (String, String) {
    let (ours, theirs): (Vec<&str>, Vec<&str>) = query
        .split('&')
        .filter(|p| !p.is_empty())
        .partition(|p| OUR_KEYS.contains(&p.split_once('=').map_or(*p, |(k, _)| k)));
    (ours.join("&"), theirs.join("&"))
}

/// `loop=true&fps=30`; both optional, nothing else allowed.
fn parse_query(query: &str) -> Result<SourceOptions, String> {
    let mut options = SourceOptions::default();
    let mut seen: Vec<&str> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, "true"));
        if seen.contains(&key) {
            return Err(format!("option '{key}' is given twice"));
        }
        seen.push(key);
        match key {
            "loop" => {
                options.looping =
                    parse_bool(value).ok_or(format!("loop must be true or false, not '{value}'"))?
            }
            "fps" => options.fps = Some(parse_fps(value)?),
            "reopen" => {
                options.reopen = parse_bool(value)
                    .ok_or(format!("reopen must be true or false, not '{value}'"))?
            }
            "size" => options.size = Some(parse_size(value)?),
            "format" => options.format = Some(parse_fourcc(value)?),
            "transport" => {
                options.transport = Some(match value.to_ascii_lowercase().as_str() {
                    "tcp" => Transport::Tcp,
                    "udp" => Transport::Udp,
                    _ => return Err(format!("transport must be tcp or udp, not '{value}'")),
                })
            }
            "max_pixels" => {
                options.max_pixels = Some(value.parse::<u64>().ok().filter(|n| *n > 0).ok_or(
                    format!("max_pixels must be a positive integer, not '{value}'"),
                )?)
            }
            _ => {
                return Err(format!(
                    "unknown option '{key}' (expected loop, fps, reopen, size, format, transport or max_pixels)"
                ));
            }
        }
    }
    Ok(options)
}

/// `640x480`.
fn parse_size(value: &str) -> Result<(u32, u32), String> {
    let bad = || format!("size must be WIDTHxHEIGHT with sides in 1..={MAX_SIDE}, not '{value}'");
    let (w, h) = value.split_once(['x', 'X']).ok_or_else(bad)?;
    let side = |s: &str| {
        s.parse::<u32>()
            .ok()
            .filter(|v| (1..=MAX_SIDE).contains(v))
            .ok_or_else(bad)
    };
    Ok((side(w)?, side(h)?))
}

/// A V4L2 FourCC such as `YUYV` or `MJPG` (`MJPEG` is accepted for MJPG); padded with spaces.
fn parse_fourcc(value: &str) -> Result<[u8; 4], String> {
    let v = value.to_ascii_uppercase();
    let v = if v == "MJPEG" { "MJPG".to_string() } else { v };
    if v.is_empty() || v.len() > 4 || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!(
            "format must be a FourCC such as YUYV or MJPG, not '{value}'"
        ));
    }
    let mut f = [b' '; 4];
    f[..v.len()].copy_from_slice(v.as_bytes());
    Ok(f)
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn parse_fps(value: &str) -> Result<f64, String> {
    let bad = || {
        format!(
            "fps must be a number in [{}, {MAX_FPS}], not '{value}'",
            crate::units::MIN_FPS
        )
    };
    let f = value.parse::<f64>().map_err(|_| bad())?;
    crate::units::rate(f, MAX_FPS).map_err(|_| bad())
}

/// `WxH@FPS` or `WxH` (rate from `?fps=` or the default).
fn synthetic_kind(rest: &str, query_fps: Option<f64>) -> Result<SourceKind, String> {
    let (size, fps) = match rest.split_once('@') {
        Some(_) if query_fps.is_some() => {
            return Err("the rate is given twice (@FPS and ?fps=)".into());
        }
        Some((size, fps)) => (size, parse_fps(fps)?),
        None => (rest, query_fps.unwrap_or(DEFAULT_SYNTHETIC_FPS)),
    };
    let bad_size =
        || format!("size must be WIDTHxHEIGHT with sides in 1..={MAX_SIDE}, not '{size}'");
    let (w, h) = size.split_once(['x', 'X']).ok_or_else(bad_size)?;
    let side = |s: &str| {
        s.parse::<u32>()
            .ok()
            .filter(|v| (1..=MAX_SIDE).contains(v))
            .ok_or_else(bad_size)
    };
    Ok(SourceKind::Synthetic {
        width: side(w)?,
        height: side(h)?,
        fps,
    })
}

/// A `file://` remainder or bare path: a directory (or a trailing slash) means an image folder,
/// a file is Y4M or, by its first bytes (by its extension while it does not exist), a video for
/// ffmpeg. A FIFO is Y4M: peeking would eat its writer's bytes.
fn file_kind(path: &str) -> Result<SourceKind, String> {
    if path.is_empty() {
        return Err("no path given".into());
    }
    let p = PathBuf::from(path);
    if path.ends_with('/') || p.is_dir() {
        return Ok(SourceKind::ImageFolder { path: p });
    }
    Ok(match is_y4m_file(&p) {
        Some(false) => SourceKind::VideoFile { path: p },
        Some(true) => SourceKind::Y4mFile { path: p },
        None if has_video_extension(&p) => SourceKind::VideoFile { path: p },
        None => SourceKind::Y4mFile { path: p },
    })
}

/// Whether a regular file starts with the Y4M signature; `None` when it cannot be told (missing,
/// unreadable, not a regular file, empty).
fn is_y4m_file(path: &Path) -> Option<bool> {
    use std::io::Read;
    if !std::fs::metadata(path).ok()?.is_file() {
        return None;
    }
    let mut head = [0u8; sniff::SNIFF_LEN];
    let mut f = std::fs::File::open(path).ok()?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    (n > 0).then(|| head[..n].starts_with(sniff::Y4M_MAGIC))
}

/// Extensions of containers and raw streams ffmpeg reads (for paths that do not exist yet).
fn has_video_extension(path: &Path) -> bool {
    const VIDEO: [&str; 16] = [
        "mp4", "m4v", "mov", "mkv", "webm", "avi", "ts", "m2ts", "mts", "flv", "h264", "264",
        "h265", "hevc", "mjpeg", "mjpg",
    ];
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO.contains(&e.to_ascii_lowercase().as_str()))
}

/// Options that make no sense for a kind are errors rather than silently ignored.
fn check_options(kind: &SourceKind, options: &SourceOptions) -> Result<(), String> {
    match kind {
        SourceKind::Stdin if options.looping => {
            Err("loop needs a file; stdin cannot be rewound".into())
        }
        SourceKind::Synthetic { .. } | SourceKind::V4l2 { .. } if options.looping => {
            Err("loop applies to files and image folders only".into())
        }
        SourceKind::V4l2 { .. } if options.transport.is_some() => {
            Err("transport applies to rtsp:// streams only".into())
        }
        SourceKind::V4l2 { .. } => Ok(()),
        SourceKind::Stream { url }
            if options.transport.is_some()
                && !network_scheme(url).is_some_and(|s| s.starts_with("rtsp")) =>
        {
            Err("transport applies to rtsp:// streams only".into())
        }
        SourceKind::Stream { .. } if options.looping => {
            Err("loop applies to files and image folders only; a stream reconnects".into())
        }
        _ if options.size.is_some() || options.format.is_some() => {
            Err("size and format apply to v4l2 cameras only".into())
        }
        SourceKind::Y4mFile { .. } if options.reopen && options.looping => {
            Err("reopen (a FIFO's next writer) and loop (rewind a file) exclude each other".into())
        }
        _ if options.transport.is_some() && !matches!(kind, SourceKind::Stream { .. }) => {
            Err("transport applies to rtsp:// streams only".into())
        }
        SourceKind::Y4mFile { .. } => Ok(()),
        _ if options.reopen => Err("reopen applies to file:// FIFOs only".into()),
        _ => Ok(()),
    }
}

impl fmt::Display for SourceSpec {
    /// The canonical form: `parse(spec.to_string())` gives back the same kind and options.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            SourceKind::Synthetic { width, height, fps } => {
                write!(f, "synthetic://{width}x{height}@{fps}")?
            }
            SourceKind::Y4mFile { path } => write!(f, "file://{}", path.display())?,
            SourceKind::ImageFolder { path } => write_folder(f, path)?,
            SourceKind::Stdin => f.write_str("pipe://")?,
            SourceKind::V4l2 { device } => write!(f, "v4l2://{}", device.display())?,
            SourceKind::VideoFile { path } => write!(f, "file://{}", path.display())?,
            SourceKind::Stream { url } => f.write_str(url)?,
        }
        let mut sep = match &self.kind {
            SourceKind::Stream { url } if url.contains('?') => '&',
            _ => '?',
        };
        if self.options.looping {
            write!(f, "{sep}loop=true")?;
            sep = '&';
        }
        if let Some(fps) = self.options.fps {
            write!(f, "{sep}fps={fps}")?;
            sep = '&';
        }
        if self.options.reopen {
            write!(f, "{sep}reopen=true")?;
            sep = '&';
        }
        if let Some((w, h)) = self.options.size {
            write!(f, "{sep}size={w}x{h}")?;
            sep = '&';
        }
        if let Some(c) = self.options.format {
            write!(f, "{sep}format={}", String::from_utf8_lossy(&c).trim_end())?;
            sep = '&';
        }
        if let Some(n) = self.options.max_pixels {
            write!(f, "{sep}max_pixels={n}")?;
            sep = '&';
        }
        if let Some(t) = self.options.transport {
            write!(f, "{sep}transport={}", t.name())?;
        }
        Ok(())
    }
}

/// `file://DIR/` with exactly one trailing slash, so the kind survives a round trip even when
/// the folder does not exist.
fn write_folder(f: &mut fmt::Formatter<'_>, path: &Path) -> fmt::Result {
    let s = path.display().to_string();
    write!(f, "file://{}/", s.trim_end_matches('/'))
}

/// Opens the source a spec names.
pub fn open(spec: &SourceSpec) -> Result<Box<dyn Source>, SourceError> {
    let (uri, fps, looping) = (spec.uri.as_str(), spec.options.fps, spec.options.looping);
    let limits = spec.options.limits();
    match &spec.kind {
        SourceKind::Synthetic { width, height, fps } => Ok(Box::new(
            synthetic::SyntheticSource::new(uri, *width, *height, *fps),
        )),
        // The path may have become a directory since parsing: look again.
        SourceKind::Y4mFile { path } | SourceKind::ImageFolder { path } if path.is_dir() => {
            Ok(Box::new(images::ImageFolderSource::open_with_limits(
                path, uri, fps, looping, limits,
            )?))
        }
        SourceKind::ImageFolder { path } => Err(SourceError::Open {
            path: path.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "image folder does not exist",
            ),
        }),
        SourceKind::Y4mFile { path } if spec.options.reopen => {
            super::reopen::open(path, uri, fps, limits)
        }
        // The file may have been replaced since parsing: look at its first bytes again.
        SourceKind::Y4mFile { path } | SourceKind::VideoFile { path }
            if is_y4m_file(path) == Some(false) =>
        {
            if matches!(spec.kind, SourceKind::Y4mFile { .. }) {
                log::info!("{uri}: not YUV4MPEG2; decoding it with ffmpeg");
            }
            ffmpeg::open_file(path, uri, fps, looping, limits)
        }
        SourceKind::VideoFile { path } if is_y4m_file(path).is_none() => Err(SourceError::Open {
            path: path.clone(),
            source: std::fs::metadata(path).err().unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "empty or not a file")
            }),
        }),
        SourceKind::Y4mFile { path } | SourceKind::VideoFile { path } => {
            y4m::open_file(path, uri, fps, looping, &limits)
        }
        SourceKind::Stdin => y4m::open_stdin(uri, fps, &limits),
        SourceKind::V4l2 { device } => super::v4l2::open(device, uri, &spec.options),
        SourceKind::Stream { url } => {
            ffmpeg::open_network(url, uri, spec.options.transport, fps, limits)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_rate_change_of_a_paced_input_is_live() {
        let spec = |u: &str| SourceSpec::parse(u).expect(u);
        let change = |a: &str, b: &str| spec(a).rate_change(&spec(b));
        assert_eq!(
            change("synthetic://64x48@30", "synthetic://64x48@120"),
            Some(120.0)
        );
        assert_eq!(
            change("synthetic://64x48@30", "synthetic://64x48?fps=50"),
            Some(50.0)
        );
        assert_eq!(change("synthetic://64x48@30", "synthetic://64x48@30"), None);
        assert_eq!(
            change("synthetic://64x48@30", "synthetic://32x32@120"),
            None,
            "size"
        );
        assert_eq!(change("pipe://?fps=30", "pipe://?fps=60"), Some(60.0));
        assert_eq!(change("pipe://", "pipe://?fps=60"), None, "an unpaced pipe");
        assert_eq!(
            change("v4l2:///dev/video0?fps=30", "v4l2:///dev/video0?fps=60"),
            None
        );
        let dir = std::env::temp_dir();
        let folder = format!("file://{}/", dir.display());
        assert_eq!(change(&folder, &format!("{folder}?fps=5")), Some(5.0));
        assert_eq!(
            change(&format!("{folder}?fps=5"), &folder),
            None,
            "rate dropped"
        );
        assert_eq!(
            change(
                &format!("{folder}?fps=5"),
                &format!("{folder}?fps=5&loop=true")
            ),
            None,
            "another option changed"
        );
    }

    #[test]
    fn the_usage_names_every_scheme_the_parser_takes() {
        for (uri, scheme) in [
            ("synthetic://64x48@30", "synthetic://"),
            ("pipe://", "pipe://"),
            ("-", " - "),
            ("v4l2:///dev/video0", "v4l2://"),
            ("file:///nonexistent/clip.y4m", "file://"),
            ("rtsp://127.0.0.1:8554/cam", "rtsp://"),
            ("http://127.0.0.1:8080/x", "http(s)://"),
            ("udp://127.0.0.1:5000", "udp://"),
            ("rtp://127.0.0.1:5004", "rtp://"),
        ] {
            SourceSpec::parse(uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
            assert!(USAGE.contains(scheme), "{scheme} missing from the usage");
        }
    }

    #[test]
    fn network_urls_keep_their_own_query_and_take_ours() {
        let s = SourceSpec::parse("rtsp://cam:554/live?channel=1&transport=tcp&fps=15&subtype=0")
            .expect("parse");
        assert_eq!(
            s.kind,
            SourceKind::Stream {
                url: "rtsp://cam:554/live?channel=1&subtype=0".into()
            }
        );
        assert_eq!(s.options.transport, Some(Transport::Tcp));
        assert_eq!(s.options.fps, Some(15.0));
        let again = SourceSpec::parse(&s.to_string()).expect("round trip");
        assert_eq!((again.kind, again.options), (s.kind, s.options));
        for bad in [
            "http://x/y?transport=tcp",
            "rtsp://x/y?loop=true",
            "rtsp://x/y?transport=quic",
            "synthetic://8x8@5?transport=tcp",
            "rtsp://",
        ] {
            assert!(SourceSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_file_is_y4m_or_video_by_its_bytes_then_its_extension() {
        let dir = std::env::temp_dir().join(format!("rtinfer-uri-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let renamed = dir.join("clip.y4m");
        std::fs::write(&renamed, b"\0\0\0\x20ftypisom\0\0\x02\0").expect("write");
        let y4m = dir.join("clip.mp4");
        std::fs::write(&y4m, b"YUV4MPEG2 W2 H2 F1:1\n").expect("write");
        let kind = |p: &Path| {
            SourceSpec::parse(&p.display().to_string())
                .expect("parse")
                .kind
        };
        assert_eq!(
            kind(&renamed),
            SourceKind::VideoFile {
                path: renamed.clone()
            }
        );
        assert_eq!(kind(&y4m), SourceKind::Y4mFile { path: y4m.clone() });
        assert_eq!(
            kind(&dir.join("missing.mkv")),
            SourceKind::VideoFile {
                path: dir.join("missing.mkv")
            }
        );
        assert_eq!(
            kind(&dir.join("missing.y4m")),
            SourceKind::Y4mFile {
                path: dir.join("missing.y4m")
            }
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn video_device_shorthand_needs_digits() {
        assert!(is_video_device("/dev/video0"));
        assert!(is_video_device("/dev/video12"));
        assert!(!is_video_device("/dev/video"));
        assert!(!is_video_device("/dev/videox"));
        assert!(!is_video_device("/dev/video0/x"));
    }

    #[test]
    fn bool_spellings() {
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }
}
