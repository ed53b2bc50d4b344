//! The engine in-process on the fake DPU: what it declares, int8 in and out (expected values
//! worked out by hand from `q = clamp(round(x * 2^f), -128, 127)` and `y = q * 2^-f`), NHWC
//! order, failures, and no allocation per run.

use std::path::Path;
use std::time::Duration;

use rtinfer::backend::vitis::{VitisBackend, VitisOptions};
use rtinfer::backend::{Backend, BackendError, BackendKind, Engine, LoadOptions, Precision};
use rtinfer::preprocess::{PreprocessOptions, Preprocessor};
use rtinfer::source::Frame;
use rtinfer::tensor::{InputBufMut, InputElement, Layout};

use super::fake::{self, Variant};
use crate::util;

fn backend(v: Variant) -> VitisBackend {
    VitisBackend::new(VitisOptions {
        library: Some(fake::library(v)),
        timeout: Duration::from_millis(500),
    })
    .expect("the fake DPU library loads")
}

fn load(model: &Path) -> Box<dyn Engine> {
    backend(Variant::Full)
        .load(model, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("load {}: {e}", model.display()))
}

fn load_err(model: &Path) -> BackendError {
    match backend(Variant::Full).load(model, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded but should not", model.display()),
        Err(e) => e,
    }
}

fn write_input(engine: &mut dyn Engine, values: &[i8]) {
    match engine.input() {
        InputBufMut::I8(buf) => buf.copy_from_slice(values),
        InputBufMut::F32(_) => panic!("the Vitis engine must take int8"),
    }
}

fn frame(width: u32, height: u32, px: impl Fn(u32, u32) -> [u8; 3]) -> Frame {
    let mut f = Frame::rgb24(width, height);
    for y in 0..height {
        for x in 0..width {
            let i = ((y * width + x) * 3) as usize;
            f.data[i..i + 3].copy_from_slice(&px(x, y));
        }
    }
    f
}

/// Preprocesses `f` into the engine's own input, runs, returns the scores.
fn run_frame(engine: &mut dyn Engine, opts: PreprocessOptions, f: &Frame) -> Vec<f32> {
    let mut pre = Preprocessor::new(engine.info().input, opts).expect("preprocessor");
    pre.run(f, engine.input()).expect("preprocess");
    engine.run().expect("run");
    engine.output().to_vec()
}

#[test]
fn fake_model_gives_an_nhwc_int8_engine_that_cannot_cancel() {
    let dir = util::tempdir();
    let m = fake::model(
        dir.path(),
        "net",
        "input data int8 1 2 3 3 fix 6\noutput scores int8 1 10 fix 2\n",
    );
    let engine = load(&m);
    let info = engine.info();
    assert_eq!(info.backend, BackendKind::Vitis);
    assert_eq!(info.name, "net");
    assert_eq!(info.precision, Precision::Int8);
    assert!(!info.can_cancel);
    assert!(engine.canceller().is_none());
    assert_eq!(
        (info.input.height, info.input.width, info.input.channels),
        (2, 3, 3)
    );
    assert_eq!(info.input.layout, Layout::Nhwc);
    assert_eq!(info.input.element, InputElement::I8 { scale: 64.0 });
    assert_eq!(info.inputs[0].shape, vec![1, 2, 3, 3]);
    assert_eq!(info.inputs[0].element.name(), "int8");
    assert_eq!(info.outputs[0].name, "scores");
    assert_eq!(info.classes, 10);
    assert_eq!(engine.output().len(), 10);
}

