//! What a versioned run needs besides the pass itself: its SOURCE (which may be missing when
//! versions of it exist) and the log lines of a pass.
//!
//! A missing SOURCE at start-up is bad input (exit 2, SPEC section 5) unless versions of it
//! already exist: then it is the unmounted-disk case of the empty-source rail, so the run goes
//! on and each pass refuses to rotate (exit 3 with `--once`; a logged warning and the next
//! pass in periodic mode, which is what a child of `twoway`'s recovery needs). A SOURCE that
//! vanishes or empties between passes is handled the same way.

use std::path::{Path, PathBuf};
use std::time::Instant;

use synccli::output::{self, Level};
use synccli::passes::{self, PassEnd, Place, Totals};
use synccli::progress::Progress;
use synccli::status;
use synccore::apply::{ApplyStats, Event};
use synccore::checksum::Digest;
use synccore::error::{Error, Quoted};
use synccore::plan::{Plan, StepKind};
use synccore::roots;
use synccore::shutdown::Shutdown;
use synccore::versions::{Layout, Slot};

use super::{Outcome, VersionedOptions, VersionedReport, run_pass};

/// The canonical SOURCE of a versioned run: an existing directory, or a missing one whose
/// versions exist below `root`.
pub fn source_dir(source: &Path, root: &Path) -> Result<PathBuf, Error> {
    match roots::existing_dir(source) {
        Err(Error::Missing { path }) => {
            let absolute = roots::absolute(source)?;
            let layout = Layout::new(&roots::future_dir(root)?, &absolute);
            if layout.manifest().exists() || layout.slot(Slot::Latest).exists() {
                Ok(absolute)
            } else {
                Err(Error::Missing { path })
            }
        }
        other => other,
    }
}

/// Runs a versioned pass, logs it, records its status beside the versions (unless
/// dry-running; issue 16, point 8), and returns its exit status (0, 1, 2 or 3).
pub fn pass_and_log(
    source: &Path,
    layout: &Layout,
    options: &VersionedOptions,
    shutdown: &Shutdown,
    totals: &mut Totals,
) -> u8 {
    let (started, mut progress) = (Instant::now(), Progress::new("versioning"));
    let mut observe = passes::observer(&mut progress, log_event);
    let result = run_pass(source, layout, options, shutdown, &mut observe);
    // The bar is cleared before the pass's own lines.
    drop(observe);
    drop(progress);
    let (exit, done) = match &result {
        Ok(report) => (log_report(report, source, layout, options, started, totals), report.stats.clone()),
        Err(err @ Error::Aborted(_)) => {
            log::error!("not rotating: {err}; the versions are kept as they are");
            (passes::aborted_summary(totals, err), ApplyStats::default())
        }
        Err(err) => (passes::pass_aborted(totals, err), ApplyStats::default()),
    };
    // Recorded once the versions exist (beside them, `ROOT/__status__/<name>.json`).
    if !options.dry_run
        && layout.dir().is_dir()
        && let Ok(root) = synccore::fsio::Root::open(layout.root())
    {
        let ending = status::Ending {
            program: "oneway",
            exit,
            error: result.as_ref().err(),
            stats: &done,
            seconds: started.elapsed().as_secs_f64(),
        };
        status::record(&root, &status::versions_status_rel(layout), &ending);
    }
    exit
}

/// Logs what a pass that ran found and did; returns its exit status.
fn log_report(
    report: &VersionedReport,
    source: &Path,
    layout: &Layout,
    options: &VersionedOptions,
    started: Instant,
    totals: &mut Totals,
) -> u8 {
    log_repair(report.repair);
    for err in &report.scan_errors {
        passes::report_error(err);
    }
    for path in &report.special {
        passes::warn_at(
            Place::default(),
            path,
            &format!("skipped special file \"{path}\" (fifo, socket or device)"),
        );
    }
    passes::log_ignored("", &report.ignored.0, &report.ignored.1, totals);
    let ignored = std::mem::take(&mut totals.ignored);
    let exit = u8::from(report.had_errors());
    let rotated = matches!(report.outcome, Outcome::Rotated { .. });
    totals.rotations += u64::from(rotated);
    let planned;
    let stats = if options.dry_run {
        planned = passes::planned_stats(&[&synccore::plan::Steps::summary(&report.plan)]);
        &planned
    } else {
        &report.stats
    };
    let mut extra = serde_json::Map::new();
    extra.insert("outcome".into(), outcome_word(&report.outcome).into());
    extra.insert("rotate".into(), u64::from(rotated).into());
    let end = PassEnd {
        stats,
        scan_errors: report.scan_errors.len(),
        conflict_copies: &[],
        started,
        status: exit,
        dry_run: options.dry_run,
        extra,
    };
    let (pass, _, _) = passes::count_pass(totals, &end);
    log_outcome(report, source, layout, options, started, (pass, ignored));
    exit
}

/// The outcome of a pass in the `--json` summary.
fn outcome_word(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Unchanged { .. } => "unchanged",
        Outcome::Rotated { .. } => "rotated",
        Outcome::WouldRotate { .. } => "would rotate",
        Outcome::EmptySource => "empty source",
        Outcome::Abandoned { .. } => "abandoned",
        Outcome::Interrupted => "interrupted",
    }
}

