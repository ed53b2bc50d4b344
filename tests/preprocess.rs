//! Preprocessing into engine buffers: exact normalisation on same-size frames (derived here from
//! the formula, not from the code), each resize mode against `fast_image_resize` as an
//! independent reference, layouts, int8 quantisation, grey, and error cases.

use fast_image_resize as fr;
use rtinfer::preprocess::{
    ChannelOrder, Fill, Filter, PreprocessError, PreprocessOptions, Preprocessor, ResizeMode,
};
use rtinfer::source::Frame;
use rtinfer::tensor::{InputBufMut, InputElement, InputSpec, Layout};

/// The documented defaults, written out independently of the crate's constants.
const MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
const STD: [f32; 3] = [0.2470, 0.2435, 0.2616];

fn frame(width: u32, height: u32, px: impl Fn(u32, u32) -> [u8; 3]) -> Frame {
    let mut f = Frame::rgb24(width, height);
    f.seq = 7;
    for y in 0..height {
        for x in 0..width {
            let i = ((y * width + x) * 3) as usize;
            f.data[i..i + 3].copy_from_slice(&px(x, y));
        }
    }
    f
}

/// A textured test picture with curvature and sharp edges (a linear gradient would pass through
/// any symmetric kernel unchanged and prove nothing about the weights).
fn textured(width: u32, height: u32) -> Frame {
    frame(width, height, |x, y| {
        let (fx, fy) = (x as f32, y as f32);
        [
            (128.0 + 100.0 * (fx / 3.0).sin()) as u8,
            (128.0 + 100.0 * (fy / 4.0 + fx / 7.0).cos()) as u8,
            if (x / 5 + y / 5) % 2 == 0 { 230 } else { 20 },
        ]
    })
}

fn spec(
    width: u32,
    height: u32,
    channels: u32,
    layout: Layout,
    element: InputElement,
) -> InputSpec {
    InputSpec {
        width,
        height,
        channels,
        layout,
        element,
    }
}

/// Options whose normalisation is `v / 255`, so the resized RGB8 can be read back exactly.
fn identity_norm(resize: ResizeMode) -> PreprocessOptions {
    PreprocessOptions {
        resize,
        mean: [0.0; 3],
        std: [1.0; 3],
        ..PreprocessOptions::default()
    }
}

fn run_f32(p: &mut Preprocessor, f: &Frame) -> Vec<f32> {
    let mut out = vec![f32::NAN; p.spec().len()];
    p.run(f, InputBufMut::F32(&mut out)).expect("preprocess");
    out
}

/// NCHW f32 of `v / 255` back to packed RGB8.
fn nchw_to_rgb(out: &[f32], width: u32, height: u32) -> Vec<u8> {
    let hw = (width * height) as usize;
    let mut rgb = vec![0; hw * 3];
    for i in 0..hw {
        for c in 0..3 {
            rgb[i * 3 + c] = (out[c * hw + i] * 255.0).round() as u8;
        }
    }
    rgb
}

fn reference_resize(src: &Frame, width: u32, height: u32, options: fr::ResizeOptions) -> Vec<u8> {
    let src_img = fr::images::ImageRef::new(src.width, src.height, &src.data, fr::PixelType::U8x3)
        .expect("src image");
    let mut dst = fr::images::Image::new(width, height, fr::PixelType::U8x3);
    let options = options.resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear));
    fr::Resizer::new()
        .resize(&src_img, &mut dst, &options)
        .expect("reference resize");
    dst.into_vec()
}

/// Largest and mean absolute difference of two RGB8 buffers.
fn diff(a: &[u8], b: &[u8]) -> (u8, f64) {
    assert_eq!(a.len(), b.len());
    let max = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0);
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    (max, sum as f64 / a.len() as f64)
}

