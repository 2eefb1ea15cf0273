//! One pass of `oneway --versioned` (SPEC section 3 "Versioned"): repair what a killed pass
//! left, scan SOURCE, compute its directory checksum reusing the hash cache ([`cache`]), and
//! only when the checksum differs from `_1`'s build a new version and rotate it in. A rotation
//! writes the new files, the small manifest and the journal lines of the files that changed
//! (issue 17 point 3), nothing in proportion to the tree.
//!
//! The new version is a diff of SOURCE against an empty tree, carried out by the one copy
//! engine into the versions' build directory, in which every copy of a file whose content
//! hash, mode, mtime and owner equal those of the file in `_1` becomes a hard link to it. A
//! version therefore costs only the bytes that changed.
//!
//! A version is a complete picture of SOURCE or nothing: a pass that cannot read all of SOURCE,
//! or whose build meets a failure or a file changing under it, discards the build and leaves
//! the slots as they were. A missing or empty SOURCE never rotates (SPEC section 7: the
//! original wiped both versions that way); when versions exist it is the empty-source rail,
//! which `--force` does not override. A version that would drop more than `--max-delete` of
//! `_1`'s files aborts like a mirror pass (the architecture issue, point 1).

pub mod cache;
pub mod report;

use std::path::Path;
use std::time::{Duration, Instant};

use synccore::apply::{self, ApplyStats, Event, Trees};
use synccore::checksum::{Digest, directory_checksum_of, file_checksum_in};
use synccore::diff::{self, DiffOptions};
use synccore::entry::{Entry, MODE_MASK, Mtime, Owner, keeps_owners};
use synccore::error::{Error, IoResultExt, Op, Quoted, Result};
use synccore::fsio::Root;
use synccore::ignore::Excludes;
use synccore::plan::Plan;
use synccore::rails::{self, Rails};
use synccore::relpath::RelPath;
use synccore::scan::{self, ScanRules, Tree};
use synccore::shutdown::Shutdown;
use synccore::versions::hashes;
use synccore::versions::manifest::{FileRecord, Manifest, SlotRecord};
use synccore::versions::rotation::{self, Repair};
use synccore::versions::{Layout, Slot, names};

use self::cache::{Cache, Hashed, Origin};

/// How a versioned pass runs.
#[derive(Debug, Clone, Default)]
pub struct VersionedOptions {
    /// Decide and report only; change (and create) nothing.
    pub dry_run: bool,
    /// Hash every file, ignoring the hash cache (`--checksum`).
    pub rehash: bool,
    /// The max-delete rail (the empty-source rail is never overridden here).
    pub rails: Rails,
    /// `--exclude` patterns (issue 14): ignored paths are not part of a version.
    pub excludes: Excludes,
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
    /// What hashing SOURCE read (cache misses).
    pub hashed: Hashed,
    /// Size of the manifest written (0 when none was).
    pub manifest_bytes: u64,
    /// Bytes written to the hash journal: the lines appended, or the whole file when it was
    /// compacted.
    pub journal_bytes: u64,
    /// The hash journal was written whole (compacted or rebuilt) rather than appended to.
    pub journal_compacted: bool,
    /// Per-path problems met while scanning or building.
    pub scan_errors: Vec<Error>,
    /// Source entries skipped because they are special files.
    pub special: Vec<RelPath>,
    /// SOURCE's ignored entries and its rules files not read (issue 14).
    pub ignored: (Vec<RelPath>, Vec<RelPath>),
    /// The version was abandoned only because SOURCE changed under the pass (an entry
    /// vanished, or a file changed while it was hashed or copied): the pass starts again.
    pub changed: bool,
}

impl VersionedReport {
    fn new(repair: Repair) -> Self {
        VersionedReport {
            outcome: Outcome::EmptySource,
            repair,
            plan: Plan::default(),
            stats: ApplyStats::default(),
            hashed: Hashed::default(),
            manifest_bytes: 0,
            journal_bytes: 0,
            journal_compacted: false,
            scan_errors: Vec::new(),
            special: Vec::new(),
            ignored: (Vec::new(), Vec::new()),
            changed: false,
        }
    }