/// What the start-of-pass repair did, if anything.
fn log_repair(repair: synccore::versions::rotation::Repair) {
    if repair.finished_rotation {
        log::warn!("finished a rotation that an earlier run left half done");
    }
    if repair.discarded_build {
        log::warn!("discarded a version an earlier run left half built; the slots are unchanged");
    }
    if repair.removed_leftovers > 0 {
        log::info!("cleanup: removed {} leftover temporaries", repair.removed_leftovers);
    }
}

/// The lines that say what the pass decided (and, for a dry run, the files that differ
/// from `_1` on stdout: issue 16, point 3).
fn log_outcome(
    report: &VersionedReport,
    source: &Path,
    layout: &Layout,
    options: &VersionedOptions,
    started: Instant,
    (pass, ignored): (u64, u64),
) {
    let secs = started.elapsed().as_secs_f64();
    let show = |d: &Option<Digest>| d.map_or_else(|| "none".to_owned(), |d| d.to_hex());
    let plan = &report.plan;
    let (copies, links) = (plan.count(StepKind::Copy), plan.count(StepKind::HardLink));
    match &report.outcome {
        Outcome::Unchanged { checksum } => {
            if options.dry_run && !output::json() {
                println!("would not rotate: unchanged, directory checksum {checksum}");
            }
            if options.dry_run {
                log::info!("dry run: would not rotate (directory checksum {checksum} unchanged)");
            }
            log::debug!(
                "pass {pass}: unchanged (directory checksum {checksum}), nothing written; \
                 {} files hashed, {ignored} ignored, {secs:.2} s",
                report.hashed.files
            );
        }
        Outcome::Rotated { old, new } => {
            rotate_event(layout, old.as_ref(), new, report, false);
            log::info!("rotate {}: {} -> {new}", Quoted(&layout.dir()), show(old));
            log::info!(
                "pass {pass}: rotated; {copies} files copied, {} bytes written, {links} hard links, \
                 manifest {} bytes, hash journal {} bytes{}, {} files hashed ({} bytes read), \
                 {ignored} ignored, {} failed, {secs:.2} s",
                report.stats.copied_bytes,
                report.manifest_bytes,
                report.journal_bytes,
                if report.journal_compacted { " (written whole)" } else { " (appended)" },
                report.hashed.files,
                report.hashed.bytes,
                report.stats.failed
            );
        }
        Outcome::WouldRotate { old, new } => {
            show_changes(plan);
            rotate_event(layout, old.as_ref(), new, report, true);
            if !output::json() {
                println!("would hard-link {links} unchanged files from _1");
                println!("would rotate: {} -> {new}", show(old));
            }
            log::info!(
                "dry run: would rotate {} -> {new}: {copies} copies ({} bytes), {links} unchanged files \
                 hard-linked; nothing changed",
                show(old),
                plan.bytes()
            );
        }
        Outcome::EmptySource => {
            log::warn!("{} is empty and has no versions yet; nothing to keep", Quoted(source));
        }
        Outcome::Abandoned { reason } => {
            log::error!("no new version: {reason}; the versions are unchanged");
        }
        Outcome::Interrupted => log::info!("pass {pass} interrupted; the versions are unchanged"),
    }
}

/// A dry run's changes: the files that differ from `_1` (its copies), never the unchanged
/// files it would hard-link, which are one line (issue 16, point 3).
fn show_changes(plan: &Plan) {
    let changes = Plan { steps: plan.steps.iter().filter(|s| s.kind() == StepKind::Copy).cloned().collect() };
    passes::show_plan(Place::default(), &changes);
}

/// The `--json` event of a rotation (done or, dry-running, planned).
fn rotate_event(layout: &Layout, old: Option<&Digest>, new: &Digest, report: &VersionedReport, would: bool) {
    let plan = &report.plan;
    let mut event = serde_json::json!({
        "event": "rotate",
        "path": output::path(&layout.dir()),
        "old": old.map(Digest::to_hex),
        "new": new.to_hex(),
        "copied": plan.count(StepKind::Copy),
        "hardlinks": plan.count(StepKind::HardLink),
        "bytes": plan.bytes(),
    });
    if would && let Some(map) = event.as_object_mut() {
        map.insert("would".into(), true.into());
    }
    output::emit(|| event);
}

/// Copies (the files that differ from `_1`) are logged like a mirror's; the rest of building
/// a version (directories, symlinks, metadata) only in verbose mode, and the hard links of
/// unchanged files never one by one (a tree of 50,000 files would log 50,000 lines for one
/// changed file; the pass's summary counts them: issue 16, point 3).
fn log_event(event: &Event<'_>) {
    let place = Place::default();
    match event {
        Event::Done(step) if step.kind() == StepKind::Copy => passes::log_event(place, event),
        Event::Done(step) if step.kind() == StepKind::HardLink => {}
        Event::Done(step) => log::debug!(target: synccli::logging::OP_TARGET, "{step}"),
        Event::Failed(..) | Event::Planned(_) => passes::log_event(place, event),
        Event::Skipped(step, why) => {
            let message = format!("{step} skipped: {why}; the new version is discarded");
            log::warn!(target: synccli::logging::OP_TARGET, "{message}");
            passes::problem(Level::Warning, place, step, &message);
        }
    }
}
