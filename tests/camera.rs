//! Cameras without a camera: the V4L2 pixel-format conversions against ffmpeg's conversion of the
//! same bytes (inputs made by ffmpeg from `testsrc`), MJPEG with its Huffman tables stripped as
//! USB cameras send it, open / negotiate / unplug / replug through a fake device layer, and the
//! real binary streaming from a fake camera behind the C library calls the `v4l` crate makes
//! (`cpp/fake_v4l2/`, loaded with LD_PRELOAD).

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtinfer::slot::{FrameSlot, Outcome, Take};
use rtinfer::source::v4l2::convert::{self, FourCc, Layout};
use rtinfer::source::v4l2::device::{Device, Granted, Opener};
use rtinfer::source::v4l2::{Request, V4l2Source, mjpeg};
use rtinfer::source::{Capture, Frame, Source};
use rtinfer::time::MonoTime;

use crate::util::{self, ffmpeg};

const W: u32 = 320;
const H: u32 = 240;

/// One testsrc frame in `pix_fmt` (raw bytes), and ffmpeg's RGB24 of those very bytes.
fn raw_and_reference(dir: &Path, pix_fmt: &str) -> (Vec<u8>, Vec<u8>) {
    let raw = dir.join(format!("in.{pix_fmt}"));
    let size = format!("{W}x{H}");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc=size={size}:rate=1"),
        "-frames:v",
        "1",
        "-pix_fmt",
        pix_fmt,
        "-f",
        "rawvideo",
        raw.to_str().expect("utf-8 path"),
    ]);
    let rgb = ffmpeg(&[
        "-f",
        "rawvideo",
        "-pix_fmt",
        pix_fmt,
        "-s",
        &size,
        "-i",
        raw.to_str().expect("utf-8 path"),
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]);
    (std::fs::read(&raw).expect("raw frame"), rgb)
}

/// Mean and p99 of |ours - ffmpeg| over every channel value.
fn errors(ours: &[u8], reference: &[u8]) -> (f64, u8) {
    assert_eq!(ours.len(), reference.len());
    let mut d: Vec<u8> = ours
        .iter()
        .zip(reference)
        .map(|(a, b)| a.abs_diff(*b))
        .collect();
    let mean = d.iter().map(|v| f64::from(*v)).sum::<f64>() / d.len() as f64;
    d.sort_unstable();
    (mean, d[(d.len() * 99) / 100])
}

fn assert_close(what: &str, ours: &[u8], reference: &[u8]) {
    let (mean, p99) = errors(ours, reference);
    eprintln!("{what}: mean |error| {mean:.3}, p99 {p99}");
    assert!(
        mean <= 1.5 && p99 <= 4,
        "{what}: mean |error| {mean:.3}, p99 {p99} levels"
    );
}

#[test]
fn raw_formats_match_ffmpeg() {
    let dir = util::tempdir();
    for (pix_fmt, fourcc) in [
        ("yuyv422", convert::YUYV),
        ("uyvy422", convert::UYVY),
        ("nv12", convert::NV12),
        ("gray", convert::GREY),
        ("rgb24", convert::RGB3),
        ("bgr24", convert::BGR3),
    ] {
        let (raw, reference) = raw_and_reference(dir.path(), pix_fmt);
        let mut rgb = vec![0u8; (W * H * 3) as usize];
        let l = Layout {
            width: W,
            height: H,
            stride: 0,
        };
        convert::to_rgb(fourcc, &l, &raw, &mut rgb).expect("converts");
        assert_close(pix_fmt, &rgb, &reference);
    }
}

