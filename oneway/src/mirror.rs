//! One pass of the one-way mirror (SPEC section 3 "Mirror"): scan both sides, check the safety
//! rails, diff, apply with the shared copy engine; and the log lines of a pass.

use std::path::Path;
use std::time::Instant;

use synccli::passes::{self, PassEnd, Place, Totals};
use synccli::progress::Progress;
use synccore::apply::{self, ApplyStats, Event, Trees};
use synccore::checksum::file_checksum_in;
use synccore::diff::{self, DiffOptions};
use synccore::entry::Entry;
use synccore::error::{Error, Result};
use synccore::fsio::Root;
use synccore::ignore::{self, Excludes};
use synccore::moves::Which;
use synccore::plan::Plan;
use synccore::rails::{self, Rails};
use synccore::relpath::RelPath;
use synccore::scan::{self, ScanRules, Tree};
use synccore::shutdown::Shutdown;

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
    pub plan: Plan,
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
    // Both roots are opened once; everything below them is reached through them, never by
    // path (the security issue).
    let target_root = open_if_present(target)?;
    // BACKUP is scanned with its own rules files, which are SOURCE's after the first pass, so
    // that both scans run in parallel; `--delete-excluded` sees all of BACKUP.
    let rules = ScanRules::Read(&options.excludes);
    let target_rules = if options.delete_excluded { ScanRules::None } else { rules };
    let (src, dst) = std::thread::scope(|s| {
        let dst = s.spawn(|| {
            synccore::fault::point("scan-target");
            target_root.as_ref().map_or_else(|| Ok(Tree::default()), |r| scan::scan_with(r, target_rules))
        });
        let src = Root::open(source).and_then(|root| Ok((scan::scan_with(&root, rules)?, root)));
        // A panic must never pass for an empty target (the hardening issue, point 12).
        (src, dst.join().unwrap_or(Err(Error::Panicked { what: "scanning the target" })))
    });
    let mut dst = dst?;
    // A source that vanished (an unmounted disk) must never empty the backup.
    let (src, source_root) =
        src.map_err(|err| rails::missing_root(err, !dst.entries.is_empty(), source, target))?;
    if !options.delete_excluded && dst.rules != src.rules {
        // The mirror follows SOURCE's rules (issue 14); BACKUP's differ (a first pass, an
        // edited `.syncignore`): BACKUP is scanned again with SOURCE's.
        let given = [&src.rules];
        if let Some(root) = &target_root {
            dst = scan::scan_with(root, ScanRules::Given(&given))?;
        }
    }
    let has_files = !dst.entries.is_empty();
    let empty = src.entries.is_empty() && src.errors.is_empty();
    options.rails.check_empty_side(empty, has_files, true, source, target)?;

    let mut digest = |which: Which, e: &Entry| match which {
        Which::Source => file_checksum_in(&source_root, &e.path).ok(),
        Which::Target => target_root.as_ref().and_then(|t| file_checksum_in(t, &e.path).ok()),
    };
    let mut plan = diff::plan(&src, &dst, DiffOptions::for_this_process(options.checksum), &mut digest);
    // A directory SOURCE lost that still holds ignored entries in BACKUP stays (issue 14).
    ignore::keep_dirs_of_ignored(&mut plan, &dst.ignored);
    options.rails.check_deletes(plan.deleted_files(), dst.file_count(), target)?;

    let mut report = MirrorReport {
        rules_not_read: src.rules.not_read().map(|(p, _)| p).collect(),
        scan_errors: src.errors,
        special: src.special,
        ignored: src.ignored,
        ..MirrorReport::default()
    };
    report.scan_errors.extend(dst.errors);
    if !options.dry_run {
        let target_root = if let Some(root) = target_root {
            root
        } else {
            synccore::fsio::create_dirs(target)?;
            Root::open(target)?
        };
        observe(Event::Planned(&plan));
        report.stats = apply::apply(&plan, Trees::new(&source_root, &target_root), shutdown.flag(), observe);
        if report.stats.panicked {
            return Err(Error::Panicked { what: "copying" });
        }
    }
    report.plan = plan;
    Ok(report)
}

/// The target's root, or `None` when it does not exist yet (an empty tree; it is created
/// before anything is written).
fn open_if_present(target: &Path) -> Result<Option<Root>> {
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
    let (started, mut progress) = (Instant::now(), Progress::new("mirroring"));
    let place = Place::default();
    let mut observe = passes::observer(&mut progress, |event| passes::log_event(place, event));
    let report = match run_pass(source, backup, options, shutdown, &mut observe) {
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
        planned = passes::planned_stats(&[&report.plan]);
        &planned
    } else {
        &report.stats
    };
    let exit = u8::from(report.had_errors());
    passes::record_pass(
        totals,
        &PassEnd {
            stats,
            scan_errors: report.scan_errors.len(),
            conflict_copies: &[],
            started,
            status: exit,
            dry_run: options.dry_run,
            extra: serde_json::Map::new(),
        },
    );
    exit
}
