//! The TensorRT backend through the very same C++ layer, compiled against the CPU test double
//! (`cpp/trt_double/`) in whichever shape the build selected (`RTINFER_TRT_DOUBLE=8.5`, `10.3` or
//! `10.16`). int8 is calibrated on 8.5 and explicitly quantized (a Q/DQ model) on 10.x; fp16 is a
//! builder flag up to 10.11 and a strongly typed float16 model from 10.12: tests of one path
//! return early in the shapes that build the other.
//!
//! The double's fixed computation (its file's header): every output element k is
//! `(k + 1) * mean(x)` over the first input x (x quantised with the calibrated scale in int8
//! engines); activation memory = 2 x I/O bytes rounded up to 256; persistent memory = the ONNX
//! file's size rounded up to 256. Expected values below are derived from those rules by hand.
#![cfg(feature = "tensorrt-double")]

use std::path::{Path, PathBuf};
use std::process::Command;

use rtinfer::backend::tensorrt::double::{self, Fault};
use rtinfer::backend::tensorrt::{
    TensorRtOptions, TrtBackend, TrtEngine, TrtPrecision, build_engine, cache::KeyParts,
    runtime_info,
};
use rtinfer::backend::{Backend, BackendError, Engine, LoadOptions, Precision};
use rtinfer::onnx::pb;
use rtinfer::preprocess::PreprocessOptions;
use rtinfer::tensor::InputBufMut;

use crate::util;

/// The shape the test binary was built against (the build script reads the same variable).
fn shape_is_8() -> bool {
    matches!(
        option_env!("RTINFER_TRT_DOUBLE"),
        Some("8" | "8.5" | "8.5.2")
    )
}

fn shape_is_10_16() -> bool {
    matches!(option_env!("RTINFER_TRT_DOUBLE"), Some("10.16" | "10.16.1"))
}

/// Whether int8 is calibrated (8.x) rather than explicitly quantized (10.x).
fn int8_calibrates() -> bool {
    shape_is_8()
}

/// Rewrites the ONNX file at `path` with `edit`.
fn edit_model(path: &Path, edit: impl FnOnce(&mut pb::GraphProto)) {
    let mut m = pb::read_model(path).expect("read model");
    edit(m.graph.as_mut().expect("graph"));
    pb::write_model(path, &m).expect("write model");
}

