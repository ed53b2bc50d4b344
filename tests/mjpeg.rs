//! The MJPEG decoder against ffmpeg and libjpeg-turbo's tools on the same JPEGs: every sampling
//! a camera sends at full size (planes equal ffmpeg's decode within the IDCT's rounding), the DCT
//! scales against the full decode box-downscaled, frames without Huffman tables, restart
//! intervals, the general decoder's fallback, and truncated or corrupt frames (an error for
//! that frame, never a panic, and the next frame decodes). Test JPEGs are made here by ffmpeg
//! (`testsrc2`) and `cjpeg` (restart intervals, progressive, arithmetic, grey), never committed.

use std::path::Path;
use std::process::Command;

use rtinfer::source::v4l2::jpeg::{Decoder, JpegError};
use rtinfer::source::v4l2::mjpeg;
use rtinfer::source::{Frame, PixelFormat};

use crate::util::{self, ffmpeg};

/// Not multiples of 16: edge blocks are clipped, and an odd chroma width rounds up.
const W: u32 = 330;
const H: u32 = 250;

/// Full-size planes may differ from ffmpeg's by the IDCTs' rounding (ours is libjpeg's accurate
/// integer IDCT; ffmpeg's mjpeg decoder uses its own): measured 1 level at most.
const FULL_TOL: u8 = 1;

/// One `testsrc2` frame encoded by ffmpeg's mjpeg encoder as `pix_fmt`; `-huffman default`
/// writes the standard tables (what cameras use), else ffmpeg optimises them per frame.
fn encode(dir: &Path, pix_fmt: &str, standard_tables: bool) -> Vec<u8> {
    let out = dir.join(format!("{pix_fmt}-{standard_tables}.jpg"));
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=size={W}x{H}:rate=1"),
        "-frames:v",
        "1",
        "-pix_fmt",
        pix_fmt,
        "-c:v",
        "mjpeg",
        "-huffman",
        if standard_tables {
            "default"
        } else {
            "optimal"
        },
        "-q:v",
        "3",
        out.to_str().expect("utf-8 path"),
    ]);
    std::fs::read(&out).expect("the jpeg")
}

