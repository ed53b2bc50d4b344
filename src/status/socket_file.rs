//! The socket file on disk: who may replace it, and noticing when someone did.
//!
//! A Unix socket is reached by path, so whoever can rename or unlink entries in its directory
//! can put an impostor in its place: clients would then send `activate` requests and read
//! `/status` from someone else. As sshd does with its key files (`StrictModes`), we refuse to
//! bind in a directory another user could change: one writable by every user without the
//! sticky bit, or owned by a user other than us or root, or under such a directory. A
//! group-writable directory is allowed with a warning (a deployment may share it with the
//! service's group on purpose; those users already reach the socket).
//!
//! After binding, the path is checked again periodically (device and inode of the file we
//! created). A socket removed by hand is bound again; one replaced by another socket is taken
//! back (nobody but us or root could have done it in a directory that passed the check, or a
//! group member that was warned about); anything else at the path is left alone and reported.
//! Every such event is logged once per occurrence.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use super::StatusError;

/// The socket file we created, identified by device and inode so shutdown never removes a
/// socket that a newer daemon has since bound at the same path.
#[derive(Debug)]
pub struct SocketFile {
    pub path: PathBuf,
    dev: u64,
    ino: u64,
}

/// What the periodic check found at the socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathState {
    /// Still the file we bound.
    Ours,
    /// Nothing there any more.
    Missing,
    /// Another socket, owned by `uid`.
    OtherSocket { uid: u32 },
    /// Something that is not a socket (left alone).
    NotASocket,
    /// The path cannot be inspected.
    Unreadable(String),
}

impl SocketFile {
    fn new(path: &Path) -> Result<SocketFile, StatusError> {
        let m = fs::symlink_metadata(path).map_err(|source| StatusError::Inspect {
            path: path.into(),
            source,
        })?;
        Ok(SocketFile {
            path: path.into(),
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// Whether the path still holds our socket.
    pub fn state(&self) -> PathState {
        match fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => PathState::Ours,
            Ok(m) if m.file_type().is_socket() => PathState::OtherSocket { uid: m.uid() },
            Ok(_) => PathState::NotASocket,
            Err(e) if e.kind() == io::ErrorKind::NotFound => PathState::Missing,
            Err(e) => PathState::Unreadable(e.to_string()),
        }
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if self.state() == PathState::Ours
            && let Err(e) = fs::remove_file(&self.path)
        {
            log::warn!("cannot remove status socket {}: {e}", self.path.display());
        }
    }
}

/// Creates the parent directory if needed, checks that no other user can replace a file in it,
/// clears a stale socket, binds, and sets mode 0660.
pub fn bind(path: &Path) -> Result<(UnixListener, SocketFile), StatusError> {
    create_parent(path)?;
    check_directory(path)?;
    clear_stale(path)?;
    bind_here(path)
}

/// Binds again at the same path after the periodic check found it missing or replaced (the
/// directory was checked at start-up; a replaced socket is removed first).
pub fn rebind(path: &Path, state: &PathState) -> Result<(UnixListener, SocketFile), StatusError> {
    if let PathState::OtherSocket { .. } = state {
        fs::remove_file(path).map_err(|source| StatusError::RemoveStale {
            path: path.into(),
            source,
        })?;
    }
    bind_here(path)
}

fn bind_here(path: &Path) -> Result<(UnixListener, SocketFile), StatusError> {
    let listener = UnixListener::bind(path).map_err(|source| match source.kind() {
        io::ErrorKind::AddrInUse => StatusError::AlreadyInUse { path: path.into() },
        _ => StatusError::Bind {
            path: path.into(),
            source,
        },
    })?;
    let file = SocketFile::new(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o660)).map_err(|source| {
        StatusError::Permissions {
            path: path.into(),
            source,
        }
    })?;
    Ok((listener, file))
}

fn create_parent(path: &Path) -> Result<(), StatusError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => fs::create_dir_all(dir)
            .map_err(|source| StatusError::CreateDir {
                path: path.into(),
                dir: dir.into(),
                source,
            }),
        _ => Ok(()),
    }
}

/// Why a directory lets another user replace a file in it, if it does; `Ok(Some(..))` is a
/// warning (group-writable), `Err` a refusal.
pub fn directory_risk(mode: u32, owner: u32, me: u32) -> Result<Option<String>, String> {
    let sticky = mode & 0o1000 != 0;
    if owner != me && owner != 0 {
        return Err(format!(
            "is owned by uid {owner} (neither this process's uid {me} nor root)"
        ));
    }
    if mode & 0o002 != 0 && !sticky {
        return Err(format!(
            "is writable by every user without the sticky bit (mode {:04o})",
            mode & 0o7777
        ));
    }
    if mode & 0o020 != 0 && !sticky {
        return Ok(Some(format!(
            "is group-writable (mode {:04o}): members of its group could replace the socket",
            mode & 0o7777
        )));
    }
    Ok(None)
}

/// Refuses a socket directory (or an ancestor of it) that another user could change.
fn check_directory(path: &Path) -> Result<(), StatusError> {
    let parent = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let inspect = |source| StatusError::Inspect {
        path: path.into(),
        source,
    };
    let dir = fs::canonicalize(parent).map_err(inspect)?;
    let me = nix::unistd::geteuid().as_raw();
    for d in dir.ancestors() {
        let m = fs::metadata(d).map_err(inspect)?;
        match directory_risk(m.mode(), m.uid(), me) {
            Ok(None) => {}
            Ok(Some(warning)) => log::warn!(
                "status socket {}: directory {} {warning}",
                path.display(),
                d.display()
            ),
            Err(reason) => {
                return Err(StatusError::InsecureDirectory {
                    path: path.into(),
                    dir: d.into(),
                    reason,
                });
            }
        }
    }
    Ok(())
}

/// Removes a socket file nobody listens on; refuses live sockets and non-sockets.
fn clear_stale(path: &Path) -> Result<(), StatusError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StatusError::Inspect {
                path: path.into(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(StatusError::NotASocket { path: path.into() });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(StatusError::AlreadyInUse { path: path.into() }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            fs::remove_file(path).map_err(|source| StatusError::RemoveStale {
                path: path.into(),
                source,
            })?;
            log::info!("removed stale status socket {}", path.display());
            Ok(())
        }
        Err(source) => Err(StatusError::Inspect {
            path: path.into(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_risks_follow_sshd() {
        let me = 1000;
        assert_eq!(directory_risk(0o40755, me, me), Ok(None));
        assert_eq!(directory_risk(0o40700, 0, me), Ok(None));
        assert_eq!(directory_risk(0o41777, 0, me), Ok(None), "/tmp");
        assert!(directory_risk(0o40777, me, me).is_err(), "world-writable");
        assert!(directory_risk(0o40757, 0, me).is_err());
        assert!(directory_risk(0o40755, 1001, me).is_err(), "another owner");
        assert!(
            directory_risk(0o41777, 1001, me).is_err(),
            "sticky but theirs"
        );
        assert!(matches!(directory_risk(0o40775, me, me), Ok(Some(_))));
        assert_eq!(directory_risk(0o41775, me, me), Ok(None));
    }
}
