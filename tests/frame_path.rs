//! Preprocessing from the sources' own layouts (YUYV, UYVY, NV12, planar 4:2:0 / 4:2:2 / 4:4:4 /
//! 4:1:1, full-range 4:2:0, grey, BGR) against what it replaced: the whole frame converted to RGB
//! the way ffmpeg converts it, then resized by `fast_image_resize`'s bilinear convolution
//! (Pillow's antialiased bilinear).
//!
//! Resizing before converting is the same computation, both being linear, except for the clip to
//! 0..=255: converting first clips every full-resolution pixel, resizing first clips the small
//! picture. They differ where a frame holds colours outside the RGB gamut, which subsampled
//! chroma makes at sharp edges between saturated colours (a pixel pair sharing a red/green
//! chroma sample). So the exact check is against the reference with the clip moved to the end
//! (convert without clipping, resize in f32, clip): within 1 level everywhere. Against the
//! clipping reference itself: within 1 level where there is nothing to clip (RGB, grey),
//! and the difference elsewhere is bounded and reported.
//!
//! Frames are ffmpeg's `testsrc2` drawn in RGB and converted by ffmpeg to each layout
//! (`ffmpeg -f lavfi -i testsrc2=size=WxH,format=rgb24 -frames:v 1 -pix_fmt P -f rawvideo -`):
//! colour bars, a gradient band, text and colour noise, what a camera or a decoder sends.

use std::process::Command;

use fast_image_resize as fr;
use rtinfer::preprocess::{Align, Filter, Isa, PreprocessOptions, Preprocessor, ResizeMode};
use rtinfer::source::color::{Chroma, ColorRange};
use rtinfer::source::{Frame, PixelFormat};
use rtinfer::tensor::{InputBufMut, InputElement, InputSpec, Layout};

/// Every layout a source delivers, with ffmpeg's name for it.
const LAYOUTS: [(&str, PixelFormat); 10] = [
    ("yuyv422", PixelFormat::Yuyv),
    ("uyvy422", PixelFormat::Uyvy),
    ("nv12", PixelFormat::Nv12),
    ("yuv420p", PixelFormat::I420),
    (
        "yuvj420p",
        PixelFormat::Yuv {
            chroma: Chroma::C420,
            range: ColorRange::Full,
        },
    ),
    (
        "yuv422p",
        PixelFormat::Yuv {
            chroma: Chroma::C422,
            range: ColorRange::Limited,
        },
    ),
    (
        "yuv444p",
        PixelFormat::Yuv {
            chroma: Chroma::C444,
            range: ColorRange::Limited,
        },
    ),
    (
        "yuv411p",
        PixelFormat::Yuv {
            chroma: Chroma::C411,
            range: ColorRange::Limited,
        },
    ),
    (
        "gray",
        PixelFormat::Yuv {
            chroma: Chroma::Mono,
            range: ColorRange::Full,
        },
    ),
    ("bgr24", PixelFormat::Bgr24),
];

