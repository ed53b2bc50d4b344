//! Power meters: the real serialport code against pseudo-terminal emulators of the TC66C, the UM
//! series and a text meter (the daemon's `/status` must show their exact watts, count their bad
//! frames, and survive an unplug/replug), `exec` restarts, fake sysfs trees laid out like the
//! boards' (Jetson INA3221 in both layouts, ZCU104 INA226, RAPL with wrap-around), and the
//! study's figures computed by hand on a scripted trace.
//!
//! The emulators are written from the protocol descriptions (sigrok's `rdtech-tc`/`rdtech-um`),
//! not from rtinfer's decoders: their own CRC, their own copy of the key and of the UM34C's
//! checksum positions, encryption straight through the `aes` crate.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aes::Aes256;
use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use rtinfer::power::hwmon::{Hwmon, HwmonChip};
use rtinfer::power::rapl::Rapl;
use rtinfer::power::{Meter, MeterError, PowerMonitor, PowerOptions, PowerStats, RawPower, Sample};
use rtinfer::time::MonoTime;
use serde_json::Value;

use crate::util::{self, curl, rtinfer_ort, wait_for, zoo_model};

// ---------------------------------------------------------------------------------------------
// Emulators on pty masters

/// What the emulator answers to the next polls (then good frames again).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    BadCrc,
    Short,
    Garbage,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Proto {
    Tc66,
    /// A UM meter with this model id.
    Um(u16),
    /// Streams `V=.. I=..` lines every 50 ms.
    Text,
}

/// The emulated device's state, shared with the test.
#[derive(Debug, Default)]
struct Script {
    /// TC66C power in 1e-4 W, UM power in 1e-3 W; text meters print volts/amps instead.
    power_raw: u32,
    volts_raw: u16,
    amps_raw: u16,
    text: String,
    pending: VecDeque<Answer>,
    bad_sent: u64,
    good_sent: u64,
}

const TC66_KEY: [u8; 32] = [
    0x58, 0x21, 0xfa, 0x56, 0x01, 0xb2, 0xf0, 0x26, 0x87, 0xff, 0x12, 0x04, 0x62, 0x2a, 0x4f, 0xb0,
    0x86, 0xf4, 0x02, 0x60, 0x81, 0x6f, 0x9a, 0x0b, 0xa7, 0xf1, 0x06, 0x61, 0x9a, 0xb8, 0x72, 0x88,
];

fn modbus_crc(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for b in data {
        crc ^= *b as u16;
        for _ in 0..8 {
            let lsb = crc & 1;
            crc >>= 1;
            if lsb == 1 {
                crc ^= 0xA001;
            }
        }
    }
    crc
}

/// A TC66C answer: three `pacN` blocks, CRCs (block 2's spoiled for `BadCrc`), AES-256-ECB.
fn tc66_frame(power_raw: u32, bad_crc: bool) -> Vec<u8> {
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
        let mut crc = modbus_crc(&b[..60]) as u32;
        if bad_crc && k == 1 {
            crc ^= 0x0101;
        }
        b[60..64].copy_from_slice(&crc.to_le_bytes());
    }
    let aes = Aes256::new(GenericArray::from_slice(&TC66_KEY));
    for chunk in plain.chunks_exact_mut(16) {
        aes.encrypt_block(GenericArray::from_mut_slice(chunk));
    }
    plain
}

/// A UM answer (big-endian), with the model's end check.
fn um_frame(id: u16, s: &Script) -> Vec<u8> {
    let mut f = vec![0u8; 130];
    f[0..2].copy_from_slice(&id.to_be_bytes());
    f[2..4].copy_from_slice(&s.volts_raw.to_be_bytes());
    f[4..6].copy_from_slice(&s.amps_raw.to_be_bytes());
    f[6..10].copy_from_slice(&s.power_raw.to_be_bytes());
    if id == 0x0D4C {
        let at = [
            1, 3, 7, 9, 15, 17, 19, 23, 31, 39, 41, 45, 49, 53, 55, 57, 59, 63, 67, 69, 73, 79, 83,
            89, 97, 99, 109, 111, 113, 119, 121, 127,
        ];
        f[129] = at.iter().fold(0u8, |x, &i| x ^ f[i]);
    } else {
        f[128] = 0xFF;
        f[129] = 0xF1;
    }
    f
}

