//! One pass of the one-way mirror (SPEC section 3): scan both sides, check the safety rails,
//! plan, apply. The binaries loop over passes; everything a pass decides lives here.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use crate::apply::{self, ApplyStats, Event, Trees};
use crate::checksum::file_checksum_in;
use crate::error::{Error, Rail, Result};
use crate::fsio::Root;
use crate::plan::{self, MirrorOptions, Plan};
use crate::scan::{self, Tree};

/// How a pass runs.
#[derive(Debug, Clone, Copy)]
pub struct PassOptions {
    /// Compare equal-size files by content even when their mtimes agree.
    pub checksum: bool,
    /// Plan only; change nothing.
    pub dry_run: bool,
    /// The max-delete rail: abort when more than this percentage of the target's files
    /// would be deleted (not applied below [`MIN_FILES_FOR_DELETE_RAIL`] files).
    pub max_delete_percent: u8,
    /// Override the max-delete and empty-source rails.
    pub force: bool,
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions { checksum: false, dry_run: false, max_delete_percent: 50, force: false }
    }
}

/// Below this many files on a side, the max-delete rail does not apply (SPEC section 5).
pub const MIN_FILES_FOR_DELETE_RAIL: usize = 10;

/// What a pass found and did.
#[derive(Debug, Default)]
pub struct PassReport {
    /// The plan the pass made (and, unless dry-run, carried out).
    pub plan: Plan,
    /// What applying it did (empty for a dry run).
    pub stats: ApplyStats,
    /// Per-path problems met while scanning either side.
    pub scan_errors: Vec<Error>,
    /// Source entries skipped because they are special files.
    pub special: Vec<crate::relpath::RelPath>,
}

impl PassReport {
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
    options: PassOptions,
    shutdown: &AtomicBool,
    observe: &mut dyn FnMut(Event<'_>),
) -> Result<PassReport> {
    // Both roots are opened once; everything below them is reached through them, never by
    // path (the security issue).
    let target_root = open_if_present(target)?;
    let (src, dst) = std::thread::scope(|s| {
        let dst = s.spawn(|| {
            crate::fault::point("scan-target");
            target_root.as_ref().map_or_else(|| Ok(Tree::default()), scan::scan)
        });
        let src = Root::open(source).and_then(|root| Ok((scan::scan(&root)?, root)));
        // A panic must never pass for an empty target (the hardening issue, point 12).
        (src, dst.join().unwrap_or(Err(Error::Panicked { what: "scanning the target" })))
    });
    let dst = dst?;
    let (src, source_root) = match src {
        Ok(found) => found,
        // A source that vanished (unmounted disk) must never empty the backup.
        Err(Error::Missing { .. } | Error::NotADirectory { .. }) if !dst.entries.is_empty() => {
            return Err(Error::Aborted(Rail::EmptySide { empty: source.into(), other: target.into() }));
        }
        Err(Error::Io { source: e, .. }) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Aborted(Rail::EmptySide { empty: source.into(), other: target.into() }));
        }
        Err(err) => return Err(err),
    };
    check_empty_source(&src, &dst, source, target, options)?;

    let mut same_content = |s: &crate::entry::Entry, d: &crate::entry::Entry| {
        // Any read failure counts as "different": the copy then reports the real error.
        let theirs = target_root.as_ref().and_then(|t| file_checksum_in(t, &d.path).ok());
        matches!((file_checksum_in(&source_root, &s.path).ok(), theirs), (Some(a), Some(b)) if a == b)
    };
    let plan = plan::mirror(&src, &dst, MirrorOptions::for_this_process(options.checksum), &mut same_content);
    check_deletes(&plan, &dst, target, options)?;

    let mut report = PassReport { scan_errors: src.errors, special: src.special, ..PassReport::default() };
    report.scan_errors.extend(dst.errors);
    if !options.dry_run {
        let target_root = if let Some(root) = target_root {
            root
        } else {
            crate::fsio::create_dirs(target)?;
            Root::open(target)?
        };
        report.stats = apply::apply(&plan, Trees::new(&source_root, &target_root), shutdown, observe);
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

fn check_empty_source(
    src: &Tree,
    dst: &Tree,
    source: &Path,
    target: &Path,
    options: PassOptions,
) -> Result<()> {
    if src.entries.is_empty() && src.errors.is_empty() && !dst.entries.is_empty() && !options.force {
        return Err(Error::Aborted(Rail::EmptySide { empty: source.into(), other: target.into() }));
    }
    Ok(())
}

/// The max-delete rail of SPEC section 5.
pub fn check_deletes(plan: &Plan, dst: &Tree, target: &Path, options: PassOptions) -> Result<()> {
    let files = dst.file_count();
    let deletes = plan.deleted_files();
    if options.force || files < MIN_FILES_FOR_DELETE_RAIL {
        return Ok(());
    }
    if deletes * 100 > usize::from(options.max_delete_percent) * files {
        return Err(Error::Aborted(Rail::TooManyDeletes {
            side: target.into(),
            deletes,
            files,
            max_percent: options.max_delete_percent,
        }));
    }
    Ok(())
}