#[test]
fn same_size_frame_is_normalised_exactly_without_resizing() {
    let f = textured(5, 4);
    let mut p = Preprocessor::new(
        spec(5, 4, 3, Layout::Nchw, InputElement::F32),
        PreprocessOptions::default(),
    )
    .unwrap();
    let out = run_f32(&mut p, &f);
    for c in 0..3 {
        for y in 0..4 {
            for x in 0..5 {
                let v = f.data[((y * 5 + x) * 3 + c) as usize];
                let expected = (v as f32 / 255.0 - MEAN[c as usize]) / STD[c as usize];
                assert_eq!(
                    out[(c * 20 + y * 5 + x) as usize],
                    expected,
                    "c{c} y{y} x{x} v{v}"
                );
            }
        }
    }
    assert_eq!(p.placement(), Some((0, 0, 5, 4)));
}

#[test]
fn bgr_models_get_blue_first_with_blue_statistics_in_every_layout_and_type() {
    // Same-size frame: every value follows from the formula with the channels reversed.
    let f = textured(5, 4);
    let mean = [0.1, 0.5, 0.9];
    let std = [0.2, 0.3, 0.4];
    let opts = PreprocessOptions {
        mean,
        std,
        channel_order: ChannelOrder::Bgr,
        ..PreprocessOptions::default()
    };
    let expect = |k: usize, i: usize| {
        let c = 2 - k; // model channel k takes RGB channel 2 - k
        (f.data[i * 3 + c] as f32 / 255.0 - mean[c]) / std[c]
    };
    let mut nchw = Preprocessor::new(spec(5, 4, 3, Layout::Nchw, InputElement::F32), opts).unwrap();
    let mut nhwc = Preprocessor::new(spec(5, 4, 3, Layout::Nhwc, InputElement::F32), opts).unwrap();
    let (a, b) = (run_f32(&mut nchw, &f), run_f32(&mut nhwc, &f));
    for k in 0..3 {
        for i in 0..20 {
            assert_eq!(a[k * 20 + i], expect(k, i), "NCHW channel {k} pixel {i}");
            assert_eq!(b[i * 3 + k], expect(k, i), "NHWC channel {k} pixel {i}");
        }
    }
    let scale = 16.0;
    let mut q = Preprocessor::new(
        spec(5, 4, 3, Layout::Nhwc, InputElement::I8 { scale }),
        opts,
    )
    .unwrap();
    let mut out = vec![0i8; 60];
    q.run(&f, InputBufMut::I8(&mut out)).expect("int8");
    for k in 0..3 {
        for i in 0..20 {
            let e = (expect(k, i) * scale).round().clamp(-128.0, 127.0) as i8;
            assert_eq!(out[i * 3 + k], e, "int8 channel {k} pixel {i}");
        }
    }
    // A letterbox fill colour is reversed too: pure red padding is (0, 0, 1) in BGR.
    let opts = PreprocessOptions {
        fill: Fill::Rgb([255, 0, 0]),
        channel_order: ChannelOrder::Bgr,
        ..identity_norm(ResizeMode::Letterbox)
    };
    let mut p = Preprocessor::new(spec(8, 8, 3, Layout::Nhwc, InputElement::F32), opts).unwrap();
    let out = run_f32(&mut p, &textured(8, 4));
    assert_eq!(&out[..3], &[0.0, 0.0, 1.0], "top-left padding pixel");
    assert_eq!("BGR".parse::<ChannelOrder>().unwrap(), ChannelOrder::Bgr);
    let e = "rbg".parse::<ChannelOrder>().unwrap_err().to_string();
    assert!(e.contains("'rbg'") && e.contains("rgb or bgr"), "{e}");
}

#[test]
fn nchw_and_nhwc_hold_the_same_values() {
    let f = textured(37, 23);
    for mode in [
        ResizeMode::Stretch,
        ResizeMode::CenterCrop,
        ResizeMode::Letterbox,
    ] {
        let opts = PreprocessOptions {
            resize: mode,
            ..PreprocessOptions::default()
        };
        let mut nchw =
            Preprocessor::new(spec(16, 12, 3, Layout::Nchw, InputElement::F32), opts).unwrap();
        let mut nhwc =
            Preprocessor::new(spec(16, 12, 3, Layout::Nhwc, InputElement::F32), opts).unwrap();
        let (a, b) = (run_f32(&mut nchw, &f), run_f32(&mut nhwc, &f));
        for c in 0..3 {
            for i in 0..16 * 12 {
                assert_eq!(a[c * 192 + i], b[i * 3 + c], "{mode} c{c} pixel {i}");
            }
        }
    }
}

