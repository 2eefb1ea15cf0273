//! The only code that writes user data. Every change is atomic: new content goes to a
//! temporary name in the target's directory, is made durable, and is renamed over the target;
//! the directory is then fsynced (SPEC section 2 "atomic write"). A `kill -9` at any moment
//! therefore leaves each path either old or new. Temporaries carry [`TEMP_PREFIX`], are never
//! synced, and a later pass removes any that a killed pass left behind.

use std::ffi::OsStr;
use std::fs::{self, File, FileTimes, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::entry::{MODE_MASK, Mtime};
use crate::error::{Error, IoResultExt, Op, Result};

/// Names starting with this are our temporaries: skipped by scans, removed when left over.
pub const TEMP_PREFIX: &str = ".synccore-tmp-";

/// True for a name that [`temp_path`] could have produced.
pub fn is_temp_name(name: &OsStr) -> bool {
    name.as_bytes().starts_with(TEMP_PREFIX.as_bytes())
}

/// A fresh temporary path in `dir`, unique within this machine for this process.
pub fn temp_path(dir: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{TEMP_PREFIX}{}-{n}", PID.get_or_init(std::process::id)))
}

fn parent_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// A file copied to a temporary name, waiting to be made durable and renamed into place.
#[derive(Debug)]
pub struct Staged {
    pub temp: PathBuf,
    pub bytes: u64,
}

/// What came of copying a source file.
#[derive(Debug)]
pub enum StageOutcome {
    Staged(Staged),
    /// The source changed (size or mtime) while it was being copied, or was not what the scan
    /// saw; the copy was discarded and the path is left for the next pass.
    SourceChanged,
}

/// Copies `src` to a temporary file beside `target`, with mode `mode` and the source's mtime.
/// `expected` is the (size, mtime) the scan saw: a source that no longer matches it, or that
/// changes during the copy, is not staged. The data is not yet durable: call
/// [`make_durable`] (or `sync_all` per file) before [`commit`].
pub fn stage_copy(src: &Path, target: &Path, mode: u32, expected: (u64, Mtime)) -> Result<StageOutcome> {
    let input = File::open(src).at(Op::Read, src)?;
    let before = input.metadata().at(Op::Stat, src)?;
    if (before.len(), Mtime::of(&before)) != expected {
        return Ok(StageOutcome::SourceChanged);
    }
    let temp = temp_path(parent_of(target));
    let output =
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp).at(Op::Create, &temp)?;
    let result = (|| {
        let bytes = copy_data(&input, &output, before.len()).at(Op::Write, &temp)?;
        let after = input.metadata().at(Op::Stat, src)?;
        if after.len() != before.len() || Mtime::of(&after) != Mtime::of(&before) || bytes != before.len() {
            return Ok(None);
        }
        output.set_permissions(Permissions::from_mode(mode & MODE_MASK)).at(Op::SetMeta, &temp)?;
        let times = FileTimes::new().set_modified(Mtime::of(&before).to_system_time());
        output.set_times(times).at(Op::SetMeta, &temp)?;
        Ok(Some(bytes))
    })();
    match result {
        Ok(Some(bytes)) => Ok(StageOutcome::Staged(Staged { temp, bytes })),
        Ok(None) => {
            let _ = fs::remove_file(&temp);
            Ok(StageOutcome::SourceChanged)
        }
        Err(err) => {
            let _ = fs::remove_file(&temp);
            Err(err)
        }
    }
}

/// Copies `len` bytes (what the source had when opened) with `copy_file_range`, which stays
/// in the kernel and reflinks where the file system can; a growing source is caught by the
/// caller's second fstat. Falls back to `io::copy` where the call is not supported.
fn copy_data(input: &File, output: &File, len: u64) -> io::Result<u64> {
    use rustix::io::Errno;
    let mut copied = 0u64;
    while copied < len {
        let want = usize::try_from(len - copied).unwrap_or(usize::MAX).min(1 << 30);
        match rustix::fs::copy_file_range(input, None, output, None, want) {
            Ok(0) => break,
            Ok(n) => copied += n as u64,
            Err(Errno::XDEV | Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP) if copied == 0 => {
                return io::copy(&mut &*input, &mut &*output);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(copied)
}

/// Makes everything written so far on the file system holding `anchor` durable: one `syncfs`
/// for a whole batch of staged files instead of one `fsync` each.
pub fn make_durable(anchor: &Path) -> Result<()> {
    let dir = File::open(anchor).at(Op::Sync, anchor)?;
    rustix::fs::syncfs(&dir).map_err(io::Error::from).at(Op::Sync, anchor)
}

/// Renames a durable temporary over `target`. The caller fsyncs the directory (see [`sync_dir`]).
pub fn commit(temp: &Path, target: &Path) -> Result<()> {
    fs::rename(temp, target).map_err(|source| Error::RenameIo {
        from: temp.to_path_buf(),
        to: target.to_path_buf(),
        source,
    })
}

/// Renames `from` to `to` only if `to` does not exist (atomically, where the file system
/// supports it; else with a check just before the rename).
pub fn commit_new(from: &Path, to: &Path) -> Result<()> {
    let err = |source: io::Error| Error::RenameIo { from: from.to_path_buf(), to: to.to_path_buf(), source };
    match rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    ) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            if fs::symlink_metadata(to).is_ok() {
                return Err(err(io::Error::from(io::ErrorKind::AlreadyExists)));
            }
            fs::rename(from, to).map_err(err)
        }
        Err(e) => Err(err(e.into())),
    }
}