fn tensor(name: &str, data_type: i32, float_data: Vec<f32>, raw_data: Vec<u8>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        data_type,
        float_data,
        raw_data,
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: format!("{op}_{output}"),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

/// [`image_model`] with a QuantizeLinear/DequantizeLinear pair on its input (scale `scale`, a
/// zero point of element type `zp_type` holding `zp`): what a Q/DQ exporter writes first.
fn qdq_model(dir: &Path, name: &str, scale: f32, zp_type: i32, zp: u8) -> PathBuf {
    let path = image_model(dir, name, false, [3, 8, 8], 4);
    edit_model(&path, |g| {
        g.initializer
            .push(tensor("x_scale", pb::DATA_TYPE_FLOAT, vec![scale], vec![]));
        g.initializer
            .push(tensor("x_zero_point", zp_type, vec![], vec![zp]));
        g.node.push(node(
            "QuantizeLinear",
            &["images", "x_scale", "x_zero_point"],
            "x_q",
        ));
        g.node.push(node(
            "DequantizeLinear",
            &["x_q", "x_scale", "x_zero_point"],
            "x_dq",
        ));
    });
    path
}

/// Adds a Cast to float16 (what a float16 conversion with float32 I/O starts with).
fn add_half_cast(path: &Path) {
    edit_model(path, |g| {
        let mut cast = node("Cast", &["images"], "images_half");
        cast.attribute.push(pb::AttributeProto {
            name: "to".into(),
            i: Some(10),
            ..Default::default()
        });
        g.node.push(cast);
    });
}

/// An ONNX file whose graph declares one float input `images` [N, c, h, w] (N symbolic when
/// `dynamic`, else 1), an initializer also listed as an input (old exporters did that; it is not
/// an engine input), and one float output `scores` [N, classes]. The double reads only I/O.
fn image_model(dir: &Path, name: &str, dynamic: bool, chw: [i64; 3], classes: i64) -> PathBuf {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    let dim = |v: Value| Dimension {
        value: Some(v),
        denotation: String::new(),
    };
    let batch = || {
        if dynamic {
            dim(Value::DimParam("N".into()))
        } else {
            dim(Value::DimValue(1))
        }
    };
    let tensor = |name: &str, dims: Vec<Dimension>| pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::DATA_TYPE_FLOAT,
                shape: Some(pb::TensorShapeProto { dim: dims }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    };
    let mut in_dims = vec![batch()];
    in_dims.extend(chw.iter().map(|d| dim(Value::DimValue(*d))));
    let graph = pb::GraphProto {
        name: name.into(),
        initializer: vec![pb::TensorProto {
            name: "W".into(),
            data_type: pb::DATA_TYPE_FLOAT,
            dims: vec![classes],
            float_data: vec![0.25; classes as usize],
            ..Default::default()
        }],
        input: vec![
            tensor("images", in_dims),
            pb::ValueInfoProto::float_tensor("W", &[classes]),
        ],
        output: vec![tensor(
            "scores",
            vec![batch(), dim(Value::DimValue(classes))],
        )],
        ..Default::default()
    };
    let model = pb::ModelProto {
        ir_version: 8,
        producer_name: "rtinfer-tests".into(),
        graph: Some(graph),
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        ..Default::default()
    };
    let path = dir.join(format!("{name}.onnx"));
    pb::write_model(&path, &model).expect("write model");
    path
}

fn opts(cache: &Path) -> TensorRtOptions {
    TensorRtOptions {
        engine_cache: cache.to_path_buf(),
        ..TensorRtOptions::default()
    }
}

fn load(opts: &TensorRtOptions, model: &Path) -> Result<Box<dyn Engine>, BackendError> {
    TrtBackend::new(opts.clone(), PreprocessOptions::default()).load(model, &LoadOptions::default())
}

fn fill(engine: &mut dyn Engine, f: impl Fn(usize) -> f32) {
    let InputBufMut::F32(buf) = engine.input() else {
        panic!("TensorRT engines take float32 input")
    };
    for (i, v) in buf.iter_mut().enumerate() {
        *v = f(i);
    }
}

fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

#[test]
fn the_runtime_reports_the_selected_api_shape() {
    let info = runtime_info().expect("the double has a device");
    if shape_is_8() {
        assert_eq!(info.version, "8.5.2.2");
        assert_eq!(info.library_version, 8502); // 8*1000 + 5*100 + 2
    } else if shape_is_10_16() {
        assert_eq!(info.version, "10.16.1.11");
        assert_eq!(info.library_version, 101601); // 10*10000 + 16*100 + 1
    } else {
        assert_eq!(info.version, "10.3.0.30");
        assert_eq!(info.library_version, 100300); // 10*10000 + 3*100 + 0
    }
    assert_eq!(info.header_version, info.library_version);
    assert_eq!(info.compute_capability, "7.2");
    assert!(info.integrated);
}

#[test]
fn zoo_model_shapes_and_types_match_the_onnx_file() {
    double::reset();
    let dir = util::tempdir();
    let model = util::zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    // The ONNX file read independently (prost) gives the names; CIFAR-10 fixes the rest.
    let onnx = pb::read_model(&model).expect("read zoo model");
    let graph = onnx.graph.expect("graph");
    let in_name = &graph.input[0].name;
    let out_name = &graph.output[0].name;
    let engine = load(&opts(&dir.path().join("cache")), &model).expect("builds and loads");
    let info = engine.info();
    assert_eq!(info.inputs.len(), 1);
    assert_eq!(&info.inputs[0].name, in_name);
    assert_eq!(info.inputs[0].shape, vec![1, 3, 32, 32]);
    assert_eq!(info.inputs[0].element.name(), "float32");
    assert_eq!(&info.outputs[0].name, out_name);
    assert_eq!(info.outputs[0].shape, vec![1, 10]);
    assert_eq!(info.outputs[0].element.name(), "float32");
    assert_eq!(info.classes, 10);
    assert_eq!((info.input.width, info.input.height), (32, 32));
    assert_eq!(info.precision, Precision::Fp32);
    assert_eq!(info.backend.name(), "tensorrt");
}

#[test]
fn a_known_computation_runs_through_the_bridge_with_and_without_zero_copy() {
    double::reset();
    let dir = util::tempdir();
    let model = image_model(dir.path(), "tiny", false, [3, 8, 8], 5);
    for zero_copy in [false, true] {
        let o = TensorRtOptions {
            zero_copy,
            ..opts(&dir.path().join("cache"))
        };
        let mut e = load(&o, &model).expect("loads");
        assert_eq!(e.input().len(), 3 * 8 * 8);
        // Alternating 1, 0 over 192 elements: mean 0.5, so output k = 0.5 (k + 1).
        fill(e.as_mut(), |i| if i % 2 == 0 { 1.0 } else { 0.0 });
        e.run().expect("runs");
        assert_eq!(
            e.output(),
            &[0.5, 1.0, 1.5, 2.0, 2.5],
            "zero_copy={zero_copy}"
        );
        // All -2: mean -2.
        fill(e.as_mut(), |_| -2.0);
        e.run().expect("runs");
        assert_eq!(e.output(), &[-2.0, -4.0, -6.0, -8.0, -10.0]);
        let t = e.device_time().expect("CUDA events time the enqueue");
        assert!(t.as_secs_f64() >= 0.0);
    }
    // The copy path really copies: both runs above went through cudaMemcpyAsync only when
    // zero_copy was off (2 per run + 2 warm-up in load, per engine).
    assert_eq!(double::calls("cudaMemcpyAsync"), 6);
}

/// `postprocess.output` reaches the C++ layer: the chosen output is the one copied back and
/// read; the ONNX graph behind an `.onnx` tells that it ends in Softmax (probabilities, never
/// softmaxed again) and how many weights it has; an unknown name is refused with the list.
#[test]
fn postprocess_output_picks_the_buffer_read_and_the_graph_names_its_final_op() {
    double::reset();
    let dir = util::tempdir();
    let model = image_model(dir.path(), "two", false, [3, 8, 8], 5);
    edit_model(&model, |g| {
        g.output
            .push(pb::ValueInfoProto::float_tensor("prob", &[1, 3]));
        // The double runs I/O only; these nodes are what the backend reads of the graph.
        g.node.push(node("MatMul", &["images", "W"], "scores"));
        g.node.push(node("Softmax", &["scores"], "prob"));
    });
    let mut m = pb::read_model(&model).expect("read model");
    m.metadata_props.push(pb::StringStringEntryProto {
        key: "names".into(),
        value: "{0: 'a', 1: 'b', 2: 'c'}".into(),
    });
    pb::write_model(&model, &m).expect("write model");
    let backend = TrtBackend::new(
        opts(&dir.path().join("cache")),
        PreprocessOptions::default(),
    );
    let load_output = |output: Option<&str>| {
        backend.load(
            &model,
            &LoadOptions {
                output: output.map(str::to_string),
                ..LoadOptions::default()
            },
        )
    };

    let mut first = load_output(None).expect("loads");
    let info = first.info().clone();
    let names: Vec<&str> = info.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["scores", "prob"]);
    assert_eq!((info.output, info.classes), (0, 5));
    assert_eq!(info.output_shape, vec![1, 5]);
    assert_eq!(info.output_op.as_deref(), Some("MatMul"));
    assert_eq!(info.params, Some(5), "MatMul's initializer W counts");
    fill(first.as_mut(), |_| 1.0);
    first.run().expect("runs");
    assert_eq!(first.output(), &[1.0, 2.0, 3.0, 4.0, 5.0]);

    let mut prob = load_output(Some("prob")).expect("loads with postprocess.output");
    let info = prob.info().clone();
    assert_eq!((info.output, info.classes), (1, 3));
    assert_eq!(info.output_shape, vec![1, 3]);
    assert_eq!(info.output_op.as_deref(), Some("Softmax"));
    let labels = info.labels.as_ref().expect("names from the .onnx metadata");
    assert_eq!(&*labels.names, ["a", "b", "c"]);
    fill(prob.as_mut(), |_| 2.0);
    prob.run().expect("runs");
    // The double's rule on the second output's own 3 elements: (k + 1) * 2.
    assert_eq!(prob.output(), &[2.0, 4.0, 6.0]);

    let err = load_output(Some("nope"))
        .err()
        .expect("an unknown output is refused");
    let text = err.to_string();
    assert!(
        text.contains("postprocess.output 'nope'") && text.contains("scores [1, 5], prob [1, 3]"),
        "{text}"
    );
}

