//! Addressing entries beneath a root without ever following a symlink (SPEC section 5, the
//! security issue). A [`Root`] is a directory opened once, by the canonical path the user
//! named; every other directory below it is opened *relative* to an open directory, with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (or, where the kernel lacks `openat2`, one
//! `openat(O_NOFOLLOW | O_DIRECTORY)` per component). An entry is then read, created, renamed,
//! linked, changed or removed only by `*at` system calls on such a [`Dir`] and its own name,
//! none of which follows a symlink in the last component. A directory swapped for a symlink
//! while a pass runs can therefore never redirect a read or a write outside the root: opening
//! it fails (`ELOOP`), and the caller handles the entry as what it now is.
//!
//! Directories a pass has opened stay open in a small cache per root (the pass works through
//! paths in order, so a few dozen cover it), so this costs no extra path walks.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;

use crate::entry::{Mtime, Owner};
use crate::error::{Error, Op, Result};

/// An open directory, and the path it had when it was opened (for messages only: it is never
/// used to reach anything).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// How a directory is opened: for listing, never following a symlink, closed on exec.
fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Set once the kernel answered that it has no `openat2` (before Linux 5.6, or a seccomp
/// filter that refuses it): from then on, the per-component walk.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Set once the kernel refused `O_NOATIME` (`EPERM`: a file owned by someone else, without
/// `CAP_FOWNER`): from then on files are opened without it, one call each.
static NOATIME_REFUSED: AtomicBool = AtomicBool::new(false);

impl Dir {
    /// Opens the directory at `path` itself (a root the user named, already canonical); only
    /// its last component is guaranteed not to be a symlink.
    pub fn open(path: &Path) -> Result<Dir> {
        let fd = rustix::fs::open(path, dir_flags(), Mode::empty()).map_err(|e| dir_error(e, path))?;
        Ok(Dir { fd, path: path.to_path_buf() })
    }

    /// The path this directory had when it was opened (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in this directory (for messages).
    pub fn path_of(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// The directory `rel` below this one (`.`-free, relative), never following a symlink on
    /// the way: `ELOOP` when any component is one, `ENOTDIR` when one is not a directory.
    pub fn open_beneath(&self, rel: &Path) -> io::Result<Dir> {
        let path = self.path.join(rel);
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            match rustix::fs::openat2(&self.fd, rel, dir_flags(), Mode::empty(), resolve) {
                Ok(fd) => return Ok(Dir { fd, path }),
                Err(Errno::NOSYS | Errno::PERM) => NO_OPENAT2.store(true, Ordering::Relaxed),
                // openat2 retries internally on a concurrent rename; give up after that.
                Err(Errno::AGAIN) => return Err(Errno::AGAIN.into()),
                Err(e) => return Err(e.into()),
            }
        }
        let mut fd = rustix::io::dup(&self.fd)?;
        for comp in rel.components() {
            let std::path::Component::Normal(name) = comp else {
                return Err(io::Error::from(io::ErrorKind::InvalidInput));
            };
            fd = rustix::fs::openat(&fd, name, dir_flags(), Mode::empty())?;
        }
        Ok(Dir { fd, path })
    }

    /// The subdirectory `name` (one component), never following a symlink.
    pub fn open_subdir(&self, name: &OsStr) -> io::Result<Dir> {
        let fd = rustix::fs::openat(&self.fd, name, dir_flags(), Mode::empty())?;
        Ok(Dir { fd, path: self.path_of(name) })
    }

    /// `lstat` of `name`.
    pub fn stat(&self, name: &OsStr) -> io::Result<rustix::fs::Stat> {
        Ok(rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)?)
    }

    /// `fstat` of this directory.
    pub fn stat_self(&self) -> io::Result<rustix::fs::Stat> {
        Ok(rustix::fs::fstat(&self.fd)?)
    }

    /// Opens the regular file `name` for reading. A symlink is never followed (`ELOOP`), and
    /// anything that is not a regular file (a fifo swapped in, say) is refused without
    /// blocking on it (`EINVAL`).
    pub fn open_read(&self, name: &OsStr) -> io::Result<File> {
        self.open_read_stat(name).map(|(file, _)| file)
    }

    /// [`Dir::open_read`], with the `fstat` of the file it opened.
    pub fn open_read_stat(&self, name: &OsStr) -> io::Result<(File, rustix::fs::Stat)> {
        let fd = self.open_read_unchecked(name)?;
        let stat = rustix::fs::fstat(&fd)?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        Ok((fd, stat))
    }

    /// Opens `name` for reading (never through a symlink, never blocking on a FIFO) without
    /// asking what it is: for a caller that takes its metadata next anyway and checks that it
    /// is a regular file there.
    ///
    /// Reading does not touch the file's access time where the kernel lets us (`O_NOATIME`:
    /// files we own, or any file as root): a backup that reads a mailbox must not make a mail
    /// reader think it was read, and a pass does not dirty every inode it reads once a day.
    pub fn open_read_unchecked(&self, name: &OsStr) -> io::Result<File> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        if !NOATIME_REFUSED.load(Ordering::Relaxed) {
            match rustix::fs::openat(&self.fd, name, flags | OFlags::NOATIME, Mode::empty()) {
                // Refused for a file someone else owns: asked no more in this process.
                Err(Errno::PERM) => NOATIME_REFUSED.store(true, Ordering::Relaxed),
                opened => return Ok(File::from(opened?)),
            }
        }
        Ok(File::from(rustix::fs::openat(&self.fd, name, flags, Mode::empty())?))
    }

    /// Creates the file `name`, which must not exist (`EEXIST`, never through a symlink),
    /// open for writing, with `mode`.
    pub fn create_new(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(mode))?;
        Ok(File::from(fd))
    }

    /// Opens (creating it when missing) the file `name` for appending, never through a
    /// symlink: log files.
    pub fn open_append(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let flags = OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(mode))?;
        Ok(File::from(fd))
    }

    /// Opens (creating it when missing) the file `name` for reading and writing, never
    /// through a symlink, without truncating it: lock files.
    pub fn open_or_create(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(mode))?;
        Ok(File::from(fd))
    }

    /// The target of the symlink `name`.
    pub fn read_link(&self, name: &OsStr) -> io::Result<Vec<u8>> {
        Ok(rustix::fs::readlinkat(&self.fd, name, Vec::new())?.into_bytes())
    }

    /// Creates the directory `name`.
    pub fn mkdir(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        Ok(rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode))?)
    }

    /// Creates the symlink `name` pointing to `target`.
    pub fn symlink(&self, target: &[u8], name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::symlinkat(OsStr::from_bytes(target), &self.fd, name)?)
    }

    /// Makes `name` a new hard link to `existing` in `from` (never following a symlink).
    pub fn hard_link(&self, from: &Dir, existing: &OsStr, name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::linkat(&from.fd, existing, &self.fd, name, AtFlags::empty())?)
    }

    /// Renames `name` to `to_name` in `to` (`renameat2`, with `flags`).
    pub fn rename(&self, name: &OsStr, to: &Dir, to_name: &OsStr, flags: RenameFlags) -> io::Result<()> {
        match rustix::fs::renameat_with(&self.fd, name, &to.fd, to_name, flags) {
            // File systems without renameat2's flags: a no-replace rename checks first.
            Err(Errno::INVAL | Errno::NOSYS) if flags == RenameFlags::NOREPLACE => {
                match rustix::fs::statat(&to.fd, to_name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(_) => Err(io::Error::from(io::ErrorKind::AlreadyExists)),
                    Err(_) => Ok(rustix::fs::renameat(&self.fd, name, &to.fd, to_name)?),
                }
            }
            other => Ok(other?),
        }
    }

    /// Removes the file or symlink `name`.
    pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())?)
    }

    /// Removes the empty directory `name`.
    pub fn rmdir(&self, name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR)?)
    }

    /// Removes `name` and, if it is a directory, everything below it, never following a
    /// symlink (for the program's own temporaries and retired trees only). A missing `name`
    /// is no error.
    pub fn remove_tree(&self, name: &OsStr) -> io::Result<()> {
        match self.stat(name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
            Ok(st) if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory => {
                return self.unlink(name);
            }
            Ok(_) => {}
        }
        let sub = self.open_subdir(name)?;
        for (child, _) in sub.entries()? {
            sub.remove_tree(&child)?;
        }
        match self.rmdir(name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Sets the mtime of `name` (the link itself for a symlink).
    pub fn set_mtime(&self, name: &OsStr, mtime: Mtime) -> io::Result<()> {
        let omit = Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT };
        let times = Timestamps { last_access: omit, last_modification: mtime.to_timespec() };
        Ok(rustix::fs::utimensat(&self.fd, name, &times, AtFlags::SYMLINK_NOFOLLOW)?)
    }

    /// Gives `name` (the link itself for a symlink) an owner and group.
    pub fn chown(&self, name: &OsStr, owner: Owner) -> io::Result<()> {
        let (uid, gid) = (rustix::fs::Uid::from_raw(owner.uid), rustix::fs::Gid::from_raw(owner.gid));
        Ok(rustix::fs::chownat(&self.fd, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)?)
    }

    /// Gives `name` the group `gid` only (what a user who is not root may do).
    pub fn chgrp(&self, name: &OsStr, gid: u32) -> io::Result<()> {
        let gid = rustix::fs::Gid::from_raw(gid);
        Ok(rustix::fs::chownat(&self.fd, name, None, Some(gid), AtFlags::SYMLINK_NOFOLLOW)?)
    }

    /// Sets the permission bits of `name`, never following a symlink. Linux's `fchmodat` has
    /// no working no-follow flag before `fchmodat2`, so the entry is opened with `O_PATH |
    /// O_NOFOLLOW` (which works whatever its permissions) and changed through that handle's
    /// `/proc/self/fd` name; without `/proc`, through an ordinary read handle. A symlink has
    /// no mode of its own and is left alone.
    pub fn chmod(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        let handle = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let stat = rustix::fs::fstat(&handle)?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Symlink {
            return Ok(());
        }
        let mode = Mode::from_raw_mode(mode);
        let proc = format!("/proc/self/fd/{}", handle.as_raw_fd());
        match rustix::fs::chmod(proc.as_str(), mode) {
            Err(Errno::NOENT) => {
                let flags =
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
                let fd = rustix::fs::openat(&self.fd, name, flags, Mode::empty())?;
                Ok(rustix::fs::fchmod(&fd, mode)?)
            }
            other => Ok(other?),
        }
    }

    /// Fsyncs this directory, so that the renames and removals in it survive a crash.
    pub fn sync(&self) -> io::Result<()> {
        Ok(rustix::fs::fsync(&self.fd)?)
    }

    /// Makes everything written on this directory's file system durable (`syncfs`).
    pub fn sync_fs(&self) -> io::Result<()> {
        Ok(rustix::fs::syncfs(&self.fd)?)
    }

    /// The names in this directory (without `.` and `..`), each with the type the directory
    /// listing reports (`Unknown` on file systems that do not say).
    pub fn entries(&self) -> io::Result<Vec<(OsString, rustix::fs::FileType)>> {
        let mut dir = rustix::fs::Dir::read_from(&self.fd)?;
        let mut out = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                out.push((OsString::from_vec(name.to_vec()), entry.file_type()));
            }
        }
        Ok(out)
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// An error opening a directory, with its path: `ELOOP` (a symlink where a directory was
/// expected) is said in words.
fn dir_error(e: Errno, path: &Path) -> Error {
    let path = path.to_path_buf();
    match e {
        Errno::NOENT => Error::Missing { path },
        Errno::NOTDIR => Error::NotADirectory { path },
        Errno::LOOP => Error::Invalid { path, reason: "is a symlink, which is never followed".into() },
        _ => Error::Io { op: Op::ReadDir, path, source: e.into() },
    }
}