#[test]
fn stretch_agrees_with_fast_image_resize() {
    for (sw, sh, dw, dh) in [(97, 61, 32, 24), (640, 480, 224, 224), (13, 9, 40, 30)] {
        let f = textured(sw, sh);
        let mut p = Preprocessor::new(
            spec(dw, dh, 3, Layout::Nchw, InputElement::F32),
            identity_norm(ResizeMode::Stretch),
        )
        .unwrap();
        let ours = nchw_to_rgb(&run_f32(&mut p, &f), dw, dh);
        let reference = reference_resize(&f, dw, dh, fr::ResizeOptions::new());
        let (max, mean) = diff(&ours, &reference);
        assert!(
            max <= 1 && mean < 0.15,
            "{sw}x{sh}->{dw}x{dh}: max diff {max}, mean {mean}"
        );
    }
}

#[test]
fn center_crop_agrees_with_fast_image_resize() {
    for (sw, sh, dw, dh) in [(97, 61, 32, 32), (640, 480, 224, 224), (30, 80, 20, 10)] {
        let f = textured(sw, sh);
        let opts = identity_norm(ResizeMode::CenterCrop);
        let mut p =
            Preprocessor::new(spec(dw, dh, 3, Layout::Nchw, InputElement::F32), opts).unwrap();
        let ours = nchw_to_rgb(&run_f32(&mut p, &f), dw, dh);
        let reference = reference_resize(
            &f,
            dw,
            dh,
            fr::ResizeOptions::new().fit_into_destination(Some((0.5, 0.5))),
        );
        let (max, mean) = diff(&ours, &reference);
        assert!(
            max <= 1 && mean < 0.15,
            "{sw}x{sh}->{dw}x{dh}: max diff {max}, mean {mean}"
        );
    }
}

#[test]
fn center_crop_at_scale_one_copies_the_middle_exactly() {
    // 8x4 into 4x4: the scale that covers is 1, so the middle columns 2..6 are taken as they are.
    let f = frame(8, 4, |x, y| [x as u8 * 30, y as u8 * 60, 9]);
    let mut p = Preprocessor::new(
        spec(4, 4, 3, Layout::Nhwc, InputElement::F32),
        identity_norm(ResizeMode::CenterCrop),
    )
    .unwrap();
    let out = run_f32(&mut p, &f);
    for y in 0..4 {
        for x in 0..4 {
            let i = (y * 4 + x) * 3;
            assert_eq!(out[i], ((x + 2) * 30) as f32 / 255.0, "R at x{x} y{y}");
            assert_eq!(out[i + 1], (y * 60) as f32 / 255.0, "G at x{x} y{y}");
        }
    }
}

#[test]
fn center_crop_keeps_the_middle_band_when_downscaling() {
    // Red | green | blue in quarters/half/quarter: covering 16x16 from 64x32 keeps the green half.
    let f = frame(64, 32, |x, _| match x {
        0..16 => [255, 0, 0],
        16..48 => [0, 255, 0],
        _ => [0, 0, 255],
    });
    let mut p = Preprocessor::new(
        spec(16, 16, 3, Layout::Nchw, InputElement::F32),
        identity_norm(ResizeMode::CenterCrop),
    )
    .unwrap();
    let rgb = nchw_to_rgb(&run_f32(&mut p, &f), 16, 16);
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        let x = i % 16;
        if (1..15).contains(&x) {
            assert_eq!(px, [0, 255, 0], "pixel {i}");
        } else {
            // The kernel reaches just outside the crop, as resize-then-crop would: mostly green.
            assert!(
                px[1] > 180 && px[0] < 80 && px[2] < 80,
                "edge pixel {i}: {px:?}"
            );
        }
    }
}

