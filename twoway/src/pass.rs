//! One pass of the two-way sync (SPEC section 4): load the base, scan both sides, check the
//! safety rails, merge, apply each side's plan with the shared copy engine, then record the new
//! base, written atomically and only after the data operations.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use synccore::apply::{self, ApplyStats, Event, Trees};
use synccore::checksum::{Digest, file_checksum_in};
use synccore::entry::Entry;
use synccore::error::{Error, Result};
use synccore::fault;
use synccore::fsio::{Rename, Root};
use synccore::ignore::{self, Excludes, Rules};
use synccore::plan::Stamp;
use synccore::rails::{self, Rails};
use synccore::relpath::RelPath;
use synccore::scan::{self, ScanRules, Tree};
use synccore::shutdown::Shutdown;
use synccore::watch::Adder;

use crate::base::{self, Base, Pair};
use crate::merge::{self, Merge, MergeOptions, Side};

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
    full_pass(pair, options, shutdown, observe, &[]).map(|(report, _)| report)
}

/// What a pass leaves for the next one in watch mode (the watch issue): both roots, both
/// trees as they are on disk after it, each side's rules, and the base as recorded (with its
/// generation and journal, so that the next pass appends to it).
pub struct Kept {
    pub roots: [Root; 2],
    pub trees: [Tree; 2],
    pub rules: [Rules; 2],
    pub base: Base,
    pub generation: String,
    pub journal: usize,
}

