//! Frame-size limits before allocation: image folders, Y4M headers, cameras, MJPEG frames and the
//! study's image readers refuse a header that declares a huge frame with a clear error (never an
//! abort), and `?max_pixels=` moves the limit.
//!
//! The hostile PNGs are a real 4x4 PNG (written by the `image` crate) whose IHDR width and height
//! are patched and whose IHDR CRC is recomputed, so the header is valid and only its size lies.

use std::io::{self, Cursor};
use std::path::Path;
use std::time::Duration;

use rtinfer::source::v4l2::convert::{self, FourCc};
use rtinfer::source::v4l2::device::{Device, Granted, Opener};
use rtinfer::source::v4l2::{Request, V4l2Source, mjpeg};
use rtinfer::source::y4m::Y4mSource;
use rtinfer::source::{self, Frame, SourceError, SourceSpec};
use rtinfer::study::eval::LabelledSet;
use rtinfer::time::MonoTime;

use crate::util;

/// CRC-32 (ISO-HDLC, PNG's chunk checksum), bit by bit.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid 4x4 PNG whose header declares `width x height`.
fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut png = Vec::new();
    image::RgbImage::from_pixel(4, 4, image::Rgb([10, 20, 30]))
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("encode PNG");
    // Signature (8), IHDR length (4), "IHDR" (4), width (4), height (4), ... CRC at 29..33.
    assert_eq!(&png[12..16], b"IHDR");
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

fn save_png(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("write PNG");
}

fn assert_too_large(r: Result<impl Sized, SourceError>, needle: &str) {
    match r {
        Err(e @ SourceError::TooLarge { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(needle), "{needle:?} in {msg}");
            assert!(msg.contains("over the limit"), "{msg}");
        }
        Err(e) => panic!("expected TooLarge, got {e}"),
        Ok(_) => panic!("a frame over the limit was accepted"),
    }
}

#[test]
fn the_patched_png_is_valid_apart_from_its_size() {
    let dir = util::tempdir();
    save_png(dir.path(), "a.png", &png_declaring(4, 4));
    let img = image::open(dir.path().join("a.png")).expect("a 4x4 PNG with a fixed CRC decodes");
    assert_eq!((img.width(), img.height()), (4, 4));
}

#[test]
fn image_folder_whose_first_png_declares_100000x100000_is_refused_at_open() {
    let dir = util::tempdir();
    save_png(dir.path(), "0.png", &png_declaring(100_000, 100_000));
    save_png(dir.path(), "1.png", &png_declaring(4, 4));
    let spec = SourceSpec::parse(&dir.path().display().to_string()).expect("uri");
    assert_too_large(source::open(&spec), "0.png");
}

#[test]
fn a_later_huge_png_is_a_clean_error_naming_the_file() {
    let dir = util::tempdir();
    save_png(dir.path(), "0.png", &png_declaring(4, 4));
    save_png(dir.path(), "1.png", &png_declaring(100_000, 100_000));
    let spec = SourceSpec::parse(&format!("{}?fps=1000", dir.path().display())).expect("uri");
    let mut src = source::open(&spec).expect("the first image is fine");
    let mut frame = Frame::default();
    let long = Duration::from_secs(5);
    assert!(matches!(
        src.next(&mut frame, long),
        Ok(source::Capture::Frame)
    ));
    assert_too_large(src.next(&mut frame, long), "1.png");
}

#[test]
fn max_pixels_moves_the_image_limit() {
    let dir = util::tempdir();
    save_png(dir.path(), "0.png", &png_declaring(4, 4));
    let uri = format!("file://{}/?max_pixels=15", dir.path().display());
    assert_too_large(source::open(&SourceSpec::parse(&uri).expect("uri")), "4x4");
    let uri = format!("file://{}/?max_pixels=16", dir.path().display());
    assert!(source::open(&SourceSpec::parse(&uri).expect("uri")).is_ok());
}

#[test]
fn daemon_with_a_huge_first_image_exits_3_with_one_clear_line() {
    let dir = util::tempdir();
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).expect("mkdir");
    save_png(&frames, "0.png", &png_declaring(100_000, 100_000));
    let models = dir.path().join("models");
    std::fs::create_dir(&models).expect("mkdir");
    let sock = dir.path().join("s.sock");
    // Today's code aborted here (exit 134) sizing the frame slot from the header.
    let out = util::rtinfer_ort()
        .args(["run", "--duration", "1", "--socket"])
        .arg(&sock)
        .arg("--models")
        .arg(&models)
        .arg("--source")
        .arg(&frames)
        .output()
        .expect("run rtinfer");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("0.png") && err.contains("100000x100000") && err.contains("over the limit"),
        "{err}"
    );
    assert!(!err.contains("memory allocation"), "{err}");
}