#[test]
fn a_dynamic_batch_is_fixed_to_one_through_a_profile() {
    double::reset();
    let dir = util::tempdir();
    let model = image_model(dir.path(), "dyn", true, [1, 4, 4], 3);
    let mut e = load(&opts(&dir.path().join("cache")), &model).expect("loads");
    // The engine declares the batch dynamic; the context runs it at 1.
    assert_eq!(e.info().inputs[0].shape, vec![-1, 1, 4, 4]);
    assert_eq!(e.input().len(), 16);
    fill(e.as_mut(), |i| i as f32); // 0..15: mean 7.5
    e.run().expect("runs");
    assert_eq!(e.output(), &[7.5, 15.0, 22.5]);
}

#[test]
fn memory_figures_are_serialized_plus_persistent_plus_activation() {
    double::reset();
    let dir = util::tempdir();
    let cache = dir.path().join("cache");
    let model = image_model(dir.path(), "mem", false, [3, 32, 32], 10);
    let e = load(&opts(&cache), &model).expect("loads");
    let m = e.memory().expect("TensorRT reports memory");
    // I/O: 3*32*32 + 10 floats = 12328 bytes; x2 = 24656; rounded up to 256 = 24832.
    assert_eq!(m.activation_bytes, 24832);
    let onnx_len = std::fs::metadata(&model).expect("model").len();
    assert_eq!(m.persistent_bytes, round_up(onnx_len, 256));
    let plan = std::fs::read_dir(&cache)
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "engine"))
        .expect("a cached engine");
    assert_eq!(
        m.serialized_bytes,
        std::fs::metadata(plan).expect("plan").len()
    );
    assert_eq!(
        m.total_bytes(),
        m.serialized_bytes + m.persistent_bytes + m.activation_bytes
    );
    assert!(m.persistent_source.contains("cudaMemGetInfo"));
}

#[test]
fn failures_and_exceptions_become_errors_that_name_the_call() {
    double::reset();
    let dir = util::tempdir();
    let model = image_model(dir.path(), "fail", false, [3, 4, 4], 2);
    let o = opts(&dir.path().join("cache"));
    let mut e = load(&o, &model).expect("loads");

    double::inject("enqueueV3", Fault::Fail, 0);
    let err = e.run().expect_err("enqueueV3 fails").to_string();
    assert!(err.contains("enqueueV3 failed"), "{err}");
    assert!(err.contains("injected enqueueV3 failure"), "{err}");

    double::inject("cudaStreamSynchronize", Fault::Fail, 0);
    let err = e.run().expect_err("sync fails").to_string();
    assert!(err.contains("cudaStreamSynchronize"), "{err}");
    assert!(err.contains("cudaErrorLaunchFailure"), "{err}");

    fill(e.as_mut(), |_| 1.0);
    e.run().expect("the engine is usable after a failed run");
    assert_eq!(e.output(), &[1.0, 2.0]);

    // Building: a std::exception and a foreign exception from the parser, then a null plan.
    // A cache of its own, so that every load below builds (the first engine is in `cache`).
    let o = opts(&dir.path().join("cache2"));
    // Only where the imitated TensorRT can throw from parse (8.x; 10.x declares it noexcept).
    assert_eq!(double::can_throw("parse"), shape_is_8());
    if double::can_throw("parse") {
        double::inject("parse", Fault::Throw, 0);
        let err = load(&o, &model).err().expect("parse throws").to_string();
        assert!(err.contains("injected throw in IParser::parse"), "{err}");
        double::inject("parse", Fault::ThrowForeign, 0);
        let err = load(&o, &model).err().expect("parse throws 42").to_string();
        assert!(err.contains("non-standard C++ exception"), "{err}");
    }
    double::inject("parse", Fault::Fail, 0);
    let err = load(&o, &model).err().expect("parse fails").to_string();
    assert!(err.contains("the ONNX parser refused the model"), "{err}");
    double::inject("buildSerializedNetwork", Fault::Fail, 0);
    let err = load(&o, &model).err().expect("build fails").to_string();
    assert!(err.contains("buildSerializedNetwork failed"), "{err}");

    // Loading: out of device memory while binding, and a failed context.
    double::inject("cudaMalloc", Fault::Fail, 2); // persistent, activation, then I/O
    let err = load(&o, &model)
        .err()
        .expect("cudaMalloc fails")
        .to_string();
    assert!(
        err.contains("cudaMalloc failed: cudaErrorMemoryAllocation"),
        "{err}"
    );
    double::inject("createExecutionContext", Fault::Fail, 0);
    let err = load(&o, &model).err().expect("context fails").to_string();
    assert!(err.contains("createExecutionContext failed"), "{err}");
    assert!(err.contains(&model.display().to_string()), "{err}");
    load(&o, &model).expect("loads once the faults are spent");
}

