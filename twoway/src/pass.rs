//! One pass of the two-way sync (SPEC section 4): both sides and the base read together as
//! they stream past and merged path by path (the scale issue: memory holds the directories on
//! the way and what changes, never the trees), the safety rails checked against the whole
//! plans, each side's plan applied with the shared copy engine, then the new base written
//! (streamed too, atomically, and only after the data operations). Watch mode's passes, which
//! keep the trees between passes, are in [`crate::watched`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use synccore::apply::{self, ApplyStats, Event, Trees};
use synccore::checksum::{Digest, file_checksum_in};
use synccore::diff::Relocated;
use synccore::entry::Entry;
use synccore::error::{Error, Result};
use synccore::fsio::{Rename, Root};
use synccore::ignore::{Excludes, Rules};
use synccore::plan::Stamp;
use synccore::rails::{self, Rails};
use synccore::relpath::RelPath;
use synccore::scan::{ScanRules, Tree};
use synccore::shutdown::Shutdown;
use synccore::walk::{Threaded, Walker};

use crate::base::{self, Pair};
use crate::merge::{self, Merge, MergeOptions, Side};
use crate::merger::{BaseRows, Merger, NextBase};
use crate::renames::Moved;

/// How a two-way pass runs.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Plan only; change nothing.
    pub dry_run: bool,
    /// The max-delete and empty-side rails.
    pub rails: Rails,
    /// `--exclude` patterns and the config's `"exclude"` (issue 14), the last lines of each
    /// side's root `.syncignore`.
    pub excludes: Excludes,
}

/// What a pass found and did.
#[derive(Debug, Default)]
pub struct SyncReport {
    pub merge: Merge,
    pub stats: ApplyStats,
    pub scan_errors: Vec<Error>,
    pub special: Vec<(Side, RelPath)>,
    /// A base that could not be used (corrupt, newer format); the pass ran without it.
    pub base_problem: Option<Error>,
    /// Each side's ignored entries and rules files not read (issue 14).
    pub ignored: [(Vec<RelPath>, Vec<RelPath>); 2],
}

impl SyncReport {
    /// True when some entry failed (exit code 1).
    pub fn had_errors(&self) -> bool {
        !self.scan_errors.is_empty() || self.stats.failed > 0
    }
}

/// Hashes computed during the pass, keyed by side and path, valid for the stamp they were
/// taken at (shared by the merge and the new base).
#[derive(Default)]
pub(crate) struct HashCache(Mutex<HashMap<(Side, RelPath), Hashed>>);

/// A digest (or `None`: unreadable) and the stamp of the file when it was taken.
type Hashed = (Stamp, Option<Digest>);

impl HashCache {
    pub(crate) fn get_or_hash(&self, roots: &[Root; 2], side: Side, e: &Entry) -> Option<Digest> {
        let key = (side, e.path.clone());
        if let Ok(map) = self.0.lock()
            && let Some((stamp, digest)) = map.get(&key)
            && *stamp == Stamp::of(e)
        {
            return *digest;
        }
        let digest = file_checksum_in(&roots[side.index()], &e.path).ok();
        if let Ok(mut map) = self.0.lock() {
            map.insert(key, (Stamp::of(e), digest));
        }
        digest
    }

    pub(crate) fn known(&self, side: Side, e: &Entry) -> Option<Digest> {
        let map = self.0.lock().ok()?;
        map.get(&(side, e.path.clone())).filter(|(stamp, _)| *stamp == Stamp::of(e)).and_then(|(_, d)| *d)
    }
}

