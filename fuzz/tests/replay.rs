//! The fuzz targets on stable, as plain tests: every committed seed (`fuzz/seeds/<target>/`) and
//! every input that once crashed a target (`fuzz/regressions/<target>/`) goes through the same
//! function the `cargo fuzz` binary calls. `scripts/test.sh` runs this, so CI replays them.
//!
//! The seeds are written by `write_seeds` below (`cargo test -p rtinfer-fuzz -- --ignored
//! write_seeds`): small, valid inputs of each format, so the fuzzer starts from the interesting
//! paths instead of having to discover a YUV4MPEG2 header or an ONNX graph by chance.

use std::path::PathBuf;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Files of `fuzz/<kind>/<target>/`, sorted (none when the folder does not exist).
fn files(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn replay(target: &str, run: fn(&[u8])) {
    let seeds = files("seeds", target);
    assert!(!seeds.is_empty(), "no seeds for {target}: run write_seeds");
    for path in seeds.iter().chain(&files("regressions", target)) {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        run(&bytes);
    }
}

#[test]
fn y4m() {
    replay("y4m", rtinfer_fuzz::y4m);
}

#[test]
fn image() {
    replay("image", rtinfer_fuzz::image);
}

#[test]
fn http() {
    replay("http", rtinfer_fuzz::http);
}

#[test]
fn config() {
    replay("config", rtinfer_fuzz::config);
}

#[test]
fn onnx() {
    // The ONNX seed is a generated model, and generated models are never committed (`*.onnx` is
    // git-ignored): it is built here, then whatever seeds and past crashes the folder holds.
    rtinfer_fuzz::onnx(&onnx_seed());
    for path in files("seeds", "onnx")
        .iter()
        .chain(&files("regressions", "onnx"))
    {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        rtinfer_fuzz::onnx(&bytes);
    }
}

#[test]
fn mjpeg() {
    replay("mjpeg", rtinfer_fuzz::mjpeg);
}

#[test]
fn meters() {
    replay("meters", rtinfer_fuzz::meters);
}

// ------------------------------------------------------------------------ seed generation

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = fuzz_dir().join("seeds").join(target);
    std::fs::create_dir_all(&dir).expect("mkdir seeds");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn y4m_stream(header: &str, frame_len: usize, frames: usize) -> Vec<u8> {
    let mut out = format!("{header}\n").into_bytes();
    for f in 0..frames {
        out.extend_from_slice(if f % 2 == 0 {
            b"FRAME\n"
        } else {
            b"FRAME Ixyz\n"
        });
        out.extend((0..frame_len).map(|i| (i * 37 + f * 11) as u8));
    }
    out
}

/// CRC-32 (PNG's chunk checksum), bit by bit.
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

fn encoded(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format)
        .expect("encode");
    out
}