#[test]
fn a_workspace_limit_below_the_need_fails_the_build_with_tensorrts_reason() {
    double::reset();
    let dir = util::tempdir();
    let model = image_model(dir.path(), "ws", false, [3, 32, 32], 10);
    let o = TensorRtOptions {
        workspace_bytes: 4096, // below the 24832 bytes computed above
        ..opts(&dir.path().join("cache"))
    };
    let err = load(&o, &model).err().expect("fails").to_string();
    assert!(err.contains("kWORKSPACE"), "{err}");
}

/// Solid-colour PNGs: normalised with mean 0.5 and std 0.5, a value v becomes 2v/255 - 1.
fn calibration_images(dir: &Path, values: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    for (i, v) in values.iter().enumerate() {
        let img = image::RgbImage::from_pixel(6, 5, image::Rgb([*v, *v, *v]));
        img.save(dir.join(format!("img{i:03}.png"))).expect("png");
    }
    dir.to_path_buf()
}

fn half_norm() -> PreprocessOptions {
    PreprocessOptions {
        mean: [0.5; 3],
        std: [0.5; 3],
        ..PreprocessOptions::default()
    }
}

#[test]
fn the_calibrator_feeds_every_image_and_round_trips_its_cache() {
    if !int8_calibrates() {
        return; // 10.x: explicit quantization (explicit_int8_* below)
    }
    double::reset();
    let dir = util::tempdir();
    let model = image_model(dir.path(), "q", false, [3, 8, 8], 4);
    // 0 → -1, 255 → 1, 191 → 0.498: the largest magnitude is 1, so scale = 1/127.
    let images = calibration_images(&dir.path().join("calib"), &[0, 255, 191]);
    let cache_file = dir.path().join("calib.cache");
    let o = TensorRtOptions {
        precision: TrtPrecision::Int8,
        calibration_images: Some(images.clone()),
        calibration_cache: Some(cache_file.clone()),
        ..opts(&dir.path().join("cache"))
    };
    let plan = build_engine(&model, &o, &half_norm()).expect("int8 build");
    // Three batches, then the call that says there are no more.
    assert_eq!(double::calls("getBatch"), 4);
    let text = std::fs::read_to_string(&cache_file).expect("cache written");
    let tag = if shape_is_8() { "8502" } else { "100300" };
    let scale_bits = (1.0f32 / 127.0).to_bits();
    assert_eq!(
        text,
        format!("TRT-{tag}-EntropyCalibration2\nimages: {scale_bits:08x}\n")
    );

    // The int8 engine quantises with that scale: 0.3 → round(38.1) = 38 steps of 1/127.
    let mut e = TrtEngine::from_plan(&model, &plan, &o, Precision::Mixed).expect("loads");
    fill(&mut e, |_| 0.3);
    e.run().expect("runs");
    for (k, v) in e.output().iter().enumerate() {
        let want = (k as f32 + 1.0) * 38.0 / 127.0;
        assert!((v - want).abs() < 1e-5, "output {k}: {v} vs {want}");
    }

    // Same images: the cache is read back and no batch is requested.
    double::reset();
    build_engine(&model, &o, &half_norm()).expect("int8 build from cache");
    assert_eq!(double::calls("getBatch"), 0);

    // Same images, other normalisation: other tensors, so calibration runs again.
    let other_norm = PreprocessOptions {
        mean: [0.4; 3],
        ..half_norm()
    };
    double::reset();
    build_engine(&model, &o, &other_norm).expect("recalibrates");
    assert_eq!(double::calls("getBatch"), 4);
    double::reset();
    build_engine(&model, &o, &half_norm()).expect("recalibrates");
    assert_eq!(
        double::calls("getBatch"),
        4,
        "the cache now holds the other normalisation"
    );

    // Other images: the stale cache is not reused; calibration runs again on all four.
    calibration_images(&images, &[0, 255, 191, 64]);
    double::reset();
    build_engine(&model, &o, &half_norm()).expect("recalibrates");
    assert_eq!(double::calls("getBatch"), 5);
}