#[test]
fn padded_lines_convert_like_packed_ones() {
    // A driver may pad each line (bytesperline > width * 2): the same picture with 16 bytes of
    // junk per line must convert to the same RGB.
    let dir = util::tempdir();
    let (raw, reference) = raw_and_reference(dir.path(), "yuyv422");
    let line = (W * 2) as usize;
    let padded: Vec<u8> = raw
        .chunks_exact(line)
        .flat_map(|l| l.iter().copied().chain([0xAB; 16]))
        .collect();
    let mut rgb = vec![0u8; (W * H * 3) as usize];
    let l = Layout {
        width: W,
        height: H,
        stride: line + 16,
    };
    convert::to_rgb(convert::YUYV, &l, &padded, &mut rgb).expect("converts");
    assert_close("padded yuyv422", &rgb, &reference);
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

#[test]
fn mjpeg_with_and_without_huffman_tables_matches_ffmpeg() {
    let dir = util::tempdir();
    let jpg = dir.path().join("frame.jpg");
    // `-huffman default`: the standard tables of T.81 K.3, which is what a camera that omits the
    // DHT segment means (ffmpeg's default would optimise them per frame).
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc=size={W}x{H}:rate=1"),
        "-frames:v",
        "1",
        "-pix_fmt",
        "yuvj422p",
        "-c:v",
        "mjpeg",
        "-huffman",
        "default",
        "-q:v",
        "2",
        jpg.to_str().expect("utf-8 path"),
    ]);
    let reference = ffmpeg(&[
        "-i",
        jpg.to_str().expect("utf-8 path"),
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]);
    let full = std::fs::read(&jpg).expect("jpeg");
    let bare = strip_huffman_tables(&full);
    assert!(mjpeg::has_huffman_tables(&full));
    assert!(!mjpeg::has_huffman_tables(&bare), "tables were stripped");
    assert!(bare.len() < full.len());
    let mut scratch = mjpeg::Scratch::default();
    for (what, data) in [("mjpeg", &full), ("mjpeg without DHT", &bare)] {
        let mut frame = Frame::default();
        mjpeg::decode_frame(data, W, H, &mut scratch, &mut frame).expect("decodes");
        assert_eq!(
            frame.format.name(),
            "yuvj422p",
            "{what}: the camera's own layout"
        );
        let mut rgb = Vec::new();
        frame.to_rgb(&mut rgb).expect("a whole frame");
        assert_eq!(rgb.len(), (W * H * 3) as usize);
        assert_close(what, &rgb, &reference);
    }
}

/// A camera that can be unplugged: while unplugged, reads fail with ENODEV and opens with ENOENT.
#[derive(Default)]
struct Cam {
    plugged: bool,
    opens: u32,
    served: u64,
    /// When each open was attempted while unplugged.
    failed_at: Vec<std::time::Instant>,
}

struct FakeOpener(Arc<Mutex<Cam>>);
struct FakeDevice(Arc<Mutex<Cam>>);

impl Opener for FakeOpener {
    fn open(&mut self, _path: &Path) -> io::Result<Box<dyn Device>> {
        let mut c = self.0.lock().expect("cam");
        if !c.plugged {
            c.failed_at.push(std::time::Instant::now());
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        c.opens += 1;
        Ok(Box::new(FakeDevice(Arc::clone(&self.0))))
    }
}

impl Device for FakeDevice {
    fn formats(&mut self) -> io::Result<Vec<FourCc>> {
        Ok(vec![convert::MJPG, convert::YUYV])
    }

    fn start(
        &mut self,
        fourcc: FourCc,
        _size: (u32, u32),
        _fps: Option<f64>,
    ) -> io::Result<Granted> {
        // Like a driver, grant the closest size it has: 8x2.
        Ok(Granted {
            fourcc,
            width: 8,
            height: 2,
            stride: 16,
            fps: Some(60.0),
        })
    }

