//! Kernel events of the watch folder, turned into load candidates.
//!
//! Only `IN_CLOSE_WRITE` (a file finished being written in place) and `IN_MOVED_TO` (a file renamed
//! into the folder, the atomic way) make a candidate: an `IN_CREATE` or `IN_MODIFY` would hand the
//! loader a half-written file. Events for one file are debounced (a `cp` can close twice). The
//! kernel's queue overflowing (`IN_Q_OVERFLOW`) asks for a rescan; the folder vanishing
//! (`IN_DELETE_SELF`, `IN_IGNORED`) sends the watcher back to waiting for it, and a folder that does
//! not exist yet at start is waited for in the same way, never fatal.
//!
//! inotify watches an inode, not a path: after the release pattern `ln -s relB models.new && mv
//! -T models.new models` it would go on watching the old folder forever. The path is therefore
//! resolved again every [`RESOLVE`] (and at once on SIGHUP, through `recheck`): when it names
//! another folder, the watch moves there and the loader treats it as a new folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// What the watcher tells the loader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A file was completed (closed after writing, or renamed in).
    Changed(PathBuf),
    /// A file left the folder.
    Removed(PathBuf),
    /// Events may have been lost, or the folder (re)appeared: look at everything. Files modified
    /// at or after `since` (when the watch was in place) send their own events.
    Rescan { since: SystemTime },
    /// The folder went away (or cannot be watched): nothing is watched until it is back.
    Lost,
    /// The path now names another folder (a symlink switched): the files seen so far belong to
    /// the old one. A `Rescan` of the new folder follows.
    Switched,
}

/// Quiet time after the last close of a file before it becomes a candidate (a writer may close
/// and reopen); a rename into the folder is taken at once.
pub const DEBOUNCE: Duration = Duration::from_millis(150);
/// How often a missing folder is looked for.
const DIR_POLL: Duration = Duration::from_millis(250);
/// How often the folder's path is resolved again (a symlink switch is followed this fast).
pub const RESOLVE: Duration = Duration::from_secs(1);

/// Watches `dir` until `stop`, sending events to `tx`. Returns when `stop` is set or the receiver
/// is gone.
pub fn run(dir: &Path, tx: &Sender<WatchEvent>, stop: &AtomicBool) {
    run_following(dir, tx, stop, &AtomicBool::new(false));
}

/// The folder a path resolves to now: (device, inode).
fn identity(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// [`run`], resolving the path again at once whenever `recheck` is set (SIGHUP).
pub fn run_following(dir: &Path, tx: &Sender<WatchEvent>, stop: &AtomicBool, recheck: &AtomicBool) {
    let mut said_missing = false;
    while !stop.load(Ordering::Relaxed) {
        if !dir.is_dir() {
            if !said_missing {
                log::warn!(
                    "watch folder {} does not exist; waiting for it",
                    dir.display()
                );
                said_missing = true;
            }
            std::thread::sleep(DIR_POLL);
            continue;
        }
        let id = identity(dir);
        let ino = match watch(dir) {
            Ok(i) => i,
            Err(e) => {
                if !said_missing {
                    log::warn!("cannot watch {}: {e}; retrying", dir.display());
                    said_missing = true;
                }
                std::thread::sleep(DIR_POLL);
                continue;
            }
        };
        if said_missing {
            log::info!("watch folder {} is here", dir.display());
        }
        if tx
            .send(WatchEvent::Rescan {
                since: SystemTime::now(),
            })
            .is_err()
        {
            return;
        }
        match follow(&ino, dir, tx, stop, recheck, id) {
            Lost::Switched => {
                log::info!(
                    "watch folder {} now resolves to {}: following it",
                    dir.display(),
                    std::fs::canonicalize(dir)
                        .map_or_else(|e| e.to_string(), |p| p.display().to_string())
                );
                if tx.send(WatchEvent::Switched).is_err() {
                    return;
                }
                said_missing = false;
                continue;
            }
            Lost::Folder => {
                log::warn!("watch folder {} was removed; waiting for it", dir.display());
                // `/models` `watching` turns false until the folder is back.
                if tx.send(WatchEvent::Lost).is_err() {
                    return;
                }
            }
            Lost::Receiver | Lost::Stopped => return,
        }
        // The folder is gone: say so once, and once more when it is back.
        said_missing = true;
    }
}

fn watch(dir: &Path) -> nix::Result<Inotify> {
    let ino = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)?;
    let mask = AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR;
    ino.add_watch(dir, mask)?;
    Ok(ino)
}