#[test]
fn a_source_calibrates_like_the_same_images_and_a_cache_is_kept_per_model() {
    if !int8_calibrates() {
        return; // 10.x: explicit quantization (explicit_int8_* below)
    }
    double::reset();
    let dir = util::tempdir();
    let model = image_model(dir.path(), "q", false, [3, 8, 8], 4);
    // The same three images as the folder test, played as a source: the same scale (1/127)
    // proves the frames are preprocessed exactly like images; the folder's end ends calibration.
    let images = calibration_images(&dir.path().join("calib"), &[0, 255, 191]);
    let uri = format!("file://{}/?fps=1000", images.display());
    let cache_file = dir.path().join("calib.cache");
    let o = TensorRtOptions {
        precision: TrtPrecision::Int8,
        calibration_source: Some(rtinfer::source::SourceSpec::parse(&uri).expect("uri")),
        calibration_max_images: 10,
        calibration_cache: Some(cache_file.clone()),
        ..opts(&dir.path().join("cache"))
    };
    build_engine(&model, &o, &half_norm()).expect("int8 build from a source");
    assert_eq!(double::calls("getBatch"), 4, "three frames, then the end");
    let scale_bits = (1.0f32 / 127.0).to_bits();
    let text = std::fs::read_to_string(&cache_file).expect("cache written");
    assert!(
        text.ends_with(&format!("images: {scale_bits:08x}\n")),
        "{text}"
    );

    // Same model, same source: the cache is read and the source is never opened.
    double::reset();
    build_engine(&model, &o, &half_norm()).expect("from cache");
    assert_eq!(double::calls("getBatch"), 0);

    // Another model with the same calibration data: its own calibration, not the first's cache.
    let other = image_model(dir.path(), "q2", false, [3, 8, 8], 6);
    double::reset();
    build_engine(&other, &o, &half_norm()).expect("recalibrates");
    assert_eq!(double::calls("getBatch"), 4);

    // An endless source stops at calibration_max_images.
    let o = TensorRtOptions {
        calibration_source: Some(
            rtinfer::source::SourceSpec::parse("synthetic://16x12@1000").expect("uri"),
        ),
        calibration_max_images: 5,
        ..o
    };
    double::reset();
    build_engine(&model, &o, &half_norm()).expect("int8 build from synthetic frames");
    assert_eq!(double::calls("getBatch"), 6, "five frames, then no more");
}

#[test]
fn int8_without_calibration_data_is_refused_clearly() {
    if !int8_calibrates() {
        return; // 10.x: explicit quantization (explicit_int8_* below)
    }
    double::reset();
    let dir = util::tempdir();
    let model = image_model(dir.path(), "nocal", false, [3, 8, 8], 4);
    let o = TensorRtOptions {
        precision: TrtPrecision::Int8,
        ..opts(&dir.path().join("cache"))
    };
    let err = load(&o, &model).err().expect("refused").to_string();
    assert!(err.contains("tensorrt.calibration_images"), "{err}");
}

fn sha256sum(text: &str) -> String {
    let dir = util::tempdir();
    let f = dir.path().join("key.txt");
    std::fs::write(&f, text).expect("write");
    let out = Command::new("sha256sum")
        .arg(&f)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string()
}

#[test]
fn the_engine_cache_key_covers_every_input_and_is_reused() {
    let base = KeyParts {
        model_sha256: "ab".repeat(32),
        tensorrt: "8.5.2.2 (library 8502)".into(),
        compute_capability: "7.2".into(),
        precision: "int8".into(),
        build_path: "int8: implicit quantization, kINT8 + entropy calibrator".into(),
        fp16_fallback: false,
        dla_core: -1,
        gpu_fallback: false,
        workspace_bytes: 1 << 30,
        profile_shape: vec![1, 3, 224, 224],
        calibration_sha256: Some("cd".repeat(32)),
    };
    // The key is the SHA-256 of the described text, checked with coreutils.
    assert_eq!(base.key(), sha256sum(&base.describe()));
    assert!(base.describe().contains("profile_shape=1x3x224x224\n"));
    let variants: Vec<KeyParts> = vec![
        KeyParts {
            model_sha256: "ac".repeat(32),
            ..base.clone()
        },
        KeyParts {
            tensorrt: "8.5.2.2 (library 8503)".into(),
            ..base.clone()
        },
        KeyParts {
            compute_capability: "8.7".into(),
            ..base.clone()
        },
        KeyParts {
            precision: "fp16".into(),
            ..base.clone()
        },
        KeyParts {
            build_path: "int8: explicit quantization, strongly typed network from a Q/DQ model"
                .into(),
            ..base.clone()
        },
        KeyParts {
            fp16_fallback: true,
            ..base.clone()
        },
        KeyParts {
            dla_core: 0,
            ..base.clone()
        },
        KeyParts {
            gpu_fallback: true,
            ..base.clone()
        },
        KeyParts {
            workspace_bytes: 1 << 29,
            ..base.clone()
        },
        KeyParts {
            profile_shape: vec![1, 3, 224, 225],
            ..base.clone()
        },
        KeyParts {
            calibration_sha256: Some("ce".repeat(32)),
            ..base.clone()
        },
        KeyParts {
            calibration_sha256: None,
            ..base.clone()
        },
    ];
    for v in &variants {
        assert_ne!(v.key(), base.key(), "{v:?}");
    }

    // Through the backend: the second load is a cache hit (no build), another precision is not.
    double::reset();
    let dir = util::tempdir();
    let cache = dir.path().join("cache");
    let model = image_model(dir.path(), "cached", false, [3, 8, 8], 4);
    add_half_cast(&model); // fp16 on 10.12+ needs a float16 model
    load(&opts(&cache), &model).expect("builds");
    load(&opts(&cache), &model).expect("cache hit");
    assert_eq!(double::calls("buildSerializedNetwork"), 1);
    let fp16 = TensorRtOptions {
        precision: TrtPrecision::Fp16,
        ..opts(&cache)
    };
    let e = load(&fp16, &model).expect("builds fp16");
    assert_eq!(double::calls("buildSerializedNetwork"), 2);
    assert_eq!(e.info().precision, Precision::Fp16);
    let mut names: Vec<String> = std::fs::read_dir(&cache)
        .expect("cache")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 4, "{names:?}"); // two engines, each with its key text
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("cached.fp16.") && n.ends_with(".engine"))
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("cached.fp32.") && n.ends_with(".key"))
    );
}

