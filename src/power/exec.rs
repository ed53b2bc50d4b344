//! A meter that is a command: `sigrok-cli ... --continuous -O csv` covers every sigrok-supported
//! meter, `tegrastats` the Jetsons. Its stdout lines are parsed like a text meter's. The command
//! runs without a shell (argv from `power.command`); a reader thread turns its stdout into
//! lines so a read can time out; when the command exits the meter counts as lost and the monitor
//! restarts it with the same backoff as an unplugged device.
//!
//! A meter is sampled, not logged: the reader thread reads stdout in blocks at most every
//! [`READ_GAP`] and hands on at most the [`LINES_PER_READ`] newest complete lines of each block
//! (every line of a meter printing up to 1,600 lines a second), so a command printing as fast as
//! it can (`yes 5.0`) is parsed at most 1,600 times a second and, its pipe full between two
//! reads, mostly waits, instead of costing a core in both processes.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::Duration;

use super::line::LineParser;
use super::{Meter, MeterError, Reading};

/// Lines buffered between the reader thread and the monitor.
const QUEUE: usize = LINES_PER_READ;
/// The least time between two reads of the command's stdout.
pub const READ_GAP: Duration = Duration::from_millis(10);
/// One read: the whole of a Linux pipe's default buffer.
const BLOCK: usize = 64 * 1024;
/// The most lines handed on per read (the newest ones).
pub const LINES_PER_READ: usize = 16;
/// A line longer than this (no line end) is dropped.
const MAX_LINE: usize = 4096;

fn is_eol(b: &u8) -> bool {
    *b == b'\n' || *b == b'\r'
}

fn usable(line: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(line).trim().to_string();
    (!text.is_empty() && !text.starts_with([';', '#'])).then_some(text)
}

/// The newest (at most `max`) complete, non-empty, non-comment lines, oldest first, once `block`
/// is appended to `pending` (the unfinished line of the reads before); `pending` keeps what
/// follows the block's last line end. Only the lines taken are looked at: the cost of a block
/// is one scan for line ends, however many lines it holds.
pub fn newest_lines(pending: &mut Vec<u8>, block: &[u8], max: usize) -> Vec<String> {
    let Some(end) = block.iter().rposition(is_eol) else {
        pending.extend_from_slice(block);
        if pending.len() > MAX_LINE {
            pending.clear();
        }
        return Vec::new();
    };
    let complete = &block[..end];
    let mut found = Vec::new();
    let first_eol = complete.iter().position(is_eol);
    if let Some(first) = first_eol {
        // Lines wholly inside the block, newest first.
        found.extend(
            complete[first + 1..]
                .rsplit(is_eol)
                .filter_map(usable)
                .take(max),
        );
    }
    if found.len() < max {
        // The line that began in an earlier read.
        let head = &complete[..first_eol.unwrap_or(complete.len())];
        pending.extend_from_slice(head);
        found.extend(usable(pending));
    }
    pending.clear();
    pending.extend_from_slice(&block[end + 1..]);
    if pending.len() > MAX_LINE {
        pending.clear();
    }
    found.reverse();
    found
}

pub struct ExecMeter {
    name: String,
    child: Child,
    lines: Receiver<String>,
    parser: LineParser,
}

impl ExecMeter {
    pub fn spawn(command: &[String], parser: LineParser) -> Result<ExecMeter, MeterError> {
        let name = command.join(" ");
        let spawn_err = |source| MeterError::Spawn {
            command: name.clone(),
            source,
        };
        let (prog, args) = command
            .split_first()
            .ok_or_else(|| spawn_err(std::io::ErrorKind::InvalidInput.into()))?;
        let mut child = Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(spawn_err)?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| spawn_err(std::io::ErrorKind::BrokenPipe.into()))?;
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("rtinfer-meter-exec".into())
            .spawn(move || {
                let mut stdout = stdout;
                let mut block = vec![0u8; BLOCK];
                let mut pending = Vec::with_capacity(MAX_LINE);
                loop {
                    let n = match stdout.read(&mut block) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    for line in newest_lines(&mut pending, &block[..n], LINES_PER_READ) {
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                    std::thread::sleep(READ_GAP);
                }
            })
            .map_err(spawn_err)?;
        log::info!("meter command started (pid {}): {name}", child.id());
        Ok(ExecMeter {
            name,
            child,
            lines: rx,
            parser,
        })
    }
}

impl Meter for ExecMeter {
    fn read(&mut self) -> Result<Option<Reading>, MeterError> {
        match self.lines.recv_timeout(Duration::from_secs(1)) {
            Ok(line) if line.trim().is_empty() => Ok(None),
            Ok(line) => self
                .parser
                .parse(&line)
                .map(Some)
                .map_err(|reason| MeterError::BadFrame {
                    device: self.name.clone(),
                    reason,
                }),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                // Stdout closed: the command ended (or closed it, which is as good as ending).
                std::thread::sleep(Duration::from_millis(50));
                let status = match self.child.try_wait() {
                    Ok(Some(s)) => s.to_string(),
                    Ok(None) => "closed its stdout".into(),
                    Err(e) => e.to_string(),
                };
                Err(MeterError::Exited {
                    command: self.name.clone(),
                    status,
                })
            }
        }
    }
}

impl Drop for ExecMeter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_complete_line_of_a_block_is_taken() {
        let mut pending = Vec::new();
        let mut take = |block: &[u8], max| newest_lines(&mut pending, block, max);
        assert_eq!(take(b"1.0\n2.0\n3.", 16), ["1.0", "2.0"]);
        assert_eq!(take(b"5\n6\n", 16), ["3.5", "6"]);
        assert_eq!(take(b"1\n2\n3\n4\n", 2), ["3", "4"]);
        assert_eq!(take(b"4.0\n# comment\n\n", 16), ["4.0"]);
        assert!(take(b"no end yet", 16).is_empty());
        assert_eq!(take(b"\r\n", 16), ["no end yet"]);
        let long = vec![b'x'; MAX_LINE + 1];
        assert!(take(&long, 16).is_empty());
        assert_eq!(take(b"\n7\n", 16), ["7"], "an endless line is dropped");
    }

    #[test]
    fn a_command_printing_as_fast_as_it_can_is_sampled_not_parsed_line_by_line() {
        // Issue 18 item 12: `yes 5.0` cost 113 % of a core. Here 200,000 lines arrive at once:
        // every one used to be parsed; sampled, the last one arrives after a few dozen readings.
        let parser = LineParser::new(None, 1.0).expect("default parser");
        let cmd: Vec<String> = ["sh", "-c", "seq 1 200000; sleep 30"]
            .iter()
            .map(ToString::to_string)
            .collect();
        let mut m = ExecMeter::spawn(&cmd, parser).expect("spawn");
        let mut readings = 0;
        let end = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            assert!(std::time::Instant::now() < end, "the last line never came");
            if let Some(r) = m.read().expect("read") {
                readings += 1;
                if r.watts == 200_000.0 {
                    break;
                }
            }
        }
        assert!(readings < 2000, "{readings} readings for 200000 lines");
    }
}
