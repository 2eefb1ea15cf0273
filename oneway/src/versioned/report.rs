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

use synccli::passes::{Progress, Totals};
use synccore::apply::Event;
use synccore::error::{Error, Quoted};
use synccore::plan::{Action, StepKind};
use synccore::roots;
use synccore::shutdown::Shutdown;
use synccore::versions::{Layout, Slot};

use super::{Outcome, VersionedOptions, run_pass};

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

/// Runs a versioned pass, logs it, and returns its exit status (0, 1, 2 or 3).
pub fn pass_and_log(
    source: &Path,
    layout: &Layout,
    options: &VersionedOptions,
    shutdown: &Shutdown,
    totals: &mut Totals,
) -> u8 {
    let (started, mut progress) = (Instant::now(), Progress::default());
    let mut observe = synccli::passes::observer(&mut progress, log_event);
    let pass = totals.passes + 1;
    let report = match run_pass(source, layout, options, shutdown, &mut observe) {
        Ok(report) => report,
        Err(err @ Error::Aborted(_)) => {
            log::error!("not rotating: {err}; the versions are kept as they are");
            return err.exit_code() as u8;
        }
        Err(err) => {
            log::error!("pass aborted: {err}");
            totals.errors += 1;
            return err.exit_code() as u8;
        }
    };
    log_repair(report.repair);
    for err in &report.scan_errors {
        log::error!("{err}");
    }
    for path in &report.special {
        log::warn!("skipped special file \"{path}\" (fifo, socket or device)");
    }
    synccli::passes::log_ignored("", &report.ignored.0, &report.ignored.1, totals);
    totals.errors += report.scan_errors.len() as u64;
    totals.stats.add(&report.stats);
    log_outcome(&report, source, layout, options, started, pass, totals);
    u8::from(report.had_errors())
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

/// The lines that say what the pass decided (and, for a dry run, its plan on stdout).
fn log_outcome(
    report: &super::VersionedReport,
    source: &Path,
    layout: &Layout,
    options: &VersionedOptions,
    started: Instant,
    pass: u64,
    totals: &mut Totals,
) {
    let secs = started.elapsed().as_secs_f64();
    let show = |d: &Option<synccore::checksum::Digest>| d.map_or_else(|| "none".to_owned(), |d| d.to_hex());
    let plan = &report.plan;
    let (copies, links) = (plan.count(StepKind::Copy), plan.count(StepKind::HardLink));
    let ignored = std::mem::take(&mut totals.ignored);
    match &report.outcome {
        Outcome::Unchanged { checksum } => {
            if options.dry_run {
                println!("would not rotate: unchanged, directory checksum {checksum}");
                log::info!("dry run: would not rotate (directory checksum {checksum} unchanged)");
            }
            log::debug!(
                "pass {pass}: unchanged (directory checksum {checksum}), nothing written; \
                 {} files hashed, {ignored} ignored, {secs:.2} s",
                report.hashed.files
            );
        }
        Outcome::Rotated { old, new } => {
            totals.rotations += 1;
            log::info!("rotate {}: {} -> {new}", Quoted(&layout.dir()), show(old));
            log::info!(
                "pass {pass}: rotated; {copies} files copied, {} bytes written, {links} hard links, \
                 manifest {} bytes, {} files hashed ({} bytes read), {ignored} ignored, {} failed, \
                 {secs:.2} s",
                report.stats.copied_bytes,
                report.manifest_bytes,
                report.hashed.files,
                report.hashed.bytes,
                report.stats.failed
            );
        }
        Outcome::WouldRotate { old, new } => {
            for step in &plan.steps {
                println!("{step}");
            }
            println!("would rotate: {} -> {new}", show(old));
            log::info!(
                "dry run: would rotate {} -> {new}: {copies} copies ({} bytes), {links} hard links; \
                 nothing changed",
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

/// Copies are logged like a mirror's; the rest of building a version (directories, hard links,
/// symlinks, metadata) only in verbose mode, so that a rotation's log shows what changed.
fn log_event(event: &Event<'_>) {
    match event {
        Event::Done(step) if matches!(step.action, Action::Copy { .. }) => log::info!("{step}"),
        Event::Done(step) => log::debug!("{step}"),
        Event::Failed(step, err) => log::error!("{step} failed: {err}"),
        Event::Skipped(step, why) => log::warn!("{step} skipped: {why}; the new version is discarded"),
    }
}
