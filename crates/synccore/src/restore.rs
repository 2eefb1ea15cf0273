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
//! A copy that is not complete (a scan error, a failed or skipped step, a signal) stops the
//! restore with exit code 1 before anything is swapped (issue point 2). A `kill -9` anywhere
//! leaves DIR whole (old or new) and every tree it held kept; the next restore removes the
//! temporaries and converges.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::apply::{self, ApplyStats};
use crate::bisync::Pair;
use crate::checksum::{Digest, file_checksum};
use crate::entry::{MODE_MASK, Mtime, Owner, keeps_owners};
use crate::error::{Error, IoResultExt, Op, Quoted, Result};
use crate::fsio;
use crate::lock::{self, LockGuard};
use crate::plan::{self, Action, MirrorOptions, Plan};
use crate::recovery;
use crate::relpath::RelPath;
use crate::scan::{self, Tree, join};
use crate::versions::rotation::{self, Repair};
use crate::versions::undo::{self, Migrated, Stamp};
use crate::versions::{Layout, Slot};

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
    let layout = Layout::at(entry.versions.clone());
    let _locks = take_locks(home, &dir, &entry.partner, &entry.versions)?;

    // 1. Old undo slots first: the rotation repair removes temporary names, and the previous
    // program left one of its slots under such a name.
    let migrated = undo::migrate(&layout)?;
    let repair = rotation::repair(&layout)?;
    let staging = staging_path(&dir);
    let parent = staging.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut removed_leftovers = undo::remove_leftovers(&layout)?;
    if std::fs::symlink_metadata(&staging).is_ok() {
        fsio::remove_tree(&staging)?;
        removed_leftovers += 1;
    }
    let (source, from) = source_of(&layout, version)?;

    // 2–4. Until the exchange, a failure removes the copy and leaves DIR as it was.
    fsio::create_dirs(&parent)?;
    let before_swap = (|| {
        let stats = copy_tree(&from, &staging, shutdown)?;
        let (kept, basis) = keep(&dir, &layout, shutdown)?;
        fsio::make_durable(&staging)?;
        check_unchanged(&dir, basis.as_ref())?;
        Ok((stats, kept, basis))
    })();
    let (stats, kept, basis) = before_swap.inspect_err(|_| {
        let _ = fsio::remove_tree(&staging);
    })?;
    let special = basis.as_ref().map(|t| t.special.clone()).unwrap_or_default();
    // Both renames are atomic: when one fails, the staging name still holds the copy.
    let discard = |_: &Error| {
        let _ = fsio::remove_tree(&staging);
    };
    let kept_late = match basis {
        None => {
            // DIR was missing: the copy takes its name, never replacing one that appeared.
            fsio::commit_new(&staging, &dir).inspect_err(discard)?;
            fsio::sync_dir(&parent)?;
            None
        }
        Some(basis) => {
            fsio::exchange(&staging, &dir).inspect_err(discard)?;
            fsio::sync_dir(&parent)?;
            // The staging name now holds DIR's old content. A write that slipped in between
            // the check and the exchange is kept too, before the old content goes.
            let late = match scan::scan(&staging) {
                Ok(now) if same_entries(&now, &basis) => None,
                _ => Some(keep(&staging, &layout, shutdown)?.0),
            };
            fsio::remove_tree(&staging)?;
            late
        }
    };
    Ok(Restored { dir, from, source, kept, kept_late, stats, migrated, repair, removed_leftovers, special })
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

/// Where DIR's new content is built: beside DIR (one file system, so it can be exchanged),
/// named after a hash of DIR's path so that a retried restore finds (and removes) what a
/// killed one left, and so that the name stays short whatever DIR's.
fn staging_path(dir: &Path) -> PathBuf {
    let hash = Digest::of_bytes(dir.as_os_str().as_bytes()).to_hex();
    let parent = dir.parent().unwrap_or(Path::new("/"));
    parent.join(format!("{}restore-{}", fsio::TEMP_PREFIX, &hash[..16]))
}

