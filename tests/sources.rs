//! Frame sources through the library: URI parsing, Y4M decoding checked against ffmpeg's own
//! conversion, stream endings, pacing, image folders.
//!
//! Y4M fixtures are generated at test time with
//! `ffmpeg -f lavfi -i testsrc=size=64x48:rate=30 -frames:v 3 -pix_fmt P -f yuv4mpegpipe out.y4m`
//! and the expected RGB with `ffmpeg -i out.y4m -f rawvideo -pix_fmt rgb24 -`.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rtinfer::source::y4m::Y4mSource;
use rtinfer::source::{
    self, Capture, Frame, PixelFormat, Source, SourceError, SourceKind, SourceOptions, SourceSpec,
};
use rtinfer::time::MonoTime;

use crate::util::{self, ffmpeg};

const LONG: Duration = Duration::from_secs(5);

fn parse(uri: &str) -> SourceSpec {
    SourceSpec::parse(uri).unwrap_or_else(|e| panic!("{uri}: {e}"))
}

fn open(uri: &str) -> Box<dyn Source> {
    source::open(&parse(uri)).unwrap_or_else(|e| panic!("{uri}: {e}"))
}

/// The next capture, which must be a frame.
fn frame_from(src: &mut dyn Source, frame: &mut Frame) {
    match src.next(frame, LONG) {
        Ok(Capture::Frame) => {}
        other => panic!("expected a frame, got {other:?}"),
    }
}

fn bad_uri_reason(uri: &str) -> String {
    match SourceSpec::parse(uri) {
        Err(SourceError::BadUri { uri: u, reason }) => {
            assert_eq!(u, uri);
            reason
        }
        other => panic!("{uri}: expected BadUri, got {other:?}"),
    }
}

// ---------------------------------------------------------------- URIs

#[test]
fn uri_synthetic_forms() {
    let s = parse("synthetic://320x240@60");
    assert_eq!(
        s.kind,
        SourceKind::Synthetic {
            width: 320,
            height: 240,
            fps: 60.0
        }
    );
    assert_eq!(s.options, SourceOptions::default());
    assert_eq!(s.uri, "synthetic://320x240@60");
    assert_eq!(
        parse("synthetic://64x48@29.97").kind,
        SourceKind::Synthetic {
            width: 64,
            height: 48,
            fps: 29.97
        }
    );
    assert_eq!(
        parse("synthetic://64x48?fps=30").kind,
        SourceKind::Synthetic {
            width: 64,
            height: 48,
            fps: 30.0
        }
    );
    assert!(
        matches!(parse("SYNTHETIC://8x8").kind, SourceKind::Synthetic { fps, .. } if fps > 0.0)
    );
}

#[test]
fn uri_file_forms_and_bare_paths() {
    let dir = util::tempdir();
    let d = dir
        .path()
        .to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 temp dir"));
    let y4m = |p: &str| SourceKind::Y4mFile {
        path: PathBuf::from(p),
    };
    let folder = |p: &str| SourceKind::ImageFolder {
        path: PathBuf::from(p),
    };

    assert_eq!(parse("file:///data/clip.y4m").kind, y4m("/data/clip.y4m"));
    assert_eq!(parse("file:///data/frames/").kind, folder("/data/frames/"));
    assert_eq!(
        parse(&format!("file://{d}")).kind,
        folder(d),
        "an existing directory is a folder"
    );
    assert_eq!(parse("clip.y4m").kind, y4m("clip.y4m"));
    assert_eq!(parse("/data/clip.y4m").kind, y4m("/data/clip.y4m"));
    assert_eq!(parse(d).kind, folder(d));
    assert_eq!(parse("frames/").kind, folder("frames/"));
}

#[test]
fn uri_pipe_and_v4l2_forms() {
    assert_eq!(parse("pipe://").kind, SourceKind::Stdin);
    assert_eq!(parse("-").kind, SourceKind::Stdin);
    assert_eq!(parse("-?fps=25").options.fps, Some(25.0));
    let dev = |p: &str| SourceKind::V4l2 {
        device: PathBuf::from(p),
    };
    assert_eq!(parse("v4l2:///dev/video0").kind, dev("/dev/video0"));
    assert_eq!(parse("/dev/video3").kind, dev("/dev/video3"));
    // Not a video device: a plain file path.
    assert_eq!(
        parse("/dev/videos.y4m").kind,
        SourceKind::Y4mFile {
            path: PathBuf::from("/dev/videos.y4m")
        }
    );
}