/// One emulated device: a pty whose slave is reachable under a stable symlink.
struct Emulator {
    script: Arc<Mutex<Script>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Emulator {
    /// Opens a pty and points `link` at its slave (atomically replacing an old link).
    fn plug(link: &Path, proto: Proto, script: Script) -> Emulator {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        // Daemons spawned by parallel tests must not inherit the pair: an inherited master
        // would keep the device "plugged" after we close ours.
        for fd in [&pty.master, &pty.slave] {
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )
            .expect("FD_CLOEXEC");
        }
        let slave_path = nix::unistd::ttyname(&pty.slave).expect("ttyname");
        let mut t = nix::sys::termios::tcgetattr(&pty.slave).expect("tcgetattr");
        nix::sys::termios::cfmakeraw(&mut t);
        nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &t)
            .expect("raw slave");
        let flags = nix::fcntl::OFlag::from_bits_truncate(
            nix::fcntl::fcntl(&pty.master, nix::fcntl::FcntlArg::F_GETFL).expect("F_GETFL"),
        );
        nix::fcntl::fcntl(
            &pty.master,
            nix::fcntl::FcntlArg::F_SETFL(flags | nix::fcntl::OFlag::O_NONBLOCK),
        )
        .expect("nonblocking master");
        let tmp = link.with_extension("new");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&slave_path, &tmp).expect("symlink");
        std::fs::rename(&tmp, link).expect("replace link");
        let script = Arc::new(Mutex::new(script));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (script, stop) = (Arc::clone(&script), Arc::clone(&stop));
            let master = File::from(pty.master);
            let slave: OwnedFd = pty.slave;
            move || {
                serve(master, proto, &script, &stop);
                drop(slave);
            }
        });
        Emulator {
            script,
            stop,
            thread: Some(thread),
        }
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap()
    }

    /// Closes the pty (master and slave): the device is gone.
    fn unplug(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("emulator thread");
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_all(master: &mut File, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match master.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(_) => return,
        }
    }
}

fn serve(mut master: File, proto: Proto, script: &Mutex<Script>, stop: &AtomicBool) {
    let mut inbox: Vec<u8> = Vec::new();
    let mut buf = [0u8; 256];
    let mut next_line = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        match master.read(&mut buf) {
            Ok(n) => inbox.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            // EIO while no one has the slave open (we keep it open, so rarely).
            Err(_) => {}
        }
        let mut s = script.lock().unwrap();
        match proto {
            Proto::Tc66 => {
                while let Some(i) = inbox.windows(5).position(|w| w == b"getva") {
                    inbox.drain(..i + 5);
                    let answer = s.pending.pop_front();
                    let frame = match answer {
                        None => tc66_frame(s.power_raw, false),
                        Some(Answer::BadCrc) => tc66_frame(s.power_raw, true),
                        Some(Answer::Short) => tc66_frame(s.power_raw, false)[..100].to_vec(),
                        Some(Answer::Garbage) => (0..192).map(|i| (i * 37 % 251) as u8).collect(),
                    };
                    if answer.is_some() {
                        s.bad_sent += 1;
                    } else {
                        s.good_sent += 1;
                    }
                    write_all(&mut master, &frame);
                }
            }
            Proto::Um(id) => {
                while let Some(i) = inbox.iter().position(|&b| b == 0xF0) {
                    inbox.drain(..=i);
                    let answer = s.pending.pop_front();
                    let mut frame = um_frame(id, &s);
                    match answer {
                        None => s.good_sent += 1,
                        Some(a) => {
                            s.bad_sent += 1;
                            match a {
                                Answer::BadCrc => frame[129] ^= 0x5A,
                                Answer::Short => frame.truncate(60),
                                Answer::Garbage => frame[0] = 0x42,
                            }
                        }
                    }
                    write_all(&mut master, &frame);
                }
            }
            Proto::Text => {
                inbox.clear();
                if Instant::now() >= next_line {
                    next_line += Duration::from_millis(50);
                    let line = match s.pending.pop_front() {
                        None => {
                            s.good_sent += 1;
                            format!("{}\r\n", s.text)
                        }
                        Some(_) => {
                            s.bad_sent += 1;
                            "INA219 ready, no numbers here\r\n".to_string()
                        }
                    };
                    write_all(&mut master, line.as_bytes());
                }
            }
        }
        drop(s);
        std::thread::sleep(Duration::from_millis(2));
    }
}