/// Swaps two paths atomically (`renameat2` with `RENAME_EXCHANGE`): each ends up holding
/// what the other held, with no moment where either is missing.
pub fn exchange(a: &Path, b: &Path) -> Result<()> {
    rustix::fs::renameat_with(rustix::fs::CWD, a, rustix::fs::CWD, b, rustix::fs::RenameFlags::EXCHANGE)
        .map_err(|e| Error::RenameIo { from: a.to_path_buf(), to: b.to_path_buf(), source: e.into() })
}

/// Fsyncs one file's data and metadata.
pub fn sync_file(path: &Path) -> Result<()> {
    File::open(path).and_then(|f| f.sync_all()).at(Op::Sync, path)
}

/// Fsyncs a directory so that the renames and removals in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(Op::Sync, dir)
}

/// Writes `bytes` to `target` atomically and durably (temp, fsync, rename, fsync directory).
/// For small files the programs own: state, manifests, `.info.json`.
pub fn write_atomic(target: &Path, bytes: &[u8]) -> Result<()> {
    let temp = temp_path(parent_of(target));
    let result = (|| {
        let mut f =
            OpenOptions::new().write(true).create_new(true).mode(0o644).open(&temp).at(Op::Create, &temp)?;
        f.write_all(bytes).at(Op::Write, &temp)?;
        f.sync_all().at(Op::Sync, &temp)?;
        commit(&temp, target)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result?;
    sync_dir(parent_of(target))
}

/// Creates (or atomically replaces) a symlink at `path` pointing to `target`.
pub fn place_symlink(target: &[u8], path: &Path) -> Result<()> {
    let temp = temp_path(parent_of(path));
    std::os::unix::fs::symlink(OsStr::from_bytes(target), &temp).at(Op::Symlink, &temp)?;
    commit(&temp, path).inspect_err(|_| {
        let _ = fs::remove_file(&temp);
    })
}

/// Makes `path` a new hard link to `existing` (both on one file system). The two names share
/// content, mode and mtime, so neither may be modified in place afterwards.
pub fn hard_link(existing: &Path, path: &Path) -> Result<()> {
    fs::hard_link(existing, path).at(Op::HardLink, path)
}

/// Creates a directory that the pass can fill: owner-writable whatever its final mode, which
/// the pass sets once the directory's contents are in place.
pub fn create_dir(path: &Path, final_mode: u32) -> Result<()> {
    fs::DirBuilder::new().mode(final_mode | 0o700).create(path).at(Op::CreateDir, path)
}

/// Creates a directory and its missing parents (for the programs' own files: homes, logs).
pub fn create_dirs(path: &Path) -> Result<()> {
    fs::create_dir_all(path).at(Op::CreateDir, path)
}

/// Sets permission bits and/or the mtime of `path`, never following a symlink.
pub fn set_meta(path: &Path, mode: Option<u32>, mtime: Option<Mtime>) -> Result<()> {
    if let Some(mode) = mode {
        fs::set_permissions(path, Permissions::from_mode(mode & MODE_MASK)).at(Op::SetMeta, path)?;
    }
    if let Some(mtime) = mtime {
        let omit = rustix::fs::Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT };
        let times = rustix::fs::Timestamps { last_access: omit, last_modification: mtime.to_timespec() };
        rustix::fs::utimensat(rustix::fs::CWD, path, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io::Error::from)
            .at(Op::SetMeta, path)?;
    }
    Ok(())
}

/// Removes a file or symlink.
pub fn remove_file(path: &Path) -> Result<()> {
    fs::remove_file(path).at(Op::Remove, path)
}

/// Removes an empty directory.
pub fn remove_dir(path: &Path) -> Result<()> {
    fs::remove_dir(path).at(Op::Remove, path)
}

/// Removes a whole tree (our own temporaries and retired version slots only, never user data
/// that a plan did not name).
pub fn remove_tree(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).at(Op::Remove, path),
        _ => remove_file(path),
    }
}

/// True when `path` still has the (size, mtime, inode) the scan saw: the re-check before a
/// destructive step (STYLE "File-system habits").
pub fn unchanged_since_scan(path: &Path, size: u64, mtime: Mtime, ino: u64) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| {
        let len = if m.file_type().is_symlink() { size } else { m.len() };
        len == size && Mtime::of(&m) == mtime && m.ino() == ino
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_copy_keeps_bytes_mode_and_mtime() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::write(&src, b"hello").unwrap();
        let mtime = Mtime { secs: 1_600_000_000, nanos: 123_456_789 };
        set_meta(&src, Some(0o4755), Some(mtime)).unwrap();
        let target = d.path().join("dst");
        let StageOutcome::Staged(staged) = stage_copy(&src, &target, 0o4755, (5, mtime)).unwrap() else {
            panic!("not staged");
        };
        assert!(is_temp_name(staged.temp.file_name().unwrap()));
        make_durable(d.path()).unwrap();
        commit(&staged.temp, &target).unwrap();
        let meta = fs::metadata(&target).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"hello");
        assert_eq!(meta.mode() & 0o7777, 0o755, "setuid is never copied");
        assert_eq!(Mtime::of(&meta), mtime);
    }

    #[test]
    fn stage_refuses_a_source_that_differs_from_the_scan() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::write(&src, b"hello").unwrap();
        let stale = (4, Mtime { secs: 1, nanos: 0 });
        let outcome = stage_copy(&src, &d.path().join("dst"), 0o644, stale).unwrap();
        assert!(matches!(outcome, StageOutcome::SourceChanged));
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1, "no temporary left");
    }

    #[test]
    fn write_atomic_replaces_and_symlink_is_placed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let l = d.path().join("link");
        place_symlink(b"state.json", &l).unwrap();
        place_symlink(b"elsewhere", &l).unwrap();
        assert_eq!(fs::read_link(&l).unwrap(), Path::new("elsewhere"));
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 2);
    }
}
