//! Issue 17's inputs: files of any container and network streams decoded by an ffmpeg child,
//! on loopback only (ffmpeg as the HTTP sender, a real RTSP server fed by ffmpeg), and the
//! child's lifetime on every exit path (SIGKILL of the child, SIGTERM and SIGKILL of the daemon).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{self, Guard, curl, ffmpeg, rtinfer_ort, status_until, summary_field, wait_for};

/// A 2 s 320x240 30 fps H.264 MP4 made by ffmpeg.
pub fn mp4(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    let path = out.to_str().expect("utf-8 path");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=30",
        "-t",
        "2",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-f",
        "mp4",
        path,
    ]);
    out
}

/// Whether something listens on TCP `port` (from `/proc/net/tcp`, without connecting: an
/// ffmpeg `-listen 1` sender serves exactly one connection).
pub fn listening(port: u16) -> bool {
    let needle = format!(":{port:04X} ");
    std::fs::read_to_string("/proc/net/tcp").is_ok_and(|t| {
        t.lines().any(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| format!("{a} ").ends_with(&needle))
                && l.split_whitespace().nth(3) == Some("0A")
        })
    })
}

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The daemon's direct children (ffmpeg), from `/proc/PID/task/*/children`.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// Whether `pid` is a live process (a zombie waiting for its parent is not).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Waits up to `secs` for `pred`.
pub fn eventually(secs: f64, mut pred: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        if pred() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    pred()
}

/// The one ffmpeg child of a daemon, once it runs.
fn ffmpeg_child(daemon: u32) -> u32 {
    let mut found = None;
    assert!(
        eventually(20.0, || {
            found = children(daemon).into_iter().find(|c| {
                std::fs::read_to_string(format!("/proc/{c}/comm"))
                    .is_ok_and(|comm| comm.trim() == "ffmpeg")
            });
            found.is_some()
        }),
        "the daemon {daemon} has no ffmpeg child"
    );
    found.expect("child")
}

/// A daemon on `source` with a small model and a generous budget.
fn daemon(dir: &Path, source: &str, extra: &[&str]) -> (Guard, PathBuf) {
    let model = util::zoo_model(dir, "mobilenetv2", "cifar10", 0.25);
    let sock = dir.join("s.sock");
    let child = rtinfer_ort()
        .args([
            "run",
            "--source",
            source,
            "--budget-ms",
            "1000",
            "--warmup",
            "1",
        ])
        .args(extra)
        .arg("--model")
        .arg(&model)
        .arg("--socket")
        .arg(&sock)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rtinfer");
    (Guard::new(child), sock)
}