#[test]
fn letterbox_pads_around_the_fitted_picture() {
    let colour = [200u8, 100, 50];
    let f = frame(64, 32, |_, _| colour);
    // Default fill is the mean colour: exactly 0 after normalisation.
    let mut p = Preprocessor::new(
        spec(32, 32, 3, Layout::Nchw, InputElement::F32),
        PreprocessOptions {
            resize: ResizeMode::Letterbox,
            ..PreprocessOptions::default()
        },
    )
    .unwrap();
    let out = run_f32(&mut p, &f);
    assert_eq!(p.placement(), Some((0, 8, 32, 16)));
    for c in 0..3 {
        let inside = (colour[c] as f32 / 255.0 - MEAN[c]) / STD[c];
        for y in 0..32 {
            for x in 0..32 {
                let v = out[c * 1024 + y * 32 + x];
                if (8..24).contains(&y) {
                    assert!((v - inside).abs() < 1e-6, "c{c} y{y} x{x}: {v} vs {inside}");
                } else {
                    assert_eq!(v, 0.0, "padding c{c} y{y} x{x}");
                }
            }
        }
    }
}

#[test]
fn letterbox_fill_colour_and_picture_match_reference() {
    let f = textured(50, 90);
    let opts = PreprocessOptions {
        fill: Fill::Rgb([0, 0, 0]),
        ..identity_norm(ResizeMode::Letterbox)
    };
    let mut p = Preprocessor::new(spec(30, 30, 3, Layout::Nchw, InputElement::F32), opts).unwrap();
    let rgb = nchw_to_rgb(&run_f32(&mut p, &f), 30, 30);
    // 50x90 scaled by 30/90 is 16.67x30, rounded to 17x30, centred at x = 6.
    assert_eq!(p.placement(), Some((6, 0, 17, 30)));
    let reference = reference_resize(&f, 17, 30, fr::ResizeOptions::new());
    for y in 0..30 {
        for x in 0..30 {
            let px = &rgb[(y * 30 + x) * 3..][..3];
            if (6..23).contains(&x) {
                let r = &reference[(y * 17 + x - 6) * 3..][..3];
                let d = px
                    .iter()
                    .zip(r)
                    .map(|(a, b)| a.abs_diff(*b))
                    .max()
                    .unwrap_or(0);
                assert!(d <= 2, "x{x} y{y}: {px:?} vs reference {r:?}");
            } else {
                assert_eq!(px, [0, 0, 0], "padding x{x} y{y}");
            }
        }
    }
}

#[test]
fn int8_rounds_and_saturates() {
    // mean 0, std 1: x = v / 255. v = 51 gives x = 0.2; v = 255 gives 1.
    let f = frame(3, 1, |x, _| [[51, 0, 255][x as usize], 0, 255]);
    let cases: [(f32, [i8; 3]); 3] = [
        (12.0, [2, 0, 12]),    // 0.2 * 12 = 2.4 -> 2
        (13.0, [3, 0, 13]),    // 0.2 * 13 = 2.6 -> 3
        (200.0, [40, 0, 127]), // 1 * 200 saturates at 127
    ];
    for (scale, red) in cases {
        let s = spec(3, 1, 3, Layout::Nchw, InputElement::I8 { scale });
        let mut p = Preprocessor::new(s, identity_norm(ResizeMode::Stretch)).unwrap();
        let mut out = [0i8; 9];
        p.run(&f, InputBufMut::I8(&mut out)).unwrap();
        assert_eq!(out[0..3], red, "R plane at scale {scale}");
        assert_eq!(
            out[6..9],
            [(255.0 * scale / 255.0).round().min(127.0) as i8; 3],
            "B plane at scale {scale}"
        );
    }
    // Negative saturation: mean 1 makes black -1; * 200 saturates at -128. Grey 128 -> round(-0.498 * 200) = -100.
    let opts = PreprocessOptions {
        mean: [1.0; 3],
        std: [1.0; 3],
        ..PreprocessOptions::default()
    };
    let s = spec(2, 1, 3, Layout::Nhwc, InputElement::I8 { scale: 200.0 });
    let mut p = Preprocessor::new(s, opts).unwrap();
    let mut out = [0i8; 6];
    p.run(
        &frame(2, 1, |x, _| [[0, 128][x as usize]; 3]),
        InputBufMut::I8(&mut out),
    )
    .unwrap();
    assert_eq!(out, [-128, -128, -128, -100, -100, -100]);
}

