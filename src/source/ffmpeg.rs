//! Any container, codec or network stream, decoded by an `ffmpeg` child process.
//!
//! Cameras speak RTSP, recordings are MP4/MKV with H.264/H.265 or MJPEG inside: formats whose
//! decoders are best left to ffmpeg. Linking libav* would tie the binary to one ffmpeg ABI and
//! put a decoder crash inside the daemon; a child process costs one pipe copy per frame and
//! can be killed and restarted when a camera goes away. The child writes YUV4MPEG2 in 4:2:0 to
//! its stdout (see [`args`]), which the existing Y4M reader parses.
//!
//! A reader thread owns the child's stdout and fills frames from a small recycled pool, so
//! [`Source::next`] honours its timeout (a silent camera never blocks the capture thread, which
//! must notice a stop) and frames are swapped, not copied or allocated. The child's stderr goes
//! to our log at most [`StderrLog`]'s few lines per ten seconds; its last line explains a failure.
//!
//! **Lifetime.** The child is started in its own process group (a Ctrl-C at the terminal reaches
//! the daemon, which stops it cleanly, not ffmpeg first), killed and reaped whenever its
//! [`FfmpegSource`] drops (every exit path, panics included), and SIGKILLed by the kernel if the
//! daemon itself is SIGKILLed ([`sys::die_with_parent`]).
//!
//! **Network streams** reconnect: when the child ends (camera rebooted, ffmpeg's 5 s read
//! timeout, the child killed) the source reports `connected = false`, waits a backoff (0.5 s
//! doubling to 10 s, reset by a frame) and starts a new child; the daemon never ends for it.
//! Files end (`?loop` loops inside ffmpeg) and a failing child is an error naming its reason.
//!
//! **Decode cost.** ffmpeg decodes single-threaded, so the CPU time of its one thread
//! (`/proc/PID/task/PID/schedstat`, nanoseconds) between two frames is what that frame cost to
//! demux, decode and convert. Each frame's `captured_at` is moved back by that cost: the
//! `capture` stage and `end_to_end` then include decoding, as they would with a decoder in the
//! daemon. Files are decoded ahead of their pacing; their frames count from the moment they are
//! due (minus the decode cost), as if each had been decoded on arrival.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::y4m::Y4mSource;
use super::{Capture, Frame, FrameLimits, Pacer, Source, SourceError, SourceInfo};
use crate::time::MonoTime;

pub mod args;
mod sys;

pub use args::{Input, Transport};

/// Frames in flight between the reader thread and the capture thread (plus the caller's).
const POOL: usize = 2;
/// First wait before reconnecting a lost stream; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Tries a network stream gets at start-up (0.5 s, then 1 s apart) before the start fails.
const START_ATTEMPTS: u32 = 3;
/// Environment variable naming the ffmpeg program (default: `ffmpeg` on `PATH`).
pub const PROGRAM_ENV: &str = "RTINFER_FFMPEG";
/// What a user without ffmpeg is told.
pub const INSTALL_HINT: &str = "install it (Debian/Ubuntu: apt-get install ffmpeg; Yocto: add \
ffmpeg to IMAGE_INSTALL; Buildroot: BR2_PACKAGE_FFMPEG) or point RTINFER_FFMPEG at the binary";

/// What the child decodes.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    File {
        path: PathBuf,
        looping: bool,
    },
    Network {
        url: String,
        transport: Option<Transport>,
        fps: Option<f64>,
    },
}

impl Target {
    fn input(&self) -> Input<'_> {
        match self {
            Target::File { path, looping } => Input::File {
                path,
                looping: *looping,
            },
            Target::Network {
                url,
                transport,
                fps,
            } => Input::Network {
                url,
                transport: *transport,
                fps: *fps,
            },
        }
    }
}

/// A frame from the reader thread, or how its stream ended.
enum Msg {
    /// The frame, when its last byte arrived, and the child's CPU time since the previous one.
    Frame(Frame, Duration),
    End(Option<SourceError>),
}

/// The child's stderr lines in our log, rate-limited across restarts, and the last line kept.
#[derive(Default)]
pub struct StderrLog {
    inner: Mutex<StderrState>,
}

#[derive(Default)]
struct StderrState {
    window_start: Option<Instant>,
    logged: u32,
    suppressed: u64,
    last: String,
}

impl StderrLog {
    /// Lines logged per window; the rest are counted and summarised.
    pub const BURST: u32 = 5;
    pub const WINDOW: Duration = Duration::from_secs(10);