enum Lost {
    Folder,
    Switched,
    Receiver,
    Stopped,
}

/// Reads events until the folder goes away, the loader hangs up or `stop` is set.
fn follow(
    ino: &Inotify,
    dir: &Path,
    tx: &Sender<WatchEvent>,
    stop: &AtomicBool,
    recheck: &AtomicBool,
    id: Option<(u64, u64)>,
) -> Lost {
    let mut pending: HashMap<PathBuf, Instant> = HashMap::new();
    let mut resolved = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Lost::Stopped;
        }
        if recheck.swap(false, Ordering::Relaxed) || resolved.elapsed() >= RESOLVE {
            resolved = Instant::now();
            match identity(dir) {
                now if now == id => {}
                None => return Lost::Folder,
                Some(_) => return Lost::Switched,
            }
        }
        let mut fds = [PollFd::new(ino.as_fd_ref(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(50u16));
        let events = match ino.read_events() {
            Ok(ev) => ev,
            Err(Errno::EAGAIN) => Vec::new(),
            Err(e) => {
                log::warn!("reading inotify events for {}: {e}", dir.display());
                return Lost::Folder;
            }
        };
        for ev in events {
            let m = ev.mask;
            if m.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                log::warn!("inotify queue overflowed for {}: rescanning", dir.display());
                if tx
                    .send(WatchEvent::Rescan {
                        since: SystemTime::now(),
                    })
                    .is_err()
                {
                    return Lost::Receiver;
                }
                continue;
            }
            if m.intersects(
                AddWatchFlags::IN_DELETE_SELF
                    | AddWatchFlags::IN_MOVE_SELF
                    | AddWatchFlags::IN_IGNORED,
            ) {
                return Lost::Folder;
            }
            let Some(name) = ev.name else { continue };
            let path = dir.join(name);
            if m.contains(AddWatchFlags::IN_MOVED_TO) {
                // A rename is atomic and final: no reason to wait.
                pending.insert(
                    path,
                    Instant::now()
                        .checked_sub(DEBOUNCE)
                        .unwrap_or_else(Instant::now),
                );
            } else if m.contains(AddWatchFlags::IN_CLOSE_WRITE) {
                pending.insert(path, Instant::now());
            } else if m.intersects(AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_FROM) {
                pending.remove(&path);
                if tx.send(WatchEvent::Removed(path)).is_err() {
                    return Lost::Receiver;
                }
            }
        }
        let now = Instant::now();
        let ready: Vec<PathBuf> = pending
            .iter()
            .filter(|(_, t)| now.duration_since(**t) >= DEBOUNCE)
            .map(|(p, _)| p.clone())
            .collect();
        for p in ready {
            pending.remove(&p);
            if tx.send(WatchEvent::Changed(p)).is_err() {
                return Lost::Receiver;
            }
        }
    }
}

/// `Inotify` is `AsFd`; a named helper keeps the poll call readable.
trait AsFdRef {
    fn as_fd_ref(&self) -> std::os::fd::BorrowedFd<'_>;
}

impl AsFdRef for Inotify {
    fn as_fd_ref(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc::{Receiver, channel};

    fn start(
        dir: PathBuf,
    ) -> (
        Receiver<WatchEvent>,
        Arc<AtomicBool>,
        std::thread::JoinHandle<()>,
    ) {
        let (tx, rx) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let h = std::thread::spawn(move || run(&dir, &tx, &s));
        (rx, stop, h)
    }

    fn next_changed(rx: &Receiver<WatchEvent>) -> Option<PathBuf> {
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(WatchEvent::Changed(p)) = rx.recv_timeout(Duration::from_millis(100)) {
                return Some(p);
            }
        }
        None
    }

