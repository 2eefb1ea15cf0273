//! The only code that writes user data, and the only code that reaches entries below a root.
//! Every entry is addressed as a root and a path relative to it, and reached through
//! directories opened beneath the root without following any symlink ([`Root`], [`Dir`]; the
//! security issue, SPEC section 5): a directory swapped for a symlink during a pass can never
//! redirect a read or a write outside the root.
//!
//! Every change is atomic: new content goes to a temporary name in the target's directory, is
//! made durable, and is renamed over the target; the directory is then fsynced (SPEC section 2
//! "atomic write"). A `kill -9` at any moment therefore leaves each path either old or new.
//! Temporaries carry [`TEMP_PREFIX`], are never synced, and a later pass removes any that a
//! killed pass left behind.

use std::ffi::{OsStr, OsString};
use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::RenameFlags;

use crate::entry::{MODE_MASK, Mtime, Owner, keeps_owners};
use crate::error::{Error, IoResultExt, Op, Result};

mod root;
mod sparse;
pub use root::{Dir, Root};

/// Names starting with this are our temporaries: skipped by scans, removed when left over.
pub const TEMP_PREFIX: &str = ".synccore-tmp-";

/// True for a name that [`temp_name`] could have produced.
pub fn is_temp_name(name: &OsStr) -> bool {
    name.as_bytes().starts_with(TEMP_PREFIX.as_bytes())
}

/// A fresh temporary name, unique within this machine for this process.
pub fn temp_name() -> OsString {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    OsString::from(format!("{TEMP_PREFIX}{}-{n}", PID.get_or_init(std::process::id)))
}

/// How a rename treats an entry already at its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rename {
    /// Replace it (atomically).
    Replace,
    /// Fail with `AlreadyExists` instead (atomically where the file system supports it).
    NoReplace,
    /// Swap the two entries atomically (both must exist).
    Exchange,
}

impl Rename {
    fn flags(self) -> RenameFlags {
        match self {
            Rename::Replace => RenameFlags::empty(),
            Rename::NoReplace => RenameFlags::NOREPLACE,
            Rename::Exchange => RenameFlags::EXCHANGE,
        }
    }
}

/// A file copied to a temporary name in its target's directory, waiting to be made durable
/// and renamed into place.
#[derive(Debug)]
pub struct Staged {
    dir: Arc<Dir>,
    temp: OsString,
    /// Bytes copied.
    pub bytes: u64,
}

impl Staged {
    /// Renames the temporary to `name` in its directory (with `how`: a new file never replaces
    /// one that appeared meanwhile). The caller fsyncs the directory.
    pub fn commit(&self, name: &OsStr, how: Rename) -> Result<()> {
        self.dir.rename(&self.temp, &self.dir, name, how.flags()).map_err(|source| Error::RenameIo {
            from: self.dir.path_of(&self.temp),
            to: self.dir.path_of(name),
            source,
        })
    }

    /// Fsyncs the temporary (when no batch-wide `syncfs` covered it).
    pub fn sync(&self) -> Result<()> {
        let path = self.dir.path_of(&self.temp);
        let file = self.dir.open_read(&self.temp).at(Op::Sync, &path)?;
        file.sync_all().at(Op::Sync, &path)
    }

    /// Removes the temporary (a copy that will not be committed).
    pub fn discard(&self) {
        let _ = self.dir.unlink(&self.temp);
    }
}

/// What came of copying a source file.
#[derive(Debug)]
pub enum StageOutcome {
    Staged(Staged),
    /// The source changed while it was being copied, was not what the scan saw, vanished, or
    /// a directory on its path was replaced (never followed); nothing was written, and the
    /// path is left for the next pass.
    SourceChanged,
    /// The target's directory vanished or was replaced (never followed); nothing was written.
    TargetChanged,
}

/// The attributes a staged copy takes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyAttrs {
    pub mode: u32,
    pub owner: Owner,
}

/// True for errors that mean "what the scan saw is no longer there as it was": gone, or a
/// directory on the way that is now a symlink (never followed) or a file.
pub(crate) fn changed_under_us(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || crate::scan::is_not_a_dir(e)
}

