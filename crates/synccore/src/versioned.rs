//! One pass of `oneway --versioned` (SPEC section 3 "Versioned"): repair what a killed pass
//! left, scan SOURCE, compute its directory checksum reusing the manifest's hash cache, and —
//! only when the checksum differs from `_1`'s — build a new version and rotate it in.
//!
//! The new version is an ordinary mirror plan of SOURCE into an empty tree, carried out by the
//! one copy engine ([`crate::apply`]) into [`Layout::next`], in which every copy of a file
//! whose content hash, mode and mtime equal those of the file at the same path in `_1` becomes
//! a hard link to it (a hard link shares mode and mtime, so anything less must be a copy). A
//! version therefore costs only the bytes that changed.
//!
//! A version is a complete picture of SOURCE or nothing: a pass that cannot read all of SOURCE,
//! or whose build meets a failure or a file changing under it, discards the build and leaves
//! the slots as they were. A missing or empty SOURCE never rotates (SPEC section 7: the
//! original wiped both versions that way); when versions exist it is the empty-source rail.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::apply::{self, ApplyStats, Event, Trees};
use crate::checksum::{Digest, directory_checksum_of, file_checksum_in};
use crate::entry::{Entry, MODE_MASK, Mtime, Owner, keeps_owners};
use crate::error::{Error, IoResultExt, Op, Rail, Result};
use crate::fsio::Root;
use crate::plan::{self, Action, MirrorOptions, Plan};
use crate::relpath::RelPath;
use crate::scan::{self, Tree};
use crate::versions::manifest::{FileRecord, Manifest, SlotRecord};
use crate::versions::rotation::{self, Repair};
use crate::versions::{Layout, Slot, names};

/// How a versioned pass runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct VersionedOptions {
    /// Decide and report only; change (and create) nothing.
    pub dry_run: bool,
    /// Hash every file, ignoring the manifest's hash cache (`--checksum`).
    pub rehash: bool,
}

/// What a pass decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// SOURCE's directory checksum equals `_1`'s: nothing was written.
    Unchanged { checksum: Digest },
    /// A new `_1` was rotated in (`old` is the checksum of the `_1` it replaced, if any).
    Rotated { old: Option<Digest>, new: Digest },
    /// Dry run: a real pass would rotate.
    WouldRotate { old: Option<Digest>, new: Digest },
    /// SOURCE is empty and no versions exist yet: nothing to keep.
    EmptySource,
    /// The new version could not be made complete; it was discarded, the slots are unchanged.
    Abandoned { reason: &'static str },
    /// A shutdown request stopped the pass; the slots are unchanged.
    Interrupted,
}

/// What a versioned pass found and did.
#[derive(Debug)]
pub struct VersionedReport {
    pub outcome: Outcome,
    /// What the start-of-pass repair did.
    pub repair: Repair,
    /// The plan that builds the new version (empty when nothing rotates).
    pub plan: Plan,
    /// What building it did; `copied_bytes` is the file data written.
    pub stats: ApplyStats,
    /// Files whose content was read to hash them (cache misses).
    pub hashed_files: u64,
    /// Bytes read to hash them.
    pub hashed_bytes: u64,
    /// Size of the manifest written (0 when none was).
    pub manifest_bytes: u64,
    /// Per-path problems met while scanning or building.
    pub scan_errors: Vec<Error>,
    /// Source entries skipped because they are special files.
    pub special: Vec<RelPath>,
}

impl VersionedReport {
    fn new(repair: Repair) -> Self {
        VersionedReport {
            outcome: Outcome::EmptySource,
            repair,
            plan: Plan::default(),
            stats: ApplyStats::default(),
            hashed_files: 0,
            hashed_bytes: 0,
            manifest_bytes: 0,
            scan_errors: Vec::new(),
            special: Vec::new(),
        }
    }

    /// True when some entry failed or the version was abandoned because of a failure (exit 1).
    pub fn had_errors(&self) -> bool {
        !self.scan_errors.is_empty()
            || self.stats.failed > 0
            || matches!(self.outcome, Outcome::Abandoned { .. })
    }
}