    fn next(
        &mut self,
        _timeout: Duration,
        f: &mut dyn FnMut(&[u8], Option<MonoTime>),
    ) -> io::Result<bool> {
        let mut c = self.0.lock().expect("cam");
        if !c.plugged {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        }
        c.served += 1;
        // Mid grey, neutral chroma; the driver stamps it 1 ms ago.
        let frame = [128u8; 32];
        f(
            &frame,
            Some(MonoTime::from_nanos(MonoTime::now().as_nanos() - 1_000_000)),
        );
        Ok(true)
    }
}

#[test]
fn negotiation_takes_what_the_driver_grants() {
    let cam = Arc::new(Mutex::new(Cam {
        plugged: true,
        ..Cam::default()
    }));
    let req = Request {
        format: None,
        size: (640, 480),
        fps: Some(60.0),
    };
    let src = V4l2Source::open_with(
        Box::new(FakeOpener(cam)),
        Path::new("/dev/video0"),
        "v4l2:///dev/video0",
        req,
    )
    .expect("opens");
    let g = src.granted();
    assert_eq!(g.fourcc, convert::YUYV, "raw YUYV preferred over MJPEG");
    assert_eq!((g.width, g.height), (8, 2));
    let info = src.info();
    assert_eq!((info.width, info.height, info.fps), (8, 2, Some(60.0)));
    let req = Request {
        format: Some(convert::NV12),
        ..req
    };
    let cam = Arc::new(Mutex::new(Cam {
        plugged: true,
        ..Cam::default()
    }));
    match V4l2Source::open_with(
        Box::new(FakeOpener(cam)),
        Path::new("/dev/video0"),
        "cam",
        req,
    ) {
        Err(e) => assert!(e.to_string().contains("does not offer NV12"), "{e}"),
        Ok(_) => panic!("NV12 is not offered"),
    }
}

#[test]
fn unplugged_camera_reconnects_and_counters_stay_consistent() {
    let cam = Arc::new(Mutex::new(Cam {
        plugged: true,
        ..Cam::default()
    }));
    let req = Request {
        format: Some(convert::YUYV),
        size: (8, 2),
        fps: Some(60.0),
    };
    let mut src = V4l2Source::open_with(
        Box::new(FakeOpener(Arc::clone(&cam))),
        Path::new("/dev/video0"),
        "v4l2:///dev/video0",
        req,
    )
    .expect("opens")
    .with_backoff(Duration::from_millis(5), Duration::from_millis(40));
    let slot = FrameSlot::new(8, 2);
    let mut buf = slot.buffer();
    let mut held: Option<Frame> = None;
    let mut seq = 0;
    let mut step = |src: &mut V4l2Source| -> Capture {
        let c = src
            .next(&mut buf, Duration::from_millis(10))
            .expect("no hard error");
        if c == Capture::Frame {
            seq += 1;
            buf.seq = seq;
            let mut rgb = Vec::new();
            buf.to_rgb(&mut rgb).expect("a whole YUYV frame");
            assert_eq!(&rgb[..3], &[130, 130, 130], "limited grey 128 -> 130");
            assert!(MonoTime::now().saturating_since(buf.captured_at) >= Duration::from_millis(1));
            buf = slot.publish(std::mem::take(&mut buf));
            if seq % 2 == 0
                && let Take::Frame(f) = slot.take(held.take(), Duration::ZERO)
            {
                slot.finish(Outcome::OnTime);
                held = Some(f);
            }
        }
        c
    };
    for _ in 0..5 {
        assert_eq!(step(&mut src), Capture::Frame);
    }
    cam.lock().expect("cam").plugged = false;
    assert_eq!(step(&mut src), Capture::Timeout);
    assert!(!src.connected(), "unplugged");
    for _ in 0..5 {
        assert_eq!(
            step(&mut src),
            Capture::Timeout,
            "no frames while unplugged"
        );
    }
    assert!(!src.connected());
    // Reopen attempts 5, 10, 20, 40, 40 ms apart (1 s doubling to 30 s on a board): never sooner.
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_millis(160) {
        assert_eq!(step(&mut src), Capture::Timeout);
    }
    {
        let c = cam.lock().expect("cam");
        assert!(c.failed_at.len() >= 3, "{:?}", c.failed_at);
        for (i, w) in c.failed_at.windows(2).enumerate() {
            let want = Duration::from_millis((10u64 << i).min(40));
            assert!(
                w[1] - w[0] >= want,
                "retry {} came after {:?}, not {want:?}",
                i + 2,
                w[1] - w[0]
            );
        }
    }
    cam.lock().expect("cam").plugged = true;
    let mut resumed = 0;
    for _ in 0..200 {
        if step(&mut src) == Capture::Frame {
            resumed += 1;
            if resumed == 5 {
                break;
            }
        }
    }
    assert_eq!(resumed, 5, "frames resume after the camera returns");
    assert!(src.connected());
    assert_eq!(src.disconnects(), 1, "one loss, one state change");
    assert_eq!(
        cam.lock().expect("cam").opens,
        2,
        "opened at start and once more"
    );
    let c = slot.counters();
    assert_eq!(c.captured, 10);
    assert_eq!(
        c.captured,
        c.processed + c.dropped + c.cancelled + c.in_flight
    );
}

/// The fake V4L2 camera library (`cpp/fake_v4l2/fake_v4l2.c`), compiled on first use.
fn fake_camera() -> std::path::PathBuf {
    static LIB: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    LIB.get_or_init(|| {
        util::compile_shared(
            "cpp/fake_v4l2/fake_v4l2.c",
            "fake_v4l2",
            "libfake_v4l2.so",
            &["-ldl", "-lpthread"],
        )
    })
    .clone()
}

#[test]
fn timed_the_daemon_streams_from_a_camera_and_rides_out_an_unplug() {
    let dir = util::tempdir();
    let model = util::zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let state = dir.path().join("camera-state");
    let plug = |s: &str| std::fs::write(&state, s).expect("write the camera's state");
    plug("plugged");
    let sock = dir.path().join("s.sock");
    // 65x49 is not a size the camera has: the driver grants 64x48, and the daemon runs with it.
    let uri = "v4l2:///dev/video42?size=65x49&fps=30&format=YUYV";
    let child = util::rtinfer_timed()
        .args(["run", "--source", uri, "--warmup", "1", "--socket"])
        .arg(&sock)
        .arg("--model")
        .arg(&model)
        .env("LD_PRELOAD", fake_camera())
        .env("FAKE_V4L2_DEVICE", "/dev/video42")
        .env("FAKE_V4L2_STATE", &state)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the daemon");
    assert!(util::wait_for(&sock, 20.0), "socket never appeared");
    let frames = |v: &serde_json::Value, k: &str| v["frames"][k].as_u64().unwrap_or(0);
    let v = util::status_until(&sock, 20.0, |v| {
        frames(v, "processed") > 10 && v["state"] == "running"
    });
    assert!(frames(&v, "processed") > 10, "frames flow: {v}");
    if let Err(e) = util::stages_add_up(&v) {
        panic!("camera stages: {e}: {}", v["latency_ms_lifetime"]);
    }
    let s = &v["source"];
    assert_eq!(
        (s["width"].as_u64(), s["height"].as_u64()),
        (Some(64), Some(48)),
        "{v}"
    );
    assert_eq!(s["fps"].as_f64(), Some(30.0), "{v}");
    assert_eq!(s["connected"], true, "{v}");

    plug("unplugged");
    let v = util::status_until(&sock, 10.0, |v| {
        v["state"] == "degraded" && v["source"]["connected"] == false
    });
    assert_eq!(v["state"], "degraded", "unplug noticed: {v}");
    assert_eq!(v["source"]["connected"], false, "{v}");
    std::thread::sleep(Duration::from_millis(700));
    let still = util::status_until(&sock, 1.0, |_| true);
    assert_eq!(
        frames(&still, "captured"),
        frames(&v, "captured"),
        "no frames while unplugged: {still}"
    );

    plug("plugged");
    let before = frames(&still, "captured");
    let v = util::status_until(&sock, 20.0, |v| {
        v["state"] == "running"
            && v["source"]["connected"] == true
            && frames(v, "captured") > before + 10
    });
    assert_eq!(v["state"], "running", "replug noticed: {v}");
    assert!(frames(&v, "captured") > before + 10, "frames again: {v}");
    assert!(util::counters_add_up(&v), "{v}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let out = child.wait_with_output().expect("the daemon exits");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("asked 65x49 @30 YUYV, granted 64x48 at 30.00 FPS YUYV"),
        "{err}"
    );
    let count = |needle: &str| err.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("camera lost"), 1, "one line when lost: {err}");
    assert_eq!(count("camera back"), 1, "one line when back: {err}");
    assert_eq!(count("disconnected; state degraded"), 1, "{err}");
    assert_eq!(count("frames flow again; state running"), 1, "{err}");
}
