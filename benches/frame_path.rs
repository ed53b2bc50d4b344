//! The whole frame path, source frame -> model tensor: YUYV, I420 and NV12 camera frames at
//! 640x480, 1280x720 and 1920x1080 into 224x224 and 32x32 NCHW f32 (stretch and letterbox),
//! plus RGB frames for comparison. Prints the median and p99 of the thread CPU time per frame;
//! asserts nothing.
//!
//! `cargo bench --bench frame_path` draws its own frames; `scripts/bench_frame_path.sh` feeds
//! it ffmpeg's `testsrc2` frames (`FRAME_DIR`, files `FORMAT_WxH.raw`) and runs OpenCV on the same
//! files in the same run for the ratio. `BENCH_ISA=sse4.1` (or `scalar`, `avx2`, `neon`) picks
//! the kernels' instruction set; `BENCH_ITERATIONS` the sample count (default 300);
//! `BENCH_FILTER` a substring of the case names to run. Each line ends with a hash of the tensor
//! (FNV-1a over the f32 bits): every instruction set, on x86_64 and on aarch64, must print the
//! same hashes for the same frames (`scripts/cross.sh` compares them).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use rtinfer::preprocess::{Isa, PreprocessOptions, Preprocessor, ResizeMode};
use rtinfer::source::{Frame, PixelFormat};
use rtinfer::tensor::{InputBufMut, InputElement, InputSpec, Layout};

/// CPU time of this thread (what the frame costs, whatever else the machine runs).
fn thread_time() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("thread CPU clock");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// Median and p99 of `iterations` calls of `f` in ms, after a few warm-up calls.
fn time(iterations: usize, mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..10 {
        f();
    }
    let mut samples: Vec<Duration> = (0..iterations)
        .map(|_| {
            let t = thread_time();
            f();
            thread_time() - t
        })
        .collect();
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(samples[iterations / 2]),
        ms(samples[(iterations * 99 / 100).min(iterations - 1)]),
    )
}

/// A frame of `format`: from `FRAME_DIR` when the script made one, else drawn here (a texture
/// with sharp edges in every plane, so no kernel sees constant input).
fn frame(name: &str, format: PixelFormat, width: u32, height: u32) -> Frame {
    let mut f = Frame::default();
    f.set_format(format, width, height);
    if let Ok(dir) = std::env::var("FRAME_DIR") {
        let path = PathBuf::from(dir).join(format!("{name}_{width}x{height}.raw"));
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(data.len(), f.data.len(), "{}", path.display());
        f.data.copy_from_slice(&data);
    } else {
        for (i, b) in f.data.iter_mut().enumerate() {
            let (x, y) = (i % 1031, i / 1031);
            *b = ((x * 7 + y * 13) % 251) as u8 ^ if (x / 9 + y / 7) % 2 == 0 { 0 } else { 96 };
        }
    }
    f.seq = 1;
    f
}

