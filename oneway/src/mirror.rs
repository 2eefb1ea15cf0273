//! One pass of the one-way mirror (SPEC section 3 "Mirror"): both trees walked at once and
//! diffed as they stream past (the scale issue: memory holds the directories on the way and
//! what the pass changes, never the trees), the safety rails checked against the whole plan,
//! the plan applied with the shared copy engine; and the log lines of a pass. Watch mode's
//! passes, which keep the trees between passes, are in [`watched`].

pub mod watched;

use std::path::Path;
use std::time::Instant;

use synccli::passes::{self, PassEnd, Place, Totals};
use synccli::progress::Progress;
use synccore::apply::{self, ApplyStats, Event, Trees};
use synccore::checksum::{file_checksum_in, same_bytes, with_compare_ahead};
use synccore::diff::{self, DiffOptions, Source, Streamed};
use synccore::entry::Entry;
use synccore::error::{Error, Result};
use synccore::fsio::Root;
use synccore::ignore::{Excludes, Rules};
use synccore::moves::{TargetAt, Which};
use synccore::plan::{Phased, Steps};
use synccore::rails::{self, Rails};
use synccore::relpath::RelPath;
use synccore::scan::{ScanRules, Tree};
use synccore::shutdown::Shutdown;
use synccore::store::FileSource;
use synccore::walk::{BeforeListing, Threaded, Walker};
use synccore::watch::Adder;

pub use watched::MirrorWatch;

/// How a mirror pass runs.
#[derive(Debug, Clone, Default)]
pub struct MirrorOptions {
    /// Compare equal-size files by content even when their mtimes agree (`--checksum`).
    pub checksum: bool,
    /// Plan only; change nothing.
    pub dry_run: bool,
    /// The max-delete and empty-source rails.
    pub rails: Rails,
    /// `--exclude` and `--exclude-from` patterns (issue 14), SOURCE's `.syncignore` last lines.
    pub excludes: Excludes,
    /// Delete what BACKUP holds at ignored paths (`--delete-excluded`, like rsync's); without
    /// it an ignored path in BACKUP is left alone.
    pub delete_excluded: bool,
}

/// What a mirror pass found and did.
#[derive(Debug, Default)]
pub struct MirrorReport {
    /// The plan the pass made (and, unless dry-run, carried out).
    pub plan: Phased,
    /// What applying it did (empty for a dry run).
    pub stats: ApplyStats,
    /// Per-path problems met while scanning either side.
    pub scan_errors: Vec<Error>,
    /// Source entries skipped because they are special files.
    pub special: Vec<RelPath>,
    /// SOURCE's ignored entries (the topmost: nothing below an ignored directory is looked at).
    pub ignored: Vec<RelPath>,
    /// SOURCE's `.syncignore` files that were not read (symlinks, not files).
    pub rules_not_read: Vec<RelPath>,
    /// What a pass to or from a remote store asked of it (issue 18), for the log and the
    /// `--json` summary.
    pub remote: Option<crate::remote::Figures>,
}

impl MirrorReport {
    /// True when some entry failed: scan errors or failed steps (exit code 1).
    pub fn had_errors(&self) -> bool {
        !self.scan_errors.is_empty() || self.stats.failed > 0
    }
}

