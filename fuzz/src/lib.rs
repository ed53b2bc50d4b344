//! The bodies of the fuzz targets, one function each, so `cargo fuzz` (the binaries in
//! `fuzz_targets/`) and the stable replay test (`tests/replay.rs`) run exactly the same code.
//!
//! Each function is a thin call into the public entry point the daemon or a tool uses on
//! untrusted bytes: what a pipe, a folder, a socket peer, a config file, a model file or a meter
//! can hand us. A target must never panic, abort or hang on any input; a crash found becomes a
//! file under `fuzz/regressions/<target>/` (replayed by the test) and a named test beside the fix.

use std::io::Cursor;
use std::path::Path;
use std::time::Duration;

use rtinfer::source::y4m::Y4mSource;
use rtinfer::source::{Capture, Frame, FrameLimits, Source};

/// Frames over 4 Mi pixels are refused, so one input cannot make libFuzzer run out of memory.
fn limits() -> FrameLimits {
    FrameLimits::with_max_pixels(Some(4 << 20))
}

/// A YUV4MPEG2 stream: header, frame headers, planes, conversion to RGB (at most 8 frames).
pub fn y4m(data: &[u8]) {
    let Ok(mut src) = Y4mSource::with_limits(Cursor::new(data), "fuzz://y4m", &limits()) else {
        return;
    };
    let mut frame = Frame::default();
    let mut rgb = Vec::new();
    for _ in 0..8 {
        match src.next(&mut frame, Duration::ZERO) {
            Ok(Capture::Frame) => {
                // The frame keeps the stream's planes (an alpha plane after them); they must
                // hold the whole picture, which converts to RGB.
                assert!(frame.data.len() >= frame.format.frame_len(frame.width, frame.height));
                frame.to_rgb(&mut rgb).expect("a whole frame converts");
                assert_eq!(rgb.len(), frame.width as usize * frame.height as usize * 3);
            }
            _ => break,
        }
    }
}

/// A PNG or JPEG through the image folders' decoder, with the frame limits.
pub fn image(data: &[u8]) {
    let reader = image::ImageReader::new(Cursor::new(data));
    let mut frame = Frame::default();
    if rtinfer::source::limits::decode_image(reader, &limits(), &mut frame).is_ok() {
        assert_eq!(
            frame.data.len(),
            frame.width as usize * frame.height as usize * 3
        );
    }
}

/// One HTTP request as the status server receives it: the incremental parser on the whole input
/// and on prefixes (a slow peer's partial sends), and the blocking reader on the same bytes.
/// An error on a prefix must be final: a prefix of a request the parser accepts is never refused.
pub fn http(data: &[u8]) {
    use rtinfer::status::http::{Limits, parse, read_request};
    let limits = Limits::default();
    let whole = parse(data, &limits);
    if let Ok(Some(req)) = &whole {
        for cut in [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987] {
            if cut < data.len() {
                assert!(
                    parse(&data[..cut], &limits).is_ok(),
                    "a prefix of {cut} bytes of an accepted request was refused"
                );
            }
        }
        let read = read_request(&mut &data[..], &limits).expect("the blocking reader agrees");
        assert_eq!(&read, req);
    }
}

/// A config file through the checks `check-config`, start-up and SIGHUP share; a NUL byte splits
/// the input into the running and the reloaded file, and the reload's comparisons run on both.
pub fn config(data: &[u8]) {
    use rtinfer::config::{Config, RawConfig, changed_keys, parse_raw};
    let (old, new) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let path = Path::new("fuzz.toml");
    let load = |bytes: &[u8]| -> Option<(RawConfig, Option<Config>)> {
        let text = std::str::from_utf8(bytes).ok()?;
        let raw = parse_raw(text, path).ok()?;
        let checked = Config::from_raw(raw.clone(), Some(path)).ok();
        Some((raw, checked))
    };
    let old = load(old).unwrap_or_default();
    let Some(new) = load(new) else {
        return;
    };
    let _ = changed_keys(&old.0, &new.0);
    if let (Some(a), Some(b)) = (&old.1, &new.1) {
        let _ = a.source.rate_change(&b.source);
    }
}

/// An ONNX file: protobuf decode with the ONNX checks, then `inspect` (shape inference, MACs,
/// critical path).
pub fn onnx(data: &[u8]) {
    use rtinfer::onnx::pb as onnx_pb;
    use rtinfer::study::inspect;
    if let Ok(model) = onnx_pb::decode(data) {
        let _ = inspect::inspect(&model);
    }
}