/// Runs one two-way pass. Safety rails return [`Error::Aborted`] before anything changes.
pub fn run_pass(
    pair: &Pair,
    options: &SyncOptions,
    shutdown: &Shutdown,
    observe: &mut dyn FnMut(Side, Event<'_>),
) -> Result<SyncReport> {
    let mut report = SyncReport::default();
    // The home is missing only before the first real pass (a dry run creates nothing).
    let home = match Root::open(&pair.home) {
        Ok(home) => Some(home),
        Err(Error::Missing { .. }) => None,
        Err(err) => return Err(err),
    };
    let roots = open_both(&pair.roots)?;
    let (cache, merge_options) = (HashCache::default(), MergeOptions::for_this_process());
    let mut reading = Reading {
        pair,
        roots: &roots,
        options,
        cache: &cache,
        merge_options: &merge_options,
        home: home.as_ref(),
        rules: None,
        use_base: true,
        problem: None,
        unusable: std::cell::RefCell::default(),
        journal: std::cell::Cell::default(),
    };
    let (merged, mut notes) = reading.merge_until_settled()?;
    report.base_problem = reading.problem.take();
    for (i, side_notes) in notes.iter().enumerate() {
        let empty = merged.entries[i] == 0 && side_notes.errors.is_empty();
        let other = &pair.roots[1 - i];
        options.rails.check_empty_side(empty, merged.base_files > 0, true, &pair.roots[i], other)?;
    }
    for (i, plan) in merged.plans.iter().enumerate() {
        let deleted = synccore::plan::Steps::summary(plan).deleted_files as usize;
        options.rails.check_deletes(deleted, merged.files[i] as usize, &pair.roots[i])?;
    }
    take_notes(&mut report, &mut notes);
    if options.dry_run {
        report.merge = merged;
        return Ok(report);
    }
    apply_both(&merged, &roots, shutdown, &mut report, observe)?;
    // The new base, from what is on disk now (metadata only), with the rules the pass read by:
    // a `.syncignore` copied by this pass applies from the next one (issue 14).
    let stats = &report.stats;
    let did_something = stats.operations() > 0 || stats.failed > 0 || stats.skipped > 0;
    if did_something || !merged.base_unchanged || reading.journal.get() > 0 || report.base_problem.is_some() {
        let rules = reading.rules.clone().unwrap_or_else(|| [notes[0].rules.clone(), notes[1].rules.clone()]);
        save_next_base(&reading, &rules, home.as_ref(), report.base_problem.is_some())?;
    }
    report.merge = merged;
    Ok(report)
}

/// How a pass reads both sides and the base: the same each time it must read them again.
struct Reading<'a> {
    pair: &'a Pair,
    roots: &'a [Root; 2],
    options: &'a SyncOptions,
    cache: &'a HashCache,
    merge_options: &'a MergeOptions,
    home: Option<&'a Root>,
    /// Each side's rules, once they differ: both sides are then read by both (a path either
    /// side ignores is ignored, issue 14).
    rules: Option<[Rules; 2]>,
    /// False once the base turned out unusable: the pass runs as a first pass.
    use_base: bool,
    problem: Option<Error>,
    /// Set by a reading that met an unusable base.
    unusable: std::cell::RefCell<Option<Error>>,
    /// Rows in the base's journal (folded into a new base by this pass).
    journal: std::cell::Cell<usize>,
}

