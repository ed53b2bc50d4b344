//! YUV4MPEG2 over any byte stream: a file, or stdin fed by `ffmpeg ... -f yuv4mpegpipe -`.
//!
//! Y4M is the one container every tool can write and that needs no decoder: a text header, then
//! `FRAME` lines each followed by raw planes. That makes ffmpeg (or GStreamer) the universal
//! adapter from any camera or codec into the daemon without linking either. The parser takes an
//! `impl Read` so tests feed it bytes; files and pipes differ only in pacing and rewinding.
//!
//! Every frame is read whole, straight into the caller's frame buffer (sized once from the
//! header), and stamped the moment its last byte arrived; it stays in the stream's own planes
//! (preprocessing resizes them before any conversion): no per-frame allocation, no copy. A file plays at its header rate (or `?fps=`) and may loop; a pipe delivers frames
//! at the writer's rate. Reading a pipe blocks the capture thread until the writer produces
//! bytes, so `Source::next`'s timeout is not honoured while a pipe is silent (the stall watcher
//! in `capture.rs` notices that instead).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use super::color::{Chroma, ColorRange};
use super::limits::FrameLimits;
use super::{Capture, Frame, Pacer, PixelFormat, Source, SourceError, SourceInfo};
use crate::time::MonoTime;

const MAGIC: &[u8] = b"YUV4MPEG2";
/// Longest stream or frame header line we accept; real ones are under 100 bytes.
const MAX_HEADER: u64 = 4096;
/// Largest width or height we accept, which also keeps frame sizes far from overflow.
pub const MAX_DIMENSION: u32 = 16_384;

/// What a stream header declares.
#[derive(Debug, Clone, PartialEq)]
pub struct Y4mHeader {
    pub width: u32,
    pub height: u32,
    /// `F` rate as frames per second; `None` when absent or `F0:0` (unknown).
    pub fps: Option<f64>,
    pub chroma: Chroma,
    pub range: ColorRange,
    /// `C444alpha`: a fourth (alpha) plane follows Cr and is skipped.
    pub alpha: bool,
}

impl Y4mHeader {
    /// Parses a stream header line (without its newline), e.g.
    /// `YUV4MPEG2 W64 H48 F30:1 Ip A1:1 C420jpeg XCOLORRANGE=LIMITED`.
    pub fn parse(line: &[u8]) -> Result<Y4mHeader, String> {
        let rest = line
            .strip_prefix(MAGIC)
            .ok_or("not a YUV4MPEG2 stream (bad magic)")?;
        if !(rest.is_empty() || rest.starts_with(b" ")) {
            return Err("not a YUV4MPEG2 stream (bad magic)".into());
        }
        let text = std::str::from_utf8(rest).map_err(|_| "stream header is not ASCII")?;
        let (mut width, mut height, mut fps) = (None, None, None);
        let (mut chroma, mut alpha, mut range) = (Chroma::C420, false, None);
        for token in text.split_ascii_whitespace() {
            // The tag is the first character, which need not be ASCII (found by fuzzing:
            // splitting at byte 1 panicked inside a multi-byte character).
            let tag_len = token.chars().next().map_or(0, char::len_utf8);
            let (tag, value) = token.split_at(tag_len);
            match tag {
                "W" => width = Some(dimension("width", value)?),
                "H" => height = Some(dimension("height", value)?),
                "F" => fps = frame_rate(value)?,
                "C" => (chroma, alpha) = colourspace(value)?,
                "X" => range = color_range(value).or(range),
                _ => {} // I (interlacing), A (aspect) and unknown tags do not change the pixels.
            }
        }
        let width = width.ok_or("stream header has no W (width)")?;
        let height = height.ok_or("stream header has no H (height)")?;
        let range = range.unwrap_or(if chroma == Chroma::Mono {
            ColorRange::Full
        } else {
            ColorRange::Limited
        });
        Ok(Y4mHeader {
            width,
            height,
            fps,
            chroma,
            range,
            alpha,
        })
    }

    /// The layout of the colour planes (an alpha plane follows them and is ignored).
    pub fn format(&self) -> PixelFormat {
        PixelFormat::Yuv {
            chroma: self.chroma,
            range: self.range,
        }
    }