/// A full pass: both sides scanned whole (each directory handed to its side's `watch` adder
/// before it is listed), merged and applied; the base written whole (a journal folded in).
/// Returns what the next pass of a watch keeps (`None` for a dry run).
pub fn full_pass(
    pair: &Pair,
    options: &SyncOptions,
    shutdown: &Shutdown,
    observe: &mut dyn FnMut(Side, Event<'_>),
    watch: &[Adder],
) -> Result<(SyncReport, Option<Kept>)> {
    let mut report = SyncReport::default();
    // The home is missing only before the first real pass (a dry run creates nothing).
    let home = match Root::open(&pair.home) {
        Ok(home) => Some(home),
        Err(Error::Missing { .. }) => None,
        Err(err) => return Err(err),
    };
    let stored = match home.as_ref().map(|h| base::load_stored(h, &pair.base_to_read())).transpose() {
        Ok(stored) => stored.flatten(),
        Err(err) => {
            report.base_problem = Some(err);
            None
        }
    };
    let journal = stored.as_ref().map_or(0, |s| s.journal);
    let base = stored.map(|s| s.base);
    let roots = open_both(&pair.roots)?;
    let mut trees = scan_both(&roots, ScanRules::Read(&options.excludes), watch)?;
    let rules = [trees[0].rules.clone(), trees[1].rules.clone()];
    let (base, left_base) = leave_out_ignored(&mut trees, base, &rules);
    check_empty_sides(&trees, base.as_ref(), &pair.roots, options.rails)?;

    let cache = HashCache::default();
    let merge_options = MergeOptions::for_this_process();
    let merged = merge_and_check(&trees, base.as_ref(), &roots, &cache, &merge_options, pair, options)?;
    take_notes(&mut report, &mut trees);
    if options.dry_run {
        report.merge = merged;
        return Ok((report, None));
    }
    apply_both(&merged, &roots, shutdown, &mut report, observe)?;
    report.merge = merged;
    // Record the new base from what is on disk now (cheap: metadata only), with the rules of
    // the start of the pass: a `.syncignore` copied by this pass applies from the next one
    // (issue 14).
    let stats = &report.stats;
    let did_something = stats.operations() > 0 || stats.failed > 0 || stats.skipped > 0;
    let given = [&rules[0], &rules[1]];
    let now = if did_something { scan_both(&roots, ScanRules::Given(&given), &[])? } else { trees };
    let known = |side: Side, e: &Entry| cache.known(side, e);
    let next = merge::next_base([&now[0], &now[1]], base.as_ref(), merge_options.owners, &known);
    let generation = if left_base || journal > 0 || base.as_ref() != Some(&next) {
        save_base(pair, home, report.base_problem.is_some(), &next)?
    } else {
        String::new()
    };
    let kept = Kept { roots, trees: now, rules, base: next, generation, journal: 0 };
    Ok((report, Some(kept)))
}

/// Merges both sides against the base, keeps the directories of ignored entries, and checks
/// the max-delete rail on both sides' plans.
pub(crate) fn merge_and_check(
    trees: &[Tree; 2],
    base: Option<&Base>,
    roots: &[Root; 2],
    cache: &HashCache,
    merge_options: &MergeOptions,
    pair: &Pair,
    options: &SyncOptions,
) -> Result<Merge> {
    let mut hash = |side: Side, e: &Entry| cache.get_or_hash(roots, side, e);
    let mut merged = merge::merge([&trees[0], &trees[1]], base, merge_options, &mut hash);
    for side in [Side::A, Side::B] {
        let i = side.index();
        // A directory deleted on one side that holds ignored entries on the other stays.
        ignore::keep_dirs_of_ignored(&mut merged.plans[i], &trees[i].ignored);
        options.rails.check_deletes(
            merged.plans[i].deleted_files(),
            trees[i].file_count(),
            &pair.roots[i],
        )?;
    }
    Ok(merged)
}

/// Moves what the scans found into the report: errors, special files, ignored entries.
pub(crate) fn take_notes(report: &mut SyncReport, trees: &mut [Tree; 2]) {
    for (side, tree) in [Side::A, Side::B].into_iter().zip(trees) {
        report.scan_errors.append(&mut tree.errors);
        report.special.extend(tree.special.iter().cloned().map(|p| (side, p)));
        let not_read = tree.rules.not_read().map(|(p, _)| p).collect();
        report.ignored[side.index()] = (tree.ignored.clone(), not_read);
    }
}

/// A path is ignored when either side's rules ignore it (issue 14): each side's tree loses
/// what the other side's rules ignore, and the base loses every ignored path, so that a path
/// that becomes ignored is never taken for deleted, and one that stops being ignored is
/// merged as on a first pass (union; differing content is a conflict, nothing is lost).
/// Returns the base and whether it lost entries (it is then saved even if nothing else
/// changed).
fn leave_out_ignored(trees: &mut [Tree; 2], base: Option<Base>, rules: &[Rules; 2]) -> (Option<Base>, bool) {
    if rules[0] != rules[1] {
        trees[0].leave_out(&rules[1]);
        trees[1].leave_out(&rules[0]);
    }
    let Some(mut base) = base else { return (None, false) };
    let before = base.entries.len();
    for r in rules.iter().filter(|r| !r.is_empty()) {
        let mask =
            r.ignored_mask(base.entries.iter().map(|(p, e)| (p, e.kind == synccore::entry::Kind::Dir)));
        let mut keep = mask.into_iter().map(|ignored| !ignored);
        base.entries.retain(|_| keep.next().unwrap_or(true));
    }
    let left = base.entries.len() != before;
    (Some(base), left)
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

/// Writes the new base (creating the home on the first pass); an unusable old one is kept
/// aside first.
fn save_base(pair: &Pair, home: Option<Root>, set_aside: bool, next: &Base) -> Result<String> {
    let home = if let Some(home) = home {
        home
    } else {
        synccore::fsio::create_dirs(&pair.home)?;
        Root::open(&pair.home)?
    };
    if set_aside {
        set_aside_unusable_base(&home, &pair.base_to_read())?;
    }
    let [a, b] = &pair.roots;
    base::save(&home, &pair.state(), a, b, next)
}

/// Opens both sides' roots. A side that is missing aborts the pass (an unmounted disk must
/// never look like "everything was deleted").
pub(crate) fn open_both(paths: &[PathBuf; 2]) -> Result<[Root; 2]> {
    let open = |i: usize| {
        Root::open(&paths[i]).map_err(|err| rails::missing_root(err, true, &paths[i], &paths[1 - i]))
    };
    Ok([open(0)?, open(1)?])
}

/// Scans both sides in parallel, leaving out what `rules` ignore; each directory is handed
/// to its side's `watch` adder (if any) before it is listed.
fn scan_both(roots: &[Root; 2], rules: ScanRules<'_>, watch: &[Adder]) -> Result<[Tree; 2]> {
    let scan_side = |i: usize| {
        let mut before = |rel: &[u8]| watch.get(i).iter().for_each(|w| w.add(rel));
        scan::scan_watched(&roots[i], rules, &mut before)
    };
    let (a, b) = std::thread::scope(|s| {
        let b = s.spawn(|| {
            fault::point("scan-b");
            scan_side(1)
        });
        let a = scan_side(0);
        (a, b.join().unwrap_or(Err(Error::Panicked { what: "scanning side B" })))
    });
    let missing = |r: Result<Tree>, i: usize| {
        r.map_err(|err| rails::missing_root(err, true, roots[i].path(), roots[1 - i].path()))
    };
    Ok([missing(a, 0)?, missing(b, 1)?])
}

/// SPEC section 5: a side that is empty while the base had files aborts the pass.
pub(crate) fn check_empty_sides(
    trees: &[Tree; 2],
    base: Option<&Base>,
    roots: &[PathBuf; 2],
    rails: Rails,
) -> Result<()> {
    let base_files = base.is_some_and(|b| b.file_count() > 0);
    for i in 0..2 {
        let empty = trees[i].entries.is_empty() && trees[i].errors.is_empty();
        rails.check_empty_side(empty, base_files, true, &roots[i], &roots[1 - i])?;
    }
    Ok(())
}

/// Keeps an unusable base beside the new one (`state.json.unusable-<stamp>`, with `-2`, `-3`,
/// ... when that name is taken) instead of overwriting it: it may belong to a newer version
/// of the program.
fn set_aside_unusable_base(home: &Root, rel: &Path) -> Result<()> {
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