fn onnx_seed() -> Vec<u8> {
    use rtinfer::onnx::pb;
    let floats = |name: &str, dims: Vec<i64>| pb::TensorProto {
        name: name.into(),
        data_type: pb::DATA_TYPE_FLOAT,
        float_data: vec![0.25; dims.iter().product::<i64>() as usize],
        dims,
        ..Default::default()
    };
    let node =
        |op: &str, ins: &[&str], out: &str, attribute: Vec<pb::AttributeProto>| pb::NodeProto {
            input: ins.iter().map(|s| s.to_string()).collect(),
            output: vec![out.into()],
            name: out.into(),
            op_type: op.into(),
            attribute,
            ..Default::default()
        };
    let shape = pb::TensorProto {
        name: "shape".into(),
        data_type: pb::DATA_TYPE_INT64,
        dims: vec![2],
        int64_data: vec![1, -1],
        ..Default::default()
    };
    let graph = pb::GraphProto {
        name: "seed".into(),
        node: vec![
            node(
                "Conv",
                &["input", "W", "B"],
                "conv",
                vec![
                    pb::AttributeProto::ints("kernel_shape", &[3, 3]),
                    pb::AttributeProto::ints("pads", &[1, 1, 1, 1]),
                    pb::AttributeProto::ints("strides", &[2, 2]),
                ],
            ),
            node("Relu", &["conv"], "relu", vec![]),
            node(
                "MaxPool",
                &["relu"],
                "pool",
                vec![
                    pb::AttributeProto::ints("kernel_shape", &[2, 2]),
                    pb::AttributeProto::ints("strides", &[2, 2]),
                ],
            ),
            node("GlobalAveragePool", &["pool"], "gap", vec![]),
            node("Reshape", &["gap", "shape"], "flat", vec![]),
            node(
                "Gemm",
                &["flat", "W2", "B2"],
                "output",
                vec![pb::AttributeProto::int("transB", 1)],
            ),
        ],
        initializer: vec![
            floats("W", vec![4, 3, 3, 3]),
            floats("B", vec![4]),
            floats("W2", vec![10, 4]),
            floats("B2", vec![10]),
            shape,
        ],
        input: vec![pb::ValueInfoProto::float_tensor("input", &[1, 3, 16, 16])],
        output: vec![pb::ValueInfoProto::float_tensor("output", &[1, 10])],
        ..Default::default()
    };
    let model = pb::ModelProto {
        ir_version: 7,
        producer_name: "rtinfer-fuzz-seed".into(),
        graph: Some(graph),
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        ..Default::default()
    };
    let dir = std::env::temp_dir().join(format!("rtinfer-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("seed.onnx");
    pb::write_model(&path, &model).expect("write model");
    let bytes = std::fs::read(&path).expect("read model");
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

const TC66_KEY: [u8; 32] = [
    0x58, 0x21, 0xfa, 0x56, 0x01, 0xb2, 0xf0, 0x26, 0x87, 0xff, 0x12, 0x04, 0x62, 0x2a, 0x4f, 0xb0,
    0x86, 0xf4, 0x02, 0x60, 0x81, 0x6f, 0x9a, 0x0b, 0xa7, 0xf1, 0x06, 0x61, 0x9a, 0xb8, 0x72, 0x88,
];

/// A TC66C answer: three `pacN` blocks with their CRC-16/MODBUS, AES-256-ECB encrypted.
fn tc66_answer(power_raw: u32) -> Vec<u8> {
    use aes::Aes256;
    use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
    let mut plain = vec![0u8; 192];
    for k in 0..3 {
        let b = &mut plain[k * 64..(k + 1) * 64];
        b[..4].copy_from_slice(format!("pac{}", k + 1).as_bytes());
        if k == 0 {
            b[4..8].copy_from_slice(b"TC66");
            b[48..52].copy_from_slice(&51234u32.to_le_bytes());
            b[52..56].copy_from_slice(&123456u32.to_le_bytes());
            b[56..60].copy_from_slice(&power_raw.to_le_bytes());
        }
        let crc = u32::from(rtinfer::power::tc66::crc16_modbus(&b[..60]));
        b[60..64].copy_from_slice(&crc.to_le_bytes());
    }
    let aes = Aes256::new(GenericArray::from_slice(&TC66_KEY));
    for chunk in plain.chunks_exact_mut(16) {
        aes.encrypt_block(GenericArray::from_mut_slice(chunk));
    }
    plain
}

/// A UM24C/UM25C answer (`FF F1` end) or a UM34C one (XOR check byte).
fn um_answer(id: u16) -> Vec<u8> {
    let mut f = vec![0u8; 130];
    f[0..2].copy_from_slice(&id.to_be_bytes());
    f[2..4].copy_from_slice(&512u16.to_be_bytes());
    f[4..6].copy_from_slice(&1234u16.to_be_bytes());
    f[6..10].copy_from_slice(&6300u32.to_be_bytes());
    if id == 0x0D4C {
        f[129] = rtinfer::power::um::um34c_checksum(&f.clone().try_into().expect("130"));
    } else {
        f[128] = 0xFF;
        f[129] = 0xF1;
    }
    f
}

#[test]
#[ignore = "writes the committed seed corpus; run by hand after changing a format"]
fn write_seeds() {
    // Y4M: every chroma layout, parameters on frame headers, rates, a truncated stream.
    write(
        "y4m",
        "mono_2x2",
        &y4m_stream("YUV4MPEG2 W2 H2 F25:1 Cmono", 4, 2),
    );
    write(
        "y4m",
        "420jpeg_4x4",
        &y4m_stream(
            "YUV4MPEG2 W4 H4 F30000:1001 Ip A1:1 C420jpeg XYSCSS=420JPEG XCOLORRANGE=FULL",
            16 + 2 * 4,
            3,
        ),
    );
    write(
        "y4m",
        "422_4x2",
        &y4m_stream("YUV4MPEG2 W4 H2 F60:1 C422", 8 + 2 * 4, 2),
    );
    write(
        "y4m",
        "411_8x2",
        &y4m_stream("YUV4MPEG2 W8 H2 F0:0 C411", 16 + 2 * 4, 1),
    );
    write(
        "y4m",
        "444alpha_2x2",
        &y4m_stream("YUV4MPEG2 W2 H2 C444alpha XCOLORRANGE=LIMITED", 16, 2),
    );
    let mut truncated = y4m_stream("YUV4MPEG2 W3 H3 C444", 27, 2);
    truncated.truncate(truncated.len() - 5);
    write("y4m", "truncated_444_3x3", &truncated);

    // Images: PNG in each colour type the folders meet, a JPEG, and a PNG whose header lies.
    use image::{DynamicImage, ImageFormat};
    let rgb = DynamicImage::ImageRgb8(image::RgbImage::from_fn(5, 3, |x, y| {
        image::Rgb([(x * 40) as u8, (y * 60) as u8, 128])
    }));
    write(
        "image",
        "rgb_5x3.png",
        &encoded(rgb.clone(), ImageFormat::Png),
    );
    write(
        "image",
        "rgb_5x3.jpg",
        &encoded(rgb.clone(), ImageFormat::Jpeg),
    );
    write(
        "image",
        "grey_4x4.png",
        &encoded(DynamicImage::ImageLuma8(rgb.to_luma8()), ImageFormat::Png),
    );
    write(
        "image",
        "rgba16_2x2.png",
        &encoded(
            DynamicImage::ImageRgba16(image::ImageBuffer::from_pixel(
                2,
                2,
                image::Rgba([1000u16, 2000, 3000, 40000]),
            )),
            ImageFormat::Png,
        ),
    );
    let mut huge = encoded(rgb, ImageFormat::Png);
    huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&huge[12..29]);
    huge[29..33].copy_from_slice(&crc.to_be_bytes());
    write("image", "declares_100000x100000.png", &huge);

    // HTTP: what curl, rtinfer status, Prometheus and nc send, and some refusals.
    for (name, req) in [
        (
            "curl_status",
            &b"GET /status HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"[..],
        ),
        (
            "activate_post",
            b"POST /models/my%20net/activate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ),
        (
            "body",
            b"POST /x HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world",
        ),
        ("nc_lf_only", b"GET /healthz HTTP/1.0\n\n"),
        ("absolute_form", b"HEAD http://localhost/metrics?x=1#f HTTP/1.1\r\n\r\n"),
        ("chunked", b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("tls_hello", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"),
    ] {
        write("http", name, req);
    }

    // Config: the documented example (every key), a reload pair split by NUL, values at edges.
    let example = std::fs::read(fuzz_dir().join("../systemd/rtinfer.toml")).expect("example");
    write("config", "example.toml", &example);
    write(
        "config",
        "reload_pair",
        b"[run]\nsource = \"synthetic://64x48@30\"\nfps = 30\n\0[run]\nsource = \"synthetic://64x48@60\"\nfps = 60\nbudget_ms = 5\n[status]\ntcp = \"127.0.0.1:0\"\n",
    );
    write(
        "config",
        "edges.toml",
        b"[run]\nfps = 10000\nbudget_ms = 60000\nduration_s = 0\nthreads = 256\n[models]\nwatch_dir = \"/tmp/m\"\nload_timeout_s = 86400\n[preprocess]\nmean = [0.5, 0.5, 0.5]\nstd = [1e-3, 1, 2]\n",
    );

    write("onnx", "conv_relu_pool_gemm.onnx", &onnx_seed());

    // Meters: selector byte, then frames.
    let mut tc66 = vec![0u8];
    tc66.extend(tc66_answer(63_000));
    write("meters", "tc66", &tc66);
    for (sel, id) in [(1u8, 0x0963u16), (2, 0x09C9), (3, 0x0D4C)] {
        let mut um = vec![sel];
        um.extend(um_answer(id));
        write("meters", &format!("um_{sel}"), &um);
    }
    write(
        "meters",
        "lines",
        b"\x09; sigrok-cli 0.7.2\r\n5.02 V 0.51 A\n2.5\rV=5.1 A=812\nW: 3.75\n",
    );
    mjpeg_seeds();
}

/// MJPEG frames as cameras send them, 16x8 `testsrc2` (ffmpeg, cjpeg): each sampling, AVI1
/// without DHT, restart intervals, grey, progressive (the fallback), each prefixed with the
/// target's first byte (the scale).
fn mjpeg_seeds() {
    use std::process::Command;
    let dir = std::env::temp_dir().join(format!("rtinfer-mjpeg-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ppm = dir.join("f.ppm");
    let run = |cmd: &mut Command| {
        let out = cmd
            .output()
            .expect("ffmpeg and cjpeg (scripts/setup.sh installs them)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let src = [
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=16x8:rate=1",
        "-frames:v",
        "1",
    ];
    let ffmpeg = |pix_fmt: &str| {
        let out = dir.join(format!("{pix_fmt}.jpg"));
        run(Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(src)
            .args(["-pix_fmt", pix_fmt, "-c:v", "mjpeg", "-huffman", "default"])
            .arg(&out));
        std::fs::read(&out).expect("jpeg")
    };
    run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(src)
        .arg(&ppm));
    let cjpeg = |args: &[&str]| run(Command::new("cjpeg").args(args).arg(&ppm));
    let strip = |j: &[u8]| {
        let mut out = j[..2].to_vec();
        let mut i = 2;
        while j[i + 1] != 0xDA {
            let len = (usize::from(j[i + 2]) << 8) | usize::from(j[i + 3]);
            if j[i + 1] != 0xC4 {
                out.extend_from_slice(&j[i..i + 2 + len]);
            }
            i += 2 + len;
        }
        out.extend_from_slice(&j[i..]);
        out
    };
    let c422 = ffmpeg("yuvj422p");
    let seeds = [
        ("422_full", 0u8, c422.clone()),
        ("422_half", 1, c422.clone()),
        ("422_avi1_eighth", 3, strip(&c422)),
        ("420_quarter", 2, ffmpeg("yuvj420p")),
        ("444_full", 0, ffmpeg("yuvj444p")),
        ("grey_half", 1, cjpeg(&["-grayscale"])),
        (
            "422_restart",
            0,
            cjpeg(&["-sample", "2x1", "-restart", "1B"]),
        ),
        ("progressive", 0, cjpeg(&["-progressive"])),
    ];
    for (name, scale, jpeg) in seeds {
        let mut bytes = vec![scale];
        bytes.extend_from_slice(&jpeg);
        write("mjpeg", name, &bytes);
    }
    std::fs::remove_dir_all(&dir).ok();
}
