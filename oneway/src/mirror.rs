//! One pass of the one-way mirror (SPEC section 3 "Mirror"): scan both sides, check the safety
//! rails, diff, apply with the shared copy engine; and the log lines of a pass.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use synccli::passes::{self, PassEnd, Place, Totals};
use synccli::progress::Progress;
use synccli::watching::Watched;
use synccore::apply::{self, ApplyStats, Event, Trees};
use synccore::checksum::{file_checksum_in, same_bytes, same_bytes_ahead};
use synccore::diff::{self, DiffOptions};
use synccore::entry::Entry;
use synccore::error::Quoted;
use synccore::error::{Error, Result};
use synccore::fsio::Root;
use synccore::ignore::{self, Excludes};
use synccore::moves::Which;
use synccore::plan::{Action, Plan};
use synccore::rails::{self, Rails};
use synccore::relpath::RelPath;
use synccore::rescan;
use synccore::scan::{self, ScanRules, Tree};
use synccore::shutdown::Shutdown;
use synccore::watch::{Adder, Changes};

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
    let mut scanned = Scanned::scan(source, target, options, None)?;
    scanned.sync(source, target, options, shutdown, observe)
}

/// Both sides of a mirror as the latest scans saw them: full scans, or, in watch mode, the
/// trees of the last full scan brought up to date by partial rescans ([`Scanned::rescan`]).
pub struct Scanned {
    source_root: Root,
    /// `None` until BACKUP exists.
    target_root: Option<Root>,
    src: Tree,
    dst: Tree,
}