/// FNV-1a over the bits of the tensor's values.
fn fnv(values: &[f32]) -> u64 {
    values
        .iter()
        .flat_map(|v| v.to_bits().to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// Capture-side decoding of MJPEG frames (4:2:2, as USB cameras send them), from `FRAME_DIR`
/// (`mjpeg_WxH.jpg`, made by the script with ffmpeg) or encoded here: our decoder at full size
/// and at each DCT scale, zune-jpeg (the fallback), and the whole path into a 224x224 NCHW f32
/// tensor (stretch) from the full and from the scaled decode (the scale the capture thread picks
/// for a 224x224 model).
fn bench_mjpeg(iterations: usize, filter: &str, isa: Isa) {
    use rtinfer::source::v4l2::mjpeg;
    for (w, h) in [(640, 480), (1280, 720), (1920, 1080)] {
        let jpeg = match std::env::var("FRAME_DIR") {
            Ok(dir) => {
                let path = PathBuf::from(dir).join(format!("mjpeg_{w}x{h}.jpg"));
                std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            }
            Err(_) => {
                let rgb = frame("rgb24", PixelFormat::Rgb24, w, h);
                let mut out = Vec::new();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
                    .encode(&rgb.data, w, h, image::ExtendedColorType::Rgb8)
                    .expect("encode a JPEG");
                out
            }
        };
        let for_224 = mjpeg::scale_for(w, h, Some((224, 224)));
        let mut cases: Vec<(String, u32, bool)> =
            vec![(format!("mjpeg {w}x{h} decode full"), 1, false)];
        for k in [2, 4, 8] {
            cases.push((format!("mjpeg {w}x{h} decode 1/{k}"), k, false));
        }
        cases.push((format!("mjpeg {w}x{h} decode zune"), 0, false));
        cases.push((format!("mjpeg {w}x{h} 224x224 full"), 1, true));
        cases.push((format!("mjpeg {w}x{h} 224x224 1/{for_224}"), for_224, true));
        let spec = InputSpec {
            width: 224,
            height: 224,
            channels: 3,
            layout: Layout::Nchw,
            element: InputElement::F32,
        };
        for (case, k, to_tensor) in cases {
            if !case.contains(filter) {
                continue;
            }
            let mut f = Frame::default();
            let mut scratch = mjpeg::Scratch::default();
            scratch.set_min_size((k > 1).then(|| (w.div_ceil(k), h.div_ceil(k))));
            let mut p = Preprocessor::new(spec, PreprocessOptions::default())
                .expect("valid spec")
                .with_isa(isa);
            let mut out = vec![0f32; spec.len()];
            let (median, p99) = time(iterations, || {
                if k == 0 {
                    mjpeg::decode_general(black_box(&jpeg), w, h, &mut scratch, &mut f)
                } else {
                    mjpeg::decode_frame(black_box(&jpeg), w, h, &mut scratch, &mut f)
                }
                .expect("decodes");
                if to_tensor {
                    f.seq = 1;
                    p.run(&f, InputBufMut::F32(&mut out)).expect("preprocess");
                }
                black_box(&f);
            });
            println!(
                "case {case:<40} median_ms {median:8.4} p99_ms {p99:8.4} frame {} {}x{}",
                f.format, f.width, f.height
            );
        }
    }
}

fn main() {
    let iterations: usize = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let isa = match std::env::var("BENCH_ISA") {
        Ok(name) => Isa::named(&name).unwrap_or_else(|| panic!("this CPU has no {name}")),
        Err(_) => Isa::best(),
    };
    let filter = std::env::var("BENCH_FILTER").unwrap_or_default();
    println!("# rtinfer frame path, kernels: {}", isa.name());
    bench_mjpeg(iterations.min(100), &filter, isa);
    let formats = [
        ("yuyv422", PixelFormat::Yuyv),
        ("yuv420p", PixelFormat::I420),
        ("nv12", PixelFormat::Nv12),
        ("rgb24", PixelFormat::Rgb24),
    ];
    for (name, format) in formats {
        for (w, h) in [(640, 480), (1280, 720), (1920, 1080)] {
            let f = frame(name, format, w, h);
            for side in [224, 32] {
                for mode in [ResizeMode::Stretch, ResizeMode::Letterbox] {
                    let case = format!("{name} {w}x{h} {side}x{side} {mode}");
                    if !case.contains(&filter) {
                        continue;
                    }
                    let spec = InputSpec {
                        width: side,
                        height: side,
                        channels: 3,
                        layout: Layout::Nchw,
                        element: InputElement::F32,
                    };
                    let opts = PreprocessOptions {
                        resize: mode,
                        ..PreprocessOptions::default()
                    };
                    let mut p = Preprocessor::new(spec, opts)
                        .expect("valid spec")
                        .with_isa(isa);
                    let mut out = vec![0f32; spec.len()];
                    let (median, p99) = time(iterations, || {
                        p.run(black_box(&f), InputBufMut::F32(&mut out))
                            .expect("preprocess");
                        black_box(&out);
                    });
                    println!(
                        "case {case:<40} median_ms {median:8.4} p99_ms {p99:8.4} tensor {:016x}",
                        fnv(&out)
                    );
                }
            }
        }
    }
}