    /// True when some entry failed or the version was abandoned because of a failure (exit 1).
    pub fn had_errors(&self) -> bool {
        !self.scan_errors.is_empty()
            || self.stats.failed > 0
            || matches!(self.outcome, Outcome::Abandoned { .. })
    }
}

/// The versions of one SOURCE as a pass finds them.
struct Versions {
    /// The versions directory (`None`: a dry run before the first version).
    dir: Option<Root>,
    manifest: Manifest,
    /// The hash cache of `_1`.
    cache: Cache,
    /// The manifest or the hash cache was lost and rebuilt from the slots: a pass that does
    /// not rotate writes them.
    rebuilt: bool,
    latest_exists: bool,
}

impl Versions {
    fn exist(&self) -> bool {
        self.manifest.latest.is_some() || self.latest_exists
    }
}

/// SOURCE as a pass scanned it.
struct Source {
    root: Root,
    tree: Tree,
    /// The root's mode, mtime and owner, which the new slot's root takes on.
    meta: (u32, Mtime, Owner),
}

/// How long (seconds) a pass waits before it starts again after SOURCE changed under it,
/// attempt by attempt: 31 s in all, long enough for a twoway pass writing into SOURCE
/// (whose versioning child this may be) to finish on all but the largest trees.
const AGAIN_AFTER: [u64; 5] = [1, 2, 4, 8, 16];