/// The same `testsrc2` frame encoded by `cjpeg` with `args` (a PPM from ffmpeg in between).
fn cjpeg(dir: &Path, args: &[&str]) -> Vec<u8> {
    let ppm = dir.join("frame.ppm");
    if !ppm.exists() {
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={W}x{H}:rate=1"),
            "-frames:v",
            "1",
            ppm.to_str().expect("utf-8 path"),
        ]);
    }
    let out = Command::new("cjpeg")
        .args(args)
        .arg(&ppm)
        .output()
        .unwrap_or_else(|e| panic!("cannot run cjpeg (scripts/setup.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "cjpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// ffmpeg's decode of `jpeg` as planes in `pix_fmt` (its own layout: no conversion).
fn ffmpeg_planes(dir: &Path, jpeg: &[u8], pix_fmt: &str) -> Vec<u8> {
    let path = dir.join("in.jpg");
    std::fs::write(&path, jpeg).expect("write jpeg");
    ffmpeg(&[
        "-i",
        path.to_str().expect("utf-8 path"),
        "-f",
        "rawvideo",
        "-pix_fmt",
        pix_fmt,
        "-",
    ])
}

fn decode(jpeg: &[u8], min: Option<(u32, u32)>) -> Result<Frame, mjpeg::MjpegError> {
    let mut scratch = mjpeg::Scratch::default();
    scratch.set_min_size(min);
    let mut frame = Frame::default();
    mjpeg::decode_frame(jpeg, W, H, &mut scratch, &mut frame).map(|()| frame)
}

/// Largest absolute difference and how many samples differ.
fn diff(a: &[u8], b: &[u8]) -> (u8, usize) {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold((0, 0), |(m, n), (x, y)| {
        let d = x.abs_diff(*y);
        (m.max(d), n + usize::from(d > 0))
    })
}

/// Removes every DHT segment before the first scan, as UVC cameras send MJPEG.
fn strip_huffman_tables(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut i = 2;
    loop {
        let marker = jpeg[i + 1];
        if marker == 0xDA {
            out.extend_from_slice(&jpeg[i..]);
            return out;
        }
        let len = (usize::from(jpeg[i + 2]) << 8) | usize::from(jpeg[i + 3]);
        if marker != 0xC4 {
            out.extend_from_slice(&jpeg[i..i + 2 + len]);
        }
        i += 2 + len;
    }
}

const SAMPLINGS: [&str; 3] = ["yuvj422p", "yuvj420p", "yuvj444p"];

#[test]
fn every_sampling_decodes_to_ffmpegs_planes() {
    let dir = util::tempdir();
    let mut cases: Vec<(String, Vec<u8>, &str)> = Vec::new();
    for pix_fmt in SAMPLINGS {
        for standard in [true, false] {
            let name = format!("{pix_fmt} (standard tables: {standard})");
            cases.push((name, encode(dir.path(), pix_fmt, standard), pix_fmt));
        }
    }
    // ffmpeg's encoder makes no grey JPEGs; cjpeg does (one component, a non-interleaved scan).
    cases.push((
        "gray (cjpeg)".into(),
        cjpeg(dir.path(), &["-grayscale"]),
        "gray",
    ));
    // cjpeg's 4:2:2 is luma 2x1 / chroma 1x1 (ffmpeg's is 2x2 / 1x2): the same layout.
    let c422 = cjpeg(dir.path(), &["-sample", "2x1", "-quality", "90"]);
    cases.push(("yuvj422p (cjpeg 2x1)".into(), c422, "yuvj422p"));
    for (name, jpeg, pix_fmt) in &cases {
        let frame = decode(jpeg, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            frame.format.name(),
            *pix_fmt,
            "{name}: the JPEG's own layout"
        );
        assert_eq!((frame.width, frame.height), (W, H), "{name}");
        let reference = ffmpeg_planes(dir.path(), jpeg, pix_fmt);
        let (worst, differing) = diff(&frame.data, &reference);
        eprintln!(
            "{name}: worst {worst}, {differing} of {} samples differ",
            reference.len()
        );
        assert!(
            worst <= FULL_TOL,
            "{name}: {worst} levels from ffmpeg ({differing} samples)"
        );
    }
}

#[test]
fn frames_without_huffman_tables_use_the_standard_ones() {
    let dir = util::tempdir();
    let full = encode(dir.path(), "yuvj422p", true);
    let bare = strip_huffman_tables(&full);
    assert!(mjpeg::has_huffman_tables(&full));
    assert!(!mjpeg::has_huffman_tables(&bare));
    let a = decode(&full, None).expect("with tables");
    let b = decode(&bare, None).expect("without tables");
    assert_eq!(a.data, b.data);
    // A frame with its own (optimised) tables, then a bare one, through one decoder: the
    // bare frame must not inherit the previous frame's tables.
    let optimised = encode(dir.path(), "yuvj422p", false);
    let mut scratch = mjpeg::Scratch::default();
    let mut frame = Frame::default();
    mjpeg::decode_frame(&optimised, W, H, &mut scratch, &mut frame).expect("optimised tables");
    mjpeg::decode_frame(&bare, W, H, &mut scratch, &mut frame).expect("standard tables again");
    assert_eq!(frame.data, a.data);
}

#[test]
fn restart_intervals_decode_like_ffmpeg() {
    let dir = util::tempdir();
    for interval in ["1", "3B", "7B"] {
        let jpeg = cjpeg(dir.path(), &["-sample", "2x1", "-restart", interval]);
        assert!(jpeg.windows(2).any(|w| w == [0xFF, 0xDD]), "a DRI segment");
        assert!(
            jpeg.windows(2).any(|w| w == [0xFF, 0xD7]),
            "restart markers wrap past RST7"
        );
        let frame = decode(&jpeg, None).unwrap_or_else(|e| panic!("restart {interval}: {e}"));
        let reference = ffmpeg_planes(dir.path(), &jpeg, "yuvj422p");
        let (worst, _) = diff(&frame.data, &reference);
        assert!(
            worst <= FULL_TOL,
            "restart {interval}: {worst} levels from ffmpeg"
        );
        // A restart marker out of sequence is damage: an error for this frame.
        let mut bad = jpeg.clone();
        let at = bad
            .windows(2)
            .position(|w| w == [0xFF, 0xD2])
            .expect("an RST2");
        bad[at + 1] = 0xD5;
        let e = decode(&bad, None).expect_err("out-of-order RST");
        assert!(e.to_string().contains("corrupt"), "restart {interval}: {e}");
    }
}

/// The full decode averaged over `k x k` squares (partial squares at the edges over the
/// samples they have), a plane of `w x h` into `ceil(w/k) x ceil(h/k)`.
fn box_down(plane: &[u8], w: usize, h: usize, k: usize) -> Vec<u8> {
    let (ow, oh) = (w.div_ceil(k), h.div_ceil(k));
    let mut out = Vec::with_capacity(ow * oh);
    for y in 0..oh {
        for x in 0..ow {
            let (mut s, mut n) = (0u32, 0u32);
            for yy in y * k..((y + 1) * k).min(h) {
                for xx in x * k..((x + 1) * k).min(w) {
                    s += u32::from(plane[yy * w + xx]);
                    n += 1;
                }
            }
            out.push(((s + n / 2) / n) as u8);
        }
    }
    out
}

/// (width, height) of each plane of a frame in `format`.
fn planes(format: PixelFormat, w: usize, h: usize) -> Vec<(usize, usize)> {
    match format.name() {
        "yuvj422p" => vec![(w, h), (w.div_ceil(2), h), (w.div_ceil(2), h)],
        "yuvj420p" => vec![
            (w, h),
            (w.div_ceil(2), h.div_ceil(2)),
            (w.div_ceil(2), h.div_ceil(2)),
        ],
        "yuvj444p" => vec![(w, h); 3],
        _ => vec![(w, h)],
    }
}

/// Scaled decodes are the full decode box-averaged over k x k, computed from the coefficients:
/// on `testsrc2` the mean difference was at most 0.06 levels; the largest, 9 levels at 1/8 of
/// 4:2:2, is where the full decode clamps ringing past 0 or 255 before it is averaged (the
/// scaled decode averages first).
const MEAN_TOL: f64 = 0.1;
const MAX_TOL: u8 = 10;

#[test]
fn dct_scaled_decodes_match_the_full_decode_box_downscaled() {
    let dir = util::tempdir();
    let mut jpegs: Vec<(String, Vec<u8>)> = SAMPLINGS
        .iter()
        .map(|p| (p.to_string(), encode(dir.path(), p, true)))
        .collect();
    jpegs.push(("gray".into(), cjpeg(dir.path(), &["-grayscale"])));
    for (name, jpeg) in &jpegs {
        let full = decode(jpeg, None).expect("full size");
        for k in [2u32, 4, 8] {
            // The smallest size that still allows 1/k: the decoder picks exactly k.
            let min = (W.div_ceil(k), H.div_ceil(k));
            assert_eq!(mjpeg::scale_for(W, H, Some(min)), k);
            let scaled = decode(jpeg, Some(min)).expect("scaled");
            assert_eq!((scaled.width, scaled.height), min, "{name} 1/{k}");
            assert_eq!(scaled.format, full.format, "{name} 1/{k}");
            let (mut at_full, mut at_scaled) = (0, 0);
            let (mut worst, mut sum, mut n) = (0u8, 0u64, 0u64);
            let sp = planes(scaled.format, min.0 as usize, min.1 as usize);
            for ((pw, ph), (sw, sh)) in planes(full.format, W as usize, H as usize)
                .into_iter()
                .zip(sp)
            {
                let reference =
                    box_down(&full.data[at_full..at_full + pw * ph], pw, ph, k as usize);
                assert_eq!(reference.len(), sw * sh, "{name} 1/{k}: plane sizes agree");
                for (a, b) in scaled.data[at_scaled..at_scaled + sw * sh]
                    .iter()
                    .zip(&reference)
                {
                    let d = a.abs_diff(*b);
                    worst = worst.max(d);
                    sum += u64::from(d);
                    n += 1;
                }
                at_full += pw * ph;
                at_scaled += sw * sh;
            }
            let mean = sum as f64 / n as f64;
            eprintln!("{name} 1/{k}: mean {mean:.3}, worst {worst}");
            assert!(
                mean <= MEAN_TOL && worst <= MAX_TOL,
                "{name} 1/{k}: mean {mean:.3}, worst {worst}"
            );
        }
    }
}

/// `djpeg -scale 1/k` (libjpeg-turbo's own DCT scaling, what OpenCV's `IMREAD_REDUCED_*` uses)
/// of a grey JPEG (no colour conversion in the way): PGM pixels.
fn djpeg_grey(dir: &Path, jpeg: &[u8], k: u32) -> Vec<u8> {
    let path = dir.join("grey.jpg");
    std::fs::write(&path, jpeg).expect("write jpeg");
    let out = Command::new("djpeg")
        .args(["-scale", &format!("1/{k}"), "-dct", "int", "-pnm"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run djpeg (scripts/setup.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "djpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "P5\n<w> <h>\n255\n" then the pixels.
    let mut lines = 0;
    let at = out.stdout.iter().position(|b| {
        lines += usize::from(*b == b'\n');
        lines == 3
    });
    out.stdout[at.expect("a PGM header") + 1..].to_vec()
}

/// Against libjpeg-turbo's scaled IDCTs (`jidctred.c`: the same box average, other rounding).
#[test]
fn dct_scaled_grey_decodes_match_libjpeg_turbo() {
    let dir = util::tempdir();
    let jpeg = cjpeg(dir.path(), &["-grayscale"]);
    // Measured: worst 1 level at 1/2 and 1/4 (mean 0.002), identical at 1/8.
    for (k, mean_tol, max_tol) in [(2u32, 0.01, 1u8), (4, 0.01, 1), (8, 0.0, 0)] {
        let min = (W.div_ceil(k), H.div_ceil(k));
        let ours = decode(&jpeg, Some(min)).expect("scaled");
        let theirs = djpeg_grey(dir.path(), &jpeg, k);
        let (worst, _) = diff(&ours.data, &theirs);
        let sum: u64 = ours
            .data
            .iter()
            .zip(&theirs)
            .map(|(a, b)| u64::from(a.abs_diff(*b)))
            .sum();
        let mean = sum as f64 / theirs.len() as f64;
        eprintln!("grey 1/{k} vs djpeg: mean {mean:.3}, worst {worst}");
        assert!(
            mean <= mean_tol && worst <= max_tol,
            "1/{k}: mean {mean:.3}, worst {worst}"
        );
    }
}

#[test]
fn the_scale_keeps_the_model_input_size() {
    // 1080p for a 224x224 model: 1/4 (480x270); 1/8 would be 240x135, under 224 in height.
    assert_eq!(mjpeg::scale_for(1920, 1080, Some((224, 224))), 4);
    assert_eq!(mjpeg::scale_for(640, 480, Some((224, 224))), 2);
    assert_eq!(mjpeg::scale_for(640, 480, Some((32, 32))), 8);
    assert_eq!(mjpeg::scale_for(640, 480, Some((641, 10))), 1);
    assert_eq!(mjpeg::scale_for(640, 480, None), 1);
    // Rounding up counts: 225 / 2 rounds up to 113.
    assert_eq!(mjpeg::scale_for(225, 225, Some((113, 113))), 2);
}

#[test]
fn progressive_frames_fall_back_and_arithmetic_ones_are_errors() {
    let dir = util::tempdir();
    let progressive = cjpeg(dir.path(), &["-sample", "2x1", "-progressive"]);
    let mut d = Decoder::new();
    let mut frame = Frame::default();
    assert!(matches!(
        d.decode(&progressive, W, H, 1, &mut frame),
        Err(JpegError::Unsupported(_))
    ));
    // Through the general decoder: the same picture as ffmpeg's (its 4:2:2 path).
    let frame = decode(&progressive, None).expect("the fallback decodes it");
    assert_eq!(frame.format.name(), "yuvj422p");
    let reference = ffmpeg_planes(dir.path(), &progressive, "yuvj422p");
    let (worst, _) = diff(&frame.data, &reference);
    assert!(
        worst <= 4,
        "progressive via zune-jpeg: {worst} levels from ffmpeg"
    );
    let arithmetic = cjpeg(dir.path(), &["-arithmetic"]);
    assert!(
        decode(&arithmetic, None).is_err(),
        "neither decoder takes arithmetic coding"
    );
}

#[test]
fn truncated_and_corrupt_frames_are_errors_for_that_frame_only() {
    let dir = util::tempdir();
    let good = encode(dir.path(), "yuvj422p", true);
    let expected = decode(&good, None).expect("good").data;
    let mut scratch = mjpeg::Scratch::default();
    let mut frame = Frame::default();
    let mut run = |jpeg: &[u8]| mjpeg::decode_frame(jpeg, W, H, &mut scratch, &mut frame);
    // Cut anywhere in the entropy-coded data: an error (the decoder read past the end).
    for cut in [good.len() / 3, good.len() / 2, good.len() - 40, 5, 100] {
        let e = run(&good[..cut]).expect_err("a truncated frame");
        assert!(
            matches!(
                e,
                mjpeg::MjpegError::Baseline(JpegError::Truncated | JpegError::Corrupt(_))
            ),
            "cut at {cut}: {e}"
        );
    }
    // Garbage in the scan: every byte of a stretch replaced; decoding must end (Ok or Err).
    let sos = good
        .windows(2)
        .position(|w| w == [0xFF, 0xDA])
        .expect("SOS");
    let mut errors = 0;
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..300 {
        let mut bad = good.clone();
        for _ in 0..8 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let at = sos + 14 + (s as usize) % (good.len() - sos - 16);
            bad[at] = (s >> 32) as u8;
        }
        errors += usize::from(run(&bad).is_err());
    }
    assert!(errors > 0, "some of 300 damaged frames are detected");
    // The decoder is not poisoned: the next good frame decodes exactly.
    run(&good).expect("a good frame after the bad ones");
    assert_eq!(frame.data, expected);
    // A header declaring another size than the stream's is refused before any decoding.
    let mut other = good.clone();
    let sof = other
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("SOF0");
    other[sof + 5..sof + 7].copy_from_slice(&60_000u16.to_be_bytes());
    let r = mjpeg::decode_frame(&other, W, H, &mut scratch, &mut frame);
    assert!(matches!(
        r,
        Err(mjpeg::MjpegError::Size { got_h: 60_000, .. })
    ));
}

/// A camera alternating a good MJPEG frame and the same frame cut in half.
struct Flaky {
    jpeg: Vec<u8>,
    n: u64,
}

impl rtinfer::source::v4l2::device::Opener for Flaky {
    fn open(
        &mut self,
        _: &Path,
    ) -> std::io::Result<Box<dyn rtinfer::source::v4l2::device::Device>> {
        Ok(Box::new(Flaky {
            jpeg: self.jpeg.clone(),
            n: 0,
        }))
    }
}

impl rtinfer::source::v4l2::device::Device for Flaky {
    fn formats(&mut self) -> std::io::Result<Vec<[u8; 4]>> {
        Ok(vec![rtinfer::source::v4l2::convert::MJPG])
    }

    fn start(
        &mut self,
        fourcc: [u8; 4],
        _: (u32, u32),
        _: Option<f64>,
    ) -> std::io::Result<rtinfer::source::v4l2::device::Granted> {
        Ok(rtinfer::source::v4l2::device::Granted {
            fourcc,
            width: W,
            height: H,
            stride: 0,
            fps: Some(30.0),
        })
    }

    fn next(
        &mut self,
        _: std::time::Duration,
        f: &mut dyn FnMut(&[u8], Option<rtinfer::time::MonoTime>),
    ) -> std::io::Result<bool> {
        self.n += 1;
        let data = if self.n.is_multiple_of(2) {
            &self.jpeg[..self.jpeg.len() / 2]
        } else {
            &self.jpeg[..]
        };
        f(data, None);
        Ok(true)
    }
}

#[test]
fn a_camera_skips_and_counts_corrupt_frames_and_goes_on() {
    use rtinfer::source::v4l2::{Request, V4l2Source};
    use rtinfer::source::{Capture, Source};
    let dir = util::tempdir();
    let jpeg = encode(dir.path(), "yuvj422p", true);
    let request = Request {
        format: None,
        size: (W, H),
        fps: None,
    };
    let mut cam = V4l2Source::open_with(
        Box::new(Flaky { jpeg, n: 0 }),
        Path::new("/dev/video7"),
        "flaky",
        request,
    )
    .expect("opens");
    let mut frame = Frame::default();
    let (mut frames, mut skipped) = (0, 0);
    for _ in 0..10 {
        match cam
            .next(&mut frame, std::time::Duration::from_millis(10))
            .expect("never fatal")
        {
            Capture::Frame => frames += 1,
            Capture::Timeout => skipped += 1,
            Capture::EndOfStream => panic!("a camera does not end"),
        }
    }
    assert_eq!((frames, skipped), (5, 5));
    assert_eq!(cam.skipped_frames(), 5);
    assert_eq!(frame.format.name(), "yuvj422p");
}
