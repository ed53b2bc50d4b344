//! The ffmpeg command line for one input: pure, so its choices are unit-tested and shown in
//! `--help`-level docs rather than buried in the spawning code.
//!
//! ffmpeg decodes the input's first video stream single-threaded (frame threading would add a
//! frame of latency per thread, and one thread lets `/proc/PID/schedstat` measure the decode
//! cost) and writes YUV4MPEG2 in 4:2:0 (`yuv420p`, what most decoders produce anyway and the
//! layout preprocessing resizes natively) to its stdout. Network inputs skip ffmpeg's input
//! buffering and time out after [`IO_TIMEOUT_US`] of silence, so a dead camera ends the child
//! and the source reconnects.

use std::path::Path;

/// ffmpeg's own read timeout on network inputs, microseconds.
pub const IO_TIMEOUT_US: u64 = 5_000_000;

/// RTSP's lower transport (`?transport=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// What ffmpeg reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Input<'a> {
    /// A file of any container ffmpeg reads.
    File { path: &'a Path, looping: bool },
    /// `rtsp://`, `http(s)://`, `udp://`, `rtp://`, ...: a live stream.
    Network {
        url: &'a str,
        transport: Option<Transport>,
        /// `?fps=N`: ffmpeg's `fps` filter keeps N frames a second of a faster stream.
        fps: Option<f64>,
    },
}

/// The scheme of a network URL (lower case), `None` for anything else.
pub fn network_scheme(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    NETWORK_SCHEMES.contains(&scheme.as_str()).then_some(scheme)
}

/// The network schemes handed to ffmpeg.
pub const NETWORK_SCHEMES: [&str; 8] =
    ["rtsp", "rtsps", "http", "https", "udp", "rtp", "srt", "tcp"];

/// The arguments after the program name.
pub fn args(input: &Input<'_>) -> Vec<String> {
    let mut a: Vec<String> = [
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "warning",
    ]
    .map(String::from)
    .to_vec();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    let mut filter = None;
    let target = match input {
        Input::File { path, looping } => {
            if *looping {
                push(&["-stream_loop", "-1"]);
            }
            // `file:` keeps a path with a colon from being read as a protocol.
            format!("file:{}", path.display())
        }
        Input::Network {
            url,
            transport,
            fps,
        } => {
            push(&["-fflags", "nobuffer", "-flags", "low_delay"]);
            let timeout = IO_TIMEOUT_US.to_string();
            if network_scheme(url).is_some_and(|s| s.starts_with("rtsp")) {
                if let Some(t) = transport {
                    push(&["-rtsp_transport", t.name()]);
                }
                push(&["-timeout", &timeout]);
            } else {
                push(&["-rw_timeout", &timeout]);
            }
            filter = fps.map(|f| format!("fps={f}"));
            url.to_string()
        }
    };
    push(&[
        "-threads", "1", "-i", &target, "-map", "0:v:0", "-an", "-sn", "-dn",
    ]);
    if let Some(f) = &filter {
        push(&["-vf", f]);
    }
    push(&["-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", "pipe:1"]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(input: &Input<'_>) -> String {
        args(input).join(" ")
    }

    #[test]
    fn a_file_is_read_by_path_and_loops_in_ffmpeg() {
        let a = joined(&Input::File {
            path: Path::new("/v/a:b.mp4"),
            looping: true,
        });
        assert!(
            a.contains("-stream_loop -1 -threads 1 -i file:/v/a:b.mp4"),
            "{a}"
        );
        assert!(
            a.ends_with("-pix_fmt yuv420p -f yuv4mpegpipe pipe:1"),
            "{a}"
        );
        assert!(!a.contains("nobuffer"), "{a}");
        let a = joined(&Input::File {
            path: Path::new("/v/x.mkv"),
            looping: false,
        });
        assert!(!a.contains("stream_loop"), "{a}");
    }

    #[test]
    fn rtsp_takes_its_transport_and_timeout() {
        let a = joined(&Input::Network {
            url: "rtsp://127.0.0.1:8554/cam",
            transport: Some(Transport::Tcp),
            fps: None,
        });
        assert!(a.contains("-rtsp_transport tcp -timeout 5000000"), "{a}");
        assert!(a.contains("-fflags nobuffer -flags low_delay"), "{a}");
        assert!(!a.contains("-vf"), "{a}");
    }

    #[test]
    fn other_streams_time_out_by_rw_timeout_and_fps_filters() {
        let a = joined(&Input::Network {
            url: "http://127.0.0.1:8080/x.ts",
            transport: None,
            fps: Some(15.0),
        });
        assert!(a.contains("-rw_timeout 5000000"), "{a}");
        assert!(a.contains("-vf fps=15"), "{a}");
        assert!(!a.contains("rtsp_transport"), "{a}");
    }

    #[test]
    fn schemes() {
        assert_eq!(network_scheme("RTSP://cam/x").as_deref(), Some("rtsp"));
        assert_eq!(network_scheme("udp://@:5000").as_deref(), Some("udp"));
        assert_eq!(network_scheme("file:///x.mp4"), None);
        assert_eq!(network_scheme("/x.mp4"), None);
    }
}