impl Scanned {
    /// Scans both sides in full (in parallel); each directory of SOURCE is handed to `watch`
    /// before it is listed.
    pub fn scan(
        source: &Path,
        target: &Path,
        options: &MirrorOptions,
        watch: Option<&Adder>,
    ) -> Result<Scanned> {
        // Both roots are opened once; everything below them is reached through them, never
        // by path (the security issue).
        let target_root = open_if_present(target)?;
        // BACKUP is scanned with its own rules files, which are SOURCE's after the first
        // pass, so that both scans run in parallel; `--delete-excluded` sees all of BACKUP.
        let rules = ScanRules::Read(&options.excludes);
        let target_rules = if options.delete_excluded { ScanRules::None } else { rules };
        let (src, dst) = std::thread::scope(|s| {
            let dst = s.spawn(|| {
                synccore::fault::point("scan-target");
                target_root.as_ref().map_or_else(|| Ok(Tree::default()), |r| scan::scan_with(r, target_rules))
            });
            let mut before = |rel: &[u8]| watch.iter().for_each(|w| w.add(rel));
            let src = Root::open(source)
                .and_then(|root| Ok((scan::scan_watched(&root, rules, &mut before)?, root)));
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
        Ok(Scanned { source_root, target_root, src, dst })
    }

    /// Brings both trees up to date where `changes` (of SOURCE, root 0) say something
    /// changed; BACKUP is listed again at the same directories. `Ok(false)` when only a full
    /// scan will do (SOURCE replaced, a rules file changed).
    pub fn rescan(
        &mut self,
        source: &Path,
        changes: &Changes,
        options: &MirrorOptions,
        watch: &[Adder],
    ) -> Result<bool> {
        // Directories opened by earlier passes may have been renamed since.
        self.source_root.forget_all();
        self.target_root.iter().for_each(Root::forget_all);
        if !self.source_root.still_there() {
            log::info!("{} is not the directory it was: a full pass follows", Quoted(source));
            return Ok(false);
        }
        let rules = self.src.rules.clone();
        let given = [&rules];
        let (dirs, created) = (&changes.dirs[0], &changes.created[0]);
        let mut before = |rel: &RelPath| watch.iter().for_each(|w| w.add(rel.as_bytes()));
        let full = rescan::rescan(
            &self.source_root,
            &mut self.src,
            ScanRules::Given(&given),
            dirs,
            created,
            true,
            &mut before,
        )?;
        if let Some(reason) = full {
            log::info!("{reason}: a full pass follows");
            return Ok(false);
        }
        if let Some(target_root) = &self.target_root {
            let target_rules =
                if options.delete_excluded { ScanRules::None } else { ScanRules::Given(&given) };
            rescan::rescan(target_root, &mut self.dst, target_rules, dirs, created, false, &mut |_| {})?;
        }
        Ok(true)
    }

    /// Checks the rails, plans and (unless dry-running) applies the plan; then lists BACKUP
    /// again where the plan changed it, so that the trees stay those of the disk.
    pub fn sync(
        &mut self,
        source: &Path,
        target: &Path,
        options: &MirrorOptions,
        shutdown: &Shutdown,
        observe: &mut dyn FnMut(Event<'_>),
    ) -> Result<MirrorReport> {
        let (src, dst) = (&self.src, &self.dst);
        let has_files = !dst.entries.is_empty();
        let empty = src.entries.is_empty() && src.errors.is_empty();
        options.rails.check_empty_side(empty, has_files, true, source, target)?;

        let (source_root, target_root) = (&self.source_root, &self.target_root);
        let mut digest = |which: Which, e: &Entry| match which {
            Which::Source => file_checksum_in(source_root, &e.path).ok(),
            Which::Target => target_root.as_ref().and_then(|t| file_checksum_in(t, &e.path).ok()),
        };
        let diff_options = DiffOptions::for_this_process(options.checksum);
        let mut plan = match target_root {
            None => diff::plan(src, dst, diff_options, &mut digest),
            Some(target_root) => plan_reading(src, dst, source_root, target_root, diff_options, &mut digest),
        };
        // A directory SOURCE lost that still holds ignored entries in BACKUP stays (issue 14).
        ignore::keep_dirs_of_ignored(&mut plan, &dst.ignored);
        options.rails.check_deletes(plan.deleted_files(), dst.file_count(), target)?;

        let mut report = MirrorReport {
            rules_not_read: src.rules.not_read().map(|(p, _)| p).collect(),
            scan_errors: std::mem::take(&mut self.src.errors),
            special: self.src.special.clone(),
            ignored: self.src.ignored.clone(),
            ..MirrorReport::default()
        };
        report.scan_errors.append(&mut self.dst.errors);
        if !options.dry_run {
            if self.target_root.is_none() {
                synccore::fsio::create_dirs(target)?;
                let root = Root::open(target)?;
                // The empty tree it stood for gets the device moves are checked against.
                self.dst.dev = root.top().stat_self().map_or(0, |st| st.st_dev);
                self.target_root = Some(root);
            }
            let Some(target_root) = &self.target_root else {
                return Err(Error::Panicked { what: "opening the target" });
            };
            observe(Event::Planned(&plan));
            report.stats =
                apply::apply(&plan, Trees::new(&self.source_root, target_root), shutdown.flag(), observe);
            if report.stats.panicked {
                return Err(Error::Panicked { what: "copying" });
            }
            self.refresh_target(&plan, options)?;
        }
        report.plan = plan;
        Ok(report)
    }

    /// Lists BACKUP again at every directory `plan` changed (a step's parent, a move's
    /// destination's parent): in proportion to what the pass did.
    fn refresh_target(&mut self, plan: &Plan, options: &MirrorOptions) -> Result<()> {
        let Some(target_root) = &self.target_root else { return Ok(()) };
        let root = || RelPath::from_bytes(b"");
        let mut dirs: BTreeSet<RelPath> = BTreeSet::new();
        for step in &plan.steps {
            dirs.insert(step.path.parent().unwrap_or_else(root));
            if let Action::Move { to, .. } = &step.action {
                dirs.insert(to.parent().unwrap_or_else(root));
            }
        }
        let rules = self.src.rules.clone();
        let given = [&rules];
        let target_rules = if options.delete_excluded { ScanRules::None } else { ScanRules::Given(&given) };
        rescan::rescan(
            target_root,
            &mut self.dst,
            target_rules,
            &dirs,
            &BTreeSet::new(),
            false,
            &mut |_| {},
        )?;
        // Errors met while refreshing belong to the next pass's report.
        Ok(())
    }
}

/// The mirror's plan with "same content?" answered by reading both files, with no hash
/// (issue 17: `--checksum` at memory speed); the digests only pair moves that tie. The pairs
/// the quick check cannot decide (equal sizes, and `--checksum` or different mtimes: what
/// [`diff::compare`] asks) are compared ahead on the other cores, in the diff's order. A
/// failure counts as "different": the copy then reports the real error.
fn plan_reading(
    src: &Tree,
    dst: &Tree,
    source_root: &Root,
    target_root: &Root,
    options: DiffOptions,
    digest: &mut synccore::moves::Digests<'_>,
) -> Plan {
    // A merge-join of the two sorted trees, as the diff walks them.
    let (mut sources, mut j) = (src.entries.iter(), 0);
    let pairs = std::iter::from_fn(move || {
        for s in sources.by_ref() {
            while dst.entries.get(j).is_some_and(|d| d.path < s.path) {
                j += 1;
            }
            let Some(d) = dst.entries.get(j).filter(|d| d.path == s.path) else { continue };
            if s.is_file() && d.is_file() && d.size == s.size && (options.checksum || d.mtime != s.mtime) {
                return Some((s.path.as_path(), s.size));
            }
        }
        None
    });
    same_bytes_ahead(source_root, target_root, pairs, |same_at| {
        let mut same = |s: &Entry, d: &Entry| {
            let answer = if s.path == d.path {
                same_at(s.path.as_path(), s.size)
            } else {
                same_bytes(source_root, s.path.as_path(), target_root, d.path.as_path())
            };
            answer.unwrap_or(false)
        };
        diff::plan_comparing(src, dst, options, digest, Some(&mut same))
    })
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
    log_pass(options, totals, |observe| run_pass(source, backup, options, shutdown, observe))
}

/// Runs `pass` with the progress bar and the per-operation log lines, then logs what it found
/// and did; returns its exit status.
fn log_pass(
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

/// The mirror in watch mode (`--watch`): the trees of the last full scan, brought up to date
/// by rescanning what changed.
pub struct MirrorWatch<'a> {
    pub source: &'a Path,
    pub backup: &'a Path,
    pub options: &'a MirrorOptions,
    pub shutdown: &'a Shutdown,
    /// The log file (events on it never cause a pass).
    pub log: &'a Path,
    scanned: Option<Scanned>,
}

impl<'a> MirrorWatch<'a> {
    pub fn new(
        source: &'a Path,
        backup: &'a Path,
        options: &'a MirrorOptions,
        shutdown: &'a Shutdown,
        log: &'a Path,
    ) -> Self {
        MirrorWatch { source, backup, options, shutdown, log, scanned: None }
    }
}

impl Watched for MirrorWatch<'_> {
    fn roots(&self) -> Vec<PathBuf> {
        vec![self.source.to_path_buf()]
    }

    fn quiet(&self) -> Vec<PathBuf> {
        synccore::watch::quiet_paths(&[self.log], &self.roots())
    }

    fn full_pass(&mut self, adders: &[Adder], totals: &mut Totals) -> u8 {
        let (source, backup, options, shutdown) = (self.source, self.backup, self.options, self.shutdown);
        let scanned = &mut self.scanned;
        *scanned = None;
        log_pass(options, totals, |observe| {
            let trees = scanned.insert(Scanned::scan(source, backup, options, adders.first())?);
            trees.sync(source, backup, options, shutdown, observe)
        })
    }

    fn changed_pass(&mut self, changes: &Changes, adders: &[Adder], totals: &mut Totals) -> Option<u8> {
        let (source, backup, options, shutdown) = (self.source, self.backup, self.options, self.shutdown);
        let scanned = self.scanned.as_mut()?;
        match scanned.rescan(source, changes, options, adders) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(err) => {
                log::warn!("{err}: a full pass follows");
                return None;
            }
        }
        Some(log_pass(options, totals, |observe| scanned.sync(source, backup, options, shutdown, observe)))
    }
}