#[test]
fn int8_matches_the_f32_path_quantised() {
    let f = textured(41, 29);
    let (scale, opts) = (
        32.0,
        PreprocessOptions {
            resize: ResizeMode::Letterbox,
            ..PreprocessOptions::default()
        },
    );
    let mut pf = Preprocessor::new(spec(20, 20, 3, Layout::Nhwc, InputElement::F32), opts).unwrap();
    let mut pq = Preprocessor::new(
        spec(20, 20, 3, Layout::Nhwc, InputElement::I8 { scale }),
        opts,
    )
    .unwrap();
    let xf = run_f32(&mut pf, &f);
    let mut q = vec![0i8; 1200];
    pq.run(&f, InputBufMut::I8(&mut q)).unwrap();
    for (i, (x, q)) in xf.iter().zip(&q).enumerate() {
        assert_eq!(
            *q,
            (x * scale).round().clamp(-128.0, 127.0) as i8,
            "element {i} ({x})"
        );
    }
}

#[test]
fn grey_input_uses_bt601_luma() {
    let colours = [
        [255, 0, 0],
        [0, 255, 0],
        [0, 0, 255],
        [255, 255, 255],
        [0, 0, 0],
        [128, 128, 128],
    ];
    let lumas = [0.299, 0.587, 0.114, 1.0, 0.0, 128.0 / 255.0];
    let f = frame(3, 2, |x, y| colours[(y * 3 + x) as usize]);
    for layout in [Layout::Nchw, Layout::Nhwc] {
        let mut p = Preprocessor::new(
            spec(3, 2, 1, layout, InputElement::F32),
            PreprocessOptions::default(),
        )
        .unwrap();
        let out = run_f32(&mut p, &f);
        for (i, luma) in lumas.iter().enumerate() {
            let expected = (luma - MEAN[0]) / STD[0];
            assert!(
                (out[i] - expected).abs() < 1e-5,
                "{layout:?} pixel {i}: {} vs {expected}",
                out[i]
            );
        }
    }
}

#[test]
fn frame_size_changes_rebuild_the_plan() {
    let s = spec(12, 10, 3, Layout::Nchw, InputElement::F32);
    let opts = PreprocessOptions {
        resize: ResizeMode::Letterbox,
        ..PreprocessOptions::default()
    };
    let mut p = Preprocessor::new(s, opts).unwrap();
    for (w, h) in [(40, 30), (12, 10), (7, 25), (40, 30)] {
        let f = textured(w, h);
        let fresh = run_f32(&mut Preprocessor::new(s, opts).unwrap(), &f);
        assert_eq!(run_f32(&mut p, &f), fresh, "{w}x{h} after other sizes");
    }
}

#[test]
fn every_filter_keeps_a_flat_colour_flat() {
    let f = frame(300, 7, |_, _| [10, 128, 250]);
    for name in [
        "nearest",
        "box",
        "bilinear",
        "hamming",
        "catmull-rom",
        "mitchell",
        "lanczos3",
        "bilinear-opencv",
        "nearest-opencv",
    ] {
        let filter: Filter = name.parse().unwrap();
        assert_eq!(filter.to_string(), name);
        for (w, h) in [(3, 3), (16, 20)] {
            let opts = PreprocessOptions {
                filter,
                ..identity_norm(ResizeMode::Stretch)
            };
            let mut p =
                Preprocessor::new(spec(w, h, 3, Layout::Nchw, InputElement::F32), opts).unwrap();
            let rgb = nchw_to_rgb(&run_f32(&mut p, &f), w, h);
            assert!(
                rgb.chunks_exact(3).all(|px| px == [10, 128, 250]),
                "{name} {w}x{h}: {rgb:?}"
            );
        }
    }
}

