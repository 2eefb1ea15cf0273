//! The mirror in watch mode (`oneway SOURCE BACKUP --watch`, the watch issue): both trees are
//! kept in memory between passes, so that a pass after a burst of changes lists again only the
//! directories that had events; it then plans (with the same streaming diff, reading the kept
//! trees), checks and applies exactly as a full pass, and lists BACKUP again where it wrote.
//! (A watcher therefore holds the trees: about 200 bytes per entry, see docs/performance.md.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use synccli::passes::Totals;
use synccli::watching::Watched;
use synccore::apply::Event;
use synccore::diff::Entries;
use synccore::error::{Error, Quoted, Result};
use synccore::fsio::Root;
use synccore::plan::{Action, Steps};
use synccore::rails;
use synccore::relpath::RelPath;
use synccore::rescan;
use synccore::scan::{self, ScanRules, Tree};
use synccore::shutdown::Shutdown;
use synccore::watch::{Adder, Changes};

use super::{MirrorOptions, MirrorReport, Roots, carry_out, diff_streams, log_pass, open_if_present};

/// Both sides of a mirror as the latest scans saw them: the trees of the last full scan
/// brought up to date by partial rescans ([`Scanned::rescan`]).
pub struct Scanned {
    roots: Roots,
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
            // The mirror follows SOURCE's rules (issue 14): BACKUP is scanned again with them.
            let given = [&src.rules];
            if let Some(root) = &target_root {
                dst = scan::scan_with(root, ScanRules::Given(&given))?;
            }
        }
        let mut dst_dev = dst.dev;
        if dst_dev == 0 {
            dst_dev = target_root.as_ref().and_then(|r| r.top().stat_self().ok()).map_or(0, |st| st.st_dev);
        }
        dst.dev = dst_dev;
        Ok(Scanned { roots: Roots { source: source_root, target: target_root }, src, dst })
    }

    /// Brings both trees up to date where `changes` (of SOURCE, root 0) say something
    /// changed; BACKUP is listed again at the same directories. `Ok(false)` when only a full
    /// scan will do (SOURCE replaced, a rules file changed).
    pub fn rescan(&mut self, changes: &Changes, options: &MirrorOptions, watch: &[Adder]) -> Result<bool> {
        // Directories opened by earlier passes may have been renamed since.
        self.roots.source.forget_all();
        self.roots.target.iter().for_each(Root::forget_all);
        if !self.roots.source.still_there() {
            log::info!(
                "{} is not the directory it was: a full pass follows",
                Quoted(self.roots.source.path())
            );
            return Ok(false);
        }
        let rules = self.src.rules.clone();
        let given = [&rules];
        let (dirs, created) = (&changes.dirs[0], &changes.created[0]);
        let mut before = |rel: &RelPath| watch.iter().for_each(|w| w.add(rel.as_bytes()));
        let full = rescan::rescan(
            &self.roots.source,
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
        if let Some(target_root) = &self.roots.target {
            let target_rules =
                if options.delete_excluded { ScanRules::None } else { ScanRules::Given(&given) };
            rescan::rescan(target_root, &mut self.dst, target_rules, dirs, created, false, &mut |_| {})?;
        }
        Ok(true)
    }

    /// Plans from the kept trees, checks the rails, applies; then lists BACKUP again where
    /// the plan changed it, so that the trees stay those of the disk.
    pub fn sync(
        &mut self,
        (source, target): (&Path, &Path),
        options: &MirrorOptions,
        shutdown: &Shutdown,
        observe: &mut dyn FnMut(Event<'_>),
    ) -> Result<MirrorReport> {
        let dst = &self.dst;
        let target_at = |p: &RelPath| dst.get(p).map(|e| (e.is_dir(), e.dev));
        let streamed = diff_streams(
            &mut Entries::of(&self.src),
            &mut Entries::of(dst),
            &target_at,
            &self.roots,
            options.checksum,
        )?;
        let (mut src_notes, mut dst_notes) = (notes_of(&self.src), notes_of(&self.dst));
        let report = carry_out(
            streamed,
            (&mut src_notes, &mut dst_notes),
            (&self.roots.source, &mut self.roots.target),
            (source, target),
            options,
            shutdown,
            observe,
        )?;
        self.src.errors.clear();
        self.dst.errors.clear();
        if !options.dry_run {
            if self.dst.dev == 0 {
                self.dst.dev = self
                    .roots
                    .target
                    .as_ref()
                    .and_then(|r| r.top().stat_self().ok())
                    .map_or(0, |st| st.st_dev);
            }
            self.refresh_target(&report.plan, options)?;
        }
        Ok(report)
    }

    /// Lists BACKUP again at every directory `plan` changed (a step's parent, a move's
    /// destination's parent): in proportion to what the pass did.
    fn refresh_target(&mut self, plan: &dyn Steps, options: &MirrorOptions) -> Result<()> {
        let Some(target_root) = &self.roots.target else { return Ok(()) };
        let root = || RelPath::from_bytes(b"");
        let mut dirs: BTreeSet<RelPath> = BTreeSet::new();
        plan.each(&mut |step| {
            dirs.insert(step.path.parent().unwrap_or_else(root));
            if let Action::Move { to, .. } = &step.action {
                dirs.insert(to.parent().unwrap_or_else(root));
            }
            std::ops::ControlFlow::Continue(())
        })
        .map_err(|source| Error::Io {
            op: synccore::error::Op::Read,
            path: std::env::temp_dir(),
            source,
        })?;
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

/// A kept tree's notes without its entries (the report takes its errors).
fn notes_of(tree: &Tree) -> Tree {
    Tree {
        entries: Vec::new(),
        unreadable: tree.unreadable.clone(),
        errors: Vec::new(),
        special: tree.special.clone(),
        leftovers: tree.leftovers.clone(),
        dev: tree.dev,
        ignored: tree.ignored.clone(),
        rules: tree.rules.clone(),
        vanished: tree.vanished,
    }
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
            trees.sync((source, backup), options, shutdown, observe)
        })
    }

    fn changed_pass(&mut self, changes: &Changes, adders: &[Adder], totals: &mut Totals) -> Option<u8> {
        let (source, backup, options, shutdown) = (self.source, self.backup, self.options, self.shutdown);
        let scanned = self.scanned.as_mut()?;
        match scanned.rescan(changes, options, adders) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(err) => {
                log::warn!("{err}: a full pass follows");
                return None;
            }
        }
        Some(log_pass(options, totals, |observe| scanned.sync((source, backup), options, shutdown, observe)))
    }
}