#[test]
fn an_engine_from_another_tensorrt_version_is_refused() {
    double::reset();
    let dir = util::tempdir();
    let model = image_model(dir.path(), "ver", false, [3, 8, 8], 4);
    let o = opts(&dir.path().join("cache"));
    let mut plan = build_engine(&model, &o, &PreprocessOptions::default()).expect("builds");
    let good = dir.path().join("ver.engine");
    std::fs::write(&good, &plan).expect("write");
    load(&o, &good).expect("a plan from this version loads directly");
    // The double's plan header: 8 magic bytes, then the major version as a u32.
    plan[8..12].copy_from_slice(&7u32.to_le_bytes());
    let old = dir.path().join("old.engine");
    std::fs::write(&old, &plan).expect("write");
    let err = load(&o, &old).err().expect("refused").to_string();
    assert!(err.contains("built by another TensorRT version"), "{err}");
    assert!(err.contains("Version tag does not match"), "{err}");
    assert!(err.contains("old.engine"), "{err}");
    let junk = dir.path().join("junk.plan");
    std::fs::write(&junk, b"not a plan at all").expect("write");
    let err = load(&o, &junk).err().expect("refused").to_string();
    assert!(err.contains("not a plan"), "{err}");
}

#[test]
fn the_daemon_builds_runs_and_reports_a_tensorrt_engine() {
    let dir = util::tempdir();
    let model = image_model(dir.path(), "daemon", false, [3, 16, 16], 4);
    let cfg = dir.path().join("rtinfer.toml");
    std::fs::write(
        &cfg,
        format!(
            "[tensorrt]\nengine_cache = \"{}\"\nzero_copy = true\n",
            dir.path().join("cache").display()
        ),
    )
    .expect("config");
    let sock = dir.path().join("s.sock");
    let child = util::rtinfer()
        .args([
            "run",
            "--backend",
            "tensorrt",
            "--duration",
            "3",
            "--config",
        ])
        .arg(&cfg)
        .arg("--model")
        .arg(&model)
        .arg("--socket")
        .arg(&sock)
        .args(["--source", "synthetic://64x48@60"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run rtinfer");
    assert!(util::wait_for(&sock, 20.0), "socket never appeared");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (code, body) = util::curl(&sock, "/status");
    let out = child.wait_with_output().expect("daemon ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("building a fp32 engine"), "{err}");
    assert!(err.contains("(tensorrt, fp32)"), "{err}");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let m = &v["model"];
    assert_eq!(m["backend"], "tensorrt");
    // 3*16*16 + 4 floats = 3088 bytes; x2 = 6176; rounded up to 256 = 6400.
    assert_eq!(m["memory"]["activation_bytes"], 6400);
    let onnx_len = std::fs::metadata(&model).expect("model").len();
    assert_eq!(m["memory"]["persistent_bytes"], round_up(onnx_len, 256));
    let total = m["memory"]["serialized_bytes"]
        .as_u64()
        .expect("serialized")
        + 6400
        + round_up(onnx_len, 256);
    assert_eq!(m["memory"]["total_bytes"], total);
    // GPU time by CUDA events beside the host-side inference time, frame by frame: inside it.
    let (device, host) = (
        &v["latency_ms_lifetime"]["device"],
        &v["latency_ms_lifetime"]["inference"],
    );
    assert!(device["count"].as_u64() > Some(0), "{v}");
    assert_eq!(device["count"], host["count"], "{v}");
    assert!(device["p50"].as_f64() <= host["p50"].as_f64(), "{v}");
}

#[test]
fn the_daemon_calibrates_an_int8_engine_on_its_own_live_source() {
    if !int8_calibrates() {
        return; // 10.x: explicit quantization (explicit_int8_* below)
    }
    let dir = util::tempdir();
    let model = image_model(dir.path(), "live", false, [3, 16, 16], 4);
    let cfg = dir.path().join("rtinfer.toml");
    let source = "synthetic://64x48@200";
    std::fs::write(
        &cfg,
        format!(
            "[run]\nsource = \"{source}\"\n[tensorrt]\nengine_cache = \"{}\"\nprecision = \"int8\"\n\
             calibration_source = \"{source}\"\ncalibration_max_images = 12\n\
             calibration_cache = \"{}\"\n",
            dir.path().join("cache").display(),
            dir.path().join("calib.cache").display()
        ),
    )
    .expect("config");
    let out = util::rtinfer()
        .args([
            "run",
            "--backend",
            "tensorrt",
            "--duration",
            "1",
            "--config",
        ])
        .arg(&cfg)
        .arg("--model")
        .arg(&model)
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .output()
        .expect("run rtinfer");
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("calibrating on up to 12 frames of {source}")),
        "{err}"
    );
    assert!(err.contains("calibrated on 12 frames"), "{err}");
    // The live source was opened again after the build and frames flowed.
    let processed = util::summary_field(&stdout, "processed").expect("processed");
    assert!(processed > 50, "{stdout}");
}

#[test]
fn bench_reports_gpu_time_beside_the_host_latency() {
    let dir = util::tempdir();
    let model = image_model(dir.path(), "bench", false, [3, 16, 16], 4);
    let cfg = dir.path().join("rtinfer.toml");
    std::fs::write(
        &cfg,
        format!(
            "[tensorrt]\nengine_cache = \"{}\"\n",
            dir.path().join("cache").display()
        ),
    )
    .expect("config");
    let o = util::rtinfer()
        .args(["bench", "--backend", "tensorrt", "--config"])
        .arg(&cfg)
        .arg(&model)
        .args(["--trials", "2", "--warmup", "3", "--runs", "4", "--json"])
        .output()
        .expect("run bench");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let (host, device) = (&v["latency_ms"], &v["device_ms"]);
    // The measured runs only (2 trials x 4), each timed inside the host-side run.
    assert_eq!(device["count"], 8, "{v}");
    assert_eq!(host["count"], 8, "{v}");
    for k in ["p50", "max", "mean"] {
        assert!(device[k].as_f64() <= host[k].as_f64(), "{k}: {v}");
    }
    // The study's engine memory: 3*16*16 + 4 floats = 3088 bytes of I/O, x2 rounded up to 256.
    let m = &v["engine_memory"];
    assert_eq!(m["activation_bytes"], 6400, "{v}");
    let onnx_len = std::fs::metadata(&model).expect("model").len();
    assert_eq!(m["persistent_bytes"], round_up(onnx_len, 256), "{v}");
    assert!(m["serialized_bytes"].as_u64() > Some(0), "{v}");
}

#[test]
fn steady_state_runs_allocate_nothing_on_the_rust_side() {
    double::reset();
    let dir = util::tempdir();
    let model = image_model(dir.path(), "alloc", false, [3, 8, 8], 4);
    let mut e = load(&opts(&dir.path().join("cache")), &model).expect("loads");
    fill(e.as_mut(), |_| 1.0);
    let info = allocation_counter::measure(|| {
        for _ in 0..100 {
            e.run().expect("runs");
            assert_eq!(e.output().len(), 4);
        }
    });
    assert_eq!(info.count_total, 0, "{info:?}");
}

// ---- int8 and fp16 the way each TensorRT wants them ----

#[test]
fn explicit_int8_builds_a_qdq_model_without_a_calibrator() {
    if int8_calibrates() {
        return; // 8.x calibrates (the_calibrator_feeds_every_image_and_round_trips_its_cache)
    }
    double::reset();
    let dir = util::tempdir();
    // The input's QuantizeLinear has scale 1/127, zero point 0 (int8): symmetric, as TensorRT wants.
    let model = qdq_model(dir.path(), "qdq", 1.0 / 127.0, 3, 0);
    let images = calibration_images(&dir.path().join("calib"), &[0, 255]);
    let o = TensorRtOptions {
        precision: TrtPrecision::Int8,
        // Set, and unused: explicit quantization takes the model's scales.
        calibration_images: Some(images),
        ..opts(&dir.path().join("cache"))
    };
    let mut e = load(&o, &model).expect("explicit int8 build");
    assert_eq!(double::calls("getBatch"), 0, "no calibrator");
    assert_eq!(e.info().precision, Precision::Mixed);
    // The engine quantises with the model's scale: 0.3 → round(38.1) = 38 steps of 1/127.
    fill(e.as_mut(), |_| 0.3);
    e.run().expect("runs");
    for (k, v) in e.output().iter().enumerate() {
        let want = (k as f32 + 1.0) * 38.0 / 127.0;
        assert!((v - want).abs() < 1e-5, "output {k}: {v} vs {want}");
    }
    // The cache key says how it was built and holds no calibration data.
    let key = std::fs::read_dir(dir.path().join("cache"))
        .expect("cache")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "key"))
        .expect("key text");
    let key = std::fs::read_to_string(key).expect("key");
    assert!(
        key.contains("build_path=int8: explicit quantization"),
        "{key}"
    );
    assert!(key.contains("calibration_sha256=none"), "{key}");
}