#[test]
fn y4m_header_over_the_limit_is_refused_before_any_frame_buffer() {
    // 16384x16384 passes the per-side check but is 256 Mi pixels; 4:4:4 would want 768 MiB of
    // planes plus 768 MiB of RGB per buffer.
    let data = b"YUV4MPEG2 W16384 H16384 F30:1 C444\nFRAME\n".to_vec();
    assert_too_large(
        Y4mSource::new(Cursor::new(data), "mem://huge"),
        "16384x16384",
    );
    let dir = util::tempdir();
    let path = dir.path().join("small.y4m");
    let mut small = b"YUV4MPEG2 W64 H48 F30:1 Cmono\nFRAME\n".to_vec();
    small.extend(std::iter::repeat_n(0u8, 64 * 48));
    std::fs::write(&path, &small).expect("write");
    let uri = format!("file://{}?max_pixels=3000", path.display());
    assert_too_large(
        source::open(&SourceSpec::parse(&uri).expect("uri")),
        "64x48",
    );
    let uri = format!("file://{}?max_pixels=3072", path.display());
    assert!(source::open(&SourceSpec::parse(&uri).expect("uri")).is_ok());
}

#[test]
fn max_pixels_option_bounds_synthetic_and_round_trips() {
    let e = SourceSpec::parse("synthetic://16384x16384@30").expect_err("256 Mi pixels");
    assert!(e.to_string().contains("over the limit"), "{e}");
    let s = SourceSpec::parse("synthetic://16384x16384@30?max_pixels=268435456").expect("raised");
    assert_eq!(s.options.max_pixels, Some(268_435_456));
    assert_eq!(SourceSpec::parse(&s.to_string()).expect("round trip"), s);
    for bad in [
        "pipe://?max_pixels=0",
        "pipe://?max_pixels=-1",
        "pipe://?max_pixels=x",
    ] {
        let e = SourceSpec::parse(bad).expect_err(bad).to_string();
        assert!(e.contains("max_pixels"), "{e}");
    }
}

/// A camera whose driver grants a frame far larger than asked.
struct HugeCamera;

impl Opener for HugeCamera {
    fn open(&mut self, _path: &Path) -> io::Result<Box<dyn Device>> {
        Ok(Box::new(HugeCamera))
    }
}

impl Device for HugeCamera {
    fn formats(&mut self) -> io::Result<Vec<FourCc>> {
        Ok(vec![convert::YUYV])
    }

    fn start(&mut self, fourcc: FourCc, _: (u32, u32), _: Option<f64>) -> io::Result<Granted> {
        Ok(Granted {
            fourcc,
            width: 100_000,
            height: 100_000,
            stride: 200_000,
            fps: Some(30.0),
        })
    }

    fn next(
        &mut self,
        _timeout: Duration,
        _f: &mut dyn FnMut(&[u8], Option<MonoTime>),
    ) -> io::Result<bool> {
        Ok(false)
    }
}

#[test]
fn camera_granting_a_huge_format_is_refused_at_open() {
    let req = Request {
        format: None,
        size: (640, 480),
        fps: None,
    };
    let r = V4l2Source::open_with(Box::new(HugeCamera), Path::new("/dev/video9"), "cam", req);
    assert_too_large(r, "100000x100000");
}

#[test]
fn mjpeg_frame_declaring_more_than_the_stream_is_an_error() {
    let mut jpeg = Vec::new();
    image::RgbImage::from_pixel(8, 8, image::Rgb([200, 10, 10]))
        .write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
        .expect("encode JPEG");
    // SOF0: FF C0, length (2), precision (1), height (2), width (2).
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline SOF");
    jpeg[sof + 5..sof + 7].copy_from_slice(&60_000u16.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&60_000u16.to_be_bytes());
    let mut frame = Frame::default();
    let r = mjpeg::decode_frame(&jpeg, 8, 8, &mut mjpeg::Scratch::default(), &mut frame);
    assert!(r.is_err(), "a 60000x60000 header on an 8x8 stream decoded");
}

#[test]
fn eval_images_over_the_limit_are_errors_naming_file_and_limit() {
    let dir = util::tempdir();
    let class = dir.path().join("cat");
    std::fs::create_dir(&class).expect("mkdir");
    save_png(&class, "huge.png", &png_declaring(100_000, 100_000));
    let set = LabelledSet::open(dir.path()).expect("the set lists");
    let mut frame = Frame::default();
    let e = set.load(0, &mut frame).expect_err("refused").to_string();
    assert!(
        e.contains("huge.png") && e.contains("over the limit"),
        "{e}"
    );
}