/// One `testsrc2` frame of `width x height` in ffmpeg's `pix_fmt`, as a frame of `format`.
fn testsrc2(pix_fmt: &str, format: PixelFormat, width: u32, height: u32) -> Frame {
    let out = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-f",
            "lavfi",
        ])
        .args([
            "-i",
            &format!("testsrc2=size={width}x{height}:rate=1,format=rgb24"),
        ])
        .args(["-frames:v", "1", "-pix_fmt", pix_fmt, "-f", "rawvideo", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut f = Frame::default();
    f.set_format(format, width, height);
    assert_eq!(out.stdout.len(), f.data.len(), "{pix_fmt} {width}x{height}");
    f.data.copy_from_slice(&out.stdout);
    f.seq = 1;
    f
}

fn spec(width: u32, height: u32) -> InputSpec {
    InputSpec {
        width,
        height,
        channels: 3,
        layout: Layout::Nchw,
        element: InputElement::F32,
    }
}

/// `v / 255`, so the output reads back as RGB8 exactly.
fn identity(resize: ResizeMode) -> PreprocessOptions {
    PreprocessOptions {
        resize,
        mean: [0.0; 3],
        std: [1.0; 3],
        ..PreprocessOptions::default()
    }
}

fn run(p: &mut Preprocessor, f: &Frame) -> Vec<f32> {
    let mut out = vec![f32::NAN; p.spec().len()];
    p.run(f, InputBufMut::F32(&mut out)).expect("preprocess");
    out
}

/// The region `(x, y, w, h)` of an NCHW `v / 255` tensor as packed RGB8.
fn region_rgb(out: &[f32], width: u32, height: u32, r: (u32, u32, u32, u32)) -> Vec<u8> {
    let plane = (width * height) as usize;
    let mut rgb = Vec::with_capacity((r.2 * r.3 * 3) as usize);
    for y in r.1..r.1 + r.3 {
        for x in r.0..r.0 + r.2 {
            for c in 0..3 {
                let v = out[c * plane + (y * width + x) as usize];
                rgb.push((v * 255.0).round() as u8);
            }
        }
    }
    rgb
}

/// The reference: the whole frame converted (`rgb`, from `Frame::to_rgb`), then resized
/// (centred crop for `CenterCrop`).
fn reference(f: &Frame, rgb: &[u8], width: u32, height: u32, resize: ResizeMode) -> Vec<u8> {
    let src = fr::images::ImageRef::new(f.width, f.height, rgb, fr::PixelType::U8x3)
        .expect("source image");
    let mut dst = fr::images::Image::new(width, height, fr::PixelType::U8x3);
    let mut options =
        fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear));
    if resize == ResizeMode::CenterCrop {
        options = options.fit_into_destination(Some((0.5, 0.5)));
    }
    fr::Resizer::new()
        .resize(&src, &mut dst, &options)
        .expect("reference resize");
    dst.into_vec()
}