#[test]
fn uri_options() {
    let s = parse("file:///data/clip.y4m?loop=true&fps=30");
    assert_eq!(
        s.options,
        SourceOptions {
            looping: true,
            fps: Some(30.0),
            ..SourceOptions::default()
        }
    );
    assert_eq!(
        s.kind,
        SourceKind::Y4mFile {
            path: PathBuf::from("/data/clip.y4m")
        }
    );
    assert_eq!(
        parse("clip.y4m?fps=12.5&loop=false").options,
        SourceOptions {
            looping: false,
            fps: Some(12.5),
            ..SourceOptions::default()
        }
    );
    assert!(
        parse("file:///data/frames/?loop").options.looping,
        "a bare flag means true"
    );
}

#[test]
fn uri_errors_name_the_problem() {
    // rtsp:// and http(s):// were unknown until issue 17 handed them to an ffmpeg child; a
    // scheme nothing reads still names itself.
    for uri in ["csi://0", "gopher://camera/stream"] {
        match SourceSpec::parse(uri) {
            Err(SourceError::UnknownScheme { uri: u }) => assert_eq!(u, uri),
            other => panic!("{uri}: expected UnknownScheme, got {other:?}"),
        }
    }
    for uri in ["rtsp://camera/stream", "http://x/y.mp4"] {
        match SourceSpec::parse(uri).map(|s| s.kind) {
            Ok(SourceKind::Stream { url }) => assert_eq!(url, uri),
            other => panic!("{uri}: expected a stream, got {other:?}"),
        }
    }
    for (uri, needle) in [
        ("", "empty"),
        ("synthetic://320x@60", "size"),
        ("synthetic://0x240@60", "size"),
        ("synthetic://320*240@60", "size"),
        ("synthetic://320x240@0", "fps"),
        ("synthetic://320x240@fast", "fps"),
        ("synthetic://320x240@60?fps=30", "twice"),
        ("file:///x.y4m?fps=-1", "fps"),
        ("file:///x.y4m?fps=nan", "fps"),
        ("file:///x.y4m?loop=maybe", "loop"),
        ("file:///x.y4m?speed=2", "unknown option 'speed'"),
        ("file://", "no path"),
        ("pipe://?loop=true", "loop"),
        ("pipe:///tmp/fifo", "stdin"),
        ("synthetic://8x8@60?loop=true", "loop"),
        ("v4l2://", "device"),
        ("v4l2:///dev/video0?size=640", "size"),
        ("v4l2:///dev/video0?format=TOOLONG", "format"),
        ("synthetic://8x8@60?size=4x4", "v4l2"),
        ("pipe://?reopen=true", "reopen"),
        ("file:///x.y4m?reopen=true&loop=true", "exclude"),
    ] {
        let reason = bad_uri_reason(uri);
        assert!(
            reason.contains(needle),
            "{uri}: reason '{reason}' lacks '{needle}'"
        );
    }
}

#[test]
fn uri_display_round_trips() {
    let dir = util::tempdir();
    let d = dir.path().display().to_string();
    for uri in [
        "synthetic://320x240@60".to_owned(),
        "synthetic://64x48?fps=29.97".to_owned(),
        "file:///data/clip.y4m?loop=true&fps=30".to_owned(),
        "file:///data/frames/?fps=5".to_owned(),
        format!("file://{d}?loop=true"),
        format!("{d}/missing-folder/"),
        "-?fps=25".to_owned(),
        "pipe://".to_owned(),
        "/dev/video0".to_owned(),
        "v4l2:///dev/video1".to_owned(),
        "v4l2:///dev/video0?size=640x480&fps=60&format=YUYV".to_owned(),
        "/dev/video2?format=mjpeg".to_owned(),
        "file:///tmp/cam.fifo?reopen=true".to_owned(),
    ] {
        let spec = parse(&uri);
        let shown = spec.to_string();
        let again = parse(&shown);
        assert_eq!(
            (&again.kind, &again.options),
            (&spec.kind, &spec.options),
            "{uri} -> {shown}"
        );
    }
    assert_eq!(parse("-").to_string(), "pipe://");
    assert_eq!(parse("/dev/video0").to_string(), "v4l2:///dev/video0");
}