/// Runs one versioned pass of `source` (canonical) into the slots of `layout`. The caller holds
/// the lock at [`Layout::lock`] (unless dry-running). Safety rails return [`Error::Aborted`]
/// before anything changes.
pub fn run_pass(
    source: &Path,
    layout: &Layout,
    options: VersionedOptions,
    shutdown: &AtomicBool,
    observe: &mut dyn FnMut(Event<'_>),
) -> Result<VersionedReport> {
    let started = Instant::now();
    let taken = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    // The versions directory, reached beneath ROOT without following a symlink; a dry run
    // creates nothing, so it may be missing then.
    let v = layout.open(!options.dry_run)?;
    let repair = match &v {
        Some(v) if !options.dry_run => rotation::repair(v)?,
        _ => Repair::default(),
    };
    let mut report = VersionedReport::new(repair);
    let latest = Path::new(Slot::Latest.dir_name());
    let latest_exists = v.as_ref().is_some_and(|v| v.exists(latest));
    let (manifest, rebuilt) = load_manifest(source, layout, v.as_ref())?;
    let versions_exist = manifest.latest.is_some() || latest_exists;

    // A vanished or empty SOURCE (an unmounted disk) never rotates.
    let rail = || Error::Aborted(Rail::EmptySide { empty: source.into(), other: layout.dir() });
    let scanned = Root::open(source).and_then(|root| Ok((scan::scan(&root)?, root_meta(&root)?, root)));
    let (tree, root_meta, source_root) = match scanned {
        Ok(found) => found,
        Err(err) if is_missing(&err) && versions_exist => return Err(rail()),
        Err(err) if is_missing(&err) => return Err(Error::Missing { path: source.into() }),
        Err(err) => return Err(err),
    };
    report.special.clone_from(&tree.special);
    if !tree.errors.is_empty() {
        report.scan_errors = tree.errors;
        report.outcome = Outcome::Abandoned { reason: "SOURCE could not be read completely" };
        return Ok(report);
    }
    if tree.entries.is_empty() {
        return if versions_exist { Err(rail()) } else { Ok(report) };
    }

    let mut rows = Vec::new();
    let checksum =
        match source_checksum(&tree, &source_root, &manifest, options, shutdown, &mut report, &mut rows) {
            Ok(c) => c,
            Err(Error::Interrupted) => {
                report.outcome = Outcome::Interrupted;
                return Ok(report);
            }
            Err(err) => return Err(err),
        };
    let old = manifest.latest.as_ref().map(|r| r.checksum);
    if old == Some(checksum) && latest_exists {
        report.outcome = Outcome::Unchanged { checksum };
        if rebuilt && !options.dry_run {
            // The manifest was lost: write the rebuilt one, with this pass's hashes as cache.
            let mut fixed = manifest;
            if let Some(latest) = fixed.latest.as_mut() {
                latest.taken = taken;
            }
            fixed.files = rows;
            let bytes = fixed.to_bytes();
            if let Some(v) = &v {
                v.write_atomic(Path::new(names::MANIFEST), &bytes)?;
            }
            report.manifest_bytes = bytes.len() as u64;
        }
        return Ok(report);
    }

    report.plan =
        plan::mirror(&tree, &Tree::default(), MirrorOptions::for_this_process(false), &mut |_, _| true);
    let latest_root = match &v {
        Some(v) if latest_exists => Some(v.open_root(latest)?),
        _ => None,
    };
    link_unchanged(&mut report.plan, &rows, &manifest, keeps_owners(), &mut |rel| {
        latest_root.as_ref().and_then(|l| scan::entry_of(l, rel).ok().flatten())
    });
    let v = match v {
        Some(v) if !options.dry_run => v,
        _ => {
            report.outcome = Outcome::WouldRotate { old, new: checksum };
            return Ok(report);
        }
    };

    // Build the new version aside, then swap it in (see `versions::rotation`).
    if !build(&mut report, &source_root, &v, root_meta, shutdown, observe)? {
        return Ok(report);
    }
    let record = SlotRecord {
        checksum,
        taken,
        duration_ms: started.elapsed().as_millis() as u64,
        files: rows.len() as u64,
        bytes: rows.iter().map(|r| r.size).sum(),
    };
    let new = Manifest {
        previous: if latest_exists { manifest.latest } else { manifest.previous },
        latest: Some(record),
        files: rows,
        ..Manifest::new(source)
    };
    let bytes = new.to_bytes();
    rotation::swap_in(&v, &bytes)?;
    report.manifest_bytes = bytes.len() as u64;
    report.outcome = Outcome::Rotated { old, new: checksum };
    Ok(report)
}

/// The directory checksum of SOURCE, reading only files the manifest's hash cache cannot
/// vouch for (all of them with `options.rehash`); `rows` receives every file's record.
fn source_checksum(
    tree: &Tree,
    source: &Root,
    manifest: &Manifest,
    options: VersionedOptions,
    shutdown: &AtomicBool,
    report: &mut VersionedReport,
    rows: &mut Vec<FileRecord>,
) -> Result<Digest> {
    directory_checksum_of(&tree.entries, |e| {
        if shutdown.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let digest = if let Some(d) = manifest.cached_digest(e).filter(|_| !options.rehash) {
            d
        } else {
            report.hashed_files += 1;
            report.hashed_bytes += e.size;
            file_checksum_in(source, &e.path)?
        };
        rows.push(FileRecord { path: e.path.clone(), digest, size: e.size, mtime: e.mtime, ino: e.ino });
        Ok(digest)
    })
}

/// Carries out `report.plan` into [`names::NEXT`] of the versions directory `v` with the one
/// copy engine (hard links into `_1`) and makes the tree durable. False (with the outcome set,
/// the build discarded) unless every step succeeded.
fn build(
    report: &mut VersionedReport,
    source: &Root,
    v: &Root,
    (root_mode, root_mtime, root_owner): (u32, Mtime, Owner),
    shutdown: &AtomicBool,
    observe: &mut dyn FnMut(Event<'_>),
) -> Result<bool> {
    let next = Path::new(names::NEXT);
    v.remove_tree(next)?;
    v.create_dir(next, 0o700)?;
    let next_root = v.open_root(next)?;
    let trees = Trees { from: source, to: &next_root, links: Some(v) };
    report.stats = apply::apply(&report.plan, trees, shutdown, observe);
    if report.stats.panicked {
        v.remove_tree(next)?;
        return Err(Error::Panicked { what: "building the new version" });
    }
    if !report.stats.is_complete() {
        v.remove_tree(next)?;
        report.outcome = if report.stats.interrupted {
            Outcome::Interrupted
        } else {
            Outcome::Abandoned { reason: "the new version could not be built completely" }
        };
        return Ok(false);
    }
    // The slot's root takes SOURCE root's mode and mtime, after its contents are in place.
    v.set_meta(next, Some(root_mode), Some(root_mtime), keeps_owners().then_some(root_owner))?;
    next_root.sync_fs()?;
    Ok(true)
}

/// Turns each copy of a file that `_1` already holds with equal content hash, mode and mtime
/// (and owner, with `owners`: a hard link shares all of them) into a hard link to it (a path
/// relative to the versions directory, `_1/...`). `new_rows` are SOURCE's files with their
/// digests; `old` describes `_1`; `stat` reads the entry at a path of `_1` (`None` when absent
/// or unreadable).
pub fn link_unchanged(
    plan: &mut Plan,
    new_rows: &[FileRecord],
    old: &Manifest,
    owners: bool,
    stat: &mut dyn FnMut(&RelPath) -> Option<Entry>,
) {
    for step in &mut plan.steps {
        let Action::Copy { size, mode, mtime, owner } = step.action else { continue };
        let new = new_rows.binary_search_by(|r| r.path.cmp(&step.path)).ok().map(|i| &new_rows[i]);
        let (Some(new), Some(prev)) = (new, old.file(&step.path)) else { continue };
        if new.digest != prev.digest || prev.size != size {
            continue;
        }
        // The file in `_1` must be the one the manifest describes, and share mode, mtime and
        // (where owners are kept) owner.
        let same = stat(&step.path).is_some_and(|e| {
            e.is_file()
                && e.size == size
                && e.mode == mode
                && e.mtime == mtime
                && e.mtime == prev.mtime
                && (!owners || e.owner == owner)
        });
        if same {
            step.action = Action::HardLink { existing: in_slot(Slot::Latest, &step.path) };
        }
    }
}

/// `rel` inside a slot, as a path relative to the versions directory.
pub fn in_slot(slot: Slot, rel: &RelPath) -> RelPath {
    let mut bytes = slot.dir_name().as_bytes().to_vec();
    bytes.push(b'/');
    bytes.extend_from_slice(rel.as_bytes());
    RelPath::from_bytes(&bytes)
}

/// The manifest of the versions directory `v`, or one rebuilt from the slots when it is
/// missing or unreadable (the slots are the truth; the manifest only describes them). True
/// when rebuilt from slots that exist.
fn load_manifest(source: &Path, layout: &Layout, v: Option<&Root>) -> Result<(Manifest, bool)> {
    let Some(v) = v else { return Ok((Manifest::new(source), false)) };
    let loaded = match Manifest::load(v) {
        Ok(m) => m,
        Err(err @ Error::Invalid { .. }) => {
            log::warn!("{err}; rebuilding it from the version slots");
            None
        }
        Err(err) => return Err(err),
    };
    if let Some(m) = loaded {
        if m.source != source {
            return Err(Error::Invalid {
                path: layout.manifest(),
                reason: format!("belongs to {}, not to this SOURCE", crate::error::Quoted(&m.source)),
            });
        }
        return Ok((m, false));
    }
    let mut m = Manifest::new(source);
    m.latest = slot_record(v, Slot::Latest)?;
    m.previous = slot_record(v, Slot::Previous)?;
    let rebuilt = m.latest.is_some();
    Ok((m, rebuilt))
}

/// A slot's record computed from its tree (hashing every file), `None` when it does not exist.
fn slot_record(v: &Root, slot: Slot) -> Result<Option<SlotRecord>> {
    let rel = Path::new(slot.dir_name());
    if !v.exists(rel) {
        return Ok(None);
    }
    let dir = v.open_root(rel)?;
    let tree = scan::scan(&dir)?;
    if let Some(err) = tree.errors.into_iter().next() {
        return Err(err);
    }
    let checksum = directory_checksum_of(&tree.entries, |e| file_checksum_in(&dir, &e.path))?;
    let files = tree.entries.iter().filter(|e| e.is_file());
    Ok(Some(SlotRecord {
        checksum,
        // Unknown: the epoch, which also keeps the (empty) hash cache from ever being trusted.
        taken: "1970-01-01T00:00:00Z".into(),
        duration_ms: 0,
        files: files.clone().count() as u64,
        bytes: files.map(|e| e.size).sum(),
    }))
}

/// SOURCE root's mode, mtime and owner, which the new slot's root takes on.
fn root_meta(source: &Root) -> Result<(u32, Mtime, Owner)> {
    let st = source.top().stat_self().at(Op::Stat, source.path())?;
    Ok((st.st_mode & MODE_MASK, Mtime::of_stat(&st), Owner::of_stat(&st)))
}

fn is_missing(err: &Error) -> bool {
    match err {
        Error::Missing { .. } | Error::NotADirectory { .. } => true,
        Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Kind;

    const T: Mtime = Mtime { secs: 1_700_000_000, nanos: 5 };

    fn row(path: &str, content: &str) -> FileRecord {
        FileRecord {
            path: RelPath::from_bytes(path.as_bytes()),
            digest: Digest::of_bytes(content.as_bytes()),
            size: content.len() as u64,
            mtime: T,
            ino: 1,
        }
    }

    fn copy(path: &str, size: u64, mode: u32, mtime: Mtime) -> plan::Step {
        plan::Step {
            path: RelPath::from_bytes(path.as_bytes()),
            action: Action::Copy { size, mode, mtime, owner: Owner::default() },
        }
    }

    #[test]
    fn only_equal_hash_mode_and_mtime_become_hard_links() {
        let mut old = Manifest::new(Path::new("/s"));
        old.files =
            vec![row("changed", "aaa"), row("mode", "bbb"), row("same", "ccc"), row("touched", "ddd")];
        let new_rows = vec![
            row("changed", "AAA"),
            row("mode", "bbb"),
            row("new", "eee"),
            row("same", "ccc"),
            row("touched", "ddd"),
        ];
        let later = Mtime { secs: T.secs + 1, nanos: 0 };
        let mut plan = Plan {
            steps: vec![
                copy("changed", 3, 0o644, T),
                copy("mode", 3, 0o755, T),
                copy("new", 3, 0o644, T),
                copy("same", 3, 0o644, T),
                copy("touched", 3, 0o644, later),
            ],
        };
        // `_1` holds every old file with mode 644 and mtime T.
        let mut stat = |p: &RelPath| {
            Some(Entry {
                path: p.clone(),
                kind: Kind::File,
                size: 3,
                mtime: T,
                mode: 0o644,
                ino: 9,
                owner: Owner::default(),
            })
        };
        link_unchanged(&mut plan, &new_rows, &old, true, &mut stat);
        let kinds: Vec<String> =
            plan.steps.iter().map(|s| format!("{} {}", s.kind().word(), s.path)).collect();
        assert_eq!(kinds, ["copy changed", "copy mode", "copy new", "hardlink same", "copy touched"]);
        assert_eq!(plan.steps[3].action, Action::HardLink { existing: RelPath::from_bytes(b"_1/same") });
        // A `_1` file that is not what the manifest says (or is gone) is never linked.
        let mut plan = Plan { steps: vec![copy("same", 3, 0o644, T)] };
        link_unchanged(&mut plan, &new_rows, &old, true, &mut |_| None);
        assert_eq!(plan.count(plan::StepKind::Copy), 1);
    }
}