/// An MJPEG camera frame: the first byte picks the scale (the model's input size as a minimum
/// picture: none, or 1/2, 1/4, 1/8 of the frame); the stream's geometry is what the frame's
/// SOF declares (within the fuzz limits, else 16x16: a size mismatch), as a camera's
/// negotiated size would be. A decoded frame must be the whole picture at the chosen scale.
pub fn mjpeg(data: &[u8]) {
    use rtinfer::source::v4l2::mjpeg::{Scratch, decode_frame, scale_for};
    let Some((&pick, jpeg)) = data.split_first() else {
        return;
    };
    let (w, h) = sof_size(jpeg)
        .filter(|(w, h)| limits().check(u64::from(*w), u64::from(*h)).is_ok())
        .unwrap_or((16, 16));
    let k = 1u32 << (pick % 4);
    let min = (k > 1).then(|| (w.div_ceil(k), h.div_ceil(k)));
    let mut scratch = Scratch::default();
    scratch.set_min_size(min);
    let mut frame = Frame::default();
    // Twice through one decoder: state left by a bad frame must not change the next decode.
    let first = decode_frame(jpeg, w, h, &mut scratch, &mut frame).map(|()| frame.data.clone());
    if let Ok(data) = &first {
        assert!(data.len() >= frame.format.frame_len(frame.width, frame.height));
        let scaled = frame.width == w.div_ceil(scale_for(w, h, min));
        assert!(
            scaled || (frame.width, frame.height) == (w, h),
            "a scaled or full frame"
        );
    }
    let second = decode_frame(jpeg, w, h, &mut scratch, &mut frame).map(|()| frame.data.clone());
    assert_eq!(
        first.ok(),
        second.ok(),
        "the same frame decodes the same twice"
    );
}

/// The width and height a JPEG's first SOF declares.
fn sof_size(jpeg: &[u8]) -> Option<(u32, u32)> {
    let mut i = 2;
    while i + 9 <= jpeg.len() && jpeg[i] == 0xFF {
        let marker = jpeg[i + 1];
        let len = usize::from(jpeg[i + 2]) << 8 | usize::from(jpeg[i + 3]);
        if matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF) {
            let h = u32::from(jpeg[i + 5]) << 8 | u32::from(jpeg[i + 6]);
            let w = u32::from(jpeg[i + 7]) << 8 | u32::from(jpeg[i + 8]);
            return Some((w, h));
        }
        i += 2 + len.max(2);
    }
    None
}

/// Serial meter answers. The first byte picks the parser: 0 TC66C (192-byte AES frames), 1-3 the
/// UM24C/UM25C/UM34C (130-byte frames), anything else the text-line reader with the default
/// pattern and with a user pattern.
pub fn meters(data: &[u8]) {
    use rtinfer::power::{exec, line, tc66, um};
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which {
        0 => {
            for chunk in rest.chunks_exact(tc66::FRAME_LEN) {
                let mut frame = [0u8; tc66::FRAME_LEN];
                frame.copy_from_slice(chunk);
                let _ = tc66::decode(&mut frame);
            }
        }
        1..=3 => {
            let model = [um::UmModel::Um24c, um::UmModel::Um25c, um::UmModel::Um34c]
                [usize::from(which - 1)];
            for chunk in rest.chunks_exact(um::FRAME_LEN) {
                let mut frame = [0u8; um::FRAME_LEN];
                frame.copy_from_slice(chunk);
                let _ = um::decode(model, &frame);
            }
        }
        _ => {
            // Compiled once: a regex build per input made this target 30 times slower.
            static PARSERS: std::sync::LazyLock<Vec<line::LineParser>> =
                std::sync::LazyLock::new(|| {
                    [
                        line::LineParser::new(None, 1.0),
                        line::LineParser::new(Some(r"V=(?P<volts>\S+) A=(?P<amps>\S+)"), 0.001),
                    ]
                    .into_iter()
                    .flatten()
                    .collect()
                });
            let parsers = &*PARSERS;
            let mut buf = line::LineBuffer::default();
            // Fed in two pieces, as a serial read splits a stream.
            let (a, b) = rest.split_at(rest.len() / 2);
            for piece in [a, b] {
                buf.push(piece);
                while let Ok(Some(l)) = buf.next_line() {
                    for p in parsers {
                        let _ = p.parse(&l);
                    }
                }
            }
            // The same bytes as an exec:// command's stdout, read in blocks (the newest lines of
            // each kept), as the exec meter samples it.
            let mut pending = Vec::new();
            for piece in [a, b] {
                for l in exec::newest_lines(&mut pending, piece, exec::LINES_PER_READ) {
                    for p in parsers {
                        let _ = p.parse(&l);
                    }
                }
            }
        }
    }
}