/// The Keys cubic (a = -0.6) swscale interpolates NV12 rows and 4:1:1 columns with.
fn keys(x: f64) -> f64 {
    let (a, x) = (-0.6, x.abs());
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// `row[pos]` by the 4-tap cubic, edges clamped.
fn cubic(row: impl Fn(usize) -> f64, len: usize, pos: f64) -> f64 {
    let i0 = pos.floor() as isize;
    (-1..=2)
        .map(|k| {
            let i = (i0 + k).clamp(0, len as isize - 1) as usize;
            row(i) * keys(pos - (i0 + k) as f64)
        })
        .sum()
}

/// Y, Cb, Cr of pixel `(x, y)` with chroma spread over full resolution as ffmpeg spreads it
/// (each sample over its block; NV12 rows and 4:1:1 columns by the cubic), written out per
/// layout independently of the crate's tables.
fn ycbcr(f: &Frame, x: usize, y: usize) -> [f64; 3] {
    let (w, h) = (f.width as usize, f.height as usize);
    let d = |i: usize| f64::from(f.data[i]);
    let (cw2, ch2) = (w.div_ceil(2), h.div_ceil(2));
    match f.format {
        PixelFormat::Yuyv => {
            let m = y * cw2 * 4 + (x / 2) * 4;
            [d(m + (x % 2) * 2), d(m + 1), d(m + 3)]
        }
        PixelFormat::Uyvy => {
            let m = y * cw2 * 4 + (x / 2) * 4;
            [d(m + 1 + (x % 2) * 2), d(m), d(m + 2)]
        }
        PixelFormat::Nv12 => {
            let pos = (y as f64 + 0.5) * (ch2 as f64 / h as f64) - 0.5;
            let c = |k: usize| cubic(|r| d(w * h + r * cw2 * 2 + (x / 2) * 2 + k), ch2, pos);
            [d(y * w + x), c(0), c(1)]
        }
        PixelFormat::Yuv { chroma, .. } => {
            let luma = d(y * w + x);
            let plane = chroma.chroma_plane_len(f.width, f.height);
            let (cb, cr) = (w * h, w * h + plane);
            let at = |p: usize, i: usize| d(p + i);
            match chroma {
                Chroma::Mono => [luma, 128.0, 128.0],
                Chroma::C420 => {
                    let i = (y / 2) * cw2 + x / 2;
                    [luma, at(cb, i), at(cr, i)]
                }
                Chroma::C422 => {
                    let i = y * cw2 + x / 2;
                    [luma, at(cb, i), at(cr, i)]
                }
                Chroma::C444 => [luma, at(cb, y * w + x), at(cr, y * w + x)],
                Chroma::C411 => {
                    let cw = w.div_ceil(4);
                    let pos = ((x / 2) as f64 + 0.5) * (cw as f64 / cw2 as f64) - 0.5;
                    let c = |p: usize| cubic(|i| at(p, y * cw + i), cw, pos);
                    [luma, c(cb), c(cr)]
                }
            }
        }
        PixelFormat::Rgb24 | PixelFormat::Bgr24 => unreachable!("RGB frames have no chroma"),
    }
}

/// The whole frame converted to RGB with BT.601 in f32, **without** clipping.
fn unclipped_rgb(f: &Frame) -> Vec<f32> {
    let (w, h) = (f.width as usize, f.height as usize);
    let mut rgb = Vec::with_capacity(w * h * 3);
    let (full, grey) = match f.format {
        PixelFormat::Rgb24 | PixelFormat::Bgr24 => {
            let bgr = f.format == PixelFormat::Bgr24;
            for px in f.data.chunks_exact(3) {
                let px = if bgr {
                    [px[2], px[1], px[0]]
                } else {
                    [px[0], px[1], px[2]]
                };
                rgb.extend(px.map(f32::from));
            }
            return rgb;
        }
        PixelFormat::Yuv { chroma, range } => (range == ColorRange::Full, chroma == Chroma::Mono),
        _ => (false, false),
    };
    let (y0, ky, kc) = if full {
        (0.0, 1.0, 1.0)
    } else {
        (16.0, 255.0 / 219.0, 255.0 / 224.0)
    };
    for y in 0..h {
        for x in 0..w {
            let [l, cb, cr] = ycbcr(f, x, y);
            let luma = ky * (l - y0);
            let (u, v) = if grey {
                (0.0, 0.0)
            } else {
                (kc * (cb - 128.0), kc * (cr - 128.0))
            };
            rgb.push((luma + 1.402 * v) as f32);
            rgb.push((luma - 0.344_136 * u - 0.714_136 * v) as f32);
            rgb.push((luma + 1.772 * u) as f32);
        }
    }
    rgb
}

/// The reference with the clip at the end: the unclipped conversion (`bytes`, native-endian
/// f32 from [`unclipped_rgb`]) resized in f32, then clipped.
fn reference_clip_last(
    f: &Frame,
    bytes: &[u8],
    width: u32,
    height: u32,
    resize: ResizeMode,
) -> Vec<u8> {
    let src = fr::images::ImageRef::new(f.width, f.height, bytes, fr::PixelType::F32x3)
        .expect("source image");
    let mut dst = fr::images::Image::new(width, height, fr::PixelType::F32x3);
    let mut options =
        fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear));
    if resize == ResizeMode::CenterCrop {
        options = options.fit_into_destination(Some((0.5, 0.5)));
    }
    fr::Resizer::new()
        .resize(&src, &mut dst, &options)
        .expect("reference resize");
    dst.into_vec()
        .chunks_exact(4)
        .map(|b| {
            f32::from_ne_bytes([b[0], b[1], b[2], b[3]])
                .round()
                .clamp(0.0, 255.0) as u8
        })
        .collect()
}

/// Largest and mean absolute difference.
fn diff(a: &[u8], b: &[u8]) -> (u8, f64) {
    assert_eq!(a.len(), b.len());
    let max = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max();
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    (max.unwrap_or(0), sum as f64 / a.len() as f64)
}