// ---------------------------------------------------------------------------------------------
// The daemon

/// `rtinfer run` with a `[power]` section, a synthetic source and a status socket.
fn daemon(dir: &Path, power_toml: &str) -> (Child, PathBuf) {
    let model = zoo_model(dir, "mobilenetv2", "cifar10", 0.25);
    let sock = dir.join("status.sock");
    let cfg = dir.join("rtinfer.toml");
    std::fs::write(&cfg, format!("[power]\n{power_toml}\n")).expect("write config");
    let child = rtinfer_ort()
        .args([
            "run",
            "--source",
            "synthetic://160x120@60",
            "--duration",
            "90",
            "--warmup",
            "2",
            "--config",
        ])
        .arg(&cfg)
        .arg("--socket")
        .arg(&sock)
        .arg("--model")
        .arg(&model)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start daemon");
    (child, sock)
}

fn status(sock: &Path) -> Value {
    let (code, body) = curl(sock, "/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status is JSON")
}

/// Polls `/status` until `ok` holds (up to `secs`): whether it did, and the last document.
fn status_until(sock: &Path, secs: f64, ok: impl Fn(&Value) -> bool) -> (bool, Value) {
    let v = util::status_until(sock, secs, &ok);
    (ok(&v), v)
}

/// SIGINT, then the exit status and stdout (the final summary).
fn stop(child: Child) -> (bool, String, String) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let out = child.wait_with_output().expect("daemon exits");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn tc66c_watts_idle_and_bad_frames_reach_status() {
    let dir = util::tempdir();
    let link = dir.path().join("ttyTC66");
    // 2.5000 W while the daemon measures idle (before the model loads).
    let emu = Emulator::plug(
        &link,
        Proto::Tc66,
        Script {
            power_raw: 25_000,
            ..Script::default()
        },
    );
    let (child, sock) = daemon(
        dir.path(),
        &format!("meter = \"tc66c://{}\"\nidle_seconds = 1.0", link.display()),
    );
    assert!(wait_for(&sock, 60.0), "socket never appeared");
    // Load: 6.3250 W.
    emu.script().power_raw = 63_250;
    let (ok, v) = status_until(&sock, 10.0, |v| v["power"]["watts"] == 6.325);
    assert!(ok, "watts never showed 6.325: {}", v["power"]);
    emu.script().pending.extend([
        Answer::BadCrc,
        Answer::BadCrc,
        Answer::Short,
        Answer::Garbage,
    ]);
    let (ok, v) = status_until(&sock, 15.0, |v| {
        v["power"]["bad_frames"].as_u64() >= Some(4)
    });
    assert!(ok, "bad frames not counted: {}", v["power"]);
    // Good frames again after the resynchronisation, and nothing counted twice.
    let before = emu.script().good_sent;
    let (ok, _) = status_until(&sock, 10.0, |_| emu.script().good_sent >= before + 5);
    assert!(ok, "the reader did not resynchronise");
    let v = status(&sock);
    let p = &v["power"];
    assert_eq!(emu.script().bad_sent, 4);
    assert_eq!(p["bad_frames"], 4, "{p}");
    assert_eq!(p["connected"], true);
    assert_eq!(p["watts"], 6.325);
    assert_eq!(p["volts"], 5.1234);
    assert_eq!(p["amps"], 1.23456);
    assert_eq!(p["meter"], format!("tc66c://{}", link.display()));
    assert_eq!(p["idle_watts"], 2.5, "{p}");
    assert_eq!(p["peak_watts"], 6.325, "{p}");
    assert!(
        close(p["dynamic_watts"].as_f64().unwrap(), 6.325 - 2.5),
        "{p}"
    );
    let fps = v["fps"].as_f64().expect("fps");
    let mean = p["mean_watts"].as_f64().expect("mean_watts");
    assert!((2.5..=6.325).contains(&mean), "{p}");
    assert!(
        close(p["throughput_per_watt"].as_f64().unwrap(), fps / 6.325),
        "{v}"
    );
    assert!(
        close(p["joules_per_frame"].as_f64().unwrap(), mean / fps),
        "{v}"
    );
    assert!(p["energy_j"].as_f64().unwrap() > 0.0);
    assert_eq!(v["state"], "running");
    // The same figures as Prometheus gauges.
    let (code, metrics) = util::curl(&sock, "/metrics");
    assert_eq!(code, 200, "{metrics}");
    let gauge = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    assert_eq!(gauge("rtinfer_power_watts"), 6.325, "{metrics}");
    assert_eq!(gauge("rtinfer_power_idle_watts"), 2.5, "{metrics}");
    assert_eq!(gauge("rtinfer_power_peak_watts"), 6.325, "{metrics}");
    assert_eq!(gauge("rtinfer_power_connected"), 1.0, "{metrics}");
    assert_eq!(gauge("rtinfer_power_bad_frames_total"), 4.0, "{metrics}");
    let (ok, stdout, stderr) = stop(child);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!("power (tc66c://{})", link.display()))
            && stdout.contains("idle 2.500 W")
            && stdout.contains("peak 6.325 W")
            && stdout.contains("bad frames 4"),
        "{stdout}"
    );
    emu.unplug();
}