/// The directory to restore from, or an input error naming what is missing.
fn source_of(layout: &Layout, version: Version) -> Result<(Source, PathBuf)> {
    let wanted = match version {
        Version::Latest | Version::Previous => {
            let (slot, missing) = match version {
                Version::Latest => (Slot::Latest, "no version has been kept yet"),
                _ => (Slot::Previous, "no previous version has been kept yet"),
            };
            let path = layout.slot(slot);
            if !path.is_dir() {
                return Err(Error::Invalid { path, reason: missing.into() });
            }
            return Ok((Source::Slot(slot), path));
        }
        Version::Undo(wanted) => wanted,
    };
    let dir = layout.undo();
    let stamps = undo::list(&dir)?;
    if let Some(stamp) = undo::choose(&stamps, wanted) {
        return Ok((Source::Generation(stamp), dir.join(stamp.to_string())));
    }
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

/// Copies the tree at `from` into the new directory `to` with the one copy engine (atomic,
/// durable copies; modes, mtimes and symlinks kept), then gives `to` the root's mode and mtime.
/// Fails unless the copy is complete.
fn copy_tree(from: &Path, to: &Path, shutdown: &AtomicBool) -> Result<ApplyStats> {
    let tree = scan::scan(from)?;
    let root = std::fs::symlink_metadata(from).at(Op::Stat, from)?;
    fsio::create_dir(to, 0o700)?;
    let plan = copy_plan(&tree);
    let stats = apply::apply(&plan, from, to, shutdown, &mut |_| {});
    ensure_complete(from, &tree, &stats)?;
    set_root_meta(to, &root)?;
    Ok(stats)
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
fn copy_plan(tree: &Tree) -> Plan {
    plan::mirror(tree, &Tree::default(), MirrorOptions::for_this_process(false), &mut |_, _| false)
}

/// Gives a copied tree's root the mode, mtime (and, run as root, owner) of the original's,
/// after its contents are in place (which moved its mtime).
fn set_root_meta(to: &Path, root: &std::fs::Metadata) -> Result<()> {
    let owner = keeps_owners().then(|| Owner::of(root));
    fsio::set_meta(to, Some(root.mode() & MODE_MASK), Some(Mtime::of(root)), owner)
}

/// Keeps the tree at `src` (DIR, or DIR's old content after the exchange) as a new undo
/// generation. Returns what was kept and the scan it was kept from (`None`: `src` is missing).
fn keep(src: &Path, layout: &Layout, shutdown: &AtomicBool) -> Result<(Kept, Option<Tree>)> {
    let tree = match scan::scan(src) {
        Ok(tree) => tree,
        Err(err) if is_missing(&err) => return Ok((Kept::Nothing, None)),
        Err(err) => return Err(err),
    };
    if tree.entries.is_empty() && tree.errors.is_empty() {
        return Ok((Kept::Nothing, Some(tree)));
    }
    ensure_complete(src, &tree, &ApplyStats::default())?;
    let undo_dir = undo::ensure(layout)?;
    let stamps = undo::list(&undo_dir)?;
    let newest = stamps.last().map(|s| (*s, undo_dir.join(s.to_string())));
    let root = std::fs::symlink_metadata(src).at(Op::Stat, src)?;

    // Candidates for sharing, the newest generation first (so that an unchanged tree is seen
    // to be one).
    let candidates: Vec<PathBuf> = newest
        .iter()
        .map(|(_, path)| path.clone())
        .chain([layout.slot(Slot::Latest), layout.slot(Slot::Previous)])
        .filter(|p| p.is_dir())
        .collect();
    let mut plan = copy_plan(&tree);
    let links = link_identical(&mut plan, src, &candidates, &mut |p| file_checksum(p).ok());
    if let Some((stamp, path)) = newest
        && links.all_to_first
        && same_as(&tree, &root, &path)
    {
        return Ok((Kept::SameAsNewest { stamp, path }, Some(tree)));
    }

    let building = undo::building(layout);
    fsio::remove_tree(&building)?;
    fsio::create_dir(&building, 0o700)?;
    let built = (|| {
        let stats = apply::apply(&plan, src, &building, shutdown, &mut |_| {});
        ensure_complete(src, &tree, &stats)?;
        set_root_meta(&building, &root)?;
        fsio::make_durable(&building)?;
        Ok(stats)
    })();
    let stats = built.inspect_err(|_| {
        let _ = fsio::remove_tree(&building);
    })?;
    let stamp = Stamp::next(chrono::Utc::now().timestamp(), &stamps);
    let path = undo_dir.join(stamp.to_string());
    fsio::commit_new(&building, &path)?;
    fsio::sync_dir(&undo_dir)?;
    let kept = Kept::Generation { stamp, path, linked_files: links.linked, copied_bytes: stats.copied_bytes };
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

/// Turns each copy of a file of `src` that a candidate tree (tried in order) holds at the
/// same path with identical content, mode, mtime and (run as root, where copies keep owners)
/// owner into a hard link to it: a link shares all of them, so anything less must stay a copy. `digest` hashes a file (`None` when
/// it cannot be read: the copy then reports the real problem).
fn link_identical(
    plan: &mut Plan,
    src: &Path,
    candidates: &[PathBuf],
    digest: &mut dyn FnMut(&Path) -> Option<Digest>,
) -> Links {
    let mut links = Links { linked: 0, all_to_first: !candidates.is_empty() };
    for step in &mut plan.steps {
        let Action::Copy { size, mode, mtime, .. } = step.action else { continue };
        let file = join(src, &step.path);
        let mut first = false;
        if let Ok(ours) = std::fs::symlink_metadata(&file) {
            let mut our_digest = None;
            for (i, root) in candidates.iter().enumerate() {
                let existing = join(root, &step.path);
                let Ok(theirs) = std::fs::symlink_metadata(&existing) else { continue };
                let same_meta = theirs.is_file()
                    && theirs.len() == size
                    && theirs.mode() & MODE_MASK == mode
                    && Mtime::of(&theirs) == mtime
                    && (!keeps_owners() || Owner::of(&theirs) == Owner::of(&ours))
                    && theirs.nlink() < MAX_LINKS;
                if !same_meta {
                    continue;
                }
                if our_digest.is_none() {
                    our_digest = Some(digest(&file));
                }
                let Some(Some(d)) = our_digest else { break };
                if digest(&existing) == Some(d) {
                    step.action = Action::HardLink { existing };
                    links.linked += 1;
                    first = i == 0;
                    break;
                }
            }
        }
        links.all_to_first &= first;
    }
    links
}

/// True when the tree at `other` has exactly `tree`'s entries (kinds, sizes, modes, mtimes,
/// symlink targets, owners where they are kept) and `root`'s mode and mtime; the caller has
/// checked the contents.
fn same_as(tree: &Tree, root: &std::fs::Metadata, other: &Path) -> bool {
    let Ok(theirs) = scan::scan(other) else { return false };
    let Ok(their_root) = std::fs::symlink_metadata(other) else { return false };
    let owners = keeps_owners();
    let key = |e: &crate::entry::Entry| {
        (e.path.clone(), e.kind.clone(), e.size, e.mode, e.mtime, owners.then_some(e.owner))
    };
    theirs.errors.is_empty()
        && theirs.entries.len() == tree.entries.len()
        && theirs.entries.iter().map(key).eq(tree.entries.iter().map(key))
        && (their_root.mode() & MODE_MASK, Mtime::of(&their_root))
            == (root.mode() & MODE_MASK, Mtime::of(root))
}

/// True when two scans of one tree saw the same entries (inodes included) and no errors.
fn same_entries(now: &Tree, then: &Tree) -> bool {
    now.errors.is_empty() && now.entries == then.entries && now.special == then.special
}

/// Fails when DIR is no longer what [`keep`] kept (`None`: it was missing), so that nothing
/// written meanwhile is swapped away unkept.
fn check_unchanged(dir: &Path, basis: Option<&Tree>) -> Result<()> {
    let unchanged = match (scan::scan(dir), basis) {
        (Err(err), None) if is_missing(&err) => true,
        (Ok(now), Some(then)) => same_entries(&now, then),
        _ => false,
    };
    if unchanged {
        return Ok(());
    }
    Err(Error::Incomplete {
        path: dir.into(),
        reason: "changed while the restore was keeping what it held; nothing was changed, run the \
                 restore again"
            .into(),
    })
}

fn is_missing(err: &Error) -> bool {
    match err {
        Error::Missing { .. } => true,
        Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Entry, Kind};
    use std::fs;

    const T: Mtime = Mtime { secs: 1_700_000_000, nanos: 5 };

    fn put(root: &Path, rel: &str, content: &str, mode: u32) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        fsio::set_meta(&p, Some(mode), Some(T), None).unwrap();
    }

    fn plan_of(root: &Path) -> Plan {
        copy_plan(&scan::scan(root).unwrap())
    }

    fn kinds(plan: &Plan) -> Vec<String> {
        plan.steps
            .iter()
            .filter(|s| s.kind() != plan::StepKind::Meta)
            .map(|s| format!("{} {}", s.kind().word(), s.path))
            .collect()
    }

    #[test]
    fn only_identical_files_become_links_newest_candidate_first() {
        let d = tempfile::tempdir().unwrap();
        let (src, newest, latest) = (d.path().join("dir"), d.path().join("gen"), d.path().join("_1"));
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
        let mut plan = plan_of(&src);
        let mut hashed = Vec::new();
        let links = link_identical(&mut plan, &src, &[newest.clone(), latest.clone()], &mut |p| {
            hashed.push(p.to_path_buf());
            file_checksum(p).ok()
        });
        assert_eq!(
            kinds(&plan),
            ["copy content", "copy mode", "copy new", "hardlink only-in-1", "hardlink same"]
        );
        assert_eq!(
            plan.steps.iter().find(|s| s.path.to_string() == "same").unwrap().action,
            Action::HardLink { existing: newest.join("same") }
        );
        assert_eq!(links, Links { linked: 2, all_to_first: false });
        assert!(
            !hashed.contains(&src.join("mode")) && !hashed.contains(&src.join("new")),
            "metadata decides first: {hashed:?}"
        );

        // A tree whose every file is in the first candidate.
        let mut plan = plan_of(&newest);
        let links =
            link_identical(&mut plan, &newest, std::slice::from_ref(&newest), &mut |p| file_checksum(p).ok());
        assert_eq!(links, Links { linked: 3, all_to_first: true });
        // No candidate: nothing is linked, nothing is "all in the first".
        let mut plan = plan_of(&src);
        assert_eq!(link_identical(&mut plan, &src, &[], &mut |_| unreachable!()), Links::default());
    }

    #[test]
    fn same_as_compares_every_entry_and_the_root() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        for root in [&a, &b] {
            put(root, "x/y", "1", 0o644);
            fsio::set_meta(&root.join("x"), Some(0o755), Some(T), None).unwrap();
            fsio::set_meta(root, Some(0o750), Some(T), None).unwrap();
        }
        let meta = |p: &Path| fs::symlink_metadata(p).unwrap();
        let tree = scan::scan(&a).unwrap();
        assert!(same_as(&tree, &meta(&a), &b));
        fsio::set_meta(&b, Some(0o700), None, None).unwrap();
        assert!(!same_as(&tree, &meta(&a), &b), "root mode differs");
        fsio::set_meta(&b, Some(0o750), None, None).unwrap();
        fsio::set_meta(&b.join("x/y"), None, Some(Mtime { secs: 1, nanos: 0 }), None).unwrap();
        assert!(!same_as(&tree, &meta(&a), &b), "a file's mtime differs");
        assert!(!same_as(&tree, &meta(&a), &d.path().join("missing")));
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
        let err = |v| source_of(&layout, v).unwrap_err();
        assert!(err(Version::Latest).to_string().contains("no version has been kept yet"));
        assert!(err(Version::Previous).to_string().contains("_0\": no previous version"));
        assert!(err(Version::Undo(None)).to_string().contains("no undo generation exists yet"));
        fs::create_dir_all(layout.undo().join("20261125T143000Z")).unwrap();
        fs::create_dir_all(layout.undo().join("20261125T143000Z-2")).unwrap();
        let (source, path) = source_of(&layout, Version::Undo(None)).unwrap();
        assert_eq!(source, Source::Generation(Stamp::parse("20261125T143000Z-2").unwrap()));
        assert_eq!(path, layout.undo().join("20261125T143000Z-2"));
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
        let staging = staging_path(dir);
        assert_eq!(staging.parent(), dir.parent());
        assert!(fsio::is_temp_name(staging.file_name().unwrap()));
        assert!(staging.file_name().unwrap().len() < 64, "short whatever DIR's name");
        assert_ne!(staging_path(Path::new("/x/a")), staging_path(Path::new("/x/b")));
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
            owner: crate::entry::Owner::default(),
        };
        let tree = |ino| Tree { entries: vec![e(ino)], ..Tree::default() };
        assert!(same_entries(&tree(1), &tree(1)));
        assert!(!same_entries(&tree(2), &tree(1)), "replaced by another file");
    }
}