/// Every layout into 32x32, 224x168 and 150x150 (down and up), stretched, cropped and
/// letterboxed, from a QVGA frame and a small odd-sized one.
#[test]
fn every_layout_matches_converting_then_resizing() {
    let mut clip_first = Vec::new();
    for (pix_fmt, format) in LAYOUTS {
        // Odd sizes where the layout allows them (chroma blocks cut by the edge).
        let packed = matches!(
            format,
            PixelFormat::Yuyv | PixelFormat::Uyvy | PixelFormat::Nv12
        );
        let small = if packed { (98, 62) } else { (97, 61) };
        for (w, h) in [(320, 240), small] {
            let f = testsrc2(pix_fmt, format, w, h);
            let mut rgb = Vec::new();
            f.to_rgb(&mut rgb).expect("reference conversion");
            let unclipped: Vec<u8> = unclipped_rgb(&f)
                .iter()
                .flat_map(|v| v.to_ne_bytes())
                .collect();
            for (dw, dh) in [(32, 32), (224, 168), (150, 150)] {
                for mode in [
                    ResizeMode::Stretch,
                    ResizeMode::CenterCrop,
                    ResizeMode::Letterbox,
                ] {
                    let mut p = Preprocessor::new(spec(dw, dh), identity(mode)).expect("spec");
                    let out = run(&mut p, &f);
                    let r = p.placement().expect("prepared by run");
                    let ours = region_rgb(&out, dw, dh, r);
                    let what = format!("{pix_fmt} {w}x{h} -> {dw}x{dh} {mode}");
                    let exact = reference_clip_last(&f, &unclipped, r.2, r.3, mode);
                    let (max, mean) = diff(&ours, &exact);
                    assert!(
                        max <= 1 && mean < 0.15,
                        "{what} vs clip-last: max {max}, mean {mean:.3}"
                    );
                    let (max, mean) = diff(&ours, &reference(&f, &rgb, r.2, r.3, mode));
                    let in_gamut = matches!(
                        format,
                        PixelFormat::Bgr24
                            | PixelFormat::Yuv {
                                chroma: Chroma::Mono,
                                ..
                            }
                    );
                    if in_gamut {
                        assert!(
                            max <= 1 && mean < 0.15,
                            "{what} vs convert-first: max {max}, mean {mean:.3}"
                        );
                    }
                    clip_first.push((max, mean, what));
                }
            }
        }
    }
    // Where subsampled chroma leaves the gamut, the two orders of clipping differ: by little on
    // average, by more at single saturated edges.
    let worst_mean = clip_first.iter().map(|c| c.1).fold(0.0, f64::max);
    let worst = clip_first.iter().max_by_key(|c| c.0).expect("cases");
    eprintln!(
        "against converting first: worst max {} levels ({}), worst mean {worst_mean:.3}",
        worst.0, worst.2
    );
    assert!(worst_mean < 2.5, "mean difference {worst_mean:.3} levels");
}

#[test]
fn every_instruction_set_gives_the_same_tensor() {
    let isas = Isa::available();
    for (pix_fmt, format) in LAYOUTS {
        let f = testsrc2(pix_fmt, format, 160, 90);
        // The OpenCV filters and an aligned letterbox change only the plan's weights and
        // placement: the kernels must still agree bit for bit.
        for (mode, filter, align) in [
            (ResizeMode::Stretch, Filter::Bilinear, Align::CENTER),
            (ResizeMode::Letterbox, Filter::Bilinear, Align::CENTER),
            (ResizeMode::Stretch, Filter::BilinearOpenCv, Align::CENTER),
            (
                ResizeMode::Letterbox,
                Filter::NearestOpenCv,
                Align::TOP_LEFT,
            ),
        ] {
            let opts = PreprocessOptions {
                resize: mode,
                filter,
                align,
                ..PreprocessOptions::default()
            };
            let mut reference = Preprocessor::new(spec(64, 48), opts)
                .expect("spec")
                .with_isa(Isa::scalar());
            let want: Vec<u32> = run(&mut reference, &f)
                .iter()
                .map(|v| v.to_bits())
                .collect();
            for &isa in &isas {
                let mut p = Preprocessor::new(spec(64, 48), opts)
                    .expect("spec")
                    .with_isa(isa);
                let got: Vec<u32> = run(&mut p, &f).iter().map(|v| v.to_bits()).collect();
                assert!(
                    got == want,
                    "{pix_fmt} {mode} {filter}: {} differs",
                    isa.name()
                );
            }
        }
    }
}