    #[test]
    fn a_slow_writer_is_a_candidate_only_after_close_and_renames_count() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("models");
        let (rx, stop, h) = start(dir.clone());
        std::thread::sleep(Duration::from_millis(300));
        std::fs::create_dir(&dir).expect("mkdir");
        assert!(
            matches!(
                rx.recv_timeout(Duration::from_secs(3)),
                Ok(WatchEvent::Rescan { .. })
            ),
            "folder appearing rescans"
        );

        let target = dir.join("slow.onnx");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&target).expect("create");
            f.write_all(b"half").expect("write");
            f.flush().expect("flush");
            std::thread::sleep(Duration::from_millis(500));
            assert!(rx.try_recv().is_err(), "nothing before the close");
            f.write_all(b" and the rest").expect("write");
        }
        assert_eq!(next_changed(&rx), Some(target));

        let tmpfile = dir.join(".x.onnx.tmp");
        std::fs::write(&tmpfile, b"data").expect("write");
        let _ = next_changed(&rx); // the dotfile's own close (the loader ignores it by name)
        std::fs::rename(&tmpfile, dir.join("x.onnx")).expect("rename");
        assert_eq!(next_changed(&rx), Some(dir.join("x.onnx")));

        std::fs::remove_dir_all(&dir).expect("rm");
        let end = Instant::now() + Duration::from_secs(5);
        let mut lost = false;
        while Instant::now() < end && !lost {
            lost = matches!(
                rx.recv_timeout(Duration::from_millis(100)),
                Ok(WatchEvent::Lost)
            );
        }
        assert!(
            lost,
            "a removed folder is reported lost (/models watching = false)"
        );
        std::fs::create_dir(&dir).expect("mkdir again");
        let end = Instant::now() + Duration::from_secs(5);
        let mut rescanned = false;
        while Instant::now() < end && !rescanned {
            rescanned = matches!(
                rx.recv_timeout(Duration::from_millis(100)),
                Ok(WatchEvent::Rescan { .. })
            );
        }
        assert!(rescanned, "a recreated folder is watched again");
        std::fs::write(dir.join("y.onnx"), b"y").expect("write");
        assert_eq!(next_changed(&rx), Some(dir.join("y.onnx")));
        stop.store(true, Ordering::Relaxed);
        h.join().expect("watcher exits");
    }

    #[test]
    fn an_atomic_symlink_switch_of_the_folder_is_followed() {
        // Issue 18 item 8: `ln -s relB models.new && mv -T models.new models` was never followed.
        let tmp = tempfile::tempdir().expect("tempdir");
        let (a, b) = (tmp.path().join("relA"), tmp.path().join("relB"));
        std::fs::create_dir(&a).expect("mkdir a");
        std::fs::create_dir(&b).expect("mkdir b");
        let link = tmp.path().join("models");
        std::os::unix::fs::symlink("relA", &link).expect("symlink");
        let (rx, stop, h) = start(link.clone());
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(3)),
            Ok(WatchEvent::Rescan { .. })
        ));
        let new = tmp.path().join("models.new");
        std::os::unix::fs::symlink("relB", &new).expect("symlink");
        std::fs::rename(&new, &link).expect("mv -T");
        let end = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while Instant::now() < end && !seen.iter().any(|e| matches!(e, WatchEvent::Rescan { .. })) {
            if let Ok(e) = rx.recv_timeout(Duration::from_millis(100)) {
                seen.push(e);
            }
        }
        assert!(
            matches!(
                seen.as_slice(),
                [WatchEvent::Switched, WatchEvent::Rescan { .. }]
            ),
            "{seen:?}"
        );
        // Events now come from relB, through the link's path.
        std::fs::write(b.join("m.onnx"), b"m").expect("write");
        assert_eq!(next_changed(&rx), Some(link.join("m.onnx")));
        std::fs::write(a.join("old.onnx"), b"m").expect("write");
        assert!(
            rx.recv_timeout(Duration::from_millis(600)).is_err(),
            "the old folder is no longer watched"
        );
        stop.store(true, Ordering::Relaxed);
        h.join().expect("watcher exits");
    }
}