    /// Bytes of pixel data per frame (all planes, alpha included).
    pub fn frame_len(&self) -> usize {
        let alpha = if self.alpha {
            self.width as usize * self.height as usize
        } else {
            0
        };
        self.chroma.frame_len(self.width, self.height) + alpha
    }
}

fn dimension(what: &str, value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(v) if (1..=MAX_DIMENSION).contains(&v) => Ok(v),
        _ => Err(format!(
            "bad {what} '{value}' (expected 1..={MAX_DIMENSION})"
        )),
    }
}

/// `F30000:1001` → Some(29.97...); `F0:0` → None (unknown).
fn frame_rate(value: &str) -> Result<Option<f64>, String> {
    let bad = || format!("bad frame rate 'F{value}' (expected F<num>:<den>)");
    let (n, d) = value.split_once(':').ok_or_else(bad)?;
    let (n, d) = (
        n.parse::<u32>().map_err(|_| bad())?,
        d.parse::<u32>().map_err(|_| bad())?,
    );
    match (n, d) {
        (0, _) => Ok(None),
        (_, 0) => Err(bad()),
        _ => Ok(Some(f64::from(n) / f64::from(d))),
    }
}

/// Maps a `C` tag to its chroma layout; only 8-bit samples are supported.
fn colourspace(value: &str) -> Result<(Chroma, bool), String> {
    let chroma = match value {
        "420jpeg" | "420paldv" | "420mpeg2" | "420" => Chroma::C420,
        "411" => Chroma::C411,
        "422" => Chroma::C422,
        "444" => Chroma::C444,
        "444alpha" => return Ok((Chroma::C444, true)),
        "mono" => Chroma::Mono,
        _ if is_high_bit_depth(value) => {
            return Err(format!(
                "colourspace C{value} has more than 8 bits per sample; only 8-bit Y4M is supported \
                 (convert with ffmpeg -pix_fmt yuv420p)"
            ));
        }
        _ => return Err(format!("unsupported colourspace C{value}")),
    };
    Ok((chroma, false))
}

/// `420p10`, `444p16`, `mono12`, ...: a layout followed by a bit depth.
fn is_high_bit_depth(value: &str) -> bool {
    ["420", "411", "422", "444", "mono"].iter().any(|layout| {
        let bits = value
            .strip_prefix(layout)
            .map(|rest| rest.trim_start_matches('p'));
        bits.is_some_and(|b| !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()))
    })
}

/// `COLORRANGE=FULL` → Some(Full); other X parameters → None.
fn color_range(value: &str) -> Option<ColorRange> {
    match value.strip_prefix("COLORRANGE=")? {
        "FULL" => Some(ColorRange::Full),
        "LIMITED" => Some(ColorRange::Limited),
        _ => None,
    }
}

/// A Y4M stream: the parsed header and a cursor on its frames.
#[derive(Debug)]
pub struct Y4mReader<R> {
    inner: BufReader<R>,
    uri: String,
    header: Y4mHeader,
    /// Byte offset of the first `FRAME` line, where a loop seeks back to.
    data_start: u64,
    /// Reused frame-header line.
    line: Vec<u8>,
    /// Frames read so far (for error messages).
    frames: u64,
}

impl<R: Read> Y4mReader<R> {
    /// Reads and parses the stream header; `uri` names the stream in errors.
    pub fn new(inner: R, uri: &str) -> Result<Y4mReader<R>, SourceError> {
        Y4mReader::with_limits(inner, uri, &FrameLimits::default())
    }

    /// [`Y4mReader::new`], refusing a header that declares a frame over `limits` (before any
    /// frame buffer is sized from it).
    pub fn with_limits(
        inner: R,
        uri: &str,
        limits: &FrameLimits,
    ) -> Result<Y4mReader<R>, SourceError> {
        let mut inner = BufReader::new(inner);
        let mut line = Vec::with_capacity(128);
        let n = read_line(&mut inner, &mut line).map_err(|source| io_error(uri, source))?;
        let format = |reason: String| SourceError::Format {
            uri: uri.to_owned(),
            reason,
        };
        if n == 0 {
            return Err(format("empty stream (no YUV4MPEG2 header)".into()));
        }
        if let Some(what) = super::sniff::container(&line) {
            return Err(format(format!(
                "not a YUV4MPEG2 stream: it starts like {what}. Name a file as file:///PATH \
                 (any container is decoded by an ffmpeg child), or convert on the way in: \
                 ffmpeg -i INPUT -f yuv4mpegpipe -pix_fmt yuv420p -"
            )));
        }
        if line.pop() != Some(b'\n') {
            return Err(format(format!(
                "stream header is not a line of at most {MAX_HEADER} bytes"
            )));
        }
        let header = Y4mHeader::parse(&line).map_err(format)?;
        limits
            .check(u64::from(header.width), u64::from(header.height))
            .map_err(|limit| SourceError::TooLarge {
                uri: uri.to_owned(),
                what: "stream header".into(),
                limit,
            })?;
        Ok(Y4mReader {
            inner,
            uri: uri.to_owned(),
            header,
            data_start: n as u64,
            line,
            frames: 0,
        })
    }