#[test]
fn um25c_unplug_and_replug_while_frames_keep_flowing() {
    let dir = util::tempdir();
    let link = dir.path().join("rfcomm0");
    let um = |power_raw| Script {
        power_raw,
        volts_raw: 5000,
        amps_raw: 4000,
        ..Script::default()
    };
    let emu = Emulator::plug(&link, Proto::Um(0x09C9), um(2000));
    let (child, sock) = daemon(
        dir.path(),
        &format!("meter = \"um25c://{}\"\nidle_watts = 1.0", link.display()),
    );
    assert!(wait_for(&sock, 60.0), "socket never appeared");
    let (ok, v) = status_until(&sock, 10.0, |v| v["power"]["watts"] == 2.0);
    assert!(ok, "{}", v["power"]);
    assert_eq!(v["power"]["volts"], 5.0);
    assert_eq!(v["power"]["amps"], 0.4);
    assert_eq!(v["power"]["idle_watts"], 1.0);

    emu.unplug();
    let (ok, v) = status_until(&sock, 10.0, |v| v["power"]["connected"] == false);
    if !ok {
        let (_, _, stderr) = stop(child);
        panic!("unplug not noticed: {}\n{stderr}", v["power"]);
    }
    assert_eq!(v["power"]["watts"], Value::Null);
    assert_eq!(v["state"], "degraded");
    let processed = |v: &Value| v["frames"]["processed"].as_u64().unwrap();
    let p0 = processed(&v);
    std::thread::sleep(Duration::from_millis(1500));
    let v = status(&sock);
    assert!(processed(&v) > p0, "frames stopped while unplugged");
    assert_eq!(v["power"]["connected"], false);

    let emu = Emulator::plug(&link, Proto::Um(0x09C9), um(3500));
    let (ok, v) = status_until(&sock, 40.0, |v| {
        v["power"]["connected"] == true && v["power"]["watts"] == 3.5
    });
    assert!(ok, "replug not noticed: {}", v["power"]);
    assert!(processed(&v) > p0);
    assert_eq!(v["state"], "running");
    let (ok, _, stderr) = stop(child);
    assert!(ok, "{stderr}");
    assert_eq!(
        stderr.matches("reconnecting").count(),
        1,
        "one log line for the loss: {stderr}"
    );
    emu.unplug();
}

#[test]
fn text_meter_volts_times_amps_and_garbage_lines() {
    let dir = util::tempdir();
    let link = dir.path().join("ttyUSB0");
    let emu = Emulator::plug(
        &link,
        Proto::Text,
        Script {
            text: "V=12.000 I=0.250".into(),
            ..Script::default()
        },
    );
    let (child, sock) = daemon(
        dir.path(),
        &format!(
            "meter = 'line://{}?baud=9600&regex=V=(?P<volts>[0-9.]+) I=(?P<amps>[0-9.]+)'\nidle_watts = 0.5",
            link.display()
        ),
    );
    assert!(wait_for(&sock, 60.0), "socket never appeared");
    let (ok, v) = status_until(&sock, 10.0, |v| v["power"]["watts"] == 3.0);
    assert!(ok, "{}", v["power"]);
    emu.script()
        .pending
        .extend([Answer::Garbage, Answer::Garbage]);
    let (ok, v) = status_until(&sock, 10.0, |v| v["power"]["bad_frames"] == 2);
    assert!(ok, "{}", v["power"]);
    assert_eq!(v["power"]["volts"], 12.0);
    assert_eq!(v["power"]["amps"], 0.25);
    let (ok, _, stderr) = stop(child);
    assert!(ok, "{stderr}");
    emu.unplug();
}