/// Copies the file `rel` of `from` to a temporary beside `rel` in `to`, with `attrs` and the
/// source's mtime. `expected` is the (size, mtime) the scan saw: a source that no longer
/// matches it, or that changes during the copy, is not staged. A source written to in the last
/// moments before the copy is first given time to settle (see [`wait_until_settled`]), so that
/// a rewrite during the copy always shows in its ctime. The data is not yet durable: call
/// [`Root::sync_fs`] (or [`Staged::sync`]) before [`Staged::commit`].
pub fn stage_copy(
    from: &Root,
    to: &Root,
    rel: &Path,
    attrs: CopyAttrs,
    expected: (u64, Mtime),
) -> Result<StageOutcome> {
    let src_path = from.path_of(rel);
    // Opened without a check of what it is: the metadata taken next (needed anyway) tells.
    let opened = from.parent_of(rel).and_then(|(dir, name)| dir.open_read_unchecked(name));
    let input = match opened {
        Ok(input) => input,
        Err(e) if changed_under_us(&e) => return Ok(StageOutcome::SourceChanged),
        Err(e) => return Err(e).at(Op::Read, &src_path),
    };
    let mut before = input.metadata().at(Op::Stat, &src_path)?;
    if !before.is_file() {
        return Ok(StageOutcome::SourceChanged);
    }
    if wait_until_settled(&before) {
        before = input.metadata().at(Op::Stat, &src_path)?;
    }
    if (before.len(), Mtime::of(&before)) != expected || !is_settled(&before) {
        return Ok(StageOutcome::SourceChanged);
    }
    stage_with(to, rel, attrs, |output, temp_path| {
        // Holes stay holes (issue 17): a sparse source is copied by its data ranges.
        let holes = sparse::may_have_holes(&before);
        let bytes = sparse::copy_data(&input, output, before.len(), holes).at(Op::Write, temp_path)?;
        let after = input.metadata().at(Op::Stat, &src_path)?;
        let unchanged = same_version(&before, &after) && bytes == before.len();
        Ok(unchanged.then(|| (bytes, Mtime::of(&before))))
    })
}

/// Stages a file whose bytes come from elsewhere than a local tree (a remote store, issue
/// 18): `write` fills a new temporary beside `rel` in `to`, which then takes on `attrs` and
/// `mtime`, exactly as [`stage_copy`] leaves a copy. `expected_size` is what the plan saw: a
/// different number of bytes is [`StageOutcome::SourceChanged`]. Nothing is left behind on
/// failure; the data is not yet durable (see [`stage_copy`]).
pub fn stage_written(
    to: &Root,
    rel: &Path,
    attrs: CopyAttrs,
    (expected_size, mtime): (u64, Mtime),
    write: &mut crate::store::WriteInto<'_>,
) -> Result<StageOutcome> {
    stage_with(to, rel, attrs, |output, temp_path| {
        let bytes = write(output, temp_path)?;
        Ok((bytes == expected_size).then_some((bytes, mtime)))
    })
}

/// The staging both [`stage_copy`] and [`stage_written`] do: a new temporary beside `rel` in
/// `to`, filled by `fill` (which returns the bytes written and the mtime to give the file, or
/// `None` when its source changed meanwhile), then given `attrs` and that mtime. Nothing is
/// left behind unless the outcome is [`StageOutcome::Staged`].
fn stage_with(
    to: &Root,
    rel: &Path,
    attrs: CopyAttrs,
    fill: impl FnOnce(&mut File, &Path) -> Result<Option<(u64, Mtime)>>,
) -> Result<StageOutcome> {
    let dir = match to.parent_of(rel) {
        Ok((dir, _)) => dir,
        Err(e) if changed_under_us(&e) => return Ok(StageOutcome::TargetChanged),
        Err(e) => return Err(e).at(Op::Create, || to.path_of(rel)),
    };
    let temp = temp_name();
    let mut output = dir.create_new(&temp, 0o600).at(Op::Create, || dir.path_of(&temp))?;
    let staged = Staged { dir, temp, bytes: 0 };
    let temp_path = staged.dir.path_of(&staged.temp);
    let result = (|| {
        let Some((bytes, mtime)) = fill(&mut output, &temp_path)? else { return Ok(None) };
        set_owner(&output, attrs.owner).at(Op::SetMeta, &temp_path)?;
        output.set_permissions(Permissions::from_mode(attrs.mode & MODE_MASK)).at(Op::SetMeta, &temp_path)?;
        let times = std::fs::FileTimes::new().set_modified(mtime.to_system_time());
        output.set_times(times).at(Op::SetMeta, &temp_path)?;
        Ok(Some(bytes))
    })();
    match result {
        Ok(Some(bytes)) => Ok(StageOutcome::Staged(Staged { bytes, ..staged })),
        Ok(None) => {
            staged.discard();
            Ok(StageOutcome::SourceChanged)
        }
        Err(err) => {
            staged.discard();
            Err(err)
        }
    }
}