#[test]
fn resize_modes_parse_from_config_words() {
    assert_eq!(
        "stretch".parse::<ResizeMode>().unwrap(),
        ResizeMode::Stretch
    );
    assert_eq!(
        "center-crop".parse::<ResizeMode>().unwrap(),
        ResizeMode::CenterCrop
    );
    assert_eq!(
        "letterbox".parse::<ResizeMode>().unwrap(),
        ResizeMode::Letterbox
    );
    assert_eq!(ResizeMode::default(), ResizeMode::Stretch);
    for mode in [
        ResizeMode::Stretch,
        ResizeMode::CenterCrop,
        ResizeMode::Letterbox,
    ] {
        assert_eq!(mode.to_string().parse::<ResizeMode>().unwrap(), mode);
    }
    let err = "zoom".parse::<ResizeMode>().unwrap_err();
    assert!(err.to_string().contains("'zoom'"), "{err}");
    assert!(
        "sharp"
            .parse::<Filter>()
            .unwrap_err()
            .to_string()
            .contains("'sharp'")
    );
}

#[test]
fn wrong_buffer_length_names_expected_and_actual() {
    let mut p = Preprocessor::new(
        spec(3, 3, 3, Layout::Nchw, InputElement::F32),
        PreprocessOptions::default(),
    )
    .unwrap();
    let mut out = vec![0.0f32; 26];
    let err = p
        .run(&textured(3, 3), InputBufMut::F32(&mut out))
        .unwrap_err();
    assert!(
        matches!(
            err,
            PreprocessError::OutputLength {
                expected: 27,
                actual: 26,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("27") && msg.contains("26") && msg.contains("3x3x3 NCHW f32"),
        "{msg}"
    );
}

#[test]
fn wrong_buffer_kind_is_refused() {
    let s = spec(2, 2, 3, Layout::Nhwc, InputElement::I8 { scale: 16.0 });
    let mut p = Preprocessor::new(s, PreprocessOptions::default()).unwrap();
    let mut out = vec![0.0f32; 12];
    let err = p
        .run(&textured(2, 2), InputBufMut::F32(&mut out))
        .unwrap_err();
    assert!(
        matches!(
            err,
            PreprocessError::OutputKind {
                expected: "int8",
                actual: "f32",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn frame_buffer_not_matching_its_size_is_refused() {
    let mut p = Preprocessor::new(
        spec(2, 2, 3, Layout::Nchw, InputElement::F32),
        PreprocessOptions::default(),
    )
    .unwrap();
    let mut f = textured(4, 4);
    f.data.truncate(40);
    let mut out = vec![0.0f32; 12];
    let err = p.run(&f, InputBufMut::F32(&mut out)).unwrap_err();
    assert!(
        matches!(
            err,
            PreprocessError::FrameSize {
                seq: 7,
                expected: 48,
                actual: 40,
                ..
            }
        ),
        "{err:?}"
    );
    let empty = Frame::default();
    let err = p.run(&empty, InputBufMut::F32(&mut out)).unwrap_err();
    assert!(matches!(err, PreprocessError::EmptyFrame { .. }), "{err:?}");
}

#[test]
fn bad_specs_and_options_are_refused_at_construction() {
    let opts = PreprocessOptions::default();
    for bad in [
        spec(4, 4, 2, Layout::Nchw, InputElement::F32),
        spec(0, 4, 3, Layout::Nchw, InputElement::F32),
        spec(4, 4, 3, Layout::Nchw, InputElement::I8 { scale: 0.0 }),
        spec(4, 4, 3, Layout::Nchw, InputElement::I8 { scale: f32::NAN }),
    ] {
        let err = Preprocessor::new(bad, opts).unwrap_err();
        assert!(
            matches!(err, PreprocessError::BadSpec { .. }),
            "{bad:?}: {err:?}"
        );
    }
    let good = spec(4, 4, 3, Layout::Nchw, InputElement::F32);
    let zero_std = PreprocessOptions {
        std: [0.2, 0.0, 0.2],
        ..opts
    };
    assert!(matches!(
        Preprocessor::new(good, zero_std),
        Err(PreprocessError::BadOption { option: "std", .. })
    ));
    let nan_mean = PreprocessOptions {
        mean: [f32::NAN, 0.0, 0.0],
        ..opts
    };
    assert!(matches!(
        Preprocessor::new(good, nan_mean),
        Err(PreprocessError::BadOption { option: "mean", .. })
    ));
}
