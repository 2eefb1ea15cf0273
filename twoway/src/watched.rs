//! A pair in watch mode (`twoway A B --watch`, the watch issue): after a full pass, each burst
//! of changes on either side is merged from the trees the last pass left, brought up to date
//! by listing again only the directories that had events, on both sides (the merge compares
//! a path on both). The base is kept in memory and recorded by appending what changed to its
//! journal; a full pass (every `--interval`) writes it whole.
//!
//! Our own writes wake the watcher too: the pass after a pass that wrote finds both sides
//! equal where it wrote, and writes nothing (no ping-pong).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use synccore::apply::Event;
use synccore::entry::Entry;
use synccore::error::{Error, Quoted, Result};
use synccore::fault;
use synccore::fsio::Root;
use synccore::ignore::Rules;
use synccore::plan::{Action, Steps};
use synccore::rails::{self, Rails};
use synccore::relpath::RelPath;
use synccore::rescan;
use synccore::scan::{self, ScanRules, Tree};
use synccore::shutdown::Shutdown;
use synccore::watch::{Adder, Changes};

use crate::base::{self, Base, Pair};
use crate::merge::{self, Merge, MergeOptions, Side};
use crate::pass::{self, HashCache, SyncOptions, SyncReport};

/// Brings both trees up to date where `changes` say either side changed. `Ok(false)` when
/// only a full pass will do (a side replaced, a rules file changed).
pub fn rescan(kept: &mut Kept, changes: &Changes, watch: &[Adder]) -> Result<bool> {
    for root in &kept.roots {
        // Directories opened by earlier passes may have been renamed since.
        root.forget_all();
        if !root.still_there() {
            log::info!("{} is not the directory it was: a full pass follows", Quoted(root.path()));
            return Ok(false);
        }
    }
    // Both sides are listed at every directory either side had events in.
    let dirs: BTreeSet<RelPath> = changes.dirs.iter().flatten().cloned().collect();
    let created: BTreeSet<RelPath> = changes.created.iter().flatten().cloned().collect();
    let rules = kept.rules.clone();
    let given = [&rules[0], &rules[1]];
    for (i, (root, tree)) in kept.roots.iter().zip(&mut kept.trees).enumerate() {
        let mut before = |rel: &RelPath| watch.get(i).iter().for_each(|w| w.add(rel.as_bytes()));
        if let Some(reason) =
            rescan::rescan(root, tree, ScanRules::Given(&given), &dirs, &created, true, &mut before)?
        {
            log::info!("{reason}: a full pass follows");
            return Ok(false);
        }
    }
    Ok(true)
}