/// True when two stats of one open file show the same version of it: size, mtime and ctime
/// all unchanged. ctime moves on every write, even one that keeps size and mtime (a rewrite
/// within the mtime's granularity, or a writer that restores the mtime).
fn same_version(before: &std::fs::Metadata, after: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    after.len() == before.len()
        && Mtime::of(after) == Mtime::of(before)
        && (after.ctime(), after.ctime_nsec()) == (before.ctime(), before.ctime_nsec())
}

/// How long after its last change (ctime) a file counts as settled. A write during a copy
/// moves the ctime only if the write falls in a later tick of the kernel's timestamp clock
/// than the last change before the copy; a file last changed more than a tick before the copy
/// starts therefore shows any write during it (the hardening issue, point 5). Ticks are at
/// most 10 ms where timestamps have nanoseconds (and kernels with multigrain timestamps give
/// a write after our `fstat` a finer one anyway), so 20 ms; file systems with whole-second (or
/// FAT's two-second) timestamps, recognised by a ctime without nanoseconds, need seconds.
fn settle_time(meta: &std::fs::Metadata) -> std::time::Duration {
    use std::os::unix::fs::MetadataExt;
    if meta.ctime_nsec() == 0 {
        std::time::Duration::from_millis(2_100)
    } else {
        std::time::Duration::from_millis(20)
    }
}

/// How long ago `meta`'s ctime lies (zero when it lies in the future: a clock that jumped).
fn since_change(meta: &std::fs::Metadata) -> std::time::Duration {
    use std::os::unix::fs::MetadataExt;
    let ctime = Mtime { secs: meta.ctime(), nanos: meta.ctime_nsec() as u32 }.to_system_time();
    std::time::SystemTime::now().duration_since(ctime).unwrap_or_default()
}

/// True when the file described by `meta` was last changed long enough ago that a write
/// during a copy starting now would show in its ctime.
fn is_settled(meta: &std::fs::Metadata) -> bool {
    since_change(meta) >= settle_time(meta)
}