    pub fn header(&self) -> &Y4mHeader {
        &self.header
    }

    /// Reads the next frame's planes into `planes` (resized to the frame length only if it
    /// differs). `Ok(false)` at a clean end of stream (EOF exactly before a `FRAME` line).
    pub fn read_frame(&mut self, planes: &mut Vec<u8>) -> Result<bool, SourceError> {
        let expected = self.header.frame_len();
        let got = read_line(&mut self.inner, &mut self.line).map_err(|e| io_error(&self.uri, e))?;
        if got == 0 {
            return Ok(false);
        }
        if self.line.last() != Some(&b'\n') {
            if (got as u64) < MAX_HEADER {
                return Err(self.truncated(got, expected + 6));
            }
            return Err(self.format(format!(
                "frame {} header longer than {MAX_HEADER} bytes",
                self.frames + 1
            )));
        }
        let line = &self.line[..got - 1];
        if !(line == b"FRAME" || line.starts_with(b"FRAME ")) {
            let shown = String::from_utf8_lossy(&line[..line.len().min(16)]).into_owned();
            return Err(self.format(format!(
                "expected FRAME header for frame {}, found '{shown}'",
                self.frames + 1
            )));
        }
        if planes.len() != expected {
            planes.resize(expected, 0);
        }
        let got = read_full(&mut self.inner, planes).map_err(|e| io_error(&self.uri, e))?;
        if got < expected {
            return Err(self.truncated(got, expected));
        }
        self.frames += 1;
        Ok(true)
    }

    fn truncated(&self, got: usize, expected: usize) -> SourceError {
        SourceError::Truncated {
            uri: self.uri.clone(),
            frame: self.frames + 1,
            got,
            expected,
        }
    }

    fn format(&self, reason: String) -> SourceError {
        SourceError::Format {
            uri: self.uri.clone(),
            reason,
        }
    }
}

impl<R: Read + Seek> Y4mReader<R> {
    /// Seeks back to the first frame.
    pub fn rewind(&mut self) -> Result<(), SourceError> {
        self.inner
            .seek(SeekFrom::Start(self.data_start))
            .map_err(|e| io_error(&self.uri, e))?;
        Ok(())
    }
}

fn io_error(uri: &str, source: std::io::Error) -> SourceError {
    SourceError::Io {
        uri: uri.to_owned(),
        source,
    }
}

/// One line (newline kept) of at most `MAX_HEADER` bytes into the reused `line`; 0 at EOF.
fn read_line<R: Read>(r: &mut BufReader<R>, line: &mut Vec<u8>) -> std::io::Result<usize> {
    line.clear();
    r.by_ref().take(MAX_HEADER).read_until(b'\n', line)
}

/// Fills `buf` unless EOF comes first; returns the bytes read (retries `Interrupted`).
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Rewinds a reader for `?loop=true`; only seekable inputs get one.
type Rewind<R> = fn(&mut Y4mReader<R>) -> Result<(), SourceError>;

/// A Y4M stream as a frame source.
pub struct Y4mSource<R> {
    reader: Y4mReader<R>,
    pacer: Option<Pacer>,
    /// Nominal rate for [`SourceInfo`]: the pacing rate, else the header's.
    fps: Option<f64>,
    rewind: Option<Rewind<R>>,
    /// Frames delivered since the last rewind (a looping empty stream must not spin).
    since_rewind: u64,
}

impl<R: Read + Send> Y4mSource<R> {
    /// An unpaced source over `inner` (frames come as fast as the reader yields them).
    pub fn new(inner: R, uri: &str) -> Result<Y4mSource<R>, SourceError> {
        Y4mSource::with_limits(inner, uri, &FrameLimits::default())
    }

