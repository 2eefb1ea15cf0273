//! `twoway DIR --restore` (SPEC section 4 "Restore"; hardening issue points 1 and 2): makes DIR
//! an exact copy of its latest (`_1`) or previous (`_0`) version, or of an undo generation,
//! and keeps what DIR held as a new undo generation (see [`crate::versions::undo`]), so that no
//! restore destroys anything — not a second one, not one retried after a crash.
//!
//! Every step is atomic, in this order, under the versions lock:
//!
//! 1. settle what a crash left: migrate old undo slots, repair an interrupted rotation (so
//!    `_1` is there), remove our temporaries;
//! 2. copy the chosen version beside DIR, to `.synccore-tmp-restore-<hash>`: fresh copies,
//!    never hard links into the versions, because the user will edit them;
//! 3. keep DIR: build `_undo/.synccore-tmp-generation` (each file identical to one in the
//!    newest generation, `_1` or `_0` is a hard link to it, the rest fresh copies), make it
//!    durable, rename it to `_undo/<stamp>` — or nothing, when DIR is empty or missing, or
//!    identical to the newest generation;
//! 4. check that DIR is still what step 3 kept, then `RENAME_EXCHANGE` it with the copy, fsync
//!    the parent, and remove the copy (now DIR's old content, which step 3 kept).
//!
//! DIR's ignored entries (issue 14: its `.syncignore` files, the config's `"exclude"` and
//! `--exclude`) were never in a version: they are not kept in the undo generation but stay in
//! DIR. Before the exchange they are hard-linked into the copy (directories made, symlinks
//! recreated), so they are in DIR whichever side of the exchange a kill lands on.
//!
//! A copy that is not complete (a scan error, a failed or skipped step, a signal) stops the
//! restore with exit code 1 before anything is swapped (issue point 2). A `kill -9` anywhere
//! leaves DIR whole (old or new) and every tree it held kept; the next restore removes the
//! temporaries and converges.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use synccore::apply::{self, ApplyStats, Event, Trees};
use synccore::checksum::{Digest, file_checksum_in};
use synccore::diff::{self, DiffOptions};
use synccore::entry::{MODE_MASK, Mtime, Owner, keeps_owners};
use synccore::error::{Error, IoResultExt, Op, Quoted, Result};
use synccore::fsio::{self, Rename, Root};
use synccore::ignore::Excludes;
use synccore::lock::{self, LockGuard};
use synccore::plan::{Action, Plan};
use synccore::relpath::RelPath;
use synccore::scan::{self, ScanRules, Tree};
use synccore::versions::rotation::{self, Repair};
use synccore::versions::undo::{self, Migrated, Stamp};
use synccore::versions::{Layout, Slot};

use crate::base::Pair;
use crate::cli::VersionArg;
use crate::recovery::info;

/// Which state to bring back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `_1`, the latest version (the default).
    Latest,
    /// `_0`, the version before it.
    Previous,
    /// An undo generation: the newest (`None`) or the one with this stamp.
    Undo(Option<Stamp>),
}

/// Where a restore took DIR's new content from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Slot(Slot),
    Generation(Stamp),
}

/// What became of DIR's old content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// DIR was empty or missing: there was nothing to keep.
    Nothing,
    /// DIR held exactly the newest generation, which keeps it already (not kept twice).
    SameAsNewest { stamp: Stamp, path: PathBuf },
    /// A new generation.
    Generation {
        stamp: Stamp,
        path: PathBuf,
        /// Files shared (hard-linked) with the versions or the previous generation.
        linked_files: u64,
        /// Bytes copied because no version had them.
        copied_bytes: u64,
    },
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    /// The directory restored (canonical).
    pub dir: PathBuf,
    /// The slot or generation directory it was restored from.
    pub from: PathBuf,
    pub source: Source,
    /// What DIR held before.
    pub kept: Kept,
    /// When DIR changed in the instant between the last check and the swap, what it then held
    /// (kept as one more generation).
    pub kept_late: Option<Kept>,
    /// Files and bytes copied into DIR.
    pub stats: ApplyStats,
    /// Old undo slots turned into generations.
    pub migrated: Vec<Migrated>,
    /// What the repair of the versions did.
    pub repair: Repair,
    /// Temporaries of killed restores removed.
    pub removed_leftovers: usize,
    /// Special files (fifo, socket, device) in DIR, which no generation keeps.
    pub special: Vec<RelPath>,
}