#[test]
fn outputs_are_dequantised_exactly_and_saturate_at_the_int8_edges() {
    let dir = util::tempdir();
    // out = clamp(3 q - 5, -128, 127) * 2^-2
    let m = fake::model(
        dir.path(),
        "affine",
        "input data int8 1 1 4 3 fix 0\noutput y int8 1 12 fix 2\nop affine 3 -5\n",
    );
    let mut engine = load(&m);
    write_input(
        engine.as_mut(),
        &[-128, -1, 0, 1, 43, 44, 50, 127, -41, -42, 2, -2],
    );
    engine.run().expect("run");
    // 3q-5:  -389   -8  -5  -2  124  127  145  376  -128  -131  1  -11
    // clamp: -128   -8  -5  -2  124  127  127  127  -128  -128  1  -11
    let expected = [
        -32.0, -2.0, -1.25, -0.5, 31.0, 31.75, 31.75, 31.75, -32.0, -32.0, 0.25, -2.75,
    ];
    assert_eq!(engine.output(), &expected);

    // A negative fix point scales up: y = q * 2.
    let m = fake::model(
        dir.path(),
        "negfix",
        "input data int8 1 1 1 3 fix 0\noutput y int8 1 3 fix -1\n",
    );
    let mut engine = load(&m);
    write_input(engine.as_mut(), &[3, -128, 127]);
    engine.run().expect("run");
    assert_eq!(engine.output(), &[6.0, -256.0, 254.0]);
}