/// Runs one versioned pass of `source` (canonical) into the slots of `layout`. The caller holds
/// the lock at [`Layout::lock`] (unless dry-running). Safety rails return [`Error::Aborted`]
/// before anything changes.
///
/// A version is a picture of SOURCE at one moment, so a pass that finds SOURCE changing under
/// it (a file gone before it was hashed, a file rewritten while it was copied) discards what
/// it built and starts again a little later, a few times, rather than leave the versions a
/// whole interval behind (or, with `--once`, without this run's version): a twoway pass
/// writing into the directory its versioning child is reading is the usual cause.
pub fn run_pass(
    source: &Path,
    layout: &Layout,
    options: &VersionedOptions,
    shutdown: &Shutdown,
    observe: &mut dyn FnMut(Event<'_>),
) -> Result<VersionedReport> {
    for (attempt, wait) in AGAIN_AFTER.into_iter().enumerate() {
        let report = attempt_pass(source, layout, options, shutdown, observe)?;
        if !report.changed || options.dry_run {
            return Ok(report);
        }
        log::warn!(
            "{} changed while it was being versioned; starting again in {} s (attempt {} of {})",
            Quoted(source),
            wait,
            attempt + 2,
            AGAIN_AFTER.len() + 1
        );
        synccore::fault::point("versioned-waiting");
        if shutdown.sleep(Duration::from_secs(wait)) {
            // Stopped while waiting: the versions are as they were, and nothing failed.
            return Ok(VersionedReport {
                outcome: Outcome::Interrupted,
                changed: false,
                scan_errors: Vec::new(),
                ..report
            });
        }
    }
    attempt_pass(source, layout, options, shutdown, observe)
}

/// One attempt at a versioned pass ([`run_pass`]).
fn attempt_pass(
    source: &Path,
    layout: &Layout,
    options: &VersionedOptions,
    shutdown: &Shutdown,
    observe: &mut dyn FnMut(Event<'_>),
) -> Result<VersionedReport> {
    let started = Instant::now();
    let taken = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let (versions, repair) = open_versions(source, layout, options.dry_run)?;
    let mut report = VersionedReport::new(repair);
    let Some(src) = scan_source(source, layout, &versions, options, &mut report)? else { return Ok(report) };
    synccore::fault::point("versioned-scanned");

    let mut rows = Vec::new();
    let manifest = &versions.manifest;
    let summed = cache::source_checksum(
        &src.tree,
        &src.root,
        (manifest, &versions.cache),
        options.rehash,
        shutdown.flag(),
        &mut report.hashed,
        &mut rows,
    );
    let checksum = match summed {
        Ok(c) => c,
        Err(Error::Interrupted) => {
            report.outcome = Outcome::Interrupted;
            return Ok(report);
        }
        Err(err) if err.changed_under_us() => {
            report.scan_errors.push(err);
            report.outcome = Outcome::Abandoned { reason: "SOURCE changed while it was hashed" };
            report.changed = true;
            return Ok(report);
        }
        Err(err) => return Err(err),
    };
    synccore::fault::point("versioned-hashed");
    let old = manifest.latest.as_ref().map(|r| r.checksum);
    if old == Some(checksum) && versions.latest_exists {
        report.outcome = Outcome::Unchanged { checksum };
        if versions.rebuilt && !options.dry_run {
            write_rebuilt_manifest(&versions, taken, &rows, &mut report)?;
        }
        return Ok(report);
    }

    report.plan = plan_version(&src.tree, &versions, &rows)?;
    let old_rows = &versions.cache.rows;
    options.rails.check_deletes(cache::deleted_files(old_rows, &rows), old_rows.len(), &layout.dir())?;
    let v = match versions.dir {
        Some(ref v) if !options.dry_run => v,
        _ => {
            report.outcome = Outcome::WouldRotate { old, new: checksum };
            return Ok(report);
        }
    };

    // Build the new version aside, then swap it in (see `versions::rotation`).
    if !build(&mut report, &src.root, v, src.meta, shutdown, observe)? {
        return Ok(report);
    }
    if !unchanged_since_scan(&src, &options.excludes)? {
        v.remove_tree(Path::new(names::NEXT))?;
        report.outcome = Outcome::Abandoned { reason: "SOURCE changed while the version was built" };
        report.changed = true;
        return Ok(report);
    }
    let record = SlotRecord {
        checksum,
        taken,
        duration_ms: started.elapsed().as_millis() as u64,
        files: rows.len() as u64,
        bytes: rows.iter().map(|r| r.size).sum(),
    };
    swap_in(v, &versions, record, &rows, &mut report)?;
    report.outcome = Outcome::Rotated { old, new: checksum };
    Ok(report)
}

/// Records the hash cache of the built version (`rows`), then swaps the version in with a
/// manifest that names it (`record` for `_1`, the old `_1`'s for `_0`).
fn swap_in(
    v: &Root,
    versions: &Versions,
    record: SlotRecord,
    rows: &[FileRecord],
    report: &mut VersionedReport,
) -> Result<()> {
    // The journal lines describing the new `_1` are durable before the pending manifest that
    // names them exists (see `synccore::versions::hashes`).
    let recorded = hashes::record(v, versions.cache.journal(), rows)?;
    let old = &versions.manifest;
    let new = Manifest {
        previous: if versions.latest_exists { old.latest.clone() } else { old.previous.clone() },
        latest: Some(record),
        hashes: Some(recorded.hashes.clone()),
        ..Manifest::new(&old.source)
    };
    let bytes = new.to_bytes();
    rotation::swap_in(v, &bytes)?;
    if recorded.compacted {
        hashes::remove_others(v, Some(&recorded.hashes))?;
    }
    report.manifest_bytes = bytes.len() as u64;
    (report.journal_bytes, report.journal_compacted) = (recorded.bytes_written, recorded.compacted);
    Ok(())
}

/// Opens the versions directory beneath ROOT (creating it unless dry-running), repairs what a
/// killed pass left, loads (or rebuilds) the manifest and the hash cache, and removes the
/// hash journals the manifest does not name (left by a rotation that was rolled back).
fn open_versions(source: &Path, layout: &Layout, dry_run: bool) -> Result<(Versions, Repair)> {
    let dir = layout.open(!dry_run)?;
    let mut repair = match &dir {
        Some(v) if !dry_run => rotation::repair(v)?,
        _ => Repair::default(),
    };
    let latest_exists = dir.as_ref().is_some_and(|v| v.exists(Path::new(Slot::Latest.dir_name())));
    let (manifest, cache, rebuilt) = load_manifest(source, layout, dir.as_ref())?;
    if let Some(v) = dir.as_ref().filter(|_| !dry_run) {
        // After the repair no rotation is pending, so the manifest names the only live journal.
        repair.removed_leftovers += hashes::remove_others(v, manifest.hashes.as_ref())?;
    }
    Ok((Versions { dir, manifest, cache, rebuilt, latest_exists }, repair))
}

/// Scans SOURCE. A vanished or empty SOURCE (an unmounted disk) never rotates: the empty-side
/// rail when versions exist; `Ok(None)` (nothing to keep, or a scan with errors, recorded in
/// `report`) when the pass is over.
fn scan_source(
    source: &Path,
    layout: &Layout,
    versions: &Versions,
    options: &VersionedOptions,
    report: &mut VersionedReport,
) -> Result<Option<Source>> {
    let scanned = Root::open(source).and_then(|root| {
        let st = root.top().stat_self().at(Op::Stat, root.path())?;
        let meta = (st.st_mode & MODE_MASK, Mtime::of_stat(&st), Owner::of_stat(&st));
        // Ignored paths are not part of a version nor of its checksum (issue 14).
        Ok(Source { tree: scan::scan_with(&root, ScanRules::Read(&options.excludes))?, root, meta })
    });
    let src = scanned.map_err(|err| rails::missing_root(err, versions.exist(), source, &layout.dir()))?;
    report.special.clone_from(&src.tree.special);
    report.ignored = (src.tree.ignored.clone(), src.tree.rules.not_read().map(|(p, _)| p).collect());
    if src.tree.vanished > 0 {
        // Entries gone between the listing and their reading: whatever the scan kept is no
        // picture of one moment (a directory renamed meanwhile would even look empty).
        report.outcome = Outcome::Abandoned { reason: "SOURCE changed while it was scanned" };
        report.changed = true;
        return Ok(None);
    }
    if !src.tree.errors.is_empty() {
        report.changed = src.tree.errors.iter().all(Error::changed_under_us);
        report.scan_errors = src.tree.errors;
        report.outcome = Outcome::Abandoned { reason: "SOURCE could not be read completely" };
        return Ok(None);
    }
    let empty = src.tree.entries.is_empty();
    // `--force` never lets an empty SOURCE replace the versions (SPEC section 3).
    Rails::default().check_empty_side(empty, versions.exist(), false, source, &layout.dir())?;
    Ok((!empty).then_some(src))
}

/// True when SOURCE still is what the scan saw, entry for entry: the same names, each with
/// the same kind, size, mtime, mode, owner and inode. Checked once the new version is built
/// and before it is swapped in: the copies check their own files, but a file linked from
/// `_1`, a file created after the scan or a directory renamed meanwhile would otherwise make
/// a version of a moment that SOURCE only passed through (a twoway pass half done, say). A
/// directory's own mtime is left out: the names below it are compared anyway, and it also
/// moves when an ignored file (an editor's swap file, a database journal) comes and goes,
/// which must not keep a busy directory from ever getting a version. One walk of the
/// metadata, in step with the scan's entries: no second tree in memory.
fn unchanged_since_scan(src: &Source, excludes: &Excludes) -> Result<bool> {
    let same_entry = |then: &Entry, now: &Entry| match (then.is_dir(), now.is_dir()) {
        (true, true) => Entry { mtime: now.mtime, ..then.clone() } == *now,
        _ => then == now,
    };
    let mut walker = synccore::walk::Walker::new(&src.root, ScanRules::Read(excludes))?;
    let mut seen = src.tree.entries.iter();
    let same = walker.by_ref().all(|now| seen.next().is_some_and(|then| same_entry(then, &now)));
    let notes = walker.finish()?;
    Ok(same && seen.next().is_none() && notes.vanished == 0 && notes.errors.is_empty())
}

/// Writes a manifest or a hash cache that was lost and rebuilt from the slots, with this
/// pass's hashes (of a SOURCE equal to `_1`) as the cache: a new journal, then the manifest
/// that names it (a crash between leaves a journal that the next pass removes).
fn write_rebuilt_manifest(
    versions: &Versions,
    taken: String,
    rows: &[FileRecord],
    report: &mut VersionedReport,
) -> Result<()> {
    let Some(v) = &versions.dir else { return Ok(()) };
    let recorded = hashes::record(v, None, rows)?;
    let mut fixed = versions.manifest.clone();
    if let Some(latest) = fixed.latest.as_mut() {
        // The rows were hashed by this pass: the cache's trust is measured from now.
        latest.taken = taken;
    }
    fixed.hashes = Some(recorded.hashes.clone());
    let bytes = fixed.to_bytes();
    v.write_atomic(Path::new(names::MANIFEST), &bytes)?;
    hashes::remove_others(v, fixed.hashes.as_ref())?;
    report.manifest_bytes = bytes.len() as u64;
    (report.journal_bytes, report.journal_compacted) = (recorded.bytes_written, true);
    Ok(())
}

/// The plan that builds the new version: SOURCE diffed against an empty tree, every copy of a
/// file `_1` already holds turned into a hard link to it.
fn plan_version(tree: &Tree, versions: &Versions, rows: &[FileRecord]) -> Result<Plan> {
    let mut plan =
        diff::plan(tree, &Tree::default(), DiffOptions::for_this_process(false), &mut |_, _| None)?;
    let latest_root = match &versions.dir {
        Some(v) if versions.latest_exists => Some(v.open_root(Path::new(Slot::Latest.dir_name()))?),
        _ => None,
    };
    cache::link_unchanged(&mut plan, rows, &versions.cache.rows, keeps_owners(), &mut |rel| {
        latest_root.as_ref().and_then(|l| scan::entry_of(l, rel).ok().flatten())
    });
    Ok(plan)
}

/// Carries out `report.plan` into [`names::NEXT`] of the versions directory `v` with the one
/// copy engine (hard links into `_1`) and makes the tree durable. False (with the outcome set,
/// the build discarded) unless every step succeeded.
fn build(
    report: &mut VersionedReport,
    source: &Root,
    v: &Root,
    (root_mode, root_mtime, root_owner): (u32, Mtime, Owner),
    shutdown: &Shutdown,
    observe: &mut dyn FnMut(Event<'_>),
) -> Result<bool> {
    let next = Path::new(names::NEXT);
    v.remove_tree(next)?;
    v.create_dir(next, 0o700)?;
    let next_root = v.open_root(next)?;
    let trees = Trees { from: source, to: &next_root, links: Some(v) };
    observe(Event::Planned(&synccore::plan::Steps::summary(&report.plan)));
    report.stats = apply::apply(&report.plan, trees, shutdown.flag(), observe);
    if report.stats.panicked {
        v.remove_tree(next)?;
        return Err(Error::Panicked { what: "building the new version" });
    }
    if !report.stats.is_complete() {
        v.remove_tree(next)?;
        // Nothing failed: files changed under the copies (skipped, for the next look).
        report.changed = report.stats.failed == 0 && !report.stats.interrupted;
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

/// The manifest of the versions directory `v` and the hash cache of `_1`, either rebuilt from
/// the slots when it is missing or unreadable (the slots are the truth; the manifest and the
/// journal only describe them). True when something was rebuilt from slots that exist.
fn load_manifest(source: &Path, layout: &Layout, v: Option<&Root>) -> Result<(Manifest, Cache, bool)> {
    let Some(v) = v else { return Ok((Manifest::new(source), Cache::default(), false)) };
    let loaded = match Manifest::load_with_rows(v) {
        Ok(m) => m,
        Err(err @ Error::Corrupt { .. }) => {
            log::warn!("{err}; rebuilding it from the version slots");
            None
        }
        Err(err) => return Err(err),
    };
    let Some((mut m, legacy_rows)) = loaded else { return rebuild_from_slots(source, v) };
    if m.source != source {
        return Err(Error::Invalid {
            path: layout.manifest(),
            reason: format!("belongs to {}, not to this SOURCE", synccore::error::Quoted(&m.source)),
        });
    }
    let (cache, rebuilt) = load_cache(v, layout, &mut m, legacy_rows)?;
    Ok((m, cache, rebuilt))
}

/// The hash cache that the manifest `m` describes: the rows it embeds (formats 1 and 2) or
/// its journal; when the journal is lost or does not match the manifest, `_1` hashed again
/// (true), whose record in `m` is then made the slot's.
fn load_cache(
    v: &Root,
    layout: &Layout,
    m: &mut Manifest,
    legacy_rows: Option<Vec<FileRecord>>,
) -> Result<(Cache, bool)> {
    let journal = match (legacy_rows, &m.hashes) {
        (Some(rows), _) => return Ok((Cache { rows, origin: Origin::Legacy }, false)),
        (None, Some(r)) => hashes::load(v, r).map(|rows| Cache { rows, origin: Origin::Journal(r.clone()) }),
        (None, None) => {
            Err(Error::Corrupt { path: layout.manifest(), reason: "it names no hash journal".into() })
        }
    };
    match journal {
        Ok(cache) => Ok((cache, false)),
        Err(err @ Error::Corrupt { .. }) if m.latest.is_some() => {
            log::warn!("{err}; rebuilding the hash cache from the latest version");
            let Some((record, rows)) = hash_slot(v, Slot::Latest)? else {
                return Ok((Cache::default(), false));
            };
            if let Some(latest) = m.latest.as_mut() {
                // The slot is the truth, should the manifest have said otherwise.
                (latest.checksum, latest.files, latest.bytes) = (record.checksum, record.files, record.bytes);
            }
            Ok((Cache { rows, origin: Origin::Slot }, true))
        }
        Err(Error::Corrupt { .. }) => Ok((Cache::default(), false)),
        Err(err) => Err(err),
    }
}

/// A manifest and hash cache rebuilt from the slots (hashing both); true when `_1` exists.
fn rebuild_from_slots(source: &Path, v: &Root) -> Result<(Manifest, Cache, bool)> {
    let mut m = Manifest::new(source);
    m.previous = hash_slot(v, Slot::Previous)?.map(|(record, _)| record);
    let Some((record, rows)) = hash_slot(v, Slot::Latest)? else { return Ok((m, Cache::default(), false)) };
    m.latest = Some(record);
    Ok((m, Cache { rows, origin: Origin::Slot }, true))
}

/// A slot's record and its files' rows (with the slot's own stamps), computed from its tree
/// by hashing every file; `None` when it does not exist.
fn hash_slot(v: &Root, slot: Slot) -> Result<Option<(SlotRecord, Vec<FileRecord>)>> {
    let rel = Path::new(slot.dir_name());
    if !v.exists(rel) {
        return Ok(None);
    }
    let dir = v.open_root(rel)?;
    let tree = scan::scan_owned(&dir)?;
    if let Some(err) = tree.errors.into_iter().next() {
        return Err(err);
    }
    let mut rows = Vec::new();
    let checksum = directory_checksum_of(&tree.entries, |e| {
        let digest = file_checksum_in(&dir, &e.path)?;
        rows.push(FileRecord { path: e.path.clone(), digest, size: e.size, mtime: e.mtime, ino: e.ino });
        Ok(digest)
    })?;
    let rows = synccore::versions::manifest::sorted_rows(rows);
    let record = SlotRecord {
        checksum,
        // Unknown: the epoch, which also keeps any hash cache from vouching for SOURCE's files
        // against it.
        taken: "1970-01-01T00:00:00Z".into(),
        duration_ms: 0,
        files: rows.len() as u64,
        bytes: rows.iter().map(|r| r.size).sum(),
    };
    Ok(Some((record, rows)))
}