    /// Logs `line` unless this window's burst is spent. Returns whether it was logged.
    pub fn line(&self, uri: &str, line: &str) -> bool {
        let now = Instant::now();
        let mut st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        st.last.clear();
        st.last.push_str(line);
        if st
            .window_start
            .is_none_or(|s| now.duration_since(s) >= Self::WINDOW)
        {
            if st.suppressed > 0 {
                log::warn!(
                    target: "rtinfer::ffmpeg",
                    "{uri}: {} more ffmpeg lines were not logged",
                    st.suppressed
                );
            }
            st.window_start = Some(now);
            st.logged = 0;
            st.suppressed = 0;
        }
        if st.logged < Self::BURST {
            st.logged += 1;
            log::warn!(target: "rtinfer::ffmpeg", "{uri}: ffmpeg: {line}");
            true
        } else {
            st.suppressed += 1;
            false
        }
    }

    /// The last line ffmpeg printed (empty if none).
    pub fn last(&self) -> String {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last
            .clone()
    }
}

/// One running child and its reader thread.
struct Run {
    child: Child,
    full: Option<Receiver<Msg>>,
    free: Option<SyncSender<Frame>>,
    reader: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<()>>,
}

/// How long a child that closed its output has to exit on its own before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

impl Run {
    /// Kills and reaps the child, ends the threads; returns how the child ended.
    fn finish(mut self) -> String {
        self.shutdown()
    }