/// How many directories a root keeps open at most. A pass works through paths in order, so
/// the directories it needs next are nearly always among the last few it opened.
const CACHE_DIRS: usize = 64;

/// A tree's top directory and the directories below it that a pass has opened.
#[derive(Debug)]
pub struct Root {
    top: Arc<Dir>,
    cache: Mutex<HashMap<Box<[u8]>, Arc<Dir>>>,
}

impl Root {
    /// Opens the root directory at `path` (canonical; its last component must not be a
    /// symlink).
    pub fn open(path: &Path) -> Result<Root> {
        Ok(Root::from_dir(Dir::open(path)?))
    }

    fn from_dir(dir: Dir) -> Root {
        Root { top: Arc::new(dir), cache: Mutex::new(HashMap::new()) }
    }

    /// True when the root's path still names the directory this root holds open: it was not
    /// replaced, moved away or unmounted since (watch mode then runs a full pass, so that the
    /// empty-side rail sees it).
    pub fn still_there(&self) -> bool {
        let (now, held) = (rustix::fs::stat(self.path()), self.top.stat_self());
        matches!((now, held), (Ok(now), Ok(held)) if now.st_ino == held.st_ino && now.st_dev == held.st_dev)
    }

    /// The directory `rel` beneath this root, as a root of its own (a version slot, a
    /// staging tree).
    pub fn open_root(&self, rel: &Path) -> Result<Root> {
        let path = self.path().join(rel);
        let dir = self.top.open_beneath(rel).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::Missing { path },
            // Say why: a symlink where a directory of ours should be is never followed.
            _ if crate::scan::is_not_a_dir(&e) && self.is_symlink_on_the_way(rel) => Error::Corrupt {
                path,
                reason: "is, or lies below, a symlink, which is never followed; remove it".into(),
            },
            _ => Error::Io { op: Op::ReadDir, path, source: e },
        })?;
        Ok(Root::from_dir(dir))
    }

    /// True when some component of `rel` is a symlink (for messages).
    fn is_symlink_on_the_way(&self, rel: &Path) -> bool {
        let mut at = PathBuf::new();
        rel.components().any(|c| {
            at.push(c);
            std::fs::symlink_metadata(self.path().join(&at)).is_ok_and(|m| m.file_type().is_symlink())
        })
    }

    /// The root's own path.
    pub fn path(&self) -> &Path {
        self.top.path()
    }

    /// The root directory itself.
    pub fn top(&self) -> &Arc<Dir> {
        &self.top
    }

    /// The full path of `rel` (for messages).
    pub fn path_of(&self, rel: &Path) -> PathBuf {
        self.top.path().join(rel)
    }

    /// The directory `rel` beneath the root (the root itself for an empty path), opened
    /// without following any symlink, from the cache when it is open already.
    pub fn dir(&self, rel: &Path) -> io::Result<Arc<Dir>> {
        let key = rel.as_os_str().as_bytes();
        if key.is_empty() {
            return Ok(Arc::clone(&self.top));
        }
        if let Ok(cache) = self.cache.lock()
            && let Some(dir) = cache.get(key)
        {
            return Ok(Arc::clone(dir));
        }
        let dir = Arc::new(self.top.open_beneath(rel)?);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_DIRS {
                cache.clear();
            }
            cache.insert(key.into(), Arc::clone(&dir));
        }
        Ok(dir)
    }

    /// The directory that holds `rel`, and `rel`'s own name in it.
    pub fn parent_of<'r>(&self, rel: &'r Path) -> io::Result<(Arc<Dir>, &'r OsStr)> {
        let name = rel.file_name().ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok((self.dir(rel.parent().unwrap_or(Path::new("")))?, name))
    }

    /// The directory `rel` beneath the root, opened afresh (never from the cache): for a
    /// listing that must see what is at that path now, even if another process renamed the
    /// directory opened earlier.
    pub fn dir_now(&self, rel: &Path) -> io::Result<Arc<Dir>> {
        if rel.as_os_str().is_empty() {
            return Ok(Arc::clone(&self.top));
        }
        Ok(Arc::new(self.top.open_beneath(rel)?))
    }

    /// Forgets every open directory: a root kept across passes (watch mode) starts each pass
    /// without handles to directories that another process may have renamed meanwhile.
    pub fn forget_all(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
    }

    /// Forgets the open directories at and below `rel`, after it was removed or renamed.
    pub fn forget(&self, rel: &Path) {
        if let Ok(mut cache) = self.cache.lock() {
            let rel = rel.as_os_str().as_bytes();
            // At or below `rel`, component-wise (`a-b` is not below `a`); no path is made per
            // key (a pass of renames forgets once per rename).
            let within = |k: &[u8]| k.starts_with(rel) && (k.len() == rel.len() || k[rel.len()] == b'/');
            cache.retain(|k, _| !within(k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn forgetting_a_directory_forgets_what_is_below_it_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        for rel in ["a/b", "a-b", "ab"] {
            fs::create_dir_all(d.path().join(rel)).unwrap();
        }
        let root = Root::open(d.path()).unwrap();
        for rel in ["a", "a/b", "a-b", "ab"] {
            root.dir(Path::new(rel)).unwrap();
        }
        root.forget(Path::new("a"));
        let mut kept: Vec<Vec<u8>> = root.cache.lock().unwrap().keys().map(|k| k.to_vec()).collect();
        kept.sort();
        assert_eq!(kept, vec![b"a-b".to_vec(), b"ab".to_vec()]);
    }

    #[test]
    fn nothing_is_reached_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let (root_path, outside) = (d.path().join("root"), d.path().join("outside"));
        fs::create_dir_all(root_path.join("real/deeper")).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(&outside, root_path.join("swapped")).unwrap();
        std::os::unix::fs::symlink("secret", outside.join("link")).unwrap();
        let root = Root::open(&root_path).unwrap();
        let rel = Path::new;
        assert!(root.dir(rel("real/deeper")).is_ok());
        let err = root.dir(rel("swapped")).unwrap_err();
        assert!(is_not_followed(&err), "{err}");
        assert!(root.open_read(rel("swapped/secret")).is_err());
        // The fallback walk refuses it too.
        let walk = root.top().open_subdir(OsStr::new("swapped")).unwrap_err();
        assert!(is_not_followed(&walk), "{walk}");
        // A file created beside a symlink's name never goes through it.
        let top = root.top();
        assert!(top.create_new(OsStr::new("swapped"), 0o600).is_err());
        top.chmod(OsStr::new("swapped"), 0o600).unwrap();
        assert_eq!(fs::metadata(&outside).unwrap().permissions().mode() & 0o777, 0o755);
        assert!(top.open_read(OsStr::new("swapped")).is_err());
        // A root that is itself a symlink is refused.
        assert!(Root::open(&root_path.join("swapped")).is_err());
    }

    fn is_not_followed(e: &io::Error) -> bool {
        [Errno::LOOP, Errno::NOTDIR].iter().any(|x| e.raw_os_error() == Some(x.raw_os_error()))
    }

    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_fallback_walk_refuses_symlinks_too() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::os::unix::fs::symlink(d.path().join("a"), d.path().join("a/b/up")).unwrap();
        let top = Dir::open(d.path()).unwrap();
        NO_OPENAT2.store(true, Ordering::Relaxed);
        let walked = top.open_beneath(Path::new("a/b"));
        let refused = top.open_beneath(Path::new("a/b/up/b"));
        let dotdot = top.open_beneath(Path::new("a/../a"));
        NO_OPENAT2.store(false, Ordering::Relaxed);
        assert!(walked.is_ok());
        assert!(is_not_followed(&refused.unwrap_err()));
        assert!(dotdot.is_err(), "no `..` on the way");
    }

    #[test]
    fn remove_tree_stays_inside() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), "k").unwrap();
        let root_path = d.path().join("root");
        fs::create_dir_all(root_path.join("tmp/sub")).unwrap();
        fs::write(root_path.join("tmp/sub/f"), "f").unwrap();
        std::os::unix::fs::symlink(&outside, root_path.join("tmp/link")).unwrap();
        let root = Root::open(&root_path).unwrap();
        root.top().remove_tree(OsStr::new("tmp")).unwrap();
        assert!(!root_path.join("tmp").exists());
        assert!(outside.join("keep").exists());
    }
}