#[test]
fn v4l2_without_a_camera_is_an_open_error_naming_the_device() {
    // No camera exists on the build machines: /dev/video97 is absent.
    match source::open(&parse(
        "v4l2:///dev/video97?size=640x480&fps=60&format=YUYV",
    )) {
        Err(SourceError::Open { path, .. }) => assert_eq!(path, PathBuf::from("/dev/video97")),
        Err(e) => panic!("expected an open error, got {e}"),
        Ok(_) => panic!("expected an open error, got a source"),
    }
}

#[test]
fn missing_file_is_an_open_error_naming_the_path() {
    let dir = util::tempdir();
    let path = dir.path().join("nope.y4m");
    match source::open(&parse(path.to_str().unwrap_or_default())) {
        Err(e @ SourceError::Open { .. }) => assert!(e.to_string().contains("nope.y4m"), "{e}"),
        Err(e) => panic!("expected Open, got {e}"),
        Ok(_) => panic!("opened a missing file"),
    }
}

// ---------------------------------------------------------------- Y4M against ffmpeg

/// Three 64x48 testsrc frames as Y4M in pixel format `pix_fmt` (plus `extra` output options).
fn testsrc_y4m(dir: &Path, pix_fmt: &str, extra: &[&str]) -> PathBuf {
    lavfi_y4m(dir, "testsrc=size=64x48:rate=30", pix_fmt, extra)
}

/// Three frames of the lavfi source `lavfi` as Y4M in `pix_fmt`.
fn lavfi_y4m(dir: &Path, lavfi: &str, pix_fmt: &str, extra: &[&str]) -> PathBuf {
    let tag: String = lavfi
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    let path = dir.join(format!("{tag}-{pix_fmt}{}.y4m", extra.join("")));
    let out = path.to_str().unwrap_or_else(|| panic!("non-UTF-8 path"));
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        lavfi,
        "-frames:v",
        "3",
        "-pix_fmt",
        pix_fmt,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-strict", "-1", "-f", "yuv4mpegpipe", out]);
    ffmpeg(&args);
    path
}