/// Merges, checks the rails, applies, lists both sides again where the pass wrote, and
/// records the new base in the journal (whole, when the journal has grown large).
pub fn sync(
    kept: &mut Kept,
    pair: &Pair,
    options: &SyncOptions,
    shutdown: &Shutdown,
    observe: &mut dyn FnMut(Side, Event<'_>),
) -> Result<SyncReport> {
    let mut report = SyncReport::default();
    check_empty_sides(&kept.trees, Some(&kept.base), &pair.roots, options.rails)?;
    let cache = HashCache::default();
    let merge_options = MergeOptions::for_this_process();
    let merged =
        merge_and_check(&kept.trees, Some(&kept.base), &kept.roots, &cache, &merge_options, pair, options)?;
    pass::take_notes(&mut report, &mut kept.trees);
    pass::apply_both(&merged, &kept.roots, shutdown, &mut report, observe)?;
    for (i, (root, tree)) in kept.roots.iter().zip(&mut kept.trees).enumerate() {
        let dirs = touched(&[&merged.renames[i], &merged.plans[i]]);
        if !dirs.is_empty() {
            let given = [&kept.rules[0], &kept.rules[1]];
            rescan::rescan(
                root,
                tree,
                ScanRules::Given(&given),
                &dirs,
                &BTreeSet::new(),
                false,
                &mut |_| {},
            )?;
            tree.errors.clear();
        }
    }
    report.merge = merged;
    let known = |side: Side, e: &synccore::entry::Entry| cache.known(side, e);
    let next =
        merge::next_base([&kept.trees[0], &kept.trees[1]], Some(&kept.base), merge_options.owners, &known);
    if next != kept.base {
        record_base(kept, pair, next)?;
    }
    Ok(report)
}

/// Records `next` as the base: appended to the journal, or written whole when the journal
/// would outgrow a quarter of the base (or the base has no generation to extend yet).
fn record_base(kept: &mut Kept, pair: &Pair, next: base::Base) -> Result<()> {
    let home = synccore::fsio::Root::open(&pair.home)?;
    let limit = (kept.base.entries.len() / 4).max(1_000);
    if kept.generation.is_empty() || kept.journal >= limit {
        let [a, b] = &pair.roots;
        kept.generation = base::save(&home, &pair.state(), a, b, &next)?;
        kept.journal = 0;
    } else {
        kept.journal = base::append(&home, &pair.state(), &kept.generation, kept.journal, &kept.base, &next)?;
    }
    kept.base = next;
    Ok(())
}

/// The directories a side's steps changed: each step's parent, and a move's destination's.
fn touched(plans: &[&dyn Steps]) -> BTreeSet<RelPath> {
    let root = || RelPath::from_bytes(b"");
    let mut dirs = BTreeSet::new();
    for plan in plans {
        // A plan that cannot be read back lists nothing: the next full pass rescans all.
        let _ = plan.each(&mut |step| {
            dirs.insert(step.path.parent().unwrap_or_else(root));
            if let Action::Move { to, .. } | Action::Rename { to, .. } = &step.action {
                dirs.insert(to.parent().unwrap_or_else(root));
            }
            std::ops::ControlFlow::Continue(())
        });
    }
    dirs
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
    let roots = pass::open_both(&pair.roots)?;
    let mut trees = scan_both(&roots, ScanRules::Read(&options.excludes), watch)?;
    let rules = [trees[0].rules.clone(), trees[1].rules.clone()];
    let (base, left_base) = leave_out_ignored(&mut trees, base, &rules);
    check_empty_sides(&trees, base.as_ref(), &pair.roots, options.rails)?;

    let cache = HashCache::default();
    let merge_options = MergeOptions::for_this_process();
    let merged = merge_and_check(&trees, base.as_ref(), &roots, &cache, &merge_options, pair, options)?;
    pass::take_notes(&mut report, &mut trees);
    if options.dry_run {
        report.merge = merged;
        return Ok((report, None));
    }
    pass::apply_both(&merged, &roots, shutdown, &mut report, observe)?;
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
    let merged = merge::merge_trees([&trees[0], &trees[1]], base, merge_options, &mut hash);
    for side in [Side::A, Side::B] {
        let i = side.index();
        let deleted = synccore::plan::Steps::summary(&merged.plans[i]).deleted_files as usize;
        options.rails.check_deletes(deleted, trees[i].file_count(), &pair.roots[i])?;
    }
    Ok(merged)
}

/// A path is ignored when either side's rules ignore it (issue 14): each side's tree loses
/// what the other side's rules ignore, and the base loses every ignored path, so that a path
/// that becomes ignored is never taken for deleted, and one that stops being ignored is
/// merged as on a first pass (union; differing content is a conflict, nothing is lost).
/// Returns the base and whether it lost entries (it is then saved even if nothing else
/// changed).
pub(crate) fn leave_out_ignored(
    trees: &mut [Tree; 2],
    base: Option<Base>,
    rules: &[Rules; 2],
) -> (Option<Base>, bool) {
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

/// Scans both sides in parallel, leaving out what `rules` ignore; each directory is handed
/// to its side's `watch` adder (if any) before it is listed.
pub(crate) fn scan_both(roots: &[Root; 2], rules: ScanRules<'_>, watch: &[Adder]) -> Result<[Tree; 2]> {
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

/// Writes the new base (creating the home on the first pass); an unusable old one is kept
/// aside first.
pub(crate) fn save_base(pair: &Pair, home: Option<Root>, set_aside: bool, next: &Base) -> Result<String> {
    let home = if let Some(home) = home {
        home
    } else {
        synccore::fsio::create_dirs(&pair.home)?;
        Root::open(&pair.home)?
    };
    if set_aside {
        pass::set_aside_unusable_base(&home, &pair.base_to_read())?;
    }
    let [a, b] = &pair.roots;
    base::save(&home, &pair.state(), a, b, next)
}

/// The paths twoway writes itself inside the sides: its log and its home.
pub fn quiet(pair: &Pair, log: &Path) -> Vec<PathBuf> {
    synccore::watch::quiet_paths(&[log, &pair.home], &pair.roots)
}