/// `postprocess.output` picks which DPU output is dequantised and read, with that output's own
/// fix point; an unknown name is refused with the outputs listed; without it, the first.
#[test]
fn postprocess_output_picks_the_output_read_with_its_own_fix_point() {
    let dir = util::tempdir();
    let m = fake::model(
        dir.path(),
        "heads",
        "input data int8 1 1 1 3 fix 0\noutput boxes int8 1 4 fix 0\noutput prob int8 1 3 fix 2\n",
    );
    let with = |output: Option<&str>| {
        backend(Variant::Full).load(
            &m,
            &LoadOptions {
                output: output.map(str::to_string),
                ..LoadOptions::default()
            },
        )
    };
    let mut first = with(None).expect("loads");
    assert_eq!((first.info().output, first.info().classes), (0, 4));
    assert_eq!(first.info().labels, None);
    // A label file beside the .xmodel names the classes (the DPU file has no metadata).
    std::fs::write(dir.path().join("heads.labels.txt"), "x\ny\nz\n").expect("labels");
    let named = with(None).expect("loads");
    let labels = named
        .info()
        .labels
        .as_ref()
        .expect("names from the label file");
    assert_eq!(&*labels.names, ["x", "y", "z"]);
    write_input(first.as_mut(), &[4, 8, -12]);
    first.run().expect("run");
    // boxes: fix 0, in[i % 3] as is.
    assert_eq!(first.output(), &[4.0, 8.0, -12.0, 4.0]);

    let mut prob = with(Some("prob")).expect("loads with postprocess.output");
    let info = prob.info().clone();
    assert_eq!((info.output, info.classes), (1, 3));
    assert_eq!(info.output_shape, vec![1, 3]);
    write_input(prob.as_mut(), &[4, 8, -12]);
    prob.run().expect("run");
    // prob: fix 2, so q * 2^-2.
    assert_eq!(prob.output(), &[1.0, 2.0, -3.0]);

    let text = match with(Some("nope")) {
        Ok(_) => panic!("an unknown output must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(
        text.contains("postprocess.output 'nope'") && text.contains("boxes [1, 4], prob [1, 3]"),
        "{text}"
    );
}

#[test]
fn preprocessing_writes_nhwc_int8_in_the_engine_buffer() {
    let dir = util::tempdir();
    // 2x2 RGB, fix 0, copied through: the scores are the quantised input in memory order.
    let m = fake::model(
        dir.path(),
        "copy",
        "input data int8 1 2 2 3 fix 0\noutput y int8 1 12 fix 0\n",
    );
    let mut engine = load(&m);
    // (v/255 - 0) / (1/255) = v (to within an ulp, which rounding removes).
    let opts = PreprocessOptions {
        mean: [0.0; 3],
        std: [1.0 / 255.0; 3],
        ..PreprocessOptions::default()
    };
    let f = frame(2, 2, |x, y| match (x, y) {
        (0, 0) => [1, 2, 3],
        (1, 0) => [11, 12, 13],
        (0, 1) => [21, 22, 23],
        _ => [200, 127, 128],
    });
    let got = run_frame(engine.as_mut(), opts, &f);
    // Pixel after pixel, R G B within each (NCHW would start 1, 11, 21, ...); 200 and 128
    // saturate to 127.
    let expected: Vec<f32> = [1, 2, 3, 11, 12, 13, 21, 22, 23, 127, 127, 127]
        .map(|v| v as f32)
        .to_vec();
    assert_eq!(got, expected);
}

#[test]
fn input_quantisation_rounds_half_away_from_zero_and_saturates() {
    let dir = util::tempdir();
    // x = v/255 - 0.5: exactly -0.5 for v = 0 and +0.5 for v = 255 (both exact in f32).
    let opts = PreprocessOptions {
        mean: [0.5; 3],
        std: [1.0; 3],
        ..PreprocessOptions::default()
    };
    let f = frame(2, 1, |x, _| if x == 0 { [0; 3] } else { [255; 3] });
    // (fix point, expected score for v = 0, for v = 255)
    let cases: [(i32, f32, f32); 3] = [
        // +-0.5 * 1 = +-0.5: a tie, rounded away from zero to +-1.
        (0, -1.0, 1.0),
        // +-0.5 * 256 = +-128: -128 fits exactly; +128 saturates to 127 -> 127/256.
        (8, -128.0 / 256.0, 127.0 / 256.0),
        // +-0.5 * 512 = +-256: both saturate -> -128/512, 127/512.
        (9, -128.0 / 512.0, 127.0 / 512.0),
    ];
    for (fix, lo, hi) in cases {
        let m = fake::model(
            dir.path(),
            &format!("fix{fix}"),
            &format!("input data int8 1 1 2 3 fix {fix}\noutput y int8 1 6 fix {fix}\n"),
        );
        let mut engine = load(&m);
        assert_eq!(
            engine.info().input.element,
            InputElement::I8 {
                scale: 2f32.powi(fix)
            }
        );
        let got = run_frame(engine.as_mut(), opts, &f);
        assert_eq!(got, vec![lo, lo, lo, hi, hi, hi], "fix_point {fix}");
    }
}

#[test]
fn a_run_allocates_nothing() {
    let dir = util::tempdir();
    let m = fake::model(
        dir.path(),
        "two_outputs",
        "input data int8 1 8 8 3 fix 5\noutput a int8 1 10 fix 3\noutput b int8 1 4 fix 1\n",
    );
    let mut engine = load(&m);
    engine.run().expect("first run");
    let info = allocation_counter::measure(|| {
        for _ in 0..200 {
            engine.run().expect("run");
        }
    });
    assert_eq!(
        info.count_total, 0,
        "{} allocations ({} bytes) in 200 runs",
        info.count_total, info.bytes_total
    );
}

#[test]
fn a_model_the_fake_rejects_fails_to_load_with_its_reason() {
    let dir = util::tempdir();
    let m = fake::model(
        dir.path(),
        "rejected",
        "input data int8 1 4 4 3 fix 6\noutput y int8 1 10 fix 2\nreject compiled for DPUCAHX8H, not this DPU\n",
    );
    let e = load_err(&m);
    assert!(matches!(e, BackendError::Load { .. }), "{e:?}");
    let s = e.to_string();
    assert!(s.contains(&m.display().to_string()), "{s}");
    assert!(s.contains("compiled for DPUCAHX8H, not this DPU"), "{s}");
    assert!(s.contains("unsupported model"), "{s}");

    // Not a model at all: the fake's parser names the file.
    let junk = dir.path().join("junk.xmodel");
    std::fs::write(&junk, "\u{1}xmodel-protobuf...").unwrap();
    let s = load_err(&junk).to_string();
    assert!(s.contains("not a fake DPU model"), "{s}");

    // Absent file: reported before the shim is asked.
    let e = load_err(&dir.path().join("absent.xmodel"));
    assert!(matches!(e, BackendError::ModelMissing { .. }), "{e:?}");
}

#[test]
fn tensors_the_dpu_path_cannot_feed_are_refused() {
    let dir = util::tempdir();
    let cases = [
        (
            "float32 input",
            "input data float32 1 4 4 3 fix 0\noutput y int8 1 10 fix 2\n",
            "is float32",
        ),
        (
            "no fix point",
            "input data int8 1 4 4 3\noutput y int8 1 10 fix 2\n",
            "no fix_point",
        ),
        (
            "not an image",
            "input data int8 1 48 fix 6\noutput y int8 1 10 fix 2\n",
            "not an image input",
        ),
        (
            "two inputs",
            "input a int8 1 4 4 3 fix 6\ninput b int8 1 4 4 3 fix 6\noutput y int8 1 10 fix 2\n",
            "one image input",
        ),
    ];
    for (i, (what, body, needle)) in cases.iter().enumerate() {
        let m = fake::model(dir.path(), &format!("bad{i}"), body);
        let e = load_err(&m);
        assert!(
            matches!(e, BackendError::Unsupported { .. }),
            "{what}: {e:?}"
        );
        assert!(e.to_string().contains(needle), "{what}: {e}");
    }
}

#[test]
fn a_failing_job_is_a_run_error_and_the_engine_keeps_working_until_then() {
    let dir = util::tempdir();
    // Run 1 is the load-time check, run 2 succeeds, run 3 fails.
    let m = fake::model(
        dir.path(),
        "flaky",
        "input data int8 1 2 2 3 fix 6\noutput y int8 1 4 fix 2\nfail_run_after 2\n",
    );
    let mut engine = load(&m);
    engine.run().expect("second run succeeds");
    let e = engine.run().expect_err("third run fails");
    assert!(matches!(e, BackendError::Run { .. }), "{e:?}");
    let s = e.to_string();
    assert!(s.contains("flaky") && s.contains("job 3 failed"), "{s}");
}

#[test]
fn a_missing_library_error_lists_every_path_tried() {
    let dir = util::tempdir();
    let configured = dir.path().join("nowhere/librtinfer_vart.so");
    let e = match VitisBackend::new(VitisOptions {
        library: Some(configured.clone()),
        ..VitisOptions::default()
    }) {
        Ok(_) => panic!("no shim is installed on this machine"),
        Err(e) => e,
    };
    assert!(matches!(e, BackendError::VitisLibrary(_)), "{e:?}");
    let s = e.to_string();
    assert!(
        s.contains(&format!(
            "{} (config vitis.library): not found",
            configured.display()
        )),
        "{s}"
    );
    assert!(
        s.contains("/usr/lib/rtinfer/librtinfer_vart.so (/usr/lib/rtinfer): not found"),
        "{s}"
    );
    // The bare name handed to the loader, with the loader's own reason.
    assert!(
        s.contains("  - librtinfer_vart.so (system loader): "),
        "{s}"
    );
    assert!(s.contains("cannot open shared object file"), "{s}");
    assert!(s.contains("vitis.library"), "{s}");
}

#[test]
fn a_library_missing_a_symbol_or_speaking_another_abi_is_refused_by_name() {
    let lib = fake::library(Variant::WithoutRun);
    let e = match VitisBackend::new(VitisOptions {
        library: Some(lib.clone()),
        ..VitisOptions::default()
    }) {
        Ok(_) => panic!("a shim without rtv_run must not load"),
        Err(e) => e,
    };
    let s = e.to_string();
    assert!(
        s.contains(&format!(
            "{} (config vitis.library): missing symbol rtv_run ",
            lib.display()
        )),
        "{s}"
    );

    let lib = fake::library(Variant::OtherAbi);
    let s = match VitisBackend::new(VitisOptions {
        library: Some(lib.clone()),
        ..VitisOptions::default()
    }) {
        Ok(_) => panic!("a shim of another ABI must not load"),
        Err(e) => e.to_string(),
    };
    assert!(
        s.contains(&format!(
            "{} (config vitis.library): ABI version 99, this rtinfer needs 1",
            lib.display()
        )),
        "{s}"
    );
}

#[test]
fn the_backend_reports_the_library_it_runs_on() {
    let b = backend(Variant::Full);
    assert_eq!(b.kind(), BackendKind::Vitis);
    assert_eq!(b.library_path(), fake::library(Variant::Full));
    assert_eq!(b.version(), "fake DPU (rtinfer test double)");
}