/// ffmpeg's own RGB rendering of a Y4M file, all frames concatenated.
fn ffmpeg_rgb(path: &Path) -> Vec<u8> {
    let input = path.to_str().unwrap_or_else(|| panic!("non-UTF-8 path"));
    ffmpeg(&["-i", input, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
}

/// The frame converted to packed RGB8 the way ffmpeg converts its layout.
fn rgb_of(frame: &Frame) -> Vec<u8> {
    let mut rgb = Vec::new();
    frame
        .to_rgb(&mut rgb)
        .unwrap_or_else(|e| panic!("frame {}: {e}", frame.seq));
    rgb
}

/// Every frame of a source until EndOfStream, converted to RGB and concatenated; checks the
/// geometry of each.
fn decode_all(src: &mut dyn Source, width: u32, height: u32) -> (Vec<u8>, usize) {
    let (mut all, mut frames) = (Vec::new(), 0);
    let mut frame = Frame::default();
    loop {
        match src.next(&mut frame, LONG) {
            Ok(Capture::Frame) => {
                assert_eq!((frame.width, frame.height), (width, height));
                let rgb = rgb_of(&frame);
                assert_eq!(rgb.len(), (width * height * 3) as usize);
                all.extend_from_slice(&rgb);
                frames += 1;
            }
            Ok(Capture::EndOfStream) => return (all, frames),
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Mean and 99th percentile of |a - b| per channel (R, G, B).
fn channel_errors(a: &[u8], b: &[u8]) -> [(f64, u8); 3] {
    assert_eq!(a.len(), b.len());
    std::array::from_fn(|c| {
        let mut errs: Vec<u8> = a
            .iter()
            .zip(b)
            .skip(c)
            .step_by(3)
            .map(|(x, y)| x.abs_diff(*y))
            .collect();
        let mean = errs.iter().map(|&e| f64::from(e)).sum::<f64>() / errs.len() as f64;
        errs.sort_unstable();
        (mean, errs[(errs.len() * 99).div_ceil(100) - 1])
    })
}

/// Decodes a 64x48 `path` with our source and compares every frame with ffmpeg's conversion.
fn assert_matches_ffmpeg(path: &Path, label: &str) {
    assert_matches_ffmpeg_at(path, label, 64, 48);
}

fn assert_matches_ffmpeg_at(path: &Path, label: &str, width: u32, height: u32) {
    let want = ffmpeg_rgb(path);
    let uri = format!("file://{}?fps=1000", path.display());
    let mut src = open(&uri);
    assert_eq!((src.info().width, src.info().height), (width, height));
    let (got, frames) = decode_all(src.as_mut(), width, height);
    assert_eq!(frames, 3, "{label}: frame count");
    // The fixture has real colour content (not a flat frame that any conversion matches).
    let distinct: std::collections::HashSet<&[u8]> = want.chunks_exact(3).collect();
    assert!(distinct.len() > 8, "{label}: fixture too plain");
    for (c, (mean, p99)) in channel_errors(&got, &want).into_iter().enumerate() {
        assert!(
            mean <= 1.5 && p99 <= 4,
            "{label} channel {c}: mean |error| {mean:.3}, p99 {p99}"
        );
    }
}

#[test]
fn y4m_colourspaces_match_ffmpeg() {
    let dir = util::tempdir();
    for pix_fmt in [
        "yuv420p", "yuvj420p", "yuv411p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "gray",
        "yuva444p",
    ] {
        let path = testsrc_y4m(dir.path(), pix_fmt, &[]);
        assert_matches_ffmpeg(&path, pix_fmt);
    }
}

#[test]
fn y4m_subsampled_natural_content_matches_ffmpeg() {
    // testsrc2 has gradients and soft edges, unlike testsrc's hard bars; a width that is not a
    // multiple of 4 exercises the 4:1:1 resampling ratio away from exactly 1/2.
    let dir = util::tempdir();
    for (size, w, h) in [("160x120", 160, 120), ("150x90", 150, 90)] {
        for pix_fmt in ["yuv420p", "yuv411p", "yuv422p"] {
            let path = lavfi_y4m(
                dir.path(),
                &format!("testsrc2=size={size}:rate=30"),
                pix_fmt,
                &[],
            );
            assert_matches_ffmpeg_at(&path, &format!("testsrc2 {size} {pix_fmt}"), w, h);
        }
    }
}

#[test]
fn y4m_420_sitings_match_ffmpeg() {
    let dir = util::tempdir();
    for (siting, tag) in [("topleft", "C420paldv"), ("left", "C420mpeg2")] {
        let path = testsrc_y4m(dir.path(), "yuv420p", &["-chroma_sample_location", siting]);
        let head = std::fs::read(&path).unwrap_or_default();
        assert!(
            String::from_utf8_lossy(&head[..80]).contains(tag),
            "{siting}: ffmpeg did not write {tag}"
        );
        assert_matches_ffmpeg(&path, tag);
    }
}

/// Replaces the stream header's `C420jpeg` tag (and its `XYSCSS` companion) with `tag`.
fn retag(data: &[u8], tag: &str) -> Vec<u8> {
    let end = data.iter().position(|&b| b == b'\n').unwrap_or(0);
    let header = String::from_utf8_lossy(&data[..end])
        .replace(" XYSCSS=420JPEG", "")
        .replace(" C420jpeg", tag);
    let mut out = header.into_bytes();
    out.extend_from_slice(&data[end..]);
    out
}

#[test]
fn y4m_plain_c420_and_missing_tag_mean_420() {
    let dir = util::tempdir();
    let src_path = testsrc_y4m(dir.path(), "yuv420p", &[]);
    let data = std::fs::read(&src_path).unwrap_or_default();
    for (tag, name) in [(" C420", "plain.y4m"), ("", "untagged.y4m")] {
        let path = dir.path().join(name);
        std::fs::write(&path, retag(&data, tag)).unwrap_or_else(|e| panic!("{e}"));
        let head =
            String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()[..60]).into_owned();
        assert!(!head.contains("C420jpeg"), "retag failed: {head}");
        // ffmpeg reads both as yuv420p too; compare against its conversion of the original.
        let want = ffmpeg_rgb(&src_path);
        let (got, frames) = decode_all(
            open(&format!("{}?fps=1000", path.display())).as_mut(),
            64,
            48,
        );
        assert_eq!(frames, 3);
        for (mean, p99) in channel_errors(&got, &want) {
            assert!(mean <= 1.5 && p99 <= 4, "{name}: mean {mean:.3} p99 {p99}");
        }
    }
}

#[test]
fn y4m_high_bit_depth_is_refused_clearly() {
    let dir = util::tempdir();
    let path = testsrc_y4m(dir.path(), "yuv420p10le", &[]);
    match source::open(&parse(path.to_str().unwrap_or_default())) {
        Err(e @ SourceError::Format { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("C420p10") && msg.contains("8 bits"), "{msg}");
            assert!(
                msg.contains("yuv420p10le.y4m"),
                "error should name the source: {msg}"
            );
        }
        Err(e) => panic!("expected Format, got {e}"),
        Ok(_) => panic!("a 10-bit stream was accepted"),
    }
}

// ---------------------------------------------------------------- stream endings

/// A hand-made 4x2 grey stream of `frames` frames; frame k has every luma byte = 16 * (k + 1).
fn mono_stream(frames: u8) -> Vec<u8> {
    let mut data = b"YUV4MPEG2 W4 H2 F30:1 Ip A1:1 Cmono XCOLORRANGE=FULL\n".to_vec();
    for k in 0..frames {
        data.extend_from_slice(b"FRAME\n");
        data.extend_from_slice(&[16 * (k + 1); 8]);
    }
    data
}

fn unpaced(data: Vec<u8>) -> Y4mSource<Cursor<Vec<u8>>> {
    Y4mSource::new(Cursor::new(data), "mem://test").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn eof_on_frame_boundary_is_end_of_stream_after_exactly_n_frames() {
    let mut src = unpaced(mono_stream(4));
    let mut frame = Frame::default();
    for k in 0..4u8 {
        frame_from(&mut src, &mut frame);
        assert!(
            rgb_of(&frame).iter().all(|&v| v == 16 * (k + 1)),
            "frame {k} pixels"
        );
    }
    for _ in 0..2 {
        assert!(matches!(
            src.next(&mut frame, LONG),
            Ok(Capture::EndOfStream)
        ));
    }
}

#[test]
fn eof_mid_frame_is_truncated() {
    let mut data = mono_stream(3);
    data.truncate(data.len() - 3); // 5 of frame 3's 8 bytes
    let mut src = unpaced(data);
    let mut frame = Frame::default();
    frame_from(&mut src, &mut frame);
    frame_from(&mut src, &mut frame);
    match src.next(&mut frame, LONG) {
        Err(SourceError::Truncated {
            uri,
            frame,
            got,
            expected,
        }) => {
            assert_eq!(
                (uri.as_str(), frame, got, expected),
                ("mem://test", 3, 5, 8)
            );
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
}

#[test]
fn eof_mid_frame_header_is_truncated() {
    let mut data = mono_stream(2);
    data.extend_from_slice(b"FRA");
    let mut src = unpaced(data);
    let mut frame = Frame::default();
    frame_from(&mut src, &mut frame);
    frame_from(&mut src, &mut frame);
    let r = src.next(&mut frame, LONG);
    assert!(
        matches!(r, Err(SourceError::Truncated { frame: 3, .. })),
        "{r:?}"
    );
}

#[test]
fn truncated_file_from_ffmpeg() {
    let dir = util::tempdir();
    let path = testsrc_y4m(dir.path(), "yuv422p", &[]);
    let data = std::fs::read(&path).unwrap_or_default();
    std::fs::write(&path, &data[..data.len() - 100]).unwrap_or_else(|e| panic!("{e}"));
    let mut src = open(&format!("{}?fps=1000", path.display()));
    let mut frame = Frame::default();
    frame_from(src.as_mut(), &mut frame);
    frame_from(src.as_mut(), &mut frame);
    let err = src.next(&mut frame, LONG);
    match err {
        Err(SourceError::Truncated {
            frame: 3,
            got,
            expected,
            ..
        }) => {
            assert_eq!(expected, 64 * 48 * 2);
            assert_eq!(got, expected - 100);
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
}

#[test]
fn empty_and_headerless_streams_are_format_errors() {
    for data in [Vec::new(), b"RIFF....WAVE".to_vec()] {
        let r = Y4mSource::new(Cursor::new(data), "mem://bad");
        assert!(
            matches!(r, Err(SourceError::Format { ref uri, .. }) if uri == "mem://bad"),
            "{:?}",
            r.err()
        );
    }
}

#[test]
fn looping_file_restarts_at_the_first_frame() {
    let dir = util::tempdir();
    let path = dir.path().join("three.y4m");
    std::fs::write(&path, mono_stream(3)).unwrap_or_else(|e| panic!("{e}"));
    let mut src = open(&format!("file://{}?loop=true&fps=1000", path.display()));
    let mut frame = Frame::default();
    let firsts: Vec<u8> = (0..8)
        .map(|_| {
            frame_from(src.as_mut(), &mut frame);
            rgb_of(&frame)[0]
        })
        .collect();
    assert_eq!(firsts, [16, 32, 48, 16, 32, 48, 16, 32]);
}

#[test]
fn looping_an_empty_stream_ends_instead_of_spinning() {
    let dir = util::tempdir();
    let path = dir.path().join("empty.y4m");
    std::fs::write(&path, mono_stream(0)).unwrap_or_else(|e| panic!("{e}"));
    let mut src = open(&format!("{}?loop=true&fps=1000", path.display()));
    assert!(matches!(
        src.next(&mut Frame::default(), LONG),
        Ok(Capture::EndOfStream)
    ));
}

// ---------------------------------------------------------------- info and pacing

#[test]
fn source_info_reports_uri_size_and_rate() {
    let info = open("synthetic://320x240@60").info();
    assert_eq!(
        (info.uri.as_str(), info.width, info.height, info.fps),
        ("synthetic://320x240@60", 320, 240, Some(60.0))
    );

    let dir = util::tempdir();
    let path = dir.path().join("clip.y4m");
    std::fs::write(&path, mono_stream(1)).unwrap_or_else(|e| panic!("{e}"));
    let uri = path.display().to_string();
    let info = open(&uri).info();
    assert_eq!(
        (info.uri, info.width, info.height, info.fps),
        (uri.clone(), 4, 2, Some(30.0))
    );
    assert_eq!(open(&format!("{uri}?fps=10")).info().fps, Some(10.0));

    // A pipe reports its header's nominal rate even though it is not paced.
    assert_eq!(unpaced(mono_stream(1)).info().fps, Some(30.0));
    let no_rate = b"YUV4MPEG2 W4 H2 Cmono\n".to_vec();
    assert_eq!(unpaced(no_rate).info().fps, None);
}

#[test]
fn paced_file_waits_but_a_pipe_does_not() {
    let dir = util::tempdir();
    let path = dir.path().join("clip.y4m");
    std::fs::write(&path, mono_stream(3)).unwrap_or_else(|e| panic!("{e}"));
    let mut frame = Frame::default();
    // The file plays at its header's 30 FPS: the second frame is not due yet.
    let mut file = open(path.to_str().unwrap_or_default());
    frame_from(file.as_mut(), &mut frame);
    assert_eq!(
        file.next(&mut frame, Duration::ZERO).ok(),
        Some(Capture::Timeout)
    );
    // The same bytes from a pipe come as soon as they are readable.
    let mut pipe = unpaced(mono_stream(3));
    for _ in 0..3 {
        assert_eq!(
            pipe.next(&mut frame, Duration::ZERO).ok(),
            Some(Capture::Frame)
        );
    }
}

#[test]
fn timeout_is_respected_before_the_next_deadline() {
    let mut src = open("synthetic://16x16@1");
    let mut frame = Frame::default();
    frame_from(src.as_mut(), &mut frame);
    // The next frame is due 1 s later: a 30 ms timeout must come back empty-handed.
    let before = MonoTime::now();
    assert_eq!(
        src.next(&mut frame, Duration::from_millis(30)).ok(),
        Some(Capture::Timeout)
    );
    assert!(
        MonoTime::now().saturating_since(before) < Duration::from_millis(900),
        "slept past the timeout"
    );
}

/// Frames a source delivers while the consumer spends `work` on each, over `window`.
fn frames_in(src: &mut dyn Source, window: Duration, work: Duration) -> (u64, Vec<MonoTime>) {
    let mut frame = Frame::default();
    let start = MonoTime::now();
    let end = start.plus(window);
    let mut stamps = Vec::new();
    while MonoTime::now() < end {
        let left = end.saturating_since(MonoTime::now());
        match src.next(&mut frame, left) {
            Ok(Capture::Frame) if frame.captured_at <= end => {
                stamps.push(frame.captured_at);
                std::thread::sleep(work);
            }
            Ok(Capture::Frame | Capture::Timeout) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    (stamps.len() as u64, stamps)
}

#[test]
fn synthetic_60fps_uses_absolute_deadlines() {
    // The consumer spends 8 ms per frame. A pacer sleeping one period *after* each frame would
    // deliver 1 s / (16.7 + 8) ms ~ 40 frames; absolute deadlines deliver 60 (+1 for the frame
    // at t = 0). Frames are never early, so 61 is a hard ceiling; the floor leaves room for a
    // scheduler stall beyond 4 periods (a re-anchor drops the frames it covers), far above 40.
    let mut src = open("synthetic://64x48@60");
    let (count, stamps) = frames_in(
        src.as_mut(),
        Duration::from_secs(1),
        Duration::from_millis(8),
    );
    assert!(
        (55..=61).contains(&count),
        "{count} frames in 1 s at 60 FPS"
    );
    // No frame is released before its deadline: frame k comes at least k periods after frame 0
    // (less the start-up delay of frame 0 itself, bounded by one period here).
    let period = Duration::from_nanos(16_666_667);
    for (k, t) in stamps.iter().enumerate().skip(1) {
        let min = (period * k as u32).saturating_sub(period);
        assert!(t.saturating_since(stamps[0]) >= min, "frame {k} early");
    }
}

#[test]
fn synthetic_frames_change_every_frame() {
    let mut src = open("synthetic://64x48@1000");
    let (mut a, mut b) = (Frame::default(), Frame::default());
    frame_from(src.as_mut(), &mut a);
    for _ in 0..5 {
        frame_from(src.as_mut(), &mut b);
        assert_eq!((b.width, b.height, b.format), (64, 48, PixelFormat::Rgb24));
        assert_eq!(b.data.len(), 64 * 48 * 3);
        assert_ne!(a.data, b.data);
        assert!(b.captured_at > a.captured_at);
        std::mem::swap(&mut a, &mut b);
    }
}

#[test]
fn synthetic_reuses_the_frame_buffer() {
    let mut src = open("synthetic://64x48@1000");
    let mut frame = Frame::with_capacity(64 * 48 * 3);
    frame_from(src.as_mut(), &mut frame);
    let ptr = frame.data.as_ptr();
    for _ in 0..10 {
        frame_from(src.as_mut(), &mut frame);
        assert_eq!(frame.data.as_ptr(), ptr, "the frame buffer was reallocated");
    }
}

// ---------------------------------------------------------------- image folders

fn save_rgb(dir: &Path, name: &str, colour: [u8; 3], w: u32, h: u32) {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb(colour));
    img.save(dir.join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

#[test]
fn image_folder_plays_in_name_order() {
    let dir = util::tempdir();
    let d = dir.path();
    // Written out of order; sorted by name: 01.png, 02.png, 10.png, b.png, c.jpg, d.png.
    save_rgb(d, "b.png", [0, 0, 255], 8, 6);
    save_rgb(d, "10.png", [0, 255, 0], 8, 6);
    save_rgb(d, "01.png", [255, 0, 0], 8, 6);
    save_rgb(d, "c.jpg", [200, 100, 50], 8, 6);
    image::GrayImage::from_pixel(8, 6, image::Luma([77]))
        .save(d.join("d.png"))
        .unwrap_or_else(|e| panic!("{e}"));
    image::RgbaImage::from_pixel(4, 2, image::Rgba([9, 8, 7, 100]))
        .save(d.join("02.png"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(d.join("notes.txt"), "not an image").unwrap_or_else(|e| panic!("{e}"));

    let mut src = open(&format!("file://{}/?fps=1000", d.display()));
    assert_eq!(
        (src.info().width, src.info().height, src.info().fps),
        (8, 6, Some(1000.0))
    );
    let mut frame = Frame::default();
    let expect: [([u8; 3], u32, u32); 6] = [
        ([255, 0, 0], 8, 6),
        ([9, 8, 7], 4, 2),
        ([0, 255, 0], 8, 6),
        ([0, 0, 255], 8, 6),
        ([200, 100, 50], 8, 6),
        ([77, 77, 77], 8, 6),
    ];
    for (i, (colour, w, h)) in expect.into_iter().enumerate() {
        frame_from(src.as_mut(), &mut frame);
        assert_eq!((frame.width, frame.height), (w, h), "image {i}");
        let lossy = i == 4; // JPEG
        for px in rgb_of(&frame).chunks_exact(3) {
            for c in 0..3 {
                let err = px[c].abs_diff(colour[c]);
                assert!(
                    err <= if lossy { 4 } else { 0 },
                    "image {i}: {px:?} != {colour:?}"
                );
            }
        }
    }
    assert_eq!(src.next(&mut frame, LONG).ok(), Some(Capture::EndOfStream));
}

#[test]
fn image_folder_loops() {
    let dir = util::tempdir();
    save_rgb(dir.path(), "a.png", [10, 10, 10], 2, 2);
    save_rgb(dir.path(), "b.png", [20, 20, 20], 2, 2);
    let mut src = open(&format!("{}?loop=true&fps=1000", dir.path().display()));
    let mut frame = Frame::default();
    let seen: Vec<u8> = (0..5)
        .map(|_| {
            frame_from(src.as_mut(), &mut frame);
            rgb_of(&frame)[0]
        })
        .collect();
    assert_eq!(seen, [10, 20, 10, 20, 10]);
}

#[test]
fn image_folder_default_rate_is_30() {
    let dir = util::tempdir();
    save_rgb(dir.path(), "a.png", [1, 2, 3], 2, 2);
    assert_eq!(
        open(&dir.path().display().to_string()).info().fps,
        Some(30.0)
    );
}

#[test]
fn empty_image_folder_is_an_error_naming_it() {
    let dir = util::tempdir();
    std::fs::write(dir.path().join("readme.txt"), "x").unwrap_or_else(|e| panic!("{e}"));
    match source::open(&parse(&dir.path().display().to_string())) {
        Err(e @ SourceError::Format { .. }) => {
            assert!(
                e.to_string().contains(&dir.path().display().to_string()),
                "{e}"
            );
        }
        Err(e) => panic!("expected Format, got {e}"),
        Ok(_) => panic!("an empty folder opened"),
    }
}

#[test]
fn undecodable_image_is_an_error_naming_the_file() {
    let dir = util::tempdir();
    save_rgb(dir.path(), "a.png", [1, 2, 3], 2, 2);
    std::fs::write(dir.path().join("b.png"), b"\x89PNG garbage").unwrap_or_else(|e| panic!("{e}"));
    let mut src = open(&format!("{}?fps=1000", dir.path().display()));
    let mut frame = Frame::default();
    frame_from(src.as_mut(), &mut frame);
    match src.next(&mut frame, LONG) {
        Err(e @ SourceError::Format { .. }) => assert!(e.to_string().contains("b.png"), "{e}"),
        other => panic!("expected Format, got {other:?}"),
    }
    // The same file first in the folder fails at open.
    std::fs::rename(dir.path().join("b.png"), dir.path().join("0.png"))
        .unwrap_or_else(|e| panic!("{e}"));
    match source::open(&parse(&dir.path().display().to_string())) {
        Err(e) => assert!(e.to_string().contains("0.png"), "{e}"),
        Ok(_) => panic!("an undecodable first image opened"),
    }
}