/// Restores `dir` (any spelling; it may no longer exist) from `version`, using the register
/// and versions in `home`. Everything is reached beneath three roots opened once (the home,
/// the versions directory and DIR's parent), never through a symlink (the security issue).
/// `observe` is told the plans of the copies and each finished step (for progress).
pub fn restore(
    home: &Path,
    dir: &Path,
    version: Version,
    excludes: &Excludes,
    shutdown: &AtomicBool,
    observe: &mut dyn FnMut(Event<'_>),
) -> Result<Restored> {
    let dir = synccore::roots::absolute(dir)?;
    let info = info::load_info(&info::info_path(home))?;
    let Some(entry) = info.dirs.get(&dir) else {
        let known: Vec<String> = info.dirs.keys().map(|p| Quoted(p).to_string()).collect();
        let reason = if known.is_empty() {
            "is not a protected directory (no directory is protected in this home yet)".to_string()
        } else {
            format!("is not a protected directory; protected: {}", known.join(", "))
        };
        return Err(Error::Invalid { path: dir, reason });
    };
    let layout = Layout::at(&entry.versions);
    let _locks = take_locks(home, &dir, &entry.partner, &layout)?;
    let Some(v) = layout.open(false)? else {
        return Err(Error::Invalid {
            path: layout.slot(Slot::Latest),
            reason: "no version has been kept yet".into(),
        });
    };

    // 1. Old undo slots first: the rotation repair removes temporary names, and the previous
    // program left one of its slots under such a name.
    let migrated = undo::migrate(&v)?;
    let repair = rotation::repair(&v)?;
    let (parent_path, dir_name) = match (dir.parent(), dir.file_name()) {
        (Some(parent), Some(name)) => (parent.to_path_buf(), PathBuf::from(name)),
        _ => {
            return Err(Error::Invalid { path: dir, reason: "cannot be restored (it has no parent)".into() });
        }
    };
    fsio::create_dirs(&parent_path)?;
    let parent = Root::open(&parent_path)?;
    let staging = staging_name(&dir);
    let mut removed_leftovers = undo::remove_leftovers(&v)?;
    if parent.exists(&staging) {
        parent.remove_tree(&staging)?;
        removed_leftovers += 1;
    }
    let (source, from) = source_of(&v, version)?;
    let from_root = v.open_root(&from)?;

    // 2–4. Until the exchange, a failure removes the copy and leaves DIR as it was.
    let rules = ScanRules::Read(excludes);
    let before_swap = (|| {
        let current = open_dir(&parent, &dir_name)?;
        let ignored = match &current {
            Some(c) => scan::scan_with(c, rules)?.ignored,
            None => Vec::new(),
        };
        let (stats, copied) = copy_tree(&from_root, &parent, &staging, &ignored, shutdown, observe)?;
        if let Some(current) = &current {
            carry_ignored(current, &parent.open_root(&staging)?, &ignored, &copied, shutdown)?;
        }
        let (kept, basis) = keep(current.as_ref(), &v, rules, shutdown, observe)?;
        parent.sync_fs()?;
        check_unchanged(&parent, &dir_name, basis.as_ref(), rules)?;
        Ok((stats, kept, basis))
    })();
    let (stats, kept, basis) = before_swap.inspect_err(|_| {
        let _ = parent.remove_tree(&staging);
    })?;
    let special = basis.as_ref().map(|t| t.special.clone()).unwrap_or_default();
    let kept_late = swap(&parent, &staging, &dir_name, basis, &v, rules, shutdown)?;
    let from = v.path_of(&from);
    Ok(Restored { dir, from, source, kept, kept_late, stats, migrated, repair, removed_leftovers, special })
}

/// Puts the copy at `staging` in DIR's place (`dir_name` in `parent`): one atomic exchange
/// when DIR exists (`basis`: what was kept of it), else a rename that never replaces an entry
/// that appeared meanwhile. Both renames are atomic: when one fails, the staging name still
/// holds the copy, which is removed. Returns what DIR held when it was swapped out, if that
/// is not what was kept (a write that slipped in between the check and the exchange is kept
/// too, before the old content goes).
fn swap(
    parent: &Root,
    staging: &Path,
    dir_name: &Path,
    basis: Option<Tree>,
    v: &Root,
    rules: ScanRules<'_>,
    shutdown: &AtomicBool,
) -> Result<Option<Kept>> {
    let discard = |_: &Error| {
        let _ = parent.remove_tree(staging);
    };
    let Some(basis) = basis else {
        parent.rename(staging, dir_name, Rename::NoReplace).inspect_err(discard)?;
        parent.sync_dir(Path::new(""))?;
        return Ok(None);
    };
    parent.rename(staging, dir_name, Rename::Exchange).inspect_err(discard)?;
    parent.sync_dir(Path::new(""))?;
    // The staging name now holds DIR's old content.
    let old = open_dir(parent, staging)?;
    let late = match old.as_ref().map(|o| scan::scan_with(o, rules)) {
        Some(Ok(now)) if same_entries(&now, &basis) => None,
        _ => Some(keep(old.as_ref(), v, rules, shutdown, &mut |_| {})?.0),
    };
    parent.remove_tree(staging)?;
    Ok(late)
}

/// The directory `name` of `parent` as a root, `None` when it is missing.
fn open_dir(parent: &Root, name: &Path) -> Result<Option<Root>> {
    match parent.open_root(name) {
        Ok(root) => Ok(Some(root)),
        Err(Error::Missing { .. }) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Refuses while a sync of the pair or the versioning of DIR runs (naming its pid), and holds
/// the versions lock for the restore so that no versioning child starts meanwhile.
fn take_locks(home: &Path, dir: &Path, partner: &Path, layout: &Layout) -> Result<LockGuard> {
    let path = Pair::locate(home, dir.into(), partner.into()).lock_path();
    if let Some(lock::Holder { pid }) = lock::holder(&path) {
        return Err(Error::Locked { path, pid });
    }
    lock::acquire(&layout.lock())
}

/// The name DIR's new content is built under, beside DIR (one file system, so it can be
/// exchanged): a hash of DIR's path, so that a retried restore finds (and removes) what a
/// killed one left, and short whatever DIR's name.
fn staging_name(dir: &Path) -> PathBuf {
    let hash = Digest::of_bytes(dir.as_os_str().as_bytes()).to_hex();
    PathBuf::from(format!("{}restore-{}", fsio::TEMP_PREFIX, &hash[..16]))
}

/// The directory (relative to the versions directory `v`) to restore from, or an input error
/// naming what is missing.
fn source_of(v: &Root, version: Version) -> Result<(Source, PathBuf)> {
    let wanted = match version {
        Version::Latest | Version::Previous => {
            let (slot, missing) = match version {
                Version::Latest => (Slot::Latest, "no version has been kept yet"),
                _ => (Slot::Previous, "no previous version has been kept yet"),
            };
            let rel = PathBuf::from(slot.dir_name());
            if !is_dir(v, &rel) {
                return Err(Error::Invalid { path: v.path_of(&rel), reason: missing.into() });
            }
            return Ok((Source::Slot(slot), rel));
        }
        Version::Undo(wanted) => wanted,
    };
    let stamps = undo::list(v)?;
    if let Some(stamp) = undo::choose(&stamps, wanted) {
        return Ok((Source::Generation(stamp), undo::generation(stamp)));
    }
    let dir = v.path_of(Path::new(undo::UNDO_DIR));
    let (path, reason) = match wanted {
        _ if stamps.is_empty() => {
            (dir, "no undo generation exists yet (no restore has kept anything to undo)".to_string())
        }
        None => (dir, "no undo generation".to_string()),
        Some(w) => {
            let available: Vec<String> = stamps.iter().map(ToString::to_string).collect();
            (dir.join(w.to_string()), format!("no such undo generation; available: {}", available.join(", ")))
        }
    };
    Err(Error::Invalid { path, reason })
}

fn is_dir(root: &Root, rel: &Path) -> bool {
    root.stat(rel)
        .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory)
}

/// Copies the tree `from` into the new directory `name` of `parent` with the one copy engine
/// (atomic, durable copies; modes, mtimes and symlinks kept), then gives it the root's mode
/// and mtime. What lies at or below `ignored` (DIR's ignored entries, which stay) is not
/// copied. Fails unless the copy is complete; returns what was copied.
fn copy_tree(
    from: &Root,
    parent: &Root,
    name: &Path,
    ignored: &[RelPath],
    shutdown: &AtomicBool,
    observe: &mut dyn FnMut(Event<'_>),
) -> Result<(ApplyStats, Tree)> {
    let mut tree = scan::scan_owned(from)?;
    if !ignored.is_empty() {
        tree.entries.retain(|e| !ignored.iter().any(|i| e.path.is_within(i)));
    }
    let root = from.top().stat_self().at(Op::Stat, from.path())?;
    parent.create_dir(name, 0o700)?;
    let to = parent.open_root(name)?;
    let plan = copy_plan(&tree)?;
    observe(Event::Planned(&synccore::plan::Steps::summary(&plan)));
    let stats = apply::apply(&plan, Trees::new(from, &to), shutdown, observe);
    ensure_complete(from.path(), &tree, &stats)?;
    set_root_meta(&to, &root)?;
    Ok((stats, tree))
}

/// Puts DIR's ignored entries (`ignored`, the topmost) into the copy `to` of a version
/// (`copied`): files as hard links (DIR keeps them until the exchange, so a kill loses
/// nothing), directories made with their modes and mtimes, symlinks recreated. A directory
/// on their way that the copy lacks is made; one the version holds as a file is a clash the
/// restore refuses (nothing changed) rather than drop either.
fn carry_ignored(
    dir: &Root,
    to: &Root,
    ignored: &[RelPath],
    copied: &Tree,
    shutdown: &AtomicBool,
) -> Result<()> {
    if ignored.is_empty() {
        return Ok(());
    }
    let all = scan::scan(dir)?;
    let mut carried = Tree::default();
    let mut touched: Vec<&synccore::entry::Entry> = Vec::new();
    for e in &all.entries {
        let below = ignored.iter().any(|i| e.path.is_within(i));
        let on_the_way = e.is_dir() && ignored.iter().any(|i| i.is_within(&e.path));
        match copied.get(&e.path) {
            _ if below => carried.entries.push(e.clone()),
            Some(c) if on_the_way && c.is_dir() => touched.push(c),
            Some(_) if on_the_way => {
                return Err(Error::Invalid {
                    path: dir.path_of(e.path.as_path()),
                    reason:
                        "holds ignored entries where the version has a file; move them away and restore again"
                            .into(),
                });
            }
            None if on_the_way => carried.entries.push(e.clone()),
            _ => {}
        }
    }
    let mut plan = copy_plan(&carried)?;
    for step in &mut plan.steps {
        if let Action::Copy { .. } = step.action {
            step.action = Action::HardLink { existing: step.path.clone() };
        }
    }
    let root_mtime = Mtime::of_stat(&to.top().stat_self().at(Op::Stat, to.path())?);
    let stats = apply::apply(&plan, Trees { from: dir, to, links: Some(dir) }, shutdown, &mut |_| {});
    ensure_complete(dir.path(), &all, &stats)?;
    // The version's directories that received them take their own mtimes back.
    for c in touched {
        to.set_meta(c.path.as_path(), None, Some(c.mtime), None)?;
    }
    to.set_meta(Path::new(""), None, Some(root_mtime), None)
}

/// The one completeness rule for every copy that feeds a swap (issue point 2): the source was
/// read without error and every step of the copy was carried out.
fn ensure_complete(from: &Path, tree: &Tree, stats: &ApplyStats) -> Result<()> {
    if stats.panicked {
        return Err(Error::Panicked { what: "a copy of the restore" });
    }
    let reason = if let Some(err) = tree.errors.first() {
        format!("could not be read completely ({err}); nothing was changed")
    } else if stats.interrupted {
        "copying it was interrupted by a signal; nothing was changed".to_string()
    } else if !stats.is_complete() {
        format!(
            "copying it was not complete ({} entries failed, {} changed while being read); \
             nothing was changed, run the restore again",
            stats.failed, stats.skipped
        )
    } else {
        return Ok(());
    };
    Err(Error::Incomplete { path: from.into(), reason })
}

/// The plan that copies `tree` into an empty directory (owners kept where this process can).
fn copy_plan(tree: &Tree) -> Result<Plan> {
    diff::plan(tree, &Tree::default(), DiffOptions::for_this_process(false), &mut |_, _| None)
}

/// Gives a copied tree's root the mode, mtime (and, run as root, owner) of the original's,
/// after its contents are in place (which moved its mtime).
fn set_root_meta(to: &Root, root: &rustix::fs::Stat) -> Result<()> {
    let owner = keeps_owners().then(|| Owner::of_stat(root));
    to.set_meta(Path::new(""), Some(root.st_mode & MODE_MASK), Some(Mtime::of_stat(root)), owner)
}

/// Keeps the tree `src` (DIR, or DIR's old content after the exchange; `None`: missing) as a
/// new undo generation in the versions directory `v`. Returns what was kept and the scan it
/// was kept from.
fn keep(
    src: Option<&Root>,
    v: &Root,
    rules: ScanRules<'_>,
    shutdown: &AtomicBool,
    observe: &mut dyn FnMut(Event<'_>),
) -> Result<(Kept, Option<Tree>)> {
    let Some(src) = src else { return Ok((Kept::Nothing, None)) };
    // DIR's ignored entries are not kept: they stay in DIR (issue 14).
    let tree = scan::scan_with(src, rules)?;
    if tree.entries.is_empty() && tree.errors.is_empty() {
        return Ok((Kept::Nothing, Some(tree)));
    }
    ensure_complete(src.path(), &tree, &ApplyStats::default())?;
    undo::ensure(v)?;
    let stamps = undo::list(v)?;
    let newest = stamps.last().map(|s| (*s, undo::generation(*s)));
    let root = src.top().stat_self().at(Op::Stat, src.path())?;

    // Candidates for sharing, the newest generation first (so that an unchanged tree is seen
    // to be one).
    let candidates: Vec<PathBuf> = newest
        .iter()
        .map(|(_, rel)| rel.clone())
        .chain([Slot::Latest, Slot::Previous].map(|s| PathBuf::from(s.dir_name())))
        .filter(|rel| is_dir(v, rel))
        .collect();
    let mut plan = copy_plan(&tree)?;
    let links = link_identical(&mut plan, src, v, &candidates);
    if let Some((stamp, rel)) = &newest
        && links.all_to_first
        && same_as(&tree, &root, v, rel)
    {
        return Ok((Kept::SameAsNewest { stamp: *stamp, path: v.path_of(rel) }, Some(tree)));
    }

    let building = undo::building();
    v.remove_tree(&building)?;
    v.create_dir(&building, 0o700)?;
    let built = (|| {
        let to = v.open_root(&building)?;
        observe(Event::Planned(&synccore::plan::Steps::summary(&plan)));
        let stats = apply::apply(&plan, Trees { from: src, to: &to, links: Some(v) }, shutdown, observe);
        ensure_complete(src.path(), &tree, &stats)?;
        set_root_meta(&to, &root)?;
        to.sync_fs()?;
        Ok(stats)
    })();
    let stats = built.inspect_err(|_| {
        let _ = v.remove_tree(&building);
    })?;
    let stamp = Stamp::next(chrono::Utc::now().timestamp(), &stamps);
    let rel = undo::generation(stamp);
    v.rename(&building, &rel, Rename::NoReplace)?;
    v.sync_dir(Path::new(undo::UNDO_DIR))?;
    let kept = Kept::Generation {
        stamp,
        path: v.path_of(&rel),
        linked_files: links.linked,
        copied_bytes: stats.copied_bytes,
    };
    Ok((kept, Some(tree)))
}

/// Hard links are refused above this many names per inode (ext4 allows 65,000); such a file
/// is copied instead.
const MAX_LINKS: u64 = 60_000;

/// How many copies [`link_identical`] turned into hard links.
#[derive(Debug, Default, PartialEq, Eq)]
struct Links {
    linked: u64,
    /// Every file of the plan is now a link into the first candidate.
    all_to_first: bool,
}

/// Turns each copy of a file of `src` that a candidate tree of `v` (tried in order) holds at
/// the same path with identical content, mode, mtime and (run as root, where copies keep
/// owners) owner into a hard link to it: a link shares all of them, so anything less must
/// stay a copy. A file that cannot be read stays a copy (which then reports the problem).
fn link_identical(plan: &mut Plan, src: &Root, v: &Root, candidates: &[PathBuf]) -> Links {
    let mut links = Links { linked: 0, all_to_first: !candidates.is_empty() };
    for step in &mut plan.steps {
        let Action::Copy { size, mode, mtime, owner } = step.action else { continue };
        let mut first = false;
        let mut our_digest = None;
        for (i, candidate) in candidates.iter().enumerate() {
            let existing = candidate.join(step.path.as_path());
            let Ok(theirs) = v.stat(&existing) else { continue };
            let same_meta = rustix::fs::FileType::from_raw_mode(theirs.st_mode)
                == rustix::fs::FileType::RegularFile
                && theirs.st_size as u64 == size
                && theirs.st_mode & MODE_MASK == mode
                && Mtime::of_stat(&theirs) == mtime
                && (!keeps_owners() || Owner::of_stat(&theirs) == owner)
                && theirs.st_nlink < MAX_LINKS;
            if !same_meta {
                continue;
            }
            if our_digest.is_none() {
                our_digest = Some(file_checksum_in(src, &step.path).ok());
            }
            let Some(Some(d)) = our_digest else { break };
            let existing = RelPath::from_path(&existing);
            if file_checksum_in(v, &existing).ok() == Some(d) {
                step.action = Action::HardLink { existing };
                links.linked += 1;
                first = i == 0;
                break;
            }
        }
        links.all_to_first &= first;
    }
    links
}

/// True when the tree `other` of `v` has exactly `tree`'s entries (kinds, sizes, modes,
/// mtimes, symlink targets, owners where they are kept) and `root`'s mode and mtime; the
/// caller has checked the contents.
fn same_as(tree: &Tree, root: &rustix::fs::Stat, v: &Root, other: &Path) -> bool {
    let Ok(other) = v.open_root(other) else { return false };
    let Ok(theirs) = scan::scan_owned(&other) else { return false };
    let Ok(their_root) = other.top().stat_self() else { return false };
    let owners = keeps_owners();
    let key = |e: &synccore::entry::Entry| {
        (e.path.clone(), e.kind.clone(), e.size, e.mode, e.mtime, owners.then_some(e.owner))
    };
    theirs.errors.is_empty()
        && theirs.entries.len() == tree.entries.len()
        && theirs.entries.iter().map(key).eq(tree.entries.iter().map(key))
        && (their_root.st_mode & MODE_MASK, Mtime::of_stat(&their_root))
            == (root.st_mode & MODE_MASK, Mtime::of_stat(root))
}

/// True when two scans of one tree saw the same entries (inodes included) and no errors.
fn same_entries(now: &Tree, then: &Tree) -> bool {
    now.errors.is_empty() && now.entries == then.entries && now.special == then.special
}

/// Fails when DIR (`name` in `parent`) is no longer what [`keep`] kept (`None`: it was
/// missing), so that nothing written meanwhile is swapped away unkept.
fn check_unchanged(parent: &Root, name: &Path, basis: Option<&Tree>, rules: ScanRules<'_>) -> Result<()> {
    let unchanged = match (open_dir(parent, name)?, basis) {
        (None, None) => true,
        (Some(now), Some(then)) => scan::scan_with(&now, rules).is_ok_and(|now| same_entries(&now, then)),
        _ => false,
    };
    if unchanged {
        return Ok(());
    }
    Err(Error::Incomplete {
        path: parent.path_of(name),
        reason: "changed while the restore was keeping what it held; nothing was changed, run the \
                 restore again"
            .into(),
    })
}

/// The restore version named on the command line (`latest` when none is).
pub fn version_of(v: Option<VersionArg>) -> Version {
    match v {
        None | Some(VersionArg::Latest) => Version::Latest,
        Some(VersionArg::Previous) => Version::Previous,
        Some(VersionArg::Undo) => Version::Undo(None),
        Some(VersionArg::UndoAt(stamp)) => Version::Undo(Some(stamp)),
    }
}

/// Logs what a restore did (hardening issue point 1: the output names the generation it
/// created and the one it restored from).
pub fn log_restored(done: &Restored) {
    let dir = Quoted(&done.dir);
    for m in &done.migrated {
        log::info!("migrated the old undo slot {} to the undo generation {}", Quoted(&m.from), Quoted(&m.to));
    }
    if done.repair.did_something() {
        log::info!(
            "repaired the versions of {dir}, which an interrupted versioning pass had left unfinished"
        );
    }
    if done.removed_leftovers > 0 {
        log::info!("removed {} temporaries left by an interrupted restore", done.removed_leftovers);
    }
    for path in &done.special {
        log::warn!("{dir}: special file \"{path}\" (fifo, socket or device) is not kept");
    }
    log_kept(&done.dir, &done.kept);
    if let Some(late) = &done.kept_late {
        log::warn!("{dir} changed while it was being swapped; what it held then is kept too");
        log_kept(&done.dir, late);
    }
    let source = match done.source {
        Source::Slot(Slot::Latest) => "the latest version".to_string(),
        Source::Slot(Slot::Previous) => "the previous version".to_string(),
        Source::Generation(stamp) => format!("undo generation {stamp}"),
    };
    log::info!(
        "restored {dir} from {source} {} ({} entries, {} bytes)",
        Quoted(&done.from),
        done.stats.operations(),
        done.stats.copied_bytes
    );
    if !matches!(done.kept, Kept::Nothing) {
        log::info!("`--version undo` brings back what it held before");
    }
}

/// The `--json` event of a restore: the directory, what it came from, and what its old
/// content became.
pub fn restored_event(done: &Restored) -> serde_json::Value {
    use synccli::output;
    let (kept, kept_path) = match &done.kept {
        Kept::Nothing => ("nothing", None),
        Kept::SameAsNewest { path, .. } => ("same as newest", Some(output::path(path))),
        Kept::Generation { path, .. } => ("generation", Some(output::path(path))),
    };
    serde_json::json!({
        "event": "restore",
        "path": output::path(&done.dir),
        "from": output::path(&done.from),
        "operations": done.stats.operations(),
        "bytes": done.stats.copied_bytes,
        "kept": kept,
        "kept_path": kept_path,
    })
}

fn log_kept(dir: &Path, kept: &Kept) {
    let dir = Quoted(dir);
    match kept {
        Kept::Nothing => log::info!("{dir} was empty or missing: nothing to keep"),
        Kept::SameAsNewest { stamp, path } => log::info!(
            "what {dir} held is identical to the undo generation {stamp} ({}); not kept twice",
            Quoted(path)
        ),
        Kept::Generation { stamp, path, linked_files, copied_bytes } => log::info!(
            "kept what {dir} held as the undo generation {stamp} ({}; {linked_files} files shared \
             with the versions, {copied_bytes} bytes copied)",
            Quoted(path)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use synccore::entry::{Entry, Kind};
    use synccore::plan::StepKind;

    const T: Mtime = Mtime { secs: 1_700_000_000, nanos: 5 };

    fn set(p: &Path, mode: Option<u32>, mtime: Option<Mtime>) {
        use std::os::unix::fs::PermissionsExt;
        if let Some(mode) = mode {
            fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
        }
        if let Some(m) = mtime {
            fs::File::open(p)
                .unwrap()
                .set_times(fs::FileTimes::new().set_modified(m.to_system_time()))
                .unwrap();
        }
    }

    fn put(root: &Path, rel: &str, content: &str, mode: u32) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        set(&p, Some(mode), Some(T));
    }

    fn open(p: &Path) -> Root {
        Root::open(p).unwrap()
    }

    fn plan_of(root: &Path) -> Plan {
        copy_plan(&scan::scan(&open(root)).unwrap()).unwrap()
    }

    fn kinds(plan: &Plan) -> Vec<String> {
        plan.steps
            .iter()
            .filter(|s| s.kind() != StepKind::Meta)
            .map(|s| format!("{} {}", s.kind().word(), s.path))
            .collect()
    }

    #[test]
    fn only_identical_files_become_links_newest_candidate_first() {
        let d = tempfile::tempdir().unwrap();
        let v = d.path().join("v");
        let (src, newest, latest) = (d.path().join("dir"), v.join("gen"), v.join("_1"));
        for (rel, content, mode) in [
            ("same", "s", 0o644),
            ("mode", "m", 0o600),
            ("content", "c", 0o644),
            ("only-in-1", "o", 0o644),
            ("new", "n", 0o644),
        ] {
            put(&src, rel, content, mode);
        }
        put(&newest, "same", "s", 0o644);
        put(&newest, "mode", "m", 0o644);
        put(&newest, "content", "C", 0o644);
        put(&latest, "same", "s", 0o644);
        put(&latest, "only-in-1", "o", 0o644);
        let candidates = [PathBuf::from("gen"), PathBuf::from("_1")];
        let mut plan = plan_of(&src);
        let links = link_identical(&mut plan, &open(&src), &open(&v), &candidates);
        assert_eq!(
            kinds(&plan),
            ["copy content", "copy mode", "copy new", "hardlink only-in-1", "hardlink same"]
        );
        assert_eq!(
            plan.steps.iter().find(|s| s.path.to_string() == "same").unwrap().action,
            Action::HardLink { existing: RelPath::from_bytes(b"gen/same") }
        );
        assert_eq!(links, Links { linked: 2, all_to_first: false });

        // A tree whose every file is in the first candidate.
        let mut plan = plan_of(&newest);
        let links = link_identical(&mut plan, &open(&newest), &open(&v), &candidates[..1]);
        assert_eq!(links, Links { linked: 3, all_to_first: true });
        // No candidate: nothing is linked, nothing is "all in the first".
        let mut plan = plan_of(&src);
        assert_eq!(link_identical(&mut plan, &open(&src), &open(&v), &[]), Links::default());
    }

    #[test]
    fn same_as_compares_every_entry_and_the_root() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        for root in [&a, &b] {
            put(root, "x/y", "1", 0o644);
            set(&root.join("x"), Some(0o755), Some(T));
            set(root, Some(0o750), Some(T));
        }
        let stat = |p: &Path| open(p).top().stat_self().unwrap();
        let tree = scan::scan(&open(&a)).unwrap();
        let v = open(d.path());
        assert!(same_as(&tree, &stat(&a), &v, Path::new("b")));
        set(&b, Some(0o700), None);
        assert!(!same_as(&tree, &stat(&a), &v, Path::new("b")), "root mode differs");
        set(&b, Some(0o750), None);
        set(&b.join("x/y"), None, Some(Mtime { secs: 1, nanos: 0 }));
        assert!(!same_as(&tree, &stat(&a), &v, Path::new("b")), "a file's mtime differs");
        assert!(!same_as(&tree, &stat(&a), &v, Path::new("missing")));
    }

    #[test]
    fn a_copy_is_complete_only_without_failures_skips_signals_or_scan_errors() {
        let done = ApplyStats::default();
        assert!(done.is_complete());
        for stats in [
            ApplyStats { failed: 1, ..ApplyStats::default() },
            ApplyStats { skipped: 1, ..ApplyStats::default() },
            ApplyStats { interrupted: true, ..ApplyStats::default() },
        ] {
            assert!(!stats.is_complete());
            let err = ensure_complete(Path::new("/v/_1"), &Tree::default(), &stats).unwrap_err();
            assert!(matches!(err, Error::Incomplete { .. }) && err.exit_code() == 1, "{err}");
        }
        let unreadable = Tree {
            errors: vec![Error::Io {
                op: Op::ReadDir,
                path: "/d/x".into(),
                source: std::io::Error::other("boom"),
            }],
            ..Tree::default()
        };
        let err = ensure_complete(Path::new("/d"), &unreadable, &done).unwrap_err().to_string();
        assert!(err.contains("could not be read completely") && err.contains("boom"), "{err}");
    }

    #[test]
    fn unknown_stamps_and_missing_slots_are_input_errors_naming_what_exists() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path(), Path::new("/some/dir"));
        let v = layout.open(true).unwrap().unwrap();
        let err = |version| source_of(&v, version).unwrap_err();
        assert!(err(Version::Latest).to_string().contains("no version has been kept yet"));
        assert!(err(Version::Previous).to_string().contains("_0\": no previous version"));
        assert!(err(Version::Undo(None)).to_string().contains("no undo generation exists yet"));
        fs::create_dir_all(layout.undo().join("20261125T143000Z")).unwrap();
        fs::create_dir_all(layout.undo().join("20261125T143000Z-2")).unwrap();
        let (source, path) = source_of(&v, Version::Undo(None)).unwrap();
        assert_eq!(source, Source::Generation(Stamp::parse("20261125T143000Z-2").unwrap()));
        assert_eq!(path, Path::new("_undo/20261125T143000Z-2"));
        let missing = err(Version::Undo(Stamp::parse("20000101T000000Z")));
        assert_eq!(missing.exit_code(), 2);
        assert!(
            missing
                .to_string()
                .ends_with("no such undo generation; available: 20261125T143000Z, 20261125T143000Z-2"),
            "{missing}"
        );
    }

    #[test]
    fn staging_names_are_temporaries_beside_dir() {
        let mut long = b"/x/".to_vec();
        long.extend([0xff; 250]);
        let dir = Path::new(std::ffi::OsStr::from_bytes(&long));
        let staging = staging_name(dir);
        assert!(fsio::is_temp_name(staging.as_os_str()));
        assert!(staging.as_os_str().len() < 64, "short whatever DIR's name");
        assert_ne!(staging_name(Path::new("/x/a")), staging_name(Path::new("/x/b")));
    }

    #[test]
    fn same_entries_sees_any_change() {
        let e = |ino| Entry {
            path: RelPath::from_bytes(b"f"),
            kind: Kind::File,
            size: 1,
            mtime: T,
            mode: 0o644,
            ino,
            dev: 1,
            owner: synccore::entry::Owner::default(),
        };
        let tree = |ino| Tree { entries: vec![e(ino)], ..Tree::default() };
        assert!(same_entries(&tree(1), &tree(1)));
        assert!(!same_entries(&tree(2), &tree(1)), "replaced by another file");
    }
}