impl Reading<'_> {
    /// Merges, reading again while something learned on the way changes what to read: both
    /// sides' rules when they differ, no base when the base is unusable.
    fn merge_until_settled(&mut self) -> Result<(Merge, [Tree; 2])> {
        loop {
            let merged = {
                let this = &*self;
                let mut hash = |side: Side, e: &Entry| this.cache.get_or_hash(this.roots, side, e);
                let mut read = |moved: Option<&Moved>| this.read(moved);
                let lookup = |side: Side, p: &RelPath| {
                    let st = this.roots[side.index()].stat(p.as_path()).ok()?;
                    let is_dir =
                        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory;
                    Some((is_dir, st.st_dev))
                };
                merge::merge(&mut read, &lookup, this.merge_options, &mut hash)
            };
            if let Some(problem) = self.unusable.take() {
                // The base turned out unusable on the way: read again as a first pass.
                self.problem = Some(problem);
                self.use_base = false;
                continue;
            }
            let (merged, notes) = merged?;
            if self.rules.is_none() && notes[0].rules != notes[1].rules {
                self.rules = Some([notes[0].rules.clone(), notes[1].rules.clone()]);
                continue;
            }
            return Ok((merged, notes));
        }
    }

    /// One reading: both sides walked at once (each on its own thread) and the base read,
    /// relocated as `moved` says, merged as they stream past.
    fn read(&self, moved: Option<&Moved>) -> Result<(Merge, [Tree; 2])> {
        let given = self.rules.as_ref().map(|[a, b]| [a, b]);
        let rules = match &given {
            Some(sets) => ScanRules::Given(sets),
            None => ScanRules::Read(&self.options.excludes),
        };
        let walk = |i: usize| {
            let pruned = moved.map(|m| m.prune[i].clone()).unwrap_or_default();
            Walker::new(&self.roots[i], rules)
                .map(|w| w.pruning(pruned))
                .map_err(|err| rails::missing_root(err, true, self.roots[i].path(), self.roots[1 - i].path()))
        };
        let (wa, wb) = (walk(0)?, walk(1)?);
        let mut reader = if self.use_base { self.open_base()? } else { None };
        let collect = moved.is_none() && reader.is_some();
        let exists = |side: Side, p: &RelPath| self.roots[side.index()].exists(p.as_path());
        let known = |side: Side, e: &Entry| self.cache.known(side, e);
        let mut on_disk = |side: Side, e: &Entry| match moved.and_then(|m| m.original_path(side, &e.path)) {
            Some(path) => self.cache.get_or_hash(self.roots, side, &Entry { path, ..e.clone() }),
            None => self.cache.get_or_hash(self.roots, side, e),
        };
        let (merged, na, nb) = std::thread::scope(|scope| {
            let mut a = Threaded::spawn(scope, wa, ("scan-a", "scanning side A"));
            let mut b = Threaded::spawn(scope, wb, ("scan-b", "scanning side B"));
            let [ea, eb] = moved.map(|m| m.extra.clone()).unwrap_or_default();
            let (mut ra, mut rb) = (Relocated::new(&mut a, &[], ea), Relocated::new(&mut b, &[], eb));
            let mut none = std::iter::empty();
            let rows: &mut dyn Iterator<Item = (RelPath, base::BaseEntry)> = match reader.as_mut() {
                Some(r) => r,
                None => &mut none,
            };
            let mut relocated;
            let rows: &mut BaseRows<'_> = match moved {
                Some(m) => {
                    relocated = merge::relocated_rows(rows, &m.base_prune, m.base_extra.clone());
                    &mut relocated
                }
                None => rows,
            };
            let out = Merger::new(self.merge_options, &exists, &known, collect).run(
                [&mut ra, &mut rb],
                rows,
                &mut on_disk,
            );
            (out, a.finish(), b.finish())
        });
        if let Some(reader) = reader.as_mut() {
            self.journal.set(reader.journal_rows);
            if let Some(problem) = reader.problem() {
                return Err(self.unusable_base(problem));
            }
        }
        Ok((merged.map_err(merge::spill_error)?, [na?, nb?]))
    }

    /// The base's reader; an unusable base is reported and the pass runs without it.
    fn open_base(&self) -> Result<Option<base::Reader>> {
        let Some(home) = self.home else { return Ok(None) };
        match base::Reader::open(home, &self.pair.base_to_read()) {
            Ok(reader) => Ok(reader),
            Err(err @ Error::Corrupt { .. }) => Err(self.unusable_base(err)),
            Err(err) => Err(err),
        }
    }

    /// Records that the base is unusable (the pass reads again without it) and returns the
    /// error that ends this reading.
    fn unusable_base(&self, problem: Error) -> Error {
        let ended = Error::Corrupt {
            path: self.pair.home.join(self.pair.base_to_read()),
            reason: problem.to_string(),
        };
        self.unusable.replace(Some(problem));
        ended
    }
}

/// Writes the base from fresh walks of both sides (by `rules`) and the old base, streamed
/// (creating the home on the first pass); an unusable old one is kept aside first.
fn save_next_base(
    reading: &Reading<'_>,
    rules: &[Rules; 2],
    home: Option<&Root>,
    set_aside: bool,
) -> Result<()> {
    let pair = reading.pair;
    let created;
    let home = if let Some(home) = home {
        home
    } else {
        synccore::fsio::create_dirs(&pair.home)?;
        created = Root::open(&pair.home)?;
        &created
    };
    if set_aside {
        set_aside_unusable_base(home, &pair.base_to_read())?;
    }
    let mut reader = if set_aside { None } else { base::Reader::open(home, &pair.base_to_read())? };
    let given = [&rules[0], &rules[1]];
    let walk = |i: usize| Walker::new(&reading.roots[i], ScanRules::Given(&given));
    let (wa, wb) = (walk(0)?, walk(1)?);
    let known = |side: Side, e: &Entry| reading.cache.known(side, e);
    let dev = Some((wa.notes().dev, wb.notes().dev));
    let [a, b] = &pair.roots;
    let written = std::thread::scope(|scope| {
        let mut ta = Threaded::spawn(scope, wa, ("", "scanning side A"));
        let mut tb = Threaded::spawn(scope, wb, ("", "scanning side B"));
        let mut none = std::iter::empty();
        let old: &mut BaseRows<'_> = match reader.as_mut() {
            Some(r) => r,
            None => &mut none,
        };
        let mut rows = NextBase::new([&mut ta, &mut tb], old, reading.merge_options.owners, &known);
        let written = base::save_rows(home, &pair.state(), (a, b), dev, &mut rows);
        drop(rows);
        (written, ta.finish(), tb.finish())
    });
    let (written, na, nb) = written;
    // A walk that failed (a side vanished during the pass) must not record a base.
    na?;
    nb?;
    written.map(drop)
}

