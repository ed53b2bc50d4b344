//! How long preprocessing takes per frame, against the 16.67 ms budget, and next to
//! `fast_image_resize` (which the module does not use per frame because it allocates on every
//! call): `cargo bench --bench preprocess`. Prints median and p99 per call; asserts nothing.

use std::hint::black_box;
use std::time::{Duration, Instant};

use fast_image_resize as fr;
use rtinfer::preprocess::{Filter, PreprocessOptions, Preprocessor, ResizeMode};
use rtinfer::source::Frame;
use rtinfer::stats::{FrameTimes, LatencyStats};
use rtinfer::tensor::{InputBufMut, InputElement, InputSpec, Layout};
use rtinfer::time::MonoTime;

const ITERATIONS: usize = 300;

/// Median and p99 of `ITERATIONS` calls of `f`, after a few warm-up calls.
fn time(label: &str, mut f: impl FnMut()) {
    for _ in 0..10 {
        f();
    }
    let mut samples: Vec<Duration> = (0..ITERATIONS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p99 = samples[ITERATIONS * 99 / 100];
    println!(
        "{label:<58} median {:7.3} ms   p99 {:7.3} ms",
        ms(samples[ITERATIONS / 2]),
        ms(p99)
    );
}

fn camera_frame(width: u32, height: u32) -> Frame {
    let mut f = Frame::rgb24(width, height);
    for (i, b) in f.data.iter_mut().enumerate() {
        *b = ((i * 7) % 251) as u8;
    }
    f
}

fn bench_preprocessor(frame: &Frame, spec: InputSpec, resize: ResizeMode, filter: Filter) {
    let opts = PreprocessOptions {
        resize,
        filter,
        ..PreprocessOptions::default()
    };
    let Ok(mut p) = Preprocessor::new(spec, opts) else {
        return;
    };
    let mut f32_out = vec![0.0f32; spec.len()];
    let mut i8_out = vec![0i8; spec.len()];
    let label = format!(
        "{}x{} -> {}x{}x{} {:?} {} {resize} {filter}",
        frame.width,
        frame.height,
        spec.width,
        spec.height,
        spec.channels,
        spec.layout,
        match spec.element {
            InputElement::F32 => "f32",
            InputElement::I8 { .. } => "int8",
        }
    );
    time(&label, || {
        let out = match spec.element {
            InputElement::F32 => InputBufMut::F32(&mut f32_out),
            InputElement::I8 { .. } => InputBufMut::I8(&mut i8_out),
        };
        let _ = black_box(p.run(black_box(frame), out));
    });
}

fn bench_fast_image_resize(frame: &Frame, width: u32, height: u32) {
    let Ok(src) =
        fr::images::ImageRef::new(frame.width, frame.height, &frame.data, fr::PixelType::U8x3)
    else {
        return;
    };
    let mut dst = fr::images::Image::new(width, height, fr::PixelType::U8x3);
    let mut resizer = fr::Resizer::new();
    let options =
        fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear));
    let label = format!(
        "fast_image_resize {}x{} -> {width}x{height} resize only",
        frame.width, frame.height
    );
    time(&label, || {
        let _ = black_box(resizer.resize(&src, &mut dst, &options));
    });
}

fn main() {
    let spec = |w, h, channels, layout, element| InputSpec {
        width: w,
        height: h,
        channels,
        layout,
        element,
    };
    let f32_nchw = |w, h| spec(w, h, 3, Layout::Nchw, InputElement::F32);
    for (fw, fh) in [(640, 480), (1280, 720)] {
        let frame = camera_frame(fw, fh);
        for mode in [
            ResizeMode::Stretch,
            ResizeMode::CenterCrop,
            ResizeMode::Letterbox,
        ] {
            bench_preprocessor(&frame, f32_nchw(224, 224), mode, Filter::Bilinear);
        }
        bench_preprocessor(
            &frame,
            f32_nchw(32, 32),
            ResizeMode::Stretch,
            Filter::Bilinear,
        );
        bench_preprocessor(
            &frame,
            f32_nchw(224, 224),
            ResizeMode::Stretch,
            Filter::Lanczos3,
        );
        bench_preprocessor(
            &frame,
            f32_nchw(224, 224),
            ResizeMode::Stretch,
            Filter::Nearest,
        );
        let int8 = spec(224, 224, 3, Layout::Nhwc, InputElement::I8 { scale: 32.0 });
        bench_preprocessor(&frame, int8, ResizeMode::Stretch, Filter::Bilinear);
        bench_fast_image_resize(&frame, 224, 224);
        bench_fast_image_resize(&frame, 32, 32);
    }
    let same = camera_frame(224, 224);
    bench_preprocessor(
        &same,
        f32_nchw(224, 224),
        ResizeMode::Stretch,
        Filter::Bilinear,
    );

    let mut stats = LatencyStats::default();
    let mut t = 0u64;
    let sample = FrameTimes {
        end_to_end: Duration::from_micros(8_000),
        ..FrameTimes::default()
    };
    time("LatencyStats::record (one frame, 4 stages)", || {
        t += 16_666_667;
        stats.record(MonoTime::from_nanos(t), black_box(&sample));
    });
    time("LatencyStats::summary (window + lifetime)", || {
        black_box(stats.summary(MonoTime::from_nanos(t)));
    });
}