    /// After a clean end of its output: lets the child exit by itself (its status then says
    /// whether it succeeded), killing it only if it lingers.
    fn finish_after_eof(mut self) -> String {
        let until = Instant::now() + EXIT_GRACE;
        while Instant::now() < until {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        self.shutdown()
    }

    fn shutdown(&mut self) -> String {
        let _ = self.child.kill();
        self.full = None;
        self.free = None;
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
        let status = self.child.wait();
        // The stderr pipe closes with the child; its last line is then complete.
        if let Some(h) = self.stderr.take() {
            let _ = h.join();
        }
        match status {
            Ok(s) => s.to_string(),
            Err(e) => format!("not reaped: {e}"),
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.reader.is_some() || self.stderr.is_some() {
            self.shutdown();
        }
    }
}

/// A source decoded by an ffmpeg child (see the module docs).
pub struct FfmpegSource {
    uri: String,
    target: Target,
    limits: FrameLimits,
    program: PathBuf,
    log: Arc<StderrLog>,
    run: Option<Run>,
    info: SourceInfo,
    /// Files: frames are released at the header rate or `?fps=`.
    pacer: Option<Pacer>,
    /// A frame released by the pacer whose pixels have not arrived yet.
    released: Option<MonoTime>,
    connected: bool,
    backoff: Duration,
    retry_at: Option<MonoTime>,
    restarts: u64,
}

/// Opens a file through ffmpeg: paced at `fps` or the stream's rate, looping inside ffmpeg.
pub fn open_file(
    path: &Path,
    uri: &str,
    fps: Option<f64>,
    looping: bool,
    limits: FrameLimits,
) -> Result<Box<dyn Source>, SourceError> {
    let target = Target::File {
        path: path.to_path_buf(),
        looping,
    };
    let mut src = FfmpegSource::start(uri, target, limits)?;
    match fps.or(src.info.fps) {
        Some(rate) => {
            src.pacer = Some(Pacer::new(rate));
            src.info.fps = Some(rate);
        }
        None => log::warn!("{uri}: the stream gives no frame rate and no ?fps= is set: unpaced"),
    }
    Ok(Box::new(src))
}

/// Opens a network stream; frames come at the sender's rate (or ffmpeg's `fps` filter's).
pub fn open_network(
    url: &str,
    uri: &str,
    transport: Option<Transport>,
    fps: Option<f64>,
    limits: FrameLimits,
) -> Result<Box<dyn Source>, SourceError> {
    let target = Target::Network {
        url: url.to_string(),
        transport,
        fps,
    };
    // A camera booting with the board may not answer yet: a few tries before giving up.
    let mut wait = FIRST_BACKOFF;
    let mut attempt = 1;
    let mut src = loop {
        match FfmpegSource::start(uri, target.clone(), limits) {
            Ok(src) => break src,
            Err(e @ SourceError::Ffmpeg { .. }) if attempt < START_ATTEMPTS => {
                log::warn!("{e}; trying again in {wait:?}");
                std::thread::sleep(wait);
                wait *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    if fps.is_some() {
        src.info.fps = fps;
    }
    Ok(Box::new(src))
}

/// The ffmpeg program: `RTINFER_FFMPEG`, else `ffmpeg` on `PATH`.
pub fn program() -> PathBuf {
    std::env::var_os(PROGRAM_ENV)
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("ffmpeg"), PathBuf::from)
}

impl FfmpegSource {
    fn start(uri: &str, target: Target, limits: FrameLimits) -> Result<FfmpegSource, SourceError> {
        let program = program();
        let log = Arc::new(StderrLog::default());
        let (run, info) = spawn(uri, &program, &target, &limits, &log)?;
        log::info!(
            "{uri}: ffmpeg (pid {}) decodes {}x{} at {}",
            run.child.id(),
            info.width,
            info.height,
            info.fps
                .map_or_else(|| "an unknown rate".to_string(), |f| format!("{f} fps"))
        );
        Ok(FfmpegSource {
            uri: uri.to_string(),
            target,
            limits,
            program,
            log,
            info,
            run: Some(run),
            pacer: None,
            released: None,
            connected: true,
            backoff: FIRST_BACKOFF,
            retry_at: None,
            restarts: 0,
        })
    }

    fn is_network(&self) -> bool {
        matches!(self.target, Target::Network { .. })
    }

    /// The pid of the running child, if one runs (tests kill it to play a crash).
    pub fn child_pid(&self) -> Option<u32> {
        self.run.as_ref().map(|r| r.child.id())
    }

    /// The child ended: a file's end or error, or a lost stream to reconnect.
    fn ended(&mut self, error: Option<SourceError>) -> Result<Capture, SourceError> {
        let Some(run) = self.run.take() else {
            return Ok(Capture::Timeout);
        };
        let status = match error {
            None => run.finish_after_eof(),
            Some(_) => run.finish(),
        };
        let last = self.log.last();
        let reason = match (&error, last.is_empty()) {
            (Some(e), _) if !last.is_empty() => format!("{e}; ffmpeg {status}: {last}"),
            (Some(e), _) => format!("{e}; ffmpeg {status}"),
            (None, false) => format!("ffmpeg {status}: {last}"),
            (None, true) => format!("ffmpeg {status}"),
        };
        if self.is_network() {
            self.connected = false;
            self.retry_at = Some(MonoTime::now().plus(self.backoff));
            log::warn!(
                "{}: stream lost ({reason}); reconnecting in {:?}",
                self.uri,
                self.backoff
            );
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            return Ok(Capture::Timeout);
        }
        match error {
            None if status == "exit status: 0" => Ok(Capture::EndOfStream),
            _ => Err(SourceError::Ffmpeg {
                uri: self.uri.clone(),
                reason,
            }),
        }
    }

    /// Starts a new child once the backoff has passed (network streams only).
    fn reconnect(&mut self, timeout: Duration) -> Capture {
        let now = MonoTime::now();
        if let Some(at) = self.retry_at
            && now < at
        {
            MonoTime::now()
                .plus(at.saturating_since(now).min(timeout))
                .sleep_until();
            return Capture::Timeout;
        }
        match spawn(
            &self.uri,
            &self.program,
            &self.target,
            &self.limits,
            &self.log,
        ) {
            Ok((run, info)) => {
                self.restarts += 1;
                log::info!(
                    "{}: ffmpeg restarted (pid {}, {}x{}); waiting for frames",
                    self.uri,
                    run.child.id(),
                    info.width,
                    info.height
                );
                // The rate in force (pacing, `?fps=`) stays; a camera may come back at
                // another size.
                let fps = self.info.fps;
                self.info = SourceInfo { fps, ..info };
                self.run = Some(run);
                self.retry_at = None;
            }
            Err(e) => {
                log::warn!("{}: {e}; retrying in {:?}", self.uri, self.backoff);
                self.retry_at = Some(MonoTime::now().plus(self.backoff));
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
        Capture::Timeout
    }
}

impl Source for FfmpegSource {
    fn info(&self) -> SourceInfo {
        self.info.clone()
    }

    fn connected(&self) -> bool {
        self.connected
    }

    fn set_fps(&mut self, fps: f64) -> bool {
        let Some(pacer) = &mut self.pacer else {
            return false;
        };
        pacer.set_fps(fps);
        self.info.fps = Some(fps);
        true
    }

    fn next(&mut self, frame: &mut Frame, timeout: Duration) -> Result<Capture, SourceError> {
        if self.run.is_none() {
            return Ok(self.reconnect(timeout));
        }
        if self.released.is_none()
            && let Some(pacer) = &mut self.pacer
        {
            match pacer.wait(timeout) {
                Some(due) => self.released = Some(due),
                None => return Ok(Capture::Timeout),
            }
        }
        let Some(run) = self.run.as_mut() else {
            return Ok(Capture::Timeout);
        };
        let Some(full) = run.full.as_ref() else {
            return self.ended(None);
        };
        let msg = match full.recv_timeout(timeout) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => return Ok(Capture::Timeout),
            Err(RecvTimeoutError::Disconnected) => return self.ended(None),
        };
        match msg {
            Msg::Frame(mut f, cost) => {
                std::mem::swap(frame, &mut f);
                if let Some(free) = &run.free {
                    // The pool's size bounds the channel: the buffer always fits.
                    let _ = free.try_send(f);
                }
                let arrived = match self.released.take() {
                    Some(due) if due > frame.captured_at => due,
                    _ => frame.captured_at,
                };
                frame.captured_at =
                    MonoTime::from_nanos(arrived.as_nanos().saturating_sub(cost.as_nanos() as u64));
                if !self.connected {
                    log::info!("{}: frames again after a reconnect", self.uri);
                }
                self.connected = true;
                self.backoff = FIRST_BACKOFF;
                Ok(Capture::Frame)
            }
            Msg::End(e) => self.ended(e),
        }
    }
}

/// Starts the child, reads its stream header and starts the reader and stderr threads.
fn spawn(
    uri: &str,
    program: &Path,
    target: &Target,
    limits: &FrameLimits,
    log: &Arc<StderrLog>,
) -> Result<(Run, SourceInfo), SourceError> {
    let mut cmd = Command::new(program);
    cmd.args(args::args(&target.input()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    sys::die_with_parent(&mut cmd);
    let mut child = cmd.spawn().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => SourceError::FfmpegMissing {
            uri: uri.to_string(),
            program: program.to_path_buf(),
        },
        _ => SourceError::Open {
            path: program.to_path_buf(),
            source,
        },
    })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take().map(|e| pump_stderr(e, uri, log));
    // Until the header is read there is no stream to describe; a failure kills and reaps.
    let fail = |child: Child, stderr: Option<JoinHandle<()>>, error: SourceError| {
        let status = Run {
            child,
            full: None,
            free: None,
            reader: None,
            stderr,
        }
        .finish();
        let last = log.last();
        let reason = match error {
            SourceError::Format { .. } if !last.is_empty() => format!("ffmpeg {status}: {last}"),
            SourceError::Format { reason, .. } => format!("ffmpeg {status}: {reason}"),
            other => return other,
        };
        SourceError::Ffmpeg {
            uri: uri.to_string(),
            reason,
        }
    };
    let Some(stdout) = stdout else {
        let e = SourceError::Format {
            uri: uri.to_string(),
            reason: "no stdout pipe".into(),
        };
        return Err(fail(child, stderr, e));
    };
    let source = match Y4mSource::with_limits(stdout, uri, limits) {
        Ok(s) => s,
        Err(e) => return Err(fail(child, stderr, e)),
    };
    let mut run = Run {
        child,
        full: None,
        free: None,
        reader: None,
        stderr,
    };
    let info = source.info();
    let (full_tx, full_rx) = sync_channel::<Msg>(POOL);
    let (free_tx, free_rx) = sync_channel::<Frame>(POOL + 1);
    for _ in 0..POOL {
        let _ = free_tx.try_send(Frame::default());
    }
    let cpu = CpuClock::open(run.child.id());
    let reader = std::thread::Builder::new()
        .name("rtinfer-ffmpeg".into())
        .spawn(move || read_frames(source, cpu, &free_rx, &full_tx))
        .map_err(|source| SourceError::Io {
            uri: uri.to_string(),
            source,
        })?;
    run.reader = Some(reader);
    run.full = Some(full_rx);
    run.free = Some(free_tx);
    Ok((run, info))
}

/// Test hook: when set, every step of every reader thread (one frame read and handed over) runs
/// inside it, so the hot-loop test can count each step's allocations. Unset in the daemon.
#[doc(hidden)]
pub static READER_STEP_HOOK: OnceLock<fn(&mut dyn FnMut())> = OnceLock::new();

/// The reader thread: frames from the child into pool buffers until the stream ends or the
/// source drops its channels.
fn read_frames(
    mut source: Y4mSource<ChildStdout>,
    mut cpu: CpuClock,
    free: &Receiver<Frame>,
    full: &SyncSender<Msg>,
) {
    let mut last_stamp = MonoTime::now();
    let mut step = || -> bool {
        let Ok(mut f) = free.recv() else {
            return false;
        };
        // A pipe read blocks until the child writes; the timeout does not apply.
        let result = loop {
            match source.next(&mut f, Duration::from_secs(1)) {
                Ok(Capture::Timeout) => continue,
                other => break other,
            }
        };
        let msg = match result {
            Ok(Capture::Frame) => {
                let spent = cpu.since_last();
                let cost = spent.min(f.captured_at.saturating_since(last_stamp));
                last_stamp = f.captured_at;
                Msg::Frame(f, cost)
            }
            Ok(_) => Msg::End(None),
            Err(e) => Msg::End(Some(e)),
        };
        let end = matches!(msg, Msg::End(_));
        full.send(msg).is_ok() && !end
    };
    loop {
        let go_on = match READER_STEP_HOOK.get() {
            Some(hook) => {
                let mut go_on = false;
                hook(&mut || go_on = step());
                go_on
            }
            None => step(),
        };
        if !go_on {
            return;
        }
    }
}

/// The CPU time of the child's main thread, from `/proc/PID/task/PID/schedstat` (read with
/// `pread` into a stack buffer: nothing allocates per frame).
struct CpuClock {
    file: Option<File>,
    last_ns: u64,
}

impl CpuClock {
    fn open(pid: u32) -> CpuClock {
        let file = File::open(format!("/proc/{pid}/task/{pid}/schedstat")).ok();
        let mut c = CpuClock { file, last_ns: 0 };
        c.last_ns = c.read().unwrap_or(0);
        c
    }

    fn read(&self) -> Option<u64> {
        let mut buf = [0u8; 64];
        let n = self.file.as_ref()?.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        text.split_ascii_whitespace().next()?.parse().ok()
    }

    /// CPU time since the previous call; zero when the kernel does not tell.
    fn since_last(&mut self) -> Duration {
        match self.read() {
            Some(now) => {
                let d = now.saturating_sub(self.last_ns);
                self.last_ns = now;
                Duration::from_nanos(d)
            }
            None => Duration::ZERO,
        }
    }
}

/// Forwards the child's stderr lines to [`StderrLog`] until the pipe closes.
fn pump_stderr(stderr: ChildStderr, uri: &str, log: &Arc<StderrLog>) -> JoinHandle<()> {
    let (uri, log) = (uri.to_string(), Arc::clone(log));
    let body = move || {
        let mut r = BufReader::new(stderr);
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = line.trim_end();
                    if !text.is_empty() {
                        log.line(&uri, text);
                    }
                }
            }
        }
    };
    match std::thread::Builder::new()
        .name("rtinfer-ffmpeg-log".into())
        .spawn(body)
    {
        Ok(h) => h,
        // Without a thread the pipe is never read; ffmpeg would block once it fills. Such a
        // machine has bigger problems; the child is killed with the source anyway.
        Err(e) => {
            log::error!("cannot start the ffmpeg log thread: {e}");
            std::thread::spawn(|| {})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_is_rate_limited_and_keeps_the_last_line() {
        let log = StderrLog::default();
        let logged = (0..20)
            .filter(|i| log.line("x", &format!("line {i}")))
            .count();
        assert_eq!(logged, StderrLog::BURST as usize);
        assert_eq!(log.last(), "line 19");
    }

    #[test]
    fn a_missing_program_says_how_to_install_it() {
        let log = Arc::new(StderrLog::default());
        let target = Target::File {
            path: PathBuf::from("/nonexistent.mp4"),
            looping: false,
        };
        let err = spawn(
            "file:///nonexistent.mp4",
            Path::new("/nonexistent/bin/ffmpeg"),
            &target,
            &FrameLimits::default(),
            &log,
        )
        .err()
        .expect("no such program");
        let text = err.to_string();
        assert!(text.contains("apt-get install ffmpeg"), "{text}");
        assert!(text.contains("file:///nonexistent.mp4"), "{text}");
    }
}