    /// [`Y4mSource::new`] with frame-size limits other than the default.
    pub fn with_limits(
        inner: R,
        uri: &str,
        limits: &FrameLimits,
    ) -> Result<Y4mSource<R>, SourceError> {
        let reader = Y4mReader::with_limits(inner, uri, limits)?;
        let fps = reader.header().fps;
        Ok(Y4mSource {
            reader,
            pacer: None,
            fps,
            rewind: None,
            since_rewind: 0,
        })
    }

    /// Releases frames at `fps` (finite, positive) on absolute deadlines.
    pub fn paced(mut self, fps: f64) -> Y4mSource<R> {
        self.pacer = Some(Pacer::new(fps));
        self.fps = Some(fps);
        self
    }

    pub fn header(&self) -> &Y4mHeader {
        self.reader.header()
    }

    /// The next frame's planes into `planes`, rewinding once at the end when looping.
    /// `Ok(false)` at the end.
    fn read_planes(&mut self, planes: &mut Vec<u8>) -> Result<bool, SourceError> {
        if self.reader.read_frame(planes)? {
            self.since_rewind += 1;
            return Ok(true);
        }
        let Some(rewind) = self.rewind else {
            return Ok(false);
        };
        if self.since_rewind == 0 {
            return Ok(false); // a looping stream without frames would spin forever
        }
        rewind(&mut self.reader)?;
        self.since_rewind = 0;
        self.read_planes(planes)
    }
}

impl<R: Read + Seek + Send> Y4mSource<R> {
    /// Plays the stream again from its first frame whenever it ends.
    pub fn looping(mut self) -> Y4mSource<R> {
        self.rewind = Some(Y4mReader::<R>::rewind);
        self
    }
}

impl<R: Read + Send> Source for Y4mSource<R> {
    fn info(&self) -> SourceInfo {
        let h = self.reader.header();
        SourceInfo {
            uri: self.reader.uri.clone(),
            width: h.width,
            height: h.height,
            format: h.format(),
            fps: self.fps,
        }
    }

    fn set_fps(&mut self, fps: f64) -> bool {
        let Some(pacer) = &mut self.pacer else {
            return false;
        };
        pacer.set_fps(fps);
        self.fps = Some(fps);
        true
    }

    fn next(&mut self, frame: &mut Frame, timeout: Duration) -> Result<Capture, SourceError> {
        if let Some(pacer) = &mut self.pacer
            && pacer.wait(timeout).is_none()
        {
            return Ok(Capture::Timeout);
        }
        if !self.read_planes(&mut frame.data)? {
            return Ok(Capture::EndOfStream);
        }
        frame.captured_at = MonoTime::now();
        let h = self.reader.header();
        frame.set_format_len(h.format(), h.width, h.height, h.frame_len());
        Ok(Capture::Frame)
    }
}

/// Opens a Y4M file, paced at `fps` or else its header rate, optionally looping.
pub fn open_file(
    path: &Path,
    uri: &str,
    fps: Option<f64>,
    looping: bool,
    limits: &FrameLimits,
) -> Result<Box<dyn Source>, SourceError> {
    let file = File::open(path).map_err(|source| SourceError::Open {
        path: path.to_owned(),
        source,
    })?;
    let mut source = Y4mSource::with_limits(file, uri, limits)?;
    match fps.or(source.header().fps) {
        Some(rate) => source = source.paced(rate),
        None => {
            log::warn!("{uri}: the header gives no frame rate and no ?fps= is set: playing unpaced")
        }
    }
    if looping {
        source = source.looping();
    }
    Ok(Box::new(source))
}

