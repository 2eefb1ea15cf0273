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

use crate::entry::{MODE_MASK, Mtime, Owner, keeps_owners};
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

/// The attributes a staged copy takes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyAttrs {
    pub mode: u32,
    pub owner: Owner,
}

/// Copies `src` to a temporary file beside `target`, with `attrs` and the source's mtime.
/// `expected` is the (size, mtime) the scan saw: a source that no longer matches it, or that
/// changes during the copy, is not staged. A source written to in the last moments before the
/// copy is first given time to settle (see [`wait_until_settled`]), so that a rewrite during
/// the copy always shows in its ctime. The data is not yet durable: call [`make_durable`] (or
/// `sync_all` per file) before [`commit`].
pub fn stage_copy(
    src: &Path,
    target: &Path,
    attrs: CopyAttrs,
    expected: (u64, Mtime),
) -> Result<StageOutcome> {
    let input = match File::open(src) {
        Ok(input) => input,
        // The source vanished since the scan: the next pass sees what happened to it.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(StageOutcome::SourceChanged),
        Err(e) => return Err(e).at(Op::Read, src),
    };
    let mut before = input.metadata().at(Op::Stat, src)?;
    if wait_until_settled(&before) {
        before = input.metadata().at(Op::Stat, src)?;
    }
    if (before.len(), Mtime::of(&before)) != expected || !is_settled(&before) {
        return Ok(StageOutcome::SourceChanged);
    }
    let temp = temp_path(parent_of(target));
    let output =
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp).at(Op::Create, &temp)?;
    let result = (|| {
        let bytes = copy_data(&input, &output, before.len()).at(Op::Write, &temp)?;
        let after = input.metadata().at(Op::Stat, src)?;
        if !same_version(&before, &after) || bytes != before.len() {
            return Ok(None);
        }
        set_owner(&output, attrs.owner).at(Op::SetMeta, &temp)?;
        output.set_permissions(Permissions::from_mode(attrs.mode & MODE_MASK)).at(Op::SetMeta, &temp)?;
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

/// True when two stats of one open file show the same version of it: size, mtime and ctime
/// all unchanged. ctime moves on every write, even one that keeps size and mtime (a rewrite
/// within the mtime's granularity, or a writer that restores the mtime).
fn same_version(before: &fs::Metadata, after: &fs::Metadata) -> bool {
    after.len() == before.len()
        && Mtime::of(after) == Mtime::of(before)
        && (after.ctime(), after.ctime_nsec()) == (before.ctime(), before.ctime_nsec())
}

/// How long after its last change (ctime) a file counts as settled. A write during a copy
/// moves the ctime only if the write falls in a later tick of the kernel's timestamp clock
/// than the last change before the copy; a file last changed more than a tick before the copy
/// starts therefore shows any write during it (the hardening issue, point 5). Ticks are at
/// most 10 ms where timestamps have nanoseconds; file systems with whole-second (or FAT's
/// two-second) timestamps, recognised by a ctime without nanoseconds, need seconds.
fn settle_time(meta: &fs::Metadata) -> std::time::Duration {
    if meta.ctime_nsec() == 0 {
        std::time::Duration::from_millis(2_100)
    } else {
        std::time::Duration::from_millis(50)
    }
}

/// How long ago `meta`'s ctime lies (zero when it lies in the future: a clock that jumped).
fn since_change(meta: &fs::Metadata) -> std::time::Duration {
    let ctime = Mtime { secs: meta.ctime(), nanos: meta.ctime_nsec() as u32 }.to_system_time();
    std::time::SystemTime::now().duration_since(ctime).unwrap_or_default()
}

/// True when the file described by `meta` was last changed long enough ago that a write
/// during a copy starting now would show in its ctime.
fn is_settled(meta: &fs::Metadata) -> bool {
    since_change(meta) >= settle_time(meta)
}

/// Waits (at most [`settle_time`]) until a file that was changed moments ago has settled;
/// true when it waited, so the caller stats it again. A copy of a file in the middle of being
/// written is never installed: it would be a torn mix of old and new bytes that the next pass
/// could not tell from a real edit.
pub fn wait_until_settled(meta: &fs::Metadata) -> bool {
    let (since, needed) = (since_change(meta), settle_time(meta));
    if since >= needed {
        return false;
    }
    std::thread::sleep(needed.saturating_sub(since));
    true
}

/// Gives a file we created `owner`: exactly when running as root, else as far as the system
/// allows (the group, where the user is a member) and silently (SPEC section 3 "Mirror").
fn set_owner(file: &File, owner: Owner) -> io::Result<()> {
    let (uid, gid) = (rustix::fs::Uid::from_raw(owner.uid), rustix::fs::Gid::from_raw(owner.gid));
    if keeps_owners() {
        return rustix::fs::fchown(file, Some(uid), Some(gid)).map_err(io::Error::from);
    }
    if gid != rustix::process::getegid() {
        let _ = rustix::fs::fchown(file, None, Some(gid));
    }
    Ok(())
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

/// Places a symlink at `path` pointing to `target`, with `mtime` and `owner` (the link's own,
/// never its target's), atomically: built under a temporary name and renamed into place.
/// With `replace` false it never replaces an entry that appeared at `path` meanwhile.
pub fn place_symlink(target: &[u8], path: &Path, mtime: Mtime, owner: Owner, replace: bool) -> Result<()> {
    let temp = temp_path(parent_of(path));
    std::os::unix::fs::symlink(OsStr::from_bytes(target), &temp).at(Op::Symlink, &temp)?;
    let result = set_link_owner(&temp, owner)
        .and_then(|()| set_meta(&temp, None, Some(mtime), None))
        .and_then(|()| if replace { commit(&temp, path) } else { commit_new(&temp, path) });
    result.inspect_err(|_| {
        let _ = fs::remove_file(&temp);
    })
}

/// [`set_owner`] for a symlink we created (the link itself, never its target).
fn set_link_owner(path: &Path, owner: Owner) -> Result<()> {
    let (uid, gid) = (rustix::fs::Uid::from_raw(owner.uid), rustix::fs::Gid::from_raw(owner.gid));
    let nofollow = rustix::fs::AtFlags::SYMLINK_NOFOLLOW;
    if keeps_owners() {
        return rustix::fs::chownat(rustix::fs::CWD, path, Some(uid), Some(gid), nofollow)
            .map_err(io::Error::from)
            .at(Op::SetMeta, path);
    }
    if gid != rustix::process::getegid() {
        let _ = rustix::fs::chownat(rustix::fs::CWD, path, None, Some(gid), nofollow);
    }
    Ok(())
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

/// Sets the owner, permission bits and/or the mtime of `path`, never following a symlink
/// (the owner first: a change of owner may clear permission bits).
pub fn set_meta(path: &Path, mode: Option<u32>, mtime: Option<Mtime>, owner: Option<Owner>) -> Result<()> {
    if let Some(owner) = owner {
        let (uid, gid) = (rustix::fs::Uid::from_raw(owner.uid), rustix::fs::Gid::from_raw(owner.gid));
        rustix::fs::chownat(
            rustix::fs::CWD,
            path,
            Some(uid),
            Some(gid),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(io::Error::from)
        .at(Op::SetMeta, path)?;
    }
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

    fn attrs(mode: u32) -> CopyAttrs {
        CopyAttrs { mode, owner: Owner { uid: rustix::process::geteuid().as_raw(), gid: 0 } }
    }

    #[test]
    fn staged_copy_keeps_bytes_mode_and_mtime() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::write(&src, b"hello").unwrap();
        let mtime = Mtime { secs: 1_600_000_000, nanos: 123_456_789 };
        set_meta(&src, Some(0o4755), Some(mtime), None).unwrap();
        let target = d.path().join("dst");
        let StageOutcome::Staged(staged) = stage_copy(&src, &target, attrs(0o4755), (5, mtime)).unwrap()
        else {
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
        let outcome = stage_copy(&src, &d.path().join("dst"), attrs(0o644), stale).unwrap();
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
        let t = Mtime { secs: 1_500_000_000, nanos: 7 };
        place_symlink(b"state.json", &l, t, Owner::default(), false).unwrap();
        assert!(place_symlink(b"other", &l, t, Owner::default(), false).is_err(), "never replaces");
        place_symlink(b"elsewhere", &l, t, Owner::default(), true).unwrap();
        assert_eq!(Mtime::of(&fs::symlink_metadata(&l).unwrap()), t, "the link keeps its mtime");
        assert_eq!(fs::read_link(&l).unwrap(), Path::new("elsewhere"));
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 2);
    }
}
