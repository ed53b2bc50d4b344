//! Shared helpers for the integration tests: the binary under test, per-test temp dirs, and
//! the ONNX Runtime library fetched by `scripts/setup.sh`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The `rtinfer` binary cargo built for these tests.
pub fn rtinfer() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rtinfer"));
    c.env(
        "RUST_LOG",
        std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
    );
    c
}

/// A fresh temporary directory removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rtinfer-test-")
        .tempdir()
        .expect("create temp dir")
}

/// Path of the ONNX Runtime shared library for this host, as fetched by `scripts/setup.sh`
/// into `.cache/onnxruntime/<arch>/`. `ORT_DYLIB_PATH` wins when set.
pub fn ort_library() -> PathBuf {
    if let Ok(p) = std::env::var("ORT_DYLIB_PATH") {
        return PathBuf::from(p);
    }
    let arch = std::env::consts::ARCH;
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".cache/onnxruntime")
        .join(arch)
        .join("libonnxruntime.so.1.31.1");
    assert!(
        p.exists(),
        "{} missing: run scripts/setup.sh first",
        p.display()
    );
    p
}

/// `rtinfer` with `ORT_DYLIB_PATH` pointing at the fetched library.
pub fn rtinfer_ort() -> Command {
    let mut c = rtinfer();
    c.env("ORT_DYLIB_PATH", ort_library());
    c
}

/// Generates a zoo model into `dir` with the real binary and returns its path.
pub fn zoo_model(dir: &std::path::Path, arch: &str, dataset: &str, ratio: f64) -> PathBuf {
    let out = dir.join(format!("{arch}-{dataset}-{ratio}.onnx"));
    let o = rtinfer()
        .args([
            "zoo",
            "--arch",
            arch,
            "--dataset",
            dataset,
            "--ratio",
            &ratio.to_string(),
            "-o",
        ])
        .arg(&out)
        .output()
        .expect("run rtinfer zoo");
    assert!(
        o.status.success(),
        "zoo failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// Runs curl on `url` (with `target` options such as `--unix-socket S`, then `args`) and returns
/// (HTTP code, body); panics when curl prints no code. For one request to a server known to be
/// up; [`curl`] is for polling.
pub fn curl_to(target: &[&str], args: &[&str], url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(target)
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let text = String::from_utf8(out.stdout).expect("curl output is UTF-8");
    let (body, code) = text.rsplit_once('\n').expect("curl printed the code");
    let code = code
        .parse()
        .unwrap_or_else(|_| panic!("curl code {code:?}, stderr {:?}", out.stderr));
    (code, body.to_string())
}

/// [`curl_to`] `http://localhost/PATH` over the Unix socket `sock`.
pub fn curl_unix(sock: &std::path::Path, args: &[&str], path: &str) -> (u16, String) {
    let sock = sock.to_str().expect("UTF-8 temp path");
    curl_to(
        &["--unix-socket", sock],
        args,
        &format!("http://localhost{path}"),
    )
}

/// Sends `sig` to a child process (the daemon, or an ffmpeg feeding it).
pub fn signal(child: &std::process::Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).expect("signal");
}

/// Runs ffmpeg with `args` (quiet, never reading stdin, overwriting outputs) and returns its
/// stdout; panics with its stderr on failure.
pub fn ffmpeg(args: &[&str]) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ffmpeg (scripts/setup.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `curl --unix-socket SOCK http://localhost/PATH`: (HTTP status, body); status 0 when nothing
/// answered (a daemon still starting), so it suits polling.
pub fn curl(socket: &std::path::Path, path: &str) -> (u16, String) {
    let o = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "-w",
            "\n%{http_code}",
            "--unix-socket",
        ])
        .arg(socket)
        .arg(format!("http://localhost{path}"))
        .output()
        .expect("curl is installed (scripts/setup.sh)");
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Waits until `path` exists (a socket being bound), up to `secs`.
pub fn wait_for(path: &std::path::Path, secs: f64) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs_f64(secs);
    while std::time::Instant::now() < end {
        if path.exists() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

/// A number after `key` in the final summary, e.g. `summary_field(out, "processed")`.
pub fn summary_field(stdout: &str, key: &str) -> Option<u64> {
    let words: Vec<&str> = stdout.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[0] == key)
        .and_then(|w| w[1].parse().ok())
}

/// The process's ONNX Runtime environment, loaded through rtinfer's own library search (ort
/// allows one environment per process, so every in-process test shares it).
pub fn ort_env() -> &'static ort::environment::Environment {
    rtinfer::backend::ort_library::load(Some(&ort_library())).expect("load ONNX Runtime");
    rtinfer::backend::ort_library::environment().expect("environment after load")
}

/// The binary for timing-sensitive tests: the release build when `RTINFER_RELEASE_BIN` names it
/// (scripts/test.sh builds it), else the debug build. Take [`serial`] around such tests.
pub fn rtinfer_timed() -> Command {
    let mut c = match std::env::var_os("RTINFER_RELEASE_BIN").filter(|p| !p.is_empty()) {
        Some(p) => Command::new(p),
        None => Command::new(env!("CARGO_BIN_EXE_rtinfer")),
    };
    c.env(
        "RUST_LOG",
        std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
    );
    c.env("ORT_DYLIB_PATH", ort_library());
    c
}