/// Moves what the walks found into the report: errors, special files, ignored entries.
pub(crate) fn take_notes(report: &mut SyncReport, notes: &mut [Tree; 2]) {
    for (side, tree) in [Side::A, Side::B].into_iter().zip(notes) {
        report.scan_errors.append(&mut tree.errors);
        report.special.extend(tree.special.iter().cloned().map(|p| (side, p)));
        let not_read = tree.rules.not_read().map(|(p, _)| p).collect();
        report.ignored[side.index()] = (tree.ignored.clone(), not_read);
    }
}

/// Carries out both sides' plans: conflict losers are set aside first, so that both plans can
/// read them under their new names; then B takes A's changes and A takes B's.
pub(crate) fn apply_both(
    merged: &Merge,
    roots: &[Root; 2],
    shutdown: &Shutdown,
    report: &mut SyncReport,
    observe: &mut dyn FnMut(Side, Event<'_>),
) -> Result<()> {
    let [ra, rb] = roots;
    // The whole pass's plans first, so that progress is shown against its total.
    for side in [Side::A, Side::B] {
        observe(side, Event::Planned(&synccore::plan::Steps::summary(&merged.renames[side.index()])));
        observe(side, Event::Planned(&synccore::plan::Steps::summary(&merged.plans[side.index()])));
    }
    for (side, root) in [(Side::A, ra), (Side::B, rb)] {
        let trees = Trees::new(root, root);
        let stats =
            apply::apply(&merged.renames[side.index()], trees, shutdown.flag(), &mut |e| observe(side, e));
        report.stats.add(&stats);
    }
    for (side, from, to) in [(Side::B, ra, rb), (Side::A, rb, ra)] {
        if report.stats.panicked {
            break;
        }
        let trees = Trees::new(from, to);
        let stats =
            apply::apply(&merged.plans[side.index()], trees, shutdown.flag(), &mut |e| observe(side, e));
        report.stats.interrupted |= stats.interrupted;
        report.stats.add(&stats);
    }
    if report.stats.panicked {
        // Nothing further changes, not even the base (the hardening issue, point 12).
        return Err(Error::Panicked { what: "copying" });
    }
    Ok(())
}

/// Opens both sides' roots. A side that is missing aborts the pass (an unmounted disk must
/// never look like "everything was deleted").
pub(crate) fn open_both(paths: &[PathBuf; 2]) -> Result<[Root; 2]> {
    let open = |i: usize| {
        Root::open(&paths[i]).map_err(|err| rails::missing_root(err, true, &paths[i], &paths[1 - i]))
    };
    Ok([open(0)?, open(1)?])
}

/// Keeps an unusable base beside the new one (`state.json.unusable-<stamp>`, with `-2`, `-3`,
/// ... when that name is taken) instead of overwriting it: it may belong to a newer version
/// of the program.
pub(crate) fn set_aside_unusable_base(home: &Root, rel: &Path) -> Result<()> {
    if !home.exists(rel) {
        return Ok(());
    }
    let stamp = merge::conflict_stamp();
    for n in 1u32.. {
        let mut aside = rel.as_os_str().to_owned();
        aside.push(format!(".unusable-{stamp}"));
        if n > 1 {
            aside.push(format!("-{n}"));
        }
        match home.rename(rel, Path::new(&aside), Rename::NoReplace) {
            Err(err) if err.io_kind() == Some(std::io::ErrorKind::AlreadyExists) => {}
            other => return other,
        }
    }
    unreachable!("some set-aside name is free")
}
