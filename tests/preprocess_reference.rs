//! `[preprocess]` held to the pipelines users train with: each filter, fill and alignment,
//! written as TOML keys, against Pillow's `Image.resize`, OpenCV's `cv2.resize` and numpy
//! (tests/preprocess_reference.py, in the `.cache/venv-frame` venv scripts/setup.sh makes), on
//! the same pictures, compared as normalised tensors. The tolerance is one level of 255 before
//! normalisation: rtinfer keeps 7 fractional bits between its two passes where Pillow rounds to
//! 8 bits and OpenCV uses 11-bit weights, so the three round differently but never by more.

use std::path::Path;

use rtinfer::preprocess::{PreprocessOptions, Preprocessor, RawPreprocess};
use rtinfer::source::Frame;
use rtinfer::tensor::{InputBufMut, InputElement, InputSpec, Layout};
use serde_json::{Value, json};

/// A picture with smooth curves, sharp edges and fine noise: resampling filters differ on it
/// (on a flat or linear picture every filter agrees and the test would prove nothing).
fn picture(width: u32, height: u32) -> Frame {
    let mut f = Frame::rgb24(width, height);
    let mut state = 0x2545_f491_u32;
    for y in 0..height {
        for x in 0..width {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let noise = (state % 41) as f32 - 20.0;
            let (fx, fy) = (x as f32, y as f32);
            let px = [
                128.0 + 90.0 * (fx / 3.0).sin() + noise,
                128.0 + 90.0 * (fy / 4.0 + fx / 7.0).cos() - noise,
                if (x / 5 + y / 5) % 2 == 0 {
                    220.0
                } else {
                    30.0
                } + noise,
            ];
            let i = ((y * width + x) * 3) as usize;
            for (d, v) in f.data[i..i + 3].iter_mut().zip(px) {
                *d = v.clamp(0.0, 255.0) as u8;
            }
        }
    }
    f
}

/// One case: the `[preprocess]` section rtinfer reads and the same thing for the reference.
struct Case {
    name: &'static str,
    src: (u32, u32),
    dst: (u32, u32),
    toml: &'static str,
    reference: Value,
}