/// An ffmpeg HTTP sender (`-listen 1`: one client, like a camera's HTTP endpoint) of an
/// MPEG-TS test pattern at its real rate.
fn http_sender(port: u16, log: &Path) -> Guard {
    let child = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-re",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("testsrc=size=160x120:rate=25")
        .args([
            "-c:v",
            "mpeg2video",
            "-q:v",
            "5",
            "-f",
            "mpegts",
            "-listen",
            "1",
        ])
        .arg(format!("http://127.0.0.1:{port}/cam.ts"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("sender log"))
        .spawn()
        .expect("ffmpeg sender (scripts/setup.sh installs ffmpeg)");
    Guard::new(child)
}

/// A sender listening on `port`: started again while one exits before it listens (a bind
/// that raced the old connection's teardown); its stderr says why in the failure message.
fn listening_sender(port: u16, log: &Path) -> Guard {
    let mut sender = http_sender(port, log);
    let ok = eventually(20.0, || {
        if listening(port) {
            return true;
        }
        if matches!(sender.try_wait(), Ok(Some(_))) {
            sender = http_sender(port, log);
        }
        false
    });
    let why = std::fs::read_to_string(log).unwrap_or_default();
    assert!(ok, "the sender does not listen on {port}: {why}");
    sender
}

fn captured(v: &Value) -> u64 {
    v["frames"]["captured"].as_u64().unwrap_or(0)
}

#[test]
fn an_mp4_and_an_mp4_renamed_y4m_run_to_their_end() {
    let dir = util::tempdir();
    let clip = mp4(dir.path(), "clip.mp4");
    let renamed = dir.path().join("renamed.y4m");
    std::fs::copy(&clip, &renamed).expect("copy");
    for source in [
        format!("file://{}", clip.display()),
        renamed.display().to_string(),
    ] {
        let (child, _sock) = daemon(dir.path(), &source, &[]);
        let out = child.into_inner().wait_with_output().expect("wait");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{source}: {stderr}");
        assert_eq!(
            summary_field(&stdout, "captured"),
            Some(60),
            "{source}: {stdout}"
        );
        // Every decoded frame is accounted for; how many the single slot dropped while
        // inference was busy depends on the machine's load, not on the source.
        let n = |k| summary_field(&stdout, k).unwrap_or(0);
        assert!(n("processed") > 0, "{source}: {stdout}");
        assert_eq!(
            n("processed") + n("dropped") + n("cancelled"),
            60,
            "{source}: {stdout}"
        );
        assert!(stderr.contains("ffmpeg (pid"), "{stderr}");
    }
}

#[test]
fn an_mp4_on_a_pipe_gets_a_pointer_not_bad_magic() {
    let dir = util::tempdir();
    let clip = std::fs::read(mp4(dir.path(), "clip.mp4")).expect("read");
    let model = util::zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let mut child = Guard::new(
        rtinfer_ort()
            .args(["run", "--source", "pipe://", "--model"])
            .arg(&model)
            .arg("--socket")
            .arg(dir.path().join("s.sock"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start"),
    );
    let mut stdin = child.stdin.take().expect("stdin");
    // The daemon stops reading after the header line; a closed pipe is fine.
    let _ = std::io::Write::write_all(&mut stdin, &clip);
    drop(stdin);
    let out = child.into_inner().wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("starts like MP4"), "{stderr}");
    assert!(stderr.contains("file:///"), "{stderr}");
    assert!(!stderr.contains("bad magic"), "{stderr}");
}

#[test]
fn without_ffmpeg_the_error_says_how_to_install_it() {
    let dir = util::tempdir();
    let clip = mp4(dir.path(), "clip.mp4");
    let model = util::zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let empty = dir.path().join("empty-bin");
    std::fs::create_dir(&empty).expect("dir");
    let out = rtinfer_ort()
        .args(["run", "--source"])
        .arg(&clip)
        .arg("--model")
        .arg(&model)
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .env("PATH", &empty)
        .env_remove("RTINFER_FFMPEG")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("apt-get install ffmpeg"), "{stderr}");
    assert!(stderr.contains(&clip.display().to_string()), "{stderr}");
}

/// An HTTP camera that goes away twice (its ffmpeg child killed, then the sender restarted)
/// never ends the daemon; SIGTERM then stops it cleanly and leaves no ffmpeg behind.
#[test]
fn an_http_stream_survives_a_killed_child_and_a_sender_restart() {
    let dir = util::tempdir();
    let port = free_port();
    let log = dir.path().join("sender.log");
    let mut sender = listening_sender(port, &log);
    let url = format!("http://127.0.0.1:{port}/cam.ts");
    let (mut child, sock) = daemon(dir.path(), &url, &[]);
    assert!(wait_for(&sock, 30.0), "socket");
    let v = status_until(&sock, 20.0, |v| captured(v) >= 10);
    assert!(captured(&v) >= 10, "{v}");
    assert_eq!(v["source"]["connected"], true, "{v}");
    let first = ffmpeg_child(child.id());

    // The child dies (a decoder crash): the sender, which serves one client, ends with it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill ffmpeg child");
    let _ = sender.wait();
    let v = status_until(&sock, 20.0, |v| {
        v["source"]["connected"] == false && v["state"] == "degraded"
    });
    assert_eq!(v["source"]["connected"], false, "{v}");
    assert_eq!(v["state"], "degraded", "{v}");
    assert!(!alive(first), "the killed child was reaped");
    let before = captured(&v);
    // The camera comes back.
    let _sender = listening_sender(port, &log);
    let v = status_until(&sock, 30.0, |v| {
        v["source"]["connected"] == true && captured(v) >= before + 10
    });
    assert!(
        captured(&v) >= before + 10,
        "frames after the reconnect: {v}"
    );
    let second = ffmpeg_child(child.id());
    assert_ne!(first, second);

    util::signal(&child, nix::sys::signal::Signal::SIGTERM);
    let status = child.wait().expect("wait");
    assert!(status.success(), "SIGTERM is a clean stop");
    assert!(
        eventually(5.0, || !alive(second)),
        "ffmpeg {second} outlived the daemon"
    );
}

/// A SIGKILLed daemon runs no destructor: the kernel ends its ffmpeg child (PDEATHSIG).
#[test]
fn a_sigkilled_daemon_takes_its_ffmpeg_child_along() {
    let dir = util::tempdir();
    let clip = mp4(dir.path(), "clip.mp4");
    let source = format!("file://{}?loop=true", clip.display());
    let (mut child, sock) = daemon(dir.path(), &source, &[]);
    assert!(wait_for(&sock, 30.0), "socket");
    let ff = ffmpeg_child(child.id());
    assert!(alive(ff));
    child.kill().expect("SIGKILL the daemon");
    let _ = child.wait();
    assert!(eventually(5.0, || !alive(ff)), "ffmpeg {ff} orphaned");
}

/// An RTSP camera: a real RTSP server (gst-rtsp-server through python3-gi) relaying what an
/// ffmpeg sender streams to it, read over TCP interleaving and over UDP.
#[test]
fn an_rtsp_stream_runs_over_tcp_and_udp() {
    let dir = util::tempdir();
    let (rtsp_port, rtp_port) = (free_port(), free_port());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rtsp_server.py");
    let mut server = Guard::new(
        // Debian's python3, which has python3-gi (not a pyenv or venv one earlier on PATH).
        Command::new("/usr/bin/python3")
            .arg(&script)
            .args([rtsp_port.to_string(), rtp_port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("/usr/bin/python3 tests/rtsp_server.py"),
    );
    // The server prints one line once it listens.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("server ready line");
    assert!(line.starts_with("listening"), "rtsp server: {line}");
    let _sender = Guard::new(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-nostdin",
                "-re",
                "-f",
                "lavfi",
                "-i",
            ])
            .arg("testsrc=size=320x240:rate=30")
            .args([
                "-c:v",
                "libx264",
                "-tune",
                "zerolatency",
                "-g",
                "15",
                "-pix_fmt",
                "yuv420p",
            ])
            .args(["-f", "rtp"])
            .arg(format!("rtp://127.0.0.1:{rtp_port}?pkt_size=1200"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg rtp sender"),
    );
    for transport in ["tcp", "udp"] {
        let sub = dir.path().join(transport);
        std::fs::create_dir(&sub).expect("dir");
        let url = format!("rtsp://127.0.0.1:{rtsp_port}/cam?transport={transport}");
        let (child, sock) = daemon(&sub, &url, &[]);
        assert!(wait_for(&sock, 30.0), "{transport}: socket");
        let v = status_until(&sock, 20.0, |v| captured(v) >= 15);
        assert!(captured(&v) >= 15, "{transport}: {v}");
        assert_eq!(v["source"]["width"], 320, "{v}");
        drop(child);
        let (code, _) = curl(&sock, "/status");
        assert_ne!(code, 200, "the daemon was stopped");
    }
}

/// A multicast-style camera: MPEG-TS over plain UDP, thinned by `?fps=` to the rate the
/// daemon asks for (ffmpeg's `fps` filter in the child, so /status reports that rate).
#[test]
fn a_udp_stream_runs_at_the_fps_asked_for() {
    let dir = util::tempdir();
    let port = free_port();
    let _sender = Guard::new(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-nostdin",
                "-re",
                "-f",
                "lavfi",
                "-i",
            ])
            .arg("testsrc=size=160x120:rate=25")
            .args(["-c:v", "mpeg2video", "-q:v", "5", "-g", "5", "-f", "mpegts"])
            .arg(format!("udp://127.0.0.1:{port}?pkt_size=1316"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg udp sender"),
    );
    let url = format!("udp://127.0.0.1:{port}?fps=10");
    let (child, sock) = daemon(dir.path(), &url, &[]);
    assert!(wait_for(&sock, 30.0), "socket");
    let v = status_until(&sock, 20.0, |v| captured(v) >= 10);
    assert!(captured(&v) >= 10, "{v}");
    assert_eq!(v["source"]["connected"], true, "{v}");
    assert_eq!(v["source"]["width"], 160, "{v}");
    assert_eq!(v["source"]["fps"], 10.0, "{v}");
    let ff = ffmpeg_child(child.id());
    let args = std::fs::read(format!("/proc/{ff}/cmdline")).expect("cmdline");
    let args = String::from_utf8_lossy(&args).replace('\0', " ");
    assert!(args.contains("-vf fps=10"), "{args}");
    assert!(
        args.contains(&format!("-i udp://127.0.0.1:{port} ")),
        "our options are not passed to ffmpeg: {args}"
    );
    drop(child);
    assert!(eventually(5.0, || !alive(ff)), "ffmpeg {ff} orphaned");
}