// ---------------------------------------------------------------------------------------------
// The monitor in process

fn options(meter: &str, extra: impl FnOnce(&mut RawPower)) -> PowerOptions {
    let mut raw = RawPower {
        meter: Some(meter.into()),
        idle_seconds: Some(0.0),
        ..RawPower::default()
    };
    extra(&mut raw);
    raw.check().expect("valid").expect("a meter")
}

fn snapshot_until(
    m: &PowerMonitor,
    secs: f64,
    ok: impl Fn(&rtinfer::power::PowerSnapshot) -> bool,
) -> bool {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        if ok(&m.snapshot(MonoTime::now(), None)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn um34c_xor_checksum_frames_and_bad_ones() {
    let dir = util::tempdir();
    let link = dir.path().join("rfcomm1");
    let emu = Emulator::plug(
        &link,
        Proto::Um(0x0D4C),
        Script {
            power_raw: 4321,
            volts_raw: 512,
            amps_raw: 844,
            ..Script::default()
        },
    );
    let m = PowerMonitor::start(options(&format!("um34c://{}", link.display()), |r| {
        r.interval_ms = Some(20.0)
    }))
    .expect("start");
    assert!(snapshot_until(&m, 10.0, |s| s.watts == Some(4.321)));
    let s = m.snapshot(MonoTime::now(), None);
    assert_eq!((s.volts, s.amps), (Some(5.12), Some(0.844)));
    emu.script()
        .pending
        .extend([Answer::BadCrc, Answer::Short, Answer::Garbage]);
    assert!(snapshot_until(&m, 10.0, |s| s.bad_frames == 3));
    m.stop();
    assert_eq!(emu.script().bad_sent, 3);
    emu.unplug();
}

#[test]
fn exec_meter_parses_stdout_and_restarts_a_command_that_exits() {
    let dir = util::tempdir();
    let starts = dir.path().join("starts");
    let script = format!(
        "echo start >> {}; echo 'RAM 1/2MB VDD_IN 5123mW/5001mW'; echo 'VDD_IN 4000mW/5001mW'",
        starts.display()
    );
    let m = PowerMonitor::start(options(
        "exec://?regex=VDD_IN (?P<watts>[0-9]+)mW&scale=0.001",
        |r| r.command = Some(vec!["sh".into(), "-c".into(), script]),
    ))
    .expect("start");
    // Two lines per run: 5.123 W then 4.000 W, and the command exits.
    assert!(snapshot_until(&m, 10.0, |s| s.samples >= 2));
    let s = m.snapshot(MonoTime::now(), None);
    assert_eq!(s.peak_watts, Some(5.123));
    // Restarted after 1 s, again after 2 s more.
    let ok = {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let n = std::fs::read_to_string(&starts)
                .unwrap_or_default()
                .lines()
                .count();
            if n >= 3 || Instant::now() > end {
                break n >= 3;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert!(ok, "the command was not restarted");
    assert_eq!(m.snapshot(MonoTime::now(), None).bad_frames, 0);
    m.stop();
}

#[test]
fn exec_command_that_never_delivers_backs_off() {
    let dir = util::tempdir();
    let starts = dir.path().join("starts");
    let m = PowerMonitor::start(options("exec://", |r| {
        r.command = Some(vec![
            "sh".into(),
            "-c".into(),
            format!("echo start >> {}", starts.display()),
        ])
    }))
    .expect("start");
    // Retries at about 0, 1, 3 and 7 s: four starts in 7.5 s. Restarting every second (a
    // backoff reset by a start that delivered nothing) would make seven or more.
    std::thread::sleep(Duration::from_millis(7500));
    m.stop();
    let n = std::fs::read_to_string(&starts)
        .unwrap_or_default()
        .lines()
        .count();
    assert!((2..=5).contains(&n), "{n} starts");
    assert!(!m.connected());
}

#[test]
fn absent_meter_keeps_retrying_without_samples() {
    let dir = util::tempdir();
    let m = PowerMonitor::start(options(
        &format!("tc66c://{}", dir.path().join("nothing").display()),
        |_| {},
    ))
    .expect("start");
    std::thread::sleep(Duration::from_millis(300));
    let s = m.snapshot(MonoTime::now(), Some(60.0));
    assert!(!s.connected);
    assert_eq!((s.watts, s.peak_watts, s.samples), (None, None, 0));
    m.stop();
}

// ---------------------------------------------------------------------------------------------
// Fake sysfs trees

fn put(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, format!("{text}\n")).unwrap();
}

fn watts(m: &mut dyn Meter) -> f64 {
    m.read().expect("read").expect("a reading").watts
}

/// Jetson AGX Xavier, JetPack 5: two INA3221s (0x40: GPU, CPU, SOC; 0x41: CV, VDDRQ, SYS5V),
/// hwmon numbers that are not 0/1, and a summed-shunt channel without a current file.
fn xavier_tree(root: &Path) {
    let rails = [
        (
            "1-0040/hwmon/hwmon3",
            [("GPU", 5000, 1000), ("CPU", 5000, 400), ("SOC", 5000, 600)],
        ),
        (
            "1-0041/hwmon/hwmon12",
            [("CV", 5000, 0), ("VDDRQ", 5000, 200), ("SYS5V", 5000, 800)],
        ),
    ];
    for (dir, chans) in rails {
        let d = format!("bus/i2c/drivers/ina3221/{dir}");
        put(root, &format!("{d}/name"), "ina3221");
        for (k, (label, mv, ma)) in chans.iter().enumerate() {
            let k = k + 1;
            put(root, &format!("{d}/in{k}_label"), label);
            put(root, &format!("{d}/in{k}_input"), &mv.to_string());
            put(root, &format!("{d}/curr{k}_input"), &ma.to_string());
        }
        put(root, &format!("{d}/in7_label"), "sum of shunt voltages");
        put(root, &format!("{d}/in7_input"), "90");
    }
}

#[test]
fn xavier_ina3221_rails_by_label_across_hwmon_numbers() {
    let dir = util::tempdir();
    xavier_tree(dir.path());
    let root = dir.path();
    // 5 V x (1.0 + 0.4 + 0.6 + 0 + 0.2 + 0.8) A = 15 W.
    let mut all = Hwmon::open(root, HwmonChip::Ina3221, None).expect("rails");
    assert_eq!(all.labels(), ["GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"]);
    assert_eq!(watts(&mut all), 15.0);
    let sel = ["gpu".to_string(), "CPU".into(), "SOC".into()];
    let mut some = Hwmon::open(root, HwmonChip::Ina3221, Some(&sel)).expect("rails");
    assert_eq!(watts(&mut some), 10.0);
    let e = Hwmon::open(root, HwmonChip::Ina3221, Some(&["VDD_IN".to_string()]))
        .err()
        .expect("no such rail");
    assert!(
        e.to_string().contains("VDD_IN") && e.to_string().contains("SYS5V"),
        "{e}"
    );
    // Unbound driver: the rail's files vanish; that is a lost meter, not a bad frame.
    std::fs::remove_dir_all(root.join("bus/i2c/drivers/ina3221/1-0041")).unwrap();
    let e = all.read().unwrap_err();
    assert!(matches!(e, MeterError::Lost { .. }), "{e}");
    // Through the URI and `sysfs_root`.
    let o = options("hwmon://ina3221?rails=GPU,SOC", |r| {
        r.sysfs_root = Some(root.to_path_buf())
    });
    assert_eq!(watts(&mut *o.open().expect("open")), 8.0);
}

#[test]
fn jetpack4_ina3221x_iio_layout() {
    let dir = util::tempdir();
    let root = dir.path();
    let d = "bus/i2c/drivers/ina3221x/1-0040/iio:device0";
    for (k, (name, mw)) in [("GPU", 3120), ("CPU", 1480), ("SOC", 900)]
        .iter()
        .enumerate()
    {
        put(root, &format!("{d}/rail_name_{k}"), name);
        put(root, &format!("{d}/in_power{k}_input"), &mw.to_string());
    }
    // mW: 3.120 + 1.480 + 0.900 = 5.5 W; GPU + SOC = 4.02 W.
    let mut m = Hwmon::open(root, HwmonChip::Ina3221, None).expect("iio rails");
    assert!((watts(&mut m) - 5.5).abs() < 1e-12);
    let mut g = Hwmon::open(
        root,
        HwmonChip::Ina3221,
        Some(&["GPU".into(), "SOC".into()]),
    )
    .unwrap();
    assert!((watts(&mut g) - 4.02).abs() < 1e-12);
}

#[test]
fn zcu104_ina226_power_in_microwatts() {
    let dir = util::tempdir();
    let root = dir.path();
    put(root, "devices/i2c-3/3-0040/dummy", "");
    put(root, "devices/i2c-3/3-0041/dummy", "");
    put(root, "class/hwmon/hwmon0/name", "ina226");
    put(root, "class/hwmon/hwmon0/power1_input", "1250000");
    std::os::unix::fs::symlink(
        root.join("devices/i2c-3/3-0040"),
        root.join("class/hwmon/hwmon0/device"),
    )
    .unwrap();
    put(root, "class/hwmon/hwmon1/name", "tmp102");
    put(root, "class/hwmon/hwmon1/power1_input", "999000000");
    put(root, "class/hwmon/hwmon7/name", "ina226");
    put(root, "class/hwmon/hwmon7/power1_input", "750000");
    std::os::unix::fs::symlink(
        root.join("devices/i2c-3/3-0041"),
        root.join("class/hwmon/hwmon7/device"),
    )
    .unwrap();
    let mut m = Hwmon::open(root, HwmonChip::Ina226, None).expect("ina226");
    assert_eq!(watts(&mut m), 2.0);
    let mut one = Hwmon::open(root, HwmonChip::Ina226, Some(&["3-0041".into()])).unwrap();
    assert_eq!(watts(&mut one), 0.75);
    assert!(Hwmon::open(root, HwmonChip::Ina3221, None).is_err());
}

/// A host with a package zone near the end of its range, its core subzone, and psys.
fn rapl_tree(root: &Path, package_uj: u64, psys_uj: u64) {
    let z = "class/powercap";
    put(root, &format!("{z}/intel-rapl:0/name"), "package-0");
    put(
        root,
        &format!("{z}/intel-rapl:0/max_energy_range_uj"),
        "262143328850",
    );
    put(
        root,
        &format!("{z}/intel-rapl:0/energy_uj"),
        &package_uj.to_string(),
    );
    put(root, &format!("{z}/intel-rapl:0:0/name"), "core");
    put(
        root,
        &format!("{z}/intel-rapl:0:0/max_energy_range_uj"),
        "262143328850",
    );
    put(root, &format!("{z}/intel-rapl:0:0/energy_uj"), "123");
    put(root, &format!("{z}/intel-rapl:1/name"), "psys");
    put(
        root,
        &format!("{z}/intel-rapl:1/max_energy_range_uj"),
        "262143328850",
    );
    put(
        root,
        &format!("{z}/intel-rapl:1/energy_uj"),
        &psys_uj.to_string(),
    );
}

#[test]
fn rapl_top_level_zones_difference_across_wrap_around() {
    let dir = util::tempdir();
    let root = dir.path();
    let t = |s: f64| MonoTime::from_nanos(((100.0 + s) * 1e9).round() as u64);
    rapl_tree(root, 262_143_000_000, 1_000_000);
    let mut r = Rapl::open(root, None).expect("zones");
    assert_eq!(r.sample(t(0.0)).unwrap(), None, "first read has no rate");
    // Package wrapped: (262143328850 - 262143000000) + 171150 = 500000 µJ in 0.5 s = 1 W.
    rapl_tree(root, 171_150, 9_000_000);
    let w = r.sample(t(0.5)).unwrap().expect("rate").watts;
    assert!((w - 1.0).abs() < 1e-9, "{w}");
    // psys only when named: 8 J in 0.5 s.
    let mut p = Rapl::open(root, Some(&["psys".into()])).expect("psys");
    p.sample(t(0.0)).unwrap();
    rapl_tree(root, 171_150, 17_000_000);
    assert!((p.sample(t(0.5)).unwrap().unwrap().watts - 16.0).abs() < 1e-9);
    assert!(Rapl::open(root, Some(&["dram".into()])).is_err());
}

// ---------------------------------------------------------------------------------------------
// The study's figures on a scripted trace

fn at(s: f64) -> MonoTime {
    MonoTime::from_nanos((s * 1e9).round() as u64)
}

fn rec(st: &mut PowerStats, t: f64, w: f64) {
    st.record(Sample {
        at: at(t),
        watts: w,
        ..Sample::default()
    });
}

#[test]
fn figures_on_a_scripted_trace() {
    let mut st = PowerStats::new(Duration::from_secs(10));
    // Idle: 2, 2, 3, 3, 2 W at 1..5 s -> 12 / 5 = 2.4 W.
    st.begin_idle();
    for (t, w) in [(1.0, 2.0), (2.0, 2.0), (3.0, 3.0), (4.0, 3.0), (5.0, 2.0)] {
        rec(&mut st, t, w);
    }
    assert_eq!(st.end_idle(), Some(2.4));
    // Load: 5, 7, 6, 10, 8 W at 6..10 s.
    for (t, w) in [(6.0, 5.0), (7.0, 7.0), (8.0, 6.0), (9.0, 10.0), (10.0, 8.0)] {
        rec(&mut st, t, w);
    }
    // One benchmark span (5, 10] s at 50 fps: mean 36/5, peak 10, dynamic 10 - 2.4,
    // 50/10 frames per second per watt, 7.2/50 J per frame, 36 J (1 s per sample).
    let f = st.figures(at(5.0), at(10.0), Some(50.0));
    assert_eq!(f.samples, 5);
    assert_eq!(f.mean_watts, Some(7.2));
    assert_eq!(f.peak_watts, Some(10.0));
    assert!((f.dynamic_watts.unwrap() - 7.6).abs() < 1e-12);
    assert_eq!(f.throughput_per_watt, Some(5.0));
    assert!((f.joules_per_frame.unwrap() - 0.144).abs() < 1e-15);
    assert_eq!(f.energy_j, 36.0);
    // The status window at 12 s covers (2, 12]: 3, 3, 2, 5, 7, 6, 10, 8 -> mean 44/8 = 5.5.
    let s = st.snapshot("scripted://", true, at(12.0), Some(40.0));
    assert_eq!(s.mean_watts, Some(5.5));
    assert_eq!(s.peak_watts, Some(10.0));
    assert_eq!(s.idle_watts, Some(2.4));
    assert_eq!(s.throughput_per_watt, Some(4.0));
    assert!((s.joules_per_frame.unwrap() - 5.5 / 40.0).abs() < 1e-15);
    assert_eq!(s.watts, Some(8.0));
    // Since start: 2+3+3+2 J of idle after the first sample, 36 J of load, over 9 s.
    assert_eq!(s.energy_j, 46.0);
    assert_eq!(st.lifetime().mean_watts, Some(46.0 / 9.0));
    // Without processed frames there is no per-frame or per-watt figure.
    let none = st.figures(at(5.0), at(10.0), Some(0.0));
    assert_eq!(
        (none.throughput_per_watt, none.joules_per_frame),
        (None, None)
    );
    // A disconnected meter shows no current watts but keeps its window.
    let off = st.snapshot("scripted://", false, at(12.0), None);
    assert_eq!((off.watts, off.peak_watts), (None, Some(10.0)));
}

/// `rtinfer bench` with a meter reports the study's figures: idle (given), peak, dynamic = peak -
/// idle, throughput per watt of peak power = inferences/s / peak.
#[test]
fn bench_reports_idle_peak_dynamic_and_throughput_per_watt() {
    let dir = util::tempdir();
    let model = util::zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let cfg = dir.path().join("bench.toml");
    std::fs::write(
        &cfg,
        "[power]\nmeter = \"exec://\"\nidle_watts = 1.5\n\
         command = [\"sh\", \"-c\", \"while true; do echo 4.5; sleep 0.02; done\"]\n",
    )
    .expect("config");
    let out = util::rtinfer_ort()
        .args([
            "bench", "--trials", "2", "--runs", "200", "--json", "--config",
        ])
        .arg(&cfg)
        .arg(&model)
        .output()
        .expect("bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let p = &v["power"];
    let mean = v["latency_ms"]["mean"].as_f64().expect("mean");
    assert_eq!(p["idle_w"].as_f64(), Some(1.5), "{v}");
    assert_eq!(p["peak_w"].as_f64(), Some(4.5), "{v}");
    assert!(close(p["dynamic_w"].as_f64().unwrap_or(0.0), 3.0), "{v}");
    let tpw = p["throughput_per_w"].as_f64().expect("throughput per watt");
    assert!(
        close(tpw, 1000.0 / mean / 4.5),
        "{tpw} vs {}",
        1000.0 / mean / 4.5
    );
}