/// Waits (at most [`settle_time`]) until a file that was changed moments ago has settled;
/// true when it waited, so the caller stats it again. A copy of a file in the middle of being
/// written is never installed: it would be a torn mix of old and new bytes that the next pass
/// could not tell from a real edit.
pub fn wait_until_settled(meta: &std::fs::Metadata) -> bool {
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

/// Bytes this process has copied into temporaries so far (a hole skipped counts as copied),
/// counted as they are written, so that a progress display moves while a batch of copies (or
/// one large file) is staged, before any step is done (issue 16, point 1).
static BYTES_WRITTEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// See [`BYTES_WRITTEN`]: a counter that only grows.
pub fn bytes_written() -> u64 {
    BYTES_WRITTEN.load(std::sync::atomic::Ordering::Relaxed)
}

/// Operations on the entry at a path relative to a root: each reaches the entry's directory
/// beneath the root without following a symlink, then acts on the entry by name.
impl Root {
    fn split<'r>(&self, rel: &'r Path, op: Op) -> Result<(Arc<Dir>, &'r OsStr)> {
        self.parent_of(rel).at(op, &self.path_of(rel))
    }

    /// `lstat` of `rel`.
    pub fn stat(&self, rel: &Path) -> io::Result<rustix::fs::Stat> {
        let (dir, name) = self.parent_of(rel)?;
        dir.stat(name)
    }

    /// What is at `rel` now (never following a symlink): `Some((is a directory, device))`, or
    /// `None` when nothing is (or it cannot be seen).
    pub fn dir_and_dev_at(&self, rel: &Path) -> Option<(bool, u64)> {
        let st = self.stat(rel).ok()?;
        let is_dir = rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory;
        Some((is_dir, st.st_dev))
    }

    /// True when something (anything, a symlink too) is at `rel`.
    pub fn exists(&self, rel: &Path) -> bool {
        self.stat(rel).is_ok()
    }

    /// Opens the regular file `rel` for reading.
    pub fn open_read(&self, rel: &Path) -> Result<File> {
        let (dir, name) = self.split(rel, Op::Read)?;
        dir.open_read(name).at(Op::Read, || self.path_of(rel))
    }

    /// [`Root::open_read`], with the `fstat` of the file it opened (no second call to learn
    /// its size or stamp).
    pub fn open_read_stat(&self, rel: &Path) -> io::Result<(File, rustix::fs::Stat)> {
        let (dir, name) = self.parent_of(rel)?;
        dir.open_read_stat(name)
    }

    /// The whole content of the regular file `rel` (for the program's own small files);
    /// `Ok(None)` when it does not exist.
    pub fn read(&self, rel: &Path) -> Result<Option<Vec<u8>>> {
        let file = match self.parent_of(rel).and_then(|(dir, name)| dir.open_read(name)) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at(Op::Read, || self.path_of(rel)),
        };
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut &file, &mut bytes).at(Op::Read, || self.path_of(rel))?;
        Ok(Some(bytes))
    }

    /// Appends `bytes` to `rel` (created when missing, never through a symlink) and makes
    /// them durable: for the programs' own journals, whose reader drops a last line that a
    /// crash cut short.
    pub fn append_durably(&self, rel: &Path, bytes: &[u8]) -> Result<()> {
        let (dir, name) = self.split(rel, Op::Write)?;
        let path = self.path_of(rel);
        let created = matches!(dir.stat(name), Err(e) if e.kind() == io::ErrorKind::NotFound);
        let mut f = dir.open_append(name, 0o644).at(Op::Create, &path)?;
        f.write_all(bytes).at(Op::Write, &path)?;
        f.sync_data().at(Op::Sync, &path)?;
        if created {
            dir.sync().at(Op::Sync, &path)?;
        }
        Ok(())
    }

    /// Writes `bytes` to `rel` atomically and durably (temporary, fsync, rename, fsync of the
    /// directory): for the programs' own files (state, manifests, `.info.json`, config).
    pub fn write_atomic(&self, rel: &Path, bytes: &[u8]) -> Result<()> {
        self.write_atomic_with(rel, &mut |w| w.write_all(bytes))
    }

    /// [`Root::write_atomic`], the content written by `write` (through a buffer): for a file
    /// of ours too large to build in memory first (twoway's base of a large tree).
    pub fn write_atomic_with(
        &self,
        rel: &Path,
        write: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> Result<()> {
        let (dir, name) = self.split(rel, Op::Write)?;
        let temp = temp_name();
        let result = (|| {
            let temp_path = dir.path_of(&temp);
            let f = dir.create_new(&temp, 0o644).at(Op::Create, &temp_path)?;
            let mut buffered = io::BufWriter::with_capacity(1 << 16, f);
            write(&mut buffered).at(Op::Write, &temp_path)?;
            let f =
                buffered.into_inner().map_err(io::IntoInnerError::into_error).at(Op::Write, &temp_path)?;
            f.sync_all().at(Op::Sync, &temp_path)?;
            dir.rename(&temp, &dir, name, RenameFlags::empty()).map_err(|source| Error::RenameIo {
                from: temp_path,
                to: dir.path_of(name),
                source,
            })
        })();
        if result.is_err() {
            let _ = dir.unlink(&temp);
        }
        result?;
        dir.sync().at(Op::Sync, dir.path())
    }

    /// Creates the directory `rel` and its missing parents beneath the root (never through a
    /// symlink); existing ones are kept.
    pub fn create_dirs(&self, rel: &Path) -> Result<()> {
        let mut done = PathBuf::new();
        for comp in rel.components() {
            let parent = self.dir(&done).at(Op::CreateDir, || self.path_of(&done))?;
            done.push(comp);
            match parent.mkdir(comp.as_os_str(), 0o755) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                other => other.at(Op::CreateDir, || self.path_of(&done))?,
            }
        }
        Ok(())
    }

    /// Creates the directory `rel` that the pass can fill: owner-writable whatever its final
    /// mode, which the pass sets once the directory's contents are in place.
    pub fn create_dir(&self, rel: &Path, final_mode: u32) -> Result<()> {
        let (dir, name) = self.split(rel, Op::CreateDir)?;
        dir.mkdir(name, final_mode | 0o700).at(Op::CreateDir, || self.path_of(rel))
    }

    /// Renames `from` to `to` (both relative to this root), as `how` says.
    pub fn rename(&self, from: &Path, to: &Path, how: Rename) -> Result<()> {
        let err =
            |source: io::Error| Error::RenameIo { from: self.path_of(from), to: self.path_of(to), source };
        let (a, a_name) = self.parent_of(from).map_err(err)?;
        let (b, b_name) = self.parent_of(to).map_err(err)?;
        a.rename(a_name, &b, b_name, how.flags()).map_err(err)?;
        self.forget(from);
        self.forget(to);
        Ok(())
    }

    /// Places a symlink at `rel` pointing to `target`, with `mtime` and `owner` (the link's
    /// own, never its target's), atomically: built under a temporary name and renamed into
    /// place. With `replace` false it never replaces an entry that appeared meanwhile.
    pub fn place_symlink(
        &self,
        rel: &Path,
        target: &[u8],
        mtime: Mtime,
        owner: Owner,
        replace: bool,
    ) -> Result<()> {
        let (dir, name) = self.split(rel, Op::Symlink)?;
        let temp = temp_name();
        dir.symlink(target, &temp).at(Op::Symlink, || dir.path_of(&temp))?;
        let how = if replace { RenameFlags::empty() } else { RenameFlags::NOREPLACE };
        let result = set_entry_owner(&dir, &temp, owner)
            .and_then(|()| dir.set_mtime(&temp, mtime))
            .at(Op::SetMeta, || dir.path_of(&temp))
            .and_then(|()| {
                dir.rename(&temp, &dir, name, how).map_err(|source| Error::RenameIo {
                    from: dir.path_of(&temp),
                    to: dir.path_of(name),
                    source,
                })
            });
        result.inspect_err(|_| {
            let _ = dir.unlink(&temp);
        })
    }

    /// Makes `rel` a new hard link to `existing` in `from` (both on one file system). The two
    /// names share content, mode, mtime and owner, so neither may be modified in place.
    pub fn hard_link(&self, rel: &Path, from: &Root, existing: &Path) -> Result<()> {
        let (dir, name) = self.split(rel, Op::HardLink)?;
        let (src, src_name) = from.split(existing, Op::HardLink)?;
        dir.hard_link(&src, src_name, name).at(Op::HardLink, || self.path_of(rel))
    }

    /// Sets the owner, permission bits and/or the mtime of `rel`, never following a symlink
    /// (the owner first: a change of owner may clear permission bits).
    pub fn set_meta(
        &self,
        rel: &Path,
        mode: Option<u32>,
        mtime: Option<Mtime>,
        owner: Option<Owner>,
    ) -> Result<()> {
        let (dir, name) = if rel.as_os_str().is_empty() {
            // The root itself: through its parent would leave the root; use its own handle.
            return self.set_root_meta(mode, mtime, owner);
        } else {
            self.split(rel, Op::SetMeta)?
        };
        let path = || self.path_of(rel);
        if let Some(owner) = owner {
            dir.chown(name, owner).at(Op::SetMeta, &path())?;
        }
        if let Some(mode) = mode {
            dir.chmod(name, mode & MODE_MASK).at(Op::SetMeta, &path())?;
        }
        if let Some(mtime) = mtime {
            dir.set_mtime(name, mtime).at(Op::SetMeta, &path())?;
        }
        Ok(())
    }

    /// [`Root::set_meta`] for the root directory itself, through its open handle.
    fn set_root_meta(&self, mode: Option<u32>, mtime: Option<Mtime>, owner: Option<Owner>) -> Result<()> {
        let path = self.path();
        let fd = self.top();
        if let Some(o) = owner {
            let (uid, gid) = (rustix::fs::Uid::from_raw(o.uid), rustix::fs::Gid::from_raw(o.gid));
            rustix::fs::fchown(&**fd, Some(uid), Some(gid)).map_err(io::Error::from).at(Op::SetMeta, path)?;
        }
        if let Some(mode) = mode {
            rustix::fs::fchmod(&**fd, rustix::fs::Mode::from_raw_mode(mode & MODE_MASK))
                .map_err(io::Error::from)
                .at(Op::SetMeta, path)?;
        }
        if let Some(mtime) = mtime {
            let omit = rustix::fs::Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT };
            let times = rustix::fs::Timestamps { last_access: omit, last_modification: mtime.to_timespec() };
            rustix::fs::futimens(&**fd, &times).map_err(io::Error::from).at(Op::SetMeta, path)?;
        }
        Ok(())
    }

    /// Removes the file or symlink `rel`.
    pub fn remove_file(&self, rel: &Path) -> Result<()> {
        let (dir, name) = self.split(rel, Op::Remove)?;
        dir.unlink(name).at(Op::Remove, || self.path_of(rel))
    }

    /// Removes the empty directory `rel`.
    pub fn remove_dir(&self, rel: &Path) -> Result<()> {
        let (dir, name) = self.split(rel, Op::Remove)?;
        dir.rmdir(name).at(Op::Remove, || self.path_of(rel))?;
        self.forget(rel);
        Ok(())
    }

    /// Removes `rel` and everything below it (our own temporaries and retired trees only,
    /// never user data that a plan did not name). A missing `rel` is no error.
    pub fn remove_tree(&self, rel: &Path) -> Result<()> {
        let (dir, name) = match self.parent_of(rel) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            other => other.at(Op::Remove, || self.path_of(rel))?,
        };
        dir.remove_tree(name).at(Op::Remove, || self.path_of(rel))?;
        self.forget(rel);
        Ok(())
    }

    /// The names in the directory `rel` (the root itself for an empty path).
    pub fn entries(&self, rel: &Path) -> Result<Vec<OsString>> {
        let dir = self.dir(rel).at(Op::ReadDir, || self.path_of(rel))?;
        let names = dir.entries().at(Op::ReadDir, || self.path_of(rel))?;
        Ok(names.into_iter().map(|(name, _)| name).collect())
    }

    /// Fsyncs the directory `rel` (the root itself for an empty path).
    pub fn sync_dir(&self, rel: &Path) -> Result<()> {
        let dir = self.dir(rel).at(Op::Sync, || self.path_of(rel))?;
        dir.sync().at(Op::Sync, || self.path_of(rel))
    }

    /// Makes everything written so far on the root's file system durable: one `syncfs` for a
    /// whole batch of staged files instead of one `fsync` each.
    pub fn sync_fs(&self) -> Result<()> {
        self.top().sync_fs().at(Op::Sync, self.path())
    }

    /// True when `rel` still has the (size, mtime, inode) the scan saw: the re-check before a
    /// destructive step (STYLE "File-system habits").
    pub fn unchanged_since_scan(&self, rel: &Path, size: u64, mtime: Mtime, ino: u64) -> bool {
        use rustix::fs::FileType;
        self.stat(rel).is_ok_and(|st| match FileType::from_raw_mode(st.st_mode) {
            // A directory's size and mtime move with its contents: which directory it is is
            // what a rename of it must re-check.
            FileType::Directory => st.st_ino == ino,
            FileType::Symlink => Mtime::of_stat(&st) == mtime && st.st_ino == ino,
            _ => st.st_size as u64 == size && Mtime::of_stat(&st) == mtime && st.st_ino == ino,
        })
    }

    /// True when nothing is at `rel` (the re-check before creating it).
    pub fn is_absent(&self, rel: &Path) -> bool {
        self.stat(rel).is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
    }
}

