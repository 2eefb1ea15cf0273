//! `twoway DIR --restore` (SPEC section 4 "Recovery"): makes DIR an exact copy of its latest
//! (`_1`) or previous (`_0`) version, or of what it held before the last restore (`_undo`).
//! The copy is built beside DIR and swapped in with one atomic exchange; what DIR held is
//! first kept as `_undo`, so no restore destroys anything. Restored files are fresh copies,
//! never hard links into the version slots, which are never modified in place.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::apply::{self, ApplyStats};
use crate::bisync::Pair;
use crate::error::{Error, IoResultExt, Op, Quoted, Result};
use crate::fsio;
use crate::lock::{self, LockGuard};
use crate::plan::{self, MirrorOptions};
use crate::recovery;
use crate::scan::{self, Tree};

/// Which state to bring back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `_1`, the latest version (the default).
    Latest,
    /// `_0`, the version before it.
    Previous,
    /// `_undo`, what DIR held before the last restore.
    Undo,
}

impl Version {
    /// The slot directory's name.
    pub fn dir_name(self) -> &'static str {
        match self {
            Version::Latest => "_1",
            Version::Previous => "_0",
            Version::Undo => "_undo",
        }
    }
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    /// The directory restored (canonical).
    pub dir: PathBuf,
    /// The slot it was restored from.
    pub from: PathBuf,
    /// Where DIR's previous content was kept, if DIR existed.
    pub undo: Option<PathBuf>,
    /// Files and bytes copied into DIR.
    pub stats: ApplyStats,
}

/// The register of protected directories in a home.
pub fn info_path(home: &Path) -> PathBuf {
    home.join(".info.json")
}

/// Restores `dir` (any spelling; it may no longer exist) from `version`, using the register
/// and versions in `home`.
pub fn restore(home: &Path, dir: &Path, version: Version, shutdown: &AtomicBool) -> Result<Restored> {
    let dir = crate::roots::absolute(dir)?;
    let info = recovery::load_info(&info_path(home))?;
    let Some(entry) = info.dirs.get(&dir) else {
        let known: Vec<String> = info.dirs.keys().map(|p| Quoted(p).to_string()).collect();
        let reason = if known.is_empty() {
            "is not a protected directory (no directory is protected in this home yet)".to_string()
        } else {
            format!("is not a protected directory; protected: {}", known.join(", "))
        };
        return Err(Error::Invalid { path: dir, reason });
    };
    let slot = entry.versions.join(version.dir_name());
    if !slot.is_dir() {
        let reason = match version {
            Version::Latest => "no version has been kept yet",
            Version::Previous => "no previous version has been kept yet",
            Version::Undo => "there is no restore to undo",
        };
        return Err(Error::Invalid { path: slot, reason: reason.into() });
    }
    let _locks = take_locks(home, &dir, &entry.partner, &entry.versions)?;

    let parent = dir.parent().unwrap_or(Path::new("/")).to_path_buf();
    std::fs::create_dir_all(&parent).at(Op::CreateDir, &parent)?;
    let staging = parent.join(format!("{}restore-{}", fsio::TEMP_PREFIX, std::process::id()));
    fsio::remove_tree(&staging)?;
    let stats = copy_tree(&slot, &staging, shutdown).inspect_err(|_| {
        let _ = fsio::remove_tree(&staging);
    })?;

    let undo = if dir.exists() {
        Some(keep_as_undo(&dir, &entry.versions, shutdown).inspect_err(|_| {
            let _ = fsio::remove_tree(&staging);
        })?)
    } else {
        None
    };

    if dir.exists() {
        fsio::exchange(&staging, &dir)?;
        fsio::remove_tree(&staging)?;
    } else {
        fsio::commit(&staging, &dir)?;
    }
    fsio::sync_dir(&parent)?;
    Ok(Restored { dir, from: slot, undo, stats })
}

/// Refuses while a sync of the pair or the versioning of DIR runs (naming its pid), and holds
/// the versions lock for the restore so that no versioning child starts meanwhile.
fn take_locks(home: &Path, dir: &Path, partner: &Path, versions: &Path) -> Result<LockGuard> {
    let path = Pair::locate(home, dir.into(), partner.into()).lock_path();
    if let Some(pid) = lock::holder(&path) {
        return Err(Error::Locked { path, pid });
    }
    lock::acquire(&versions.join("lock"))
}

/// Copies the tree at `from` into the new directory `to` with the mirror engine (atomic,
/// durable copies; modes, mtimes and symlinks kept), then gives `to` the root's mode and mtime.
fn copy_tree(from: &Path, to: &Path, shutdown: &AtomicBool) -> Result<ApplyStats> {
    let tree = scan::scan(from)?;
    if let Some(err) = tree.errors.into_iter().next() {
        return Err(err);
    }
    let tree = Tree { errors: Vec::new(), ..tree };
    let meta = std::fs::symlink_metadata(from).at(Op::Stat, from)?;
    fsio::create_dir(to, 0o700)?;
    let plan =
        plan::mirror(&tree, &Tree::default(), MirrorOptions::for_this_process(false), &mut |_, _| false);
    let stats = apply::apply(&plan, from, to, shutdown, &mut |_| {});
    if stats.failed > 0 || stats.interrupted {
        return Err(Error::Invalid {
            path: to.into(),
            reason: format!(
                "copying {} failed for {} entries; nothing was changed",
                Quoted(from),
                stats.failed
            ),
        });
    }
    let owner = crate::entry::keeps_owners().then(|| crate::entry::Owner::of(&meta));
    fsio::set_meta(
        to,
        Some(meta.mode() & crate::entry::MODE_MASK),
        Some(crate::entry::Mtime::of(&meta)),
        owner,
    )?;
    Ok(stats)
}

/// Copies `dir` to `<versions>/_undo` (replacing an older one) before a restore replaces it.
fn keep_as_undo(dir: &Path, versions: &Path, shutdown: &AtomicBool) -> Result<PathBuf> {
    let undo = versions.join(Version::Undo.dir_name());
    let fresh = versions.join(format!("{}undo", fsio::TEMP_PREFIX));
    let retired = versions.join(format!("{}undo-old", fsio::TEMP_PREFIX));
    fsio::remove_tree(&fresh)?;
    fsio::remove_tree(&retired)?;
    copy_tree(dir, &fresh, shutdown).inspect_err(|_| {
        let _ = fsio::remove_tree(&fresh);
    })?;
    if undo.exists() {
        fsio::commit(&undo, &retired)?;
    }
    fsio::commit(&fresh, &undo)?;
    fsio::sync_dir(versions)?;
    fsio::remove_tree(&retired)?;
    Ok(undo)
}