#[test]
fn explicit_int8_refuses_a_float_model_and_asymmetric_qdq_by_name() {
    if int8_calibrates() {
        return;
    }
    double::reset();
    let dir = util::tempdir();
    let o = TensorRtOptions {
        precision: TrtPrecision::Int8,
        ..opts(&dir.path().join("cache"))
    };
    let float = image_model(dir.path(), "float", false, [3, 8, 8], 4);
    let err = load(&o, &float).err().expect("refused").to_string();
    assert!(err.contains("explicit quantization"), "{err}");
    assert!(err.contains("QuantizeLinear/DequantizeLinear"), "{err}");
    // uint8 with zero point 128: what `rtinfer quantize` writes for ONNX Runtime's CPU kernels.
    let asym = qdq_model(dir.path(), "asym", 0.01, 2, 128);
    let err = load(&o, &asym).err().expect("refused").to_string();
    assert!(
        err.contains("QuantizeLinear node 'QuantizeLinear_x_q'"),
        "{err}"
    );
    assert!(err.contains("symmetric int8"), "{err}");
    assert_eq!(
        double::calls("buildSerializedNetwork"),
        0,
        "refused before building"
    );
}

#[test]
fn rtinfer_quantize_symmetric_builds_as_explicit_int8_where_the_default_form_is_refused() {
    if int8_calibrates() {
        return; // 8.x calibrates a float model: Q/DQ forms do not matter there
    }
    double::reset();
    let dir = util::tempdir();
    let model = util::zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let quantize = |out: &Path, extra: &[&str]| {
        let o = util::rtinfer_ort()
            .arg("quantize")
            .arg(&model)
            .arg("-o")
            .arg(out)
            .args(["--calib-source", "synthetic://48x40@1000", "--samples", "4"])
            .args(extra)
            .output()
            .expect("rtinfer quantize");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let sym = dir.path().join("sym.onnx");
    let asym = dir.path().join("asym.onnx");
    quantize(&sym, &["--symmetric"]);
    quantize(&asym, &[]);
    let o = TensorRtOptions {
        precision: TrtPrecision::Int8,
        ..opts(&dir.path().join("cache"))
    };
    // precision.rs's check passes and the engine builds by explicit quantization.
    let e = load(&o, &sym).expect("the symmetric model builds");
    assert_eq!(e.info().precision, Precision::Mixed);
    assert_eq!(double::calls("getBatch"), 0, "no calibrator");
    // ONNX Runtime's form is refused by name, before any build.
    let builds = double::calls("buildSerializedNetwork");
    let err = load(&o, &asym).err().expect("refused").to_string();
    assert!(err.contains("symmetric int8"), "{err}");
    assert_eq!(double::calls("buildSerializedNetwork"), builds);
}

#[test]
fn fp16_is_a_flag_up_to_10_11_and_a_float16_model_from_10_12() {
    double::reset();
    let dir = util::tempdir();
    let o = TensorRtOptions {
        precision: TrtPrecision::Fp16,
        ..opts(&dir.path().join("cache"))
    };
    let float = image_model(dir.path(), "float", false, [3, 8, 8], 4);
    let half = image_model(dir.path(), "half", false, [3, 8, 8], 4);
    add_half_cast(&half);
    let e = load(&o, &half).expect("a float16 model builds at fp16 everywhere");
    assert_eq!(e.info().precision, Precision::Fp16);
    if shape_is_10_16() {
        let err = load(&o, &float).err().expect("refused").to_string();
        assert!(err.contains("strongly typed"), "{err}");
        assert!(err.contains("no float16 tensor"), "{err}");
    } else {
        load(&o, &float).expect("kFP16 builds a float model at fp16");
    }
}

// ---- the rules of the real API that the double keeps ----

/// Resets the double's DLA core count when dropped (it is process-wide).
struct DlaCores;
impl DlaCores {
    fn set(n: i32) -> DlaCores {
        double::set_dla_cores(n);
        DlaCores
    }
}
impl Drop for DlaCores {
    fn drop(&mut self) {
        double::set_dla_cores(0);
    }
}

#[test]
fn a_dla_core_on_a_device_without_dla_is_an_error_not_a_silent_gpu_run() {
    double::reset();
    let dir = util::tempdir();
    let model = image_model(dir.path(), "dla", false, [3, 8, 8], 4);
    let with_dla = |core| TensorRtOptions {
        dla_core: Some(core),
        ..opts(&dir.path().join("cache"))
    };
    // No DLA: setDLACore would do nothing and the engine would run on the GPU.
    let err = load(&with_dla(0), &model)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("tensorrt.dla_core = 0"), "{err}");
    assert!(err.contains("getNbDLACores() = 0"), "{err}");
    assert_eq!(double::calls("setDLACore"), 0);
    // A device with two cores: core 1 is set on the builder config and on the runtime.
    let _cores = DlaCores::set(2);
    load(&with_dla(1), &model).expect("DLA core 1 of 2");
    assert_eq!(double::calls("setDLACore"), 2);
    let err = load(&with_dla(2), &model)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("has 2 DLA core(s)"), "{err}");
}