/// Reads Y4M from stdin; unpaced unless `fps` is given. Blocks while the writer is silent.
pub fn open_stdin(
    uri: &str,
    fps: Option<f64>,
    limits: &FrameLimits,
) -> Result<Box<dyn Source>, SourceError> {
    let source = Y4mSource::with_limits(std::io::stdin(), uri, limits)?;
    Ok(Box::new(match fps {
        Some(rate) => source.paced(rate),
        None => source,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_ffmpeg_writes() {
        let h = Y4mHeader::parse(
            b"YUV4MPEG2 W64 H48 F30:1 Ip A1:1 C420jpeg XYSCSS=420JPEG XCOLORRANGE=LIMITED",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((h.width, h.height, h.fps), (64, 48, Some(30.0)));
        assert_eq!(
            (h.chroma, h.range, h.alpha),
            (Chroma::C420, ColorRange::Limited, false)
        );
        assert_eq!(h.frame_len(), 64 * 48 + 2 * 32 * 24);
    }

    #[test]
    fn defaults_and_ranges() {
        let h = Y4mHeader::parse(b"YUV4MPEG2 W4 H2").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (h.chroma, h.range, h.fps),
            (Chroma::C420, ColorRange::Limited, None)
        );
        let mono = Y4mHeader::parse(b"YUV4MPEG2 W4 H2 Cmono").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((mono.chroma, mono.range), (Chroma::Mono, ColorRange::Full));
        let full = Y4mHeader::parse(b"YUV4MPEG2 W4 H2 C422 XCOLORRANGE=FULL")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((full.chroma, full.range), (Chroma::C422, ColorRange::Full));
        let alpha =
            Y4mHeader::parse(b"YUV4MPEG2 W4 H2 C444alpha").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(alpha.frame_len(), 4 * 8);
        let ntsc =
            Y4mHeader::parse(b"YUV4MPEG2 W4 H2 F30000:1001").unwrap_or_else(|e| panic!("{e}"));
        assert!((ntsc.fps.unwrap_or(0.0) - 29.97).abs() < 0.01);
        assert_eq!(
            Y4mHeader::parse(b"YUV4MPEG2 W4 H2 F0:0").map(|h| h.fps),
            Ok(None)
        );
    }

    #[test]
    fn rejects_bad_headers() {
        for (line, needle) in [
            (&b"YUV4MPEG W4 H2"[..], "magic"),
            (b"YUV4MPEG2X W4 H2", "magic"),
            (b"YUV4MPEG2 H2", "no W"),
            (b"YUV4MPEG2 W4", "no H"),
            (b"YUV4MPEG2 W0 H2", "width"),
            (b"YUV4MPEG2 W4 Hx", "height"),
            (b"YUV4MPEG2 W4 H2 F30", "frame rate"),
            (b"YUV4MPEG2 W4 H2 F30:0", "frame rate"),
            (b"YUV4MPEG2 W4 H2 C420p10", "more than 8 bits"),
            (b"YUV4MPEG2 W4 H2 C444p16", "more than 8 bits"),
            (b"YUV4MPEG2 W4 H2 Cmono16", "more than 8 bits"),
            (b"YUV4MPEG2 W4 H2 C410", "unsupported colourspace"),
        ] {
            match Y4mHeader::parse(line) {
                Err(e) => assert!(
                    e.contains(needle),
                    "{}: '{e}' lacks '{needle}'",
                    String::from_utf8_lossy(line)
                ),
                Ok(h) => panic!("{} parsed as {h:?}", String::from_utf8_lossy(line)),
            }
        }
    }

    #[test]
    fn a_tag_starting_with_a_multibyte_character_is_ignored_not_a_panic() {
        // fuzz/regressions/y4m/multibyte_tag had `\u{3bc}24MPPEG2` among the tags.
        let h = Y4mHeader::parse("YUV4MPEG2 W4 H2 \u{3bc}24 Cmono".as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((h.width, h.height, h.chroma), (4, 2, Chroma::Mono));
    }

    #[test]
    fn frame_headers_with_parameters_are_accepted() {
        let mut data = b"YUV4MPEG2 W2 H2 F25:1 Cmono\nFRAME Ixyz\n".to_vec();
        data.extend_from_slice(&[1, 2, 3, 4]);
        let mut r = Y4mReader::new(&data[..], "mem").unwrap_or_else(|e| panic!("{e}"));
        let mut planes = Vec::new();
        assert!(matches!(r.read_frame(&mut planes), Ok(true)));
        assert_eq!(planes, [1, 2, 3, 4]);
        assert!(matches!(r.read_frame(&mut planes), Ok(false)));
    }

    #[test]
    fn garbage_instead_of_frame_is_a_format_error() {
        let data = b"YUV4MPEG2 W2 H2 Cmono\nFRAMX\n1234".to_vec();
        let mut r = Y4mReader::new(&data[..], "mem").unwrap_or_else(|e| panic!("{e}"));
        let err = r.read_frame(&mut Vec::new());
        assert!(matches!(err, Err(SourceError::Format { .. })), "{err:?}");
    }
}