/// Runs one mirror pass from `source` into `target` (both canonical). `target` is created if
/// missing (not in a dry run). Safety rails return [`Error::Aborted`] before anything changes.
pub fn run_pass(
    source: &Path,
    target: &Path,
    options: &MirrorOptions,
    shutdown: &Shutdown,
    observe: &mut dyn FnMut(Event<'_>),
) -> Result<MirrorReport> {
    full_pass(source, target, options, shutdown, observe, None).map(|(report, _)| report)
}

/// A full pass: both trees walked (each directory of SOURCE handed to `watch` before it is
/// listed), diffed, checked and applied. Also returns the roots (watch mode keeps them).
pub fn full_pass(
    source: &Path,
    target: &Path,
    options: &MirrorOptions,
    shutdown: &Shutdown,
    observe: &mut dyn FnMut(Event<'_>),
    watch: Option<&Adder>,
) -> Result<(MirrorReport, Roots)> {
    // Both roots are opened once; everything below them is reached through them, never by
    // path (the security issue). A source that vanished (an unmounted disk) must never empty
    // the backup.
    let target_root = open_if_present(target)?;
    let source_root = Root::open(source)
        .map_err(|err| rails::missing_root(err, synccore::roots::holds_entries(target), source, target))?;
    let mut roots = Roots { source: source_root, target: target_root };
    let (mut streamed, mut src, mut dst) = walk_both(&roots, options, watch, None)?;
    if !options.delete_excluded && streamed.target_files > 0 && dst.rules != src.rules {
        // The mirror follows SOURCE's rules (issue 14); BACKUP's own differ (a first pass, an
        // edited `.syncignore`): the pass is made again with BACKUP read by SOURCE's rules.
        (streamed, src, dst) = walk_both(&roots, options, None, Some(&src.rules))?;
    }
    let report = carry_out(
        streamed,
        (&mut src, &mut dst),
        (&roots.source, &mut roots.target),
        (source, target),
        options,
        shutdown,
        observe,
    )?;
    Ok((report, roots))
}

/// The two roots of a mirror (BACKUP's is `None` until it exists).
pub struct Roots {
    pub source: Root,
    pub target: Option<Root>,
}

/// With `--checksum`, files up to this size are read by the walks, in one read while the
/// walk has them open, and the diff compares the bytes both walks read (see
/// [`synccore::checksum::Content`]); larger ones are compared byte by byte on helper threads,
/// stopping at the first difference. Around a page the walks, one thread per tree, become the
/// bottleneck: reading files up to 16 KiB there made S's pass 12 % slower, up to 64 KiB 30 %.
const READ_BY_THE_WALK: u64 = 4096;

/// Walks both trees at once, each on its own thread, and diffs them as they stream past.
/// BACKUP is read with its own rules files unless `given` (SOURCE's rules); with
/// `--delete-excluded` with none. Returns the diff and each walk's notes.
fn walk_both(
    roots: &Roots,
    options: &MirrorOptions,
    watch: Option<&Adder>,
    given: Option<&Rules>,
) -> Result<(Streamed, Tree, Tree)> {
    let source_rules = ScanRules::Read(&options.excludes);
    let given_sets = given.map(|g| [g]);
    let target_rules = match (&given_sets, options.delete_excluded) {
        (_, true) => ScanRules::None,
        (Some(sets), false) => ScanRules::Given(sets),
        (None, false) => source_rules,
    };
    let watch = watch.cloned();
    let before: BeforeListing = Box::new(move |rel| watch.iter().for_each(|w| w.add(rel)));
    // `--checksum` reads every file of equal size on both sides: the small ones are read by
    // the walks themselves, one open each instead of an `lstat` and an open (issue 17). Not
    // when BACKUP does not exist yet: there is nothing to compare with.
    let (source_walk, target_walk) = match &roots.target {
        Some(target) if options.checksum => (
            Walker::reading_small_files(&roots.source, source_rules, before, READ_BY_THE_WALK)?,
            Some(Walker::reading_small_files(target, target_rules, Box::new(|_| {}), READ_BY_THE_WALK)?),
        ),
        target => (
            Walker::watched(&roots.source, source_rules, before)?,
            target.as_ref().map(|r| Walker::new(r, target_rules)).transpose()?,
        ),
    };
    let nothing = Tree::default();
    std::thread::scope(|scope| {
        let mut src = Threaded::spawn(scope, source_walk, ("scan-source", "scanning the source"));
        let mut dst = target_walk.map(|w| Threaded::spawn(scope, w, ("scan-target", "scanning the target")));
        let mut empty = diff::Entries::of(&nothing);
        let target: &mut dyn Source = match &mut dst {
            Some(t) => t,
            None => &mut empty,
        };
        let target_at = |p: &RelPath| roots.target.as_ref()?.dir_and_dev_at(p.as_path());
        let streamed = diff_streams(&mut src, target, &target_at, roots, options.checksum);
        // Both walks are read to their ends (their threads finish) before anything returns.
        let src_notes = src.finish();
        let dst_notes = dst.map_or_else(|| Ok(Tree::default()), Threaded::finish);
        Ok((streamed?, src_notes?, dst_notes?))
    })
}

/// Diffs SOURCE's entries against BACKUP's as they stream past (SPEC section 3 "Mirror").
/// "Same content?" is answered by comparing the two files' bytes, with no hash (issue 17);
/// digests only pair moves that tie. A failure counts as "different": the copy then reports
/// the real error. With `--checksum`, which asks it of every pair of equal-size files, the
/// pairs are compared on helper threads a little ahead of the diff.
pub(crate) fn diff_streams(
    src: &mut dyn Source,
    target: &mut dyn Source,
    target_at: &TargetAt<'_>,
    roots: &Roots,
    checksum: bool,
) -> Result<Streamed> {
    let mut digest = |which: Which, e: &Entry| match which {
        Which::Source => file_checksum_in(&roots.source, &e.path).ok(),
        Which::Target => roots.target.as_ref().and_then(|t| file_checksum_in(t, &e.path).ok()),
    };
    let options = DiffOptions::for_this_process(checksum);
    let Some(target_root) = &roots.target else {
        return diff::stream(src, target, target_at, options, &mut digest);
    };
    if checksum {
        return with_compare_ahead(&roots.source, target_root, src, |src, same| {
            diff::stream_comparing(src, target, target_at, options, &mut digest, Some(same))
        });
    }
    let mut same = |s: &Entry, d: &Entry| {
        same_bytes(&roots.source, s.path.as_path(), target_root, d.path.as_path()).unwrap_or(false)
    };
    diff::stream_comparing(src, target, target_at, options, &mut digest, Some(&mut same))
}

/// Checks the rails against the whole plan and, unless dry-running, applies it, reading the
/// copies' bytes from `from` (SOURCE's root, or a remote version: the storage interface of
/// issue 18) into `target_root` (opened here when it does not exist yet). `src` and `dst` are
/// the walks' notes (errors and special files go into the report).
pub(crate) fn carry_out(
    streamed: Streamed,
    (src, dst): (&mut Tree, &mut Tree),
    (from, target_root): (&dyn FileSource, &mut Option<Root>),
    (source, target): (&Path, &Path),
    options: &MirrorOptions,
    shutdown: &Shutdown,
    observe: &mut dyn FnMut(Event<'_>),
) -> Result<MirrorReport> {
    let empty = streamed.source_entries == 0 && src.errors.is_empty();
    options.rails.check_empty_side(empty, streamed.target_files > 0, true, source, target)?;
    let plan = streamed.plan;
    let summary = plan.summary();
    options.rails.check_deletes(summary.deleted_files as usize, streamed.target_files as usize, target)?;
    let mut report = MirrorReport {
        rules_not_read: src.rules.not_read().map(|(p, _)| p).collect(),
        scan_errors: std::mem::take(&mut src.errors),
        special: src.special.clone(),
        ignored: src.ignored.clone(),
        ..MirrorReport::default()
    };
    report.scan_errors.append(&mut dst.errors);
    if !options.dry_run {
        if target_root.is_none() {
            synccore::fsio::create_dirs(target)?;
            *target_root = Some(Root::open(target)?);
        }
        let Some(target_root) = target_root.as_ref() else {
            return Err(Error::Panicked { what: "opening the target" });
        };
        observe(Event::Planned(&summary));
        report.stats = apply::apply(&plan, Trees::new(from, target_root), shutdown.flag(), observe);
        if report.stats.panicked {
            return Err(Error::Panicked { what: "copying" });
        }
    }
    report.plan = plan;
    Ok(report)
}

/// The target's root, or `None` when it does not exist yet (an empty tree; it is created
/// before anything is written).
pub(crate) fn open_if_present(target: &Path) -> Result<Option<Root>> {
    match Root::open(target) {
        Ok(root) => Ok(Some(root)),
        Err(Error::Missing { .. }) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Runs a mirror pass, logs what it did, and returns its exit status (0, 1 or 3).
pub fn pass_and_log(
    source: &Path,
    backup: &Path,
    options: &MirrorOptions,
    shutdown: &Shutdown,
    totals: &mut Totals,
) -> u8 {
    log_pass(options, totals, |observe| run_pass(source, backup, options, shutdown, observe))
}

/// Runs `pass` with the progress bar and the per-operation log lines, then logs what it found
/// and did; returns its exit status.
pub(crate) fn log_pass(
    options: &MirrorOptions,
    totals: &mut Totals,
    pass: impl FnOnce(&mut dyn FnMut(Event<'_>)) -> Result<MirrorReport>,
) -> u8 {
    let (started, mut progress) = (Instant::now(), Progress::new("mirroring"));
    let place = Place::default();
    let mut observe = passes::observer(&mut progress, |event| passes::log_event(place, event));
    let report = match pass(&mut observe) {
        Ok(report) => report,
        Err(err) => return passes::pass_aborted(totals, &err),
    };
    // The bar is cleared before the pass's own lines.
    drop(observe);
    drop(progress);
    for err in &report.scan_errors {
        passes::report_error(err);
    }
    for path in &report.special {
        passes::warn_at(place, path, &format!("skipped special file \"{path}\" (fifo, socket or device)"));
    }
    passes::log_ignored("", &report.ignored, &report.rules_not_read, totals);
    let planned;
    let stats = if options.dry_run {
        passes::show_plan(place, &report.plan);
        planned = passes::planned_stats(&[&report.plan.summary()]);
        &planned
    } else {
        &report.stats
    };
    let exit = u8::from(report.had_errors());
    let mut extra = serde_json::Map::new();
    if let Some(figures) = &report.remote {
        figures.log(options.dry_run);
        extra = figures.json();
    }
    passes::record_pass(
        totals,
        &PassEnd {
            stats,
            scan_errors: report.scan_errors.len(),
            conflict_copies: &[],
            started,
            status: exit,
            dry_run: options.dry_run,
            extra,
        },
    );
    exit
}