/// Serialises timing-sensitive tests within the test binary.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// `GET path` as JSON, retrying until `pred` holds or `secs` pass; returns the last document.
pub fn status_until(
    socket: &std::path::Path,
    secs: f64,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let end = std::time::Instant::now() + std::time::Duration::from_secs_f64(secs);
    let mut last = serde_json::Value::Null;
    while std::time::Instant::now() < end {
        let (code, body) = curl(socket, "/status");
        if code == 200 {
            last = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
            if pred(&last) {
                return last;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    last
}

/// An in-process pipeline (ONNX Runtime engine, one intra-op thread, default preprocessing) for
/// `model`, as the daemon builds it.
pub fn ort_pipeline(model: &std::path::Path) -> rtinfer::pipeline::Pipeline {
    use rtinfer::backend::Backend;
    use rtinfer::backend::onnx::{OnnxBackend, OrtOptions};
    let backend = OnnxBackend::new(OrtOptions {
        library: Some(ort_library()),
        ..OrtOptions::default()
    })
    .expect("ONNX Runtime loads");
    let engine = backend
        .load(model, &rtinfer::backend::LoadOptions { threads: 1 })
        .expect("model loads");
    let pre = rtinfer::preprocess::Preprocessor::new(
        engine.info().input,
        rtinfer::preprocess::PreprocessOptions::default(),
    )
    .expect("preprocessor");
    rtinfer::pipeline::Pipeline::new(engine, pre)
}

/// A fake systemd: a datagram socket at `dir/notify` to pass as `NOTIFY_SOCKET`, reads timing
/// out after 50 ms so collectors can watch the clock.
pub fn fake_notify_socket(dir: &std::path::Path) -> (std::os::unix::net::UnixDatagram, PathBuf) {
    let path = dir.join("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind notify socket");
    sock.set_read_timeout(Some(std::time::Duration::from_millis(50)))
        .expect("read timeout");
    (sock, path)
}

/// Collects sd_notify datagrams until `until` matches one or `secs` pass.
pub fn collect_datagrams(
    sock: &std::os::unix::net::UnixDatagram,
    secs: f64,
    until: impl Fn(&str) -> bool,
) -> Vec<String> {
    let end = std::time::Instant::now() + std::time::Duration::from_secs_f64(secs);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < end {
        if let Ok(n) = sock.recv(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).to_string();
            let stop = until(&m);
            got.push(m);
            if stop {
                break;
            }
        }
    }
    got
}

/// Compiles the C test double `source` (relative to the crate root) into the shared library
/// `out_dir/name` (under the test target's temporary folder) with `cc` (or `$CC`), and returns
/// its path. The library is written under a temporary name and renamed into place, so parallel
/// test binaries never load a half-written file.
pub fn compile_shared(source: &str, out_dir: &str, name: &str, extra: &[&str]) -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(source);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(out_dir);
    std::fs::create_dir_all(&dir).expect("create the double's folder");
    let out = dir.join(name);
    let tmp = dir.join(format!("{name}.{}.part", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let o = std::process::Command::new(&cc)
        .args(["-O1", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared"])
        .args(extra)
        .arg("-o")
        .arg(&tmp)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("run {cc} (a C compiler builds the test doubles): {e}"));
    assert!(
        o.status.success(),
        "{cc} failed on {}: {}",
        src.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::rename(&tmp, &out).expect("move the double into place");
    out
}

/// `captured == processed + dropped + cancelled + in_flight` in a `/status` document.
pub fn counters_add_up(v: &serde_json::Value) -> bool {
    let f = &v["frames"];
    let g = |k: &str| f[k].as_u64().unwrap_or(u64::MAX / 8);
    g("captured") == g("processed") + g("dropped") + g("cancelled") + g("in_flight")
}

/// The stages that follow each other from capture to result in `/status`.
pub const CHAIN: [&str; 5] = ["capture", "queue", "preprocess", "inference", "postprocess"];

/// Whether `/status`'s lifetime means of the chained stages add up to `end_to_end`'s within 1 %
/// (over the same frames); the error says by how much they do not.
pub fn stages_add_up(v: &serde_json::Value) -> Result<(), String> {
    let l = &v["latency_ms_lifetime"];
    let mean = |s: &str| l[s]["mean"].as_f64().ok_or(format!("{s}.mean missing"));
    let count = |s: &str| l[s]["count"].as_u64().unwrap_or(0);
    let e2e = mean("end_to_end")?;
    let mut sum = 0.0;
    for s in CHAIN {
        if count(s) != count("end_to_end") {
            return Err(format!(
                "{s} has {} frames, end_to_end {}",
                count(s),
                count("end_to_end")
            ));
        }
        sum += mean(s)?;
    }
    let gap = (sum - e2e).abs() / e2e;
    if gap <= 0.01 {
        Ok(())
    } else {
        Err(format!(
            "stages add up to {sum:.4} ms, end_to_end is {e2e:.4} ms ({:.2} %)",
            gap * 100.0
        ))
    }
}

/// A child process (a daemon, an ffmpeg sender, a broker) that is killed and reaped when the
/// guard drops, so a failed assertion never leaves it running. Derefs to the `Child`.
pub struct Guard(Option<std::process::Child>);

impl Guard {
    pub fn new(child: std::process::Child) -> Guard {
        Guard(Some(child))
    }

    /// The child, no longer guarded (to wait for its exit status yourself).
    pub fn into_inner(mut self) -> std::process::Child {
        self.0.take().expect("guarded child")
    }
}

impl std::ops::Deref for Guard {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        self.0.as_ref().expect("guarded child")
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("guarded child")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take()
            && matches!(c.try_wait(), Ok(None))
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `promtool ARGS` with `input` on stdin: (success, stdout + stderr).
pub fn promtool(args: &[&str], input: &[u8]) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool (scripts/setup.sh installs it): {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("promtool stdin");
    let out = child.wait_with_output().expect("promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