#[test]
fn errors_logged_on_tensorrts_own_threads_reach_the_error_text() {
    // The double logs build and deserialization errors from a thread of its own (as TensorRT's
    // workers may); a layer that kept the last error per calling thread would lose them.
    double::reset();
    let dir = util::tempdir();
    let model = image_model(dir.path(), "thread", false, [3, 32, 32], 10);
    let o = TensorRtOptions {
        workspace_bytes: 4096,
        ..opts(&dir.path().join("cache"))
    };
    let err = load(&o, &model).err().expect("fails").to_string();
    assert!(
        err.contains("buildSerializedNetwork failed (TensorRT: Memory pool limit kWORKSPACE"),
        "{err}"
    );
    let junk = dir.path().join("junk.engine");
    std::fs::write(&junk, b"not a plan at all").expect("write");
    let err = load(&opts(&dir.path().join("cache")), &junk)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("(TensorRT: 1: [stdArchiveReader.cpp]"),
        "{err}"
    );
}

#[test]
fn an_output_with_a_data_dependent_shape_is_refused_by_name() {
    double::reset();
    let dir = util::tempdir();
    let model = image_model(dir.path(), "ddim", false, [3, 8, 8], 4);
    // The output's class dimension becomes symbolic: known only when the engine has run.
    edit_model(&model, |g| {
        use pb::tensor_shape_proto::dimension::Value as Dim;
        use pb::type_proto::Value;
        if let Some(Value::TensorType(t)) =
            g.output[0].r#type.as_mut().and_then(|t| t.value.as_mut())
        {
            t.shape.as_mut().expect("shape").dim[1].value = Some(Dim::DimParam("K".into()));
        }
    });
    let err = load(&opts(&dir.path().join("cache")), &model)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("output 'scores' has a data-dependent shape [1, -1]"),
        "{err}"
    );
}

/// Runs `double::misuse(kind)` in a child process (this test binary, one test) and returns its
/// exit status and stderr.
fn misuse_in_child(kind: &str) -> (std::process::ExitStatus, String) {
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "tensorrt::misuse_probe",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RTINFER_TRT_MISUSE", kind)
        .output()
        .expect("run the probe");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Not a test: the child of `the_double_aborts_when_an_object_outlives_what_it_depends_on`.
#[test]
#[ignore]
fn misuse_probe() {
    if let Ok(kind) = std::env::var("RTINFER_TRT_MISUSE") {
        double::misuse(&kind);
        eprintln!("trt_double: misuse '{kind}' did not abort");
    }
}

#[test]
fn the_double_aborts_when_an_object_outlives_what_it_depends_on() {
    use std::os::unix::process::ExitStatusExt;
    for (kind, says) in [
        (
            "builder_before_network",
            "IBuilder destroyed while 1 network(s) or builder config(s)",
        ),
        (
            "builder_before_config",
            "IBuilder destroyed while 1 network(s) or builder config(s)",
        ),
        (
            "runtime_before_engine",
            "IRuntime destroyed while 1 engine(s)",
        ),
        (
            "engine_before_context",
            "ICudaEngine destroyed while 1 execution context(s)",
        ),
        (
            "logger_before_runtime",
            "ILogger destroyed while 1 runtime(s), builder(s) or parser(s)",
        ),
    ] {
        let (status, err) = misuse_in_child(kind);
        assert_eq!(
            status.signal(),
            Some(libc::SIGABRT),
            "{kind}: {status:?} {err}"
        );
        assert!(err.contains(says), "{kind}: {err}");
    }
}