/// [`set_owner`] for an entry we created in `dir` (a symlink: the link itself).
fn set_entry_owner(dir: &Dir, name: &OsStr, owner: Owner) -> io::Result<()> {
    if keeps_owners() {
        return dir.chown(name, owner);
    }
    if owner.gid != rustix::process::getegid().as_raw() {
        let _ = dir.chgrp(name, owner.gid);
    }
    Ok(())
}

/// The directory that holds the program's own file `path` (a config file, a register),
/// opened as a root by its canonical path (and created first when `create`), and the file's
/// name in it: the file is then read and written only through that directory's descriptor,
/// never through a symlink (the security issue).
pub fn open_beside(path: &Path, create: bool) -> Result<(Root, &Path)> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::Invalid { path: path.to_path_buf(), reason: "is not a file name".into() });
    };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    if create {
        create_dirs(dir)?;
    }
    Ok((Root::open(&crate::roots::absolute(dir)?)?, Path::new(name)))
}

/// Creates a directory and its missing parents by path (the programs' own top directories:
/// homes, logs, a BACKUP that does not exist yet), before a [`Root`] is opened on it.
pub fn create_dirs(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).at(Op::CreateDir, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    fn attrs(mode: u32) -> CopyAttrs {
        CopyAttrs { mode, owner: Owner { uid: rustix::process::geteuid().as_raw(), gid: 0 } }
    }

    #[test]
    fn staged_copy_keeps_bytes_mode_and_mtime() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::open(d.path()).unwrap();
        fs::write(d.path().join("src"), b"hello").unwrap();
        let mtime = Mtime { secs: 1_600_000_000, nanos: 123_456_789 };
        root.set_meta(Path::new("src"), Some(0o4755), Some(mtime), None).unwrap();
        let outcome = stage_copy(&root, &root, Path::new("src"), attrs(0o4755), (5, mtime)).unwrap();
        let StageOutcome::Staged(staged) = outcome else { panic!("not staged") };
        assert!(is_temp_name(&staged.temp));
        root.sync_fs().unwrap();
        staged.commit(OsStr::new("dst"), Rename::NoReplace).unwrap();
        let meta = fs::metadata(d.path().join("dst")).unwrap();
        assert_eq!(fs::read(d.path().join("dst")).unwrap(), b"hello");
        assert_eq!(meta.mode() & 0o7777, 0o755, "setuid is never copied");
        assert_eq!(Mtime::of(&meta), mtime);
    }

    #[test]
    fn bytes_from_elsewhere_are_staged_like_a_copy_or_not_at_all() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::open(d.path()).unwrap();
        let mtime = Mtime { secs: 1_600_000_000, nanos: 7 };
        let mut write =
            |f: &mut File, _: &Path| f.write_all(b"remote").map(|()| 6).at(Op::Write, Path::new("x"));
        let outcome = stage_written(&root, Path::new("got"), attrs(0o640), (6, mtime), &mut write).unwrap();
        let StageOutcome::Staged(staged) = outcome else { panic!("not staged") };
        staged.sync().unwrap();
        staged.commit(OsStr::new("got"), Rename::NoReplace).unwrap();
        let meta = fs::metadata(d.path().join("got")).unwrap();
        assert_eq!(fs::read(d.path().join("got")).unwrap(), b"remote");
        assert_eq!((meta.mode() & 0o7777, Mtime::of(&meta)), (0o640, mtime));
        // Fewer bytes than planned: nothing staged, no temporary left; a failure likewise.
        let outcome = stage_written(&root, Path::new("short"), attrs(0o640), (7, mtime), &mut write).unwrap();
        assert!(matches!(outcome, StageOutcome::SourceChanged));
        let mut fail = |_: &mut File, p: &Path| Err(io::Error::other("store gone")).at(Op::Read, p);
        assert!(stage_written(&root, Path::new("failed"), attrs(0o640), (6, mtime), &mut fail).is_err());
        let names: Vec<_> = fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![OsString::from("got")]);
    }

    #[test]
    fn a_staged_copy_of_a_sparse_file_keeps_its_holes() {
        use std::os::unix::fs::FileExt;
        let d = tempfile::tempdir().unwrap();
        let root = Root::open(d.path()).unwrap();
        let len = 1u64 << 31;
        let f = fs::File::create(d.path().join("image")).unwrap();
        f.set_len(len).unwrap();
        f.write_all_at(&vec![7u8; 1 << 20], 1 << 30).unwrap();
        drop(f);
        let mtime = Mtime { secs: 1_600_000_000, nanos: 5 };
        root.set_meta(Path::new("image"), None, Some(mtime), None).unwrap();
        let outcome = stage_copy(&root, &root, Path::new("image"), attrs(0o644), (len, mtime)).unwrap();
        let StageOutcome::Staged(staged) = outcome else { panic!("not staged") };
        assert_eq!(staged.bytes, len);
        staged.sync().unwrap();
        staged.commit(OsStr::new("copy"), Rename::NoReplace).unwrap();
        let (src, dst) =
            (fs::metadata(d.path().join("image")).unwrap(), fs::metadata(d.path().join("copy")).unwrap());
        assert_eq!(dst.len(), len);
        assert!(dst.blocks() * 512 <= src.blocks() * 512 + (1 << 20), "{} blocks", dst.blocks());
        let mut head = vec![0u8; 4096];
        fs::File::open(d.path().join("copy")).unwrap().read_exact_at(&mut head, (1 << 30) + 4096).unwrap();
        assert!(head.iter().all(|&b| b == 7));
    }

    #[test]
    fn stage_refuses_a_source_that_differs_from_the_scan() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::open(d.path()).unwrap();
        fs::write(d.path().join("src"), b"hello").unwrap();
        let stale = (4, Mtime { secs: 1, nanos: 0 });
        let outcome = stage_copy(&root, &root, Path::new("src"), attrs(0o644), stale).unwrap();
        assert!(matches!(outcome, StageOutcome::SourceChanged));
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1, "no temporary left");
    }

    #[test]
    fn write_atomic_replaces_and_symlink_is_placed() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::open(d.path()).unwrap();
        root.create_dirs(Path::new("a/b")).unwrap();
        let p = Path::new("a/b/state.json");
        root.write_atomic(p, b"one").unwrap();
        root.write_atomic(p, b"two").unwrap();
        assert_eq!(root.read(p).unwrap().unwrap(), b"two");
        assert_eq!(root.read(Path::new("a/none")).unwrap(), None);
        let l = Path::new("link");
        let t = Mtime { secs: 1_500_000_000, nanos: 7 };
        root.place_symlink(l, b"state.json", t, Owner::default(), false).unwrap();
        assert!(root.place_symlink(l, b"other", t, Owner::default(), false).is_err(), "never replaces");
        root.place_symlink(l, b"elsewhere", t, Owner::default(), true).unwrap();
        assert_eq!(
            Mtime::of(&fs::symlink_metadata(d.path().join(l)).unwrap()),
            t,
            "the link keeps its mtime"
        );
        assert_eq!(fs::read_link(d.path().join(l)).unwrap(), Path::new("elsewhere"));
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 2);
    }

    #[test]
    fn writes_through_a_swapped_directory_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let (inside, outside) = (d.path().join("root"), d.path().join("outside"));
        fs::create_dir_all(inside.join("real")).unwrap();
        fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, inside.join("sub")).unwrap();
        let root = Root::open(&inside).unwrap();
        let sub = Path::new("sub/x");
        assert!(root.write_atomic(sub, b"x").is_err());
        assert!(root.create_dirs(Path::new("sub/deeper")).is_err());
        assert!(root.create_dir(sub, 0o755).is_err());
        assert!(root.place_symlink(sub, b"t", Mtime { secs: 0, nanos: 0 }, Owner::default(), true).is_err());
        assert!(root.rename(Path::new("real"), sub, Rename::NoReplace).is_err());
        assert!(root.set_meta(Path::new("sub"), Some(0o700), None, None).is_ok(), "the link itself");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        assert_eq!(fs::metadata(&outside).unwrap().mode() & 0o777, 0o755);
    }
}