fn cases() -> Vec<Case> {
    let cifar = json!({"mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]});
    let stretch = |filter: &str| {
        json!({"resize": "stretch", "filter": filter, "align": ["center", "center"],
               "fill": "mean", "mean": cifar["mean"], "std": cifar["std"]})
    };
    let mut out = vec![];
    for (rt, reference) in [
        ("bilinear", "pil-bilinear"),
        ("nearest", "pil-nearest"),
        ("bilinear-opencv", "cv-linear"),
        ("nearest-opencv", "cv-nearest"),
    ] {
        let toml: &'static str = format!("filter = \"{rt}\"\n").leak();
        // Downscaling by 2.86 x 2.14 (where antialiasing matters), upscaling by 1.85 x 2.06.
        out.push(Case {
            name: format!("{rt}-down").leak(),
            src: (640, 480),
            dst: (224, 224),
            toml,
            reference: stretch(reference),
        });
        out.push(Case {
            name: format!("{rt}-up").leak(),
            src: (173, 97),
            dst: (320, 200),
            toml,
            reference: stretch(reference),
        });
    }
    // PaddleOCR's recogniser input: height 48, padded on the right with normalised zeros.
    out.push(Case {
        name: "paddleocr-top-left-mean",
        src: (640, 120),
        dst: (320, 48),
        toml: "resize = \"letterbox\"\nfilter = \"bilinear-opencv\"\nalign = \"top-left\"\n\
               fill = \"mean\"\nmean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n",
        reference: json!({"resize": "letterbox", "filter": "cv-linear",
                          "align": ["start", "start"], "fill": "mean",
                          "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}),
    });
    // YOLO's letterbox: centred, grey 114 padding, inputs 0..1.
    out.push(Case {
        name: "yolo-center-114",
        src: (640, 480),
        dst: (416, 416),
        toml: "resize = \"letterbox\"\nfilter = \"bilinear-opencv\"\nfill = [114, 114, 114]\n\
               mean = [0.0, 0.0, 0.0]\nstd = [1.0, 1.0, 1.0]\n",
        reference: json!({"resize": "letterbox", "filter": "cv-linear",
                          "align": ["center", "center"], "fill": [114, 114, 114],
                          "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}),
    });
    // Pillow's antialiased bilinear, picture at the bottom right, a coloured fill.
    out.push(Case {
        name: "pillow-bottom-right-fill",
        src: (173, 97),
        dst: (64, 64),
        toml: "resize = \"letterbox\"\nalign = \"bottom-right\"\nfill = [10, 200, 60]\n",
        reference: json!({"resize": "letterbox", "filter": "pil-bilinear",
                          "align": ["end", "end"], "fill": [10, 200, 60],
                          "mean": cifar["mean"], "std": cifar["std"]}),
    });
    // Padding left and right: the picture on the right.
    out.push(Case {
        name: "nearest-right",
        src: (97, 173),
        dst: (96, 64),
        toml: "resize = \"letterbox\"\nfilter = \"nearest\"\nalign = \"right\"\nfill = [0, 0, 0]\n",
        reference: json!({"resize": "letterbox", "filter": "pil-nearest",
                          "align": ["end", "center"], "fill": [0, 0, 0],
                          "mean": cifar["mean"], "std": cifar["std"]}),
    });
    out
}

fn options(toml_text: &str) -> PreprocessOptions {
    let raw: RawPreprocess = toml::from_str(toml_text).expect("[preprocess] parses");
    raw.check().expect("[preprocess] checks")
}

fn run(opts: PreprocessOptions, frame: &Frame, (w, h): (u32, u32)) -> (Vec<f32>, [u32; 4]) {
    let spec = InputSpec {
        width: w,
        height: h,
        channels: 3,
        layout: Layout::Nchw,
        element: InputElement::F32,
    };
    let mut p = Preprocessor::new(spec, opts).expect("preprocessor");
    let mut out = vec![f32::NAN; spec.len()];
    p.run(frame, InputBufMut::F32(&mut out))
        .expect("preprocess");
    let (x, y, pw, ph) = p.placement().expect("placement");
    (out, [pw, ph, x, y])
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .expect("reference tensor")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Largest difference in levels of 255 (per channel, undoing `std`), and how many elements
/// differ by more than 0.5 level.
fn levels(ours: &[f32], theirs: &[f32], std: &[f32; 3]) -> (f32, usize) {
    assert_eq!(ours.len(), theirs.len());
    let plane = ours.len() / 3;
    let mut worst = 0.0f32;
    let mut differ = 0;
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        let d = (a - b).abs() * std[i / plane] * 255.0;
        worst = worst.max(d);
        differ += usize::from(d > 0.5);
    }
    (worst, differ)
}

#[test]
fn preprocess_options_match_pillow_opencv_and_numpy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = cases();
    let mut frames = std::collections::HashMap::new();
    let mut spec = vec![];
    for c in &cases {
        let src = dir.path().join(format!("{}x{}.rgb", c.src.0, c.src.1));
        let frame = frames.entry(c.src).or_insert_with(|| {
            let f = picture(c.src.0, c.src.1);
            std::fs::write(&src, &f.data).expect("write picture");
            f
        });
        assert_eq!(frame.width, c.src.0);
        let mut r = c.reference.clone();
        r["name"] = json!(c.name);
        r["src"] = json!(src);
        r["src_size"] = json!([c.src.0, c.src.1]);
        r["dst_size"] = json!([c.dst.0, c.dst.1]);
        spec.push(r);
    }
    let cases_file = dir.path().join("cases.json");
    std::fs::write(&cases_file, serde_json::to_vec(&spec).unwrap()).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".cache/venv-frame/bin/python");
    let o = std::process::Command::new(&python)
        .arg(root.join("tests/preprocess_reference.py"))
        .arg(&cases_file)
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/setup.sh makes it)", python.display()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let placed: Value = serde_json::from_slice(&o.stdout).expect("reference JSON");

    let mut tensors = std::collections::HashMap::new();
    for c in &cases {
        let opts = options(c.toml);
        let (ours, placement) = run(opts, &frames[&c.src], c.dst);
        assert_eq!(
            json!(placement),
            placed[c.name],
            "{}: picture [w, h, x, y]",
            c.name
        );
        let theirs = read_f32(&dir.path().join(format!("{}.f32", c.name)));
        let (worst, differ) = levels(&ours, &theirs, &opts.std);
        eprintln!(
            "{}: max |rtinfer - reference| = {worst:.3} levels of 255, {differ} of {} elements off by > 0.5",
            c.name,
            ours.len()
        );
        assert!(
            worst <= 1.0 + 1e-3,
            "{}: {worst} levels from the reference",
            c.name
        );
        tensors.insert(c.name, (theirs, opts.std));
    }

    // The references themselves differ where the filters do, by far more than the tolerance:
    // Pillow's antialiased bilinear is not OpenCV's when downscaling, nor Pillow's NEAREST
    // OpenCV's INTER_NEAREST.
    for (a, b) in [
        ("bilinear-down", "bilinear-opencv-down"),
        ("nearest-down", "nearest-opencv-down"),
        ("nearest-up", "nearest-opencv-up"),
    ] {
        let (ta, std) = &tensors[a];
        let (worst, differ) = levels(ta, &tensors[b].0, std);
        eprintln!("{a} vs {b}: max {worst:.1} levels, {differ} elements differ");
        assert!(
            worst > 20.0 && differ > ta.len() / 10,
            "{a} vs {b}: {worst} levels"
        );
    }
}
