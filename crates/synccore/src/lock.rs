//! One process per directory pair (SPEC section 5). A lock is an advisory `flock` on a small
//! file holding the owner's pid: the kernel drops it when the owner dies, so a lock left by a
//! killed process never blocks the next run, and a refused process can name the holder.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::checksum::Digest;
use crate::error::{Error, IoResultExt, Op, Result};

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
    path: PathBuf,
}

impl LockGuard {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes the lock at `path` (creating the file and its directory), or fails with
/// [`Error::Locked`] naming the holder's pid.
pub fn acquire(path: &Path) -> Result<LockGuard> {
    let mut file = open(path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(Error::Locked { path: path.to_path_buf(), pid: read_pid(&mut file) });
        }
        Err(TryLockError::Error(e)) => {
            return Err(Error::Io { op: Op::Lock, path: path.to_path_buf(), source: e });
        }
    }
    file.set_len(0).at(Op::Write, path)?;
    file.rewind().at(Op::Write, path)?;
    write!(file, "{}", std::process::id()).at(Op::Write, path)?;
    Ok(LockGuard { _file: file, path: path.to_path_buf() })
}

/// Takes the lock at `path`, waiting for another holder to release it (for short critical
/// sections such as a read-modify-write of a shared file).
pub fn acquire_blocking(path: &Path) -> Result<LockGuard> {
    let file = open(path)?;
    file.lock().at(Op::Lock, path)?;
    Ok(LockGuard { _file: file, path: path.to_path_buf() })
}

/// Opens (creating it and its directory) a lock file without truncating it, never through a
/// symlink, and only when it is a plain file of ours: a lock file is written (the holder's
/// pid), so one planted by another user (a symlink, or a hard link to a file elsewhere) must
/// never be opened (the security issue).
fn open(path: &Path) -> Result<File> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::Invalid { path: path.to_path_buf(), reason: "is not a lock file name".into() });
    };
    crate::fsio::create_dirs(dir)?;
    let dir = crate::fsio::Dir::open(dir)?;
    let file = dir.open_or_create(name, 0o644).at(Op::Lock, path)?;
    let st = rustix::fs::fstat(&file).map_err(std::io::Error::from).at(Op::Lock, path)?;
    let regular = rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile;
    if !regular || st.st_nlink != 1 || st.st_uid != rustix::process::geteuid().as_raw() {
        return Err(Error::Invalid {
            path: path.to_path_buf(),
            reason: "is not a lock file of this user (another user's file, or a link); remove it".into(),
        });
    }
    Ok(file)
}

/// A live process that holds a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    /// Its pid, as it wrote it into the lock file (`None` when unreadable).
    pub pid: Option<u32>,
}

/// The live process holding the lock at `path`, if any (without taking it).
pub fn holder(path: &Path) -> Option<Holder> {
    use std::os::unix::fs::OpenOptionsExt;
    let nofollow = rustix::fs::OFlags::NOFOLLOW.bits() as i32;
    let mut file = OpenOptions::new().read(true).write(true).custom_flags(nofollow).open(path).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(_) => Some(Holder { pid: read_pid(&mut file) }),
    }
}

/// The lock a pass holds: taken for a real pass; for a dry run, which writes nothing (not even
/// a lock file), only a refusal when a live process holds it.
pub fn acquire_unless_dry_run(path: &Path, dry_run: bool) -> Result<Option<LockGuard>> {
    if !dry_run {
        return acquire(path).map(Some);
    }
    match holder(path) {
        Some(Holder { pid }) => Err(Error::Locked { path: path.to_path_buf(), pid }),
        None => Ok(None),
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// Where the lock for mirroring into `target` lives: a per-user directory under the system's
/// temporary directory, keyed by the target's canonical path, so that the backup tree itself
/// holds nothing but the mirror.
pub fn mirror_lock_path(target: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let key = Digest::of_bytes(target.as_os_str().as_bytes()).to_hex();
    let uid = rustix::process::getuid().as_raw();
    std::env::temp_dir().join(format!("synccore-locks-{uid}")).join(format!("mirror-{}.lock", &key[..16]))
}

/// The lock file for mirroring into `target` (see [`mirror_lock_path`]), in a private directory
/// of this user that this makes sure of (creating it).
pub fn prepare_mirror_lock(target: &Path) -> Result<PathBuf> {
    let path = mirror_lock_path(target);
    if let Some(dir) = path.parent() {
        check_private_dir(dir)?;
    }
    Ok(path)
}

/// Makes sure the directory of mirror locks (under the shared temporary directory, where any
/// user may create names) is a real directory of this user that nobody else can write,
/// creating it so; anything else is refused with a message saying what to remove.
pub fn check_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e).at(Op::CreateDir, dir),
        _ => {}
    }
    let meta = fs::symlink_metadata(dir).at(Op::Stat, dir)?;
    let ours = meta.uid() == rustix::process::geteuid().as_raw();
    if !meta.is_dir() || !ours || meta.mode() & 0o022 != 0 {
        return Err(Error::Invalid {
            path: dir.to_path_buf(),
            reason: "is not a private directory of this user (another user's, a symlink, or writable \
                     by others); remove it so that it can be made again"
                .into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_is_refused_with_pid_and_released_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/x.lock");
        let guard = acquire(&p).unwrap();
        assert_eq!(holder(&p), Some(Holder { pid: Some(std::process::id()) }));
        match acquire(&p) {
            Err(Error::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(guard);
        assert_eq!(holder(&p), None);
        acquire(&p).unwrap();
    }
}
