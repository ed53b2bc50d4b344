//! A meter that is a command: `sigrok-cli ... --continuous -O csv` covers every sigrok-supported
//! meter, `tegrastats` the Jetsons. Its stdout lines are parsed like a text meter's. The command
//! runs without a shell (argv from `power.command`); a reader thread turns its stdout into
//! lines so a read can time out; when the command exits the meter counts as lost and the monitor
//! restarts it with the same backoff as an unplugged device.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::Duration;

use super::line::LineParser;
use super::{Meter, MeterError, Reading};

/// Lines buffered between the reader thread and the monitor.
const QUEUE: usize = 256;

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
                for line in BufReader::new(stdout).lines() {
                    match line {
                        Ok(l) => {
                            if tx.send(l).is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
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
