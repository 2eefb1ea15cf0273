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
use synccore::error::{Quoted, Result};
use synccore::plan::{Action, Plan};
use synccore::relpath::RelPath;
use synccore::rescan;
use synccore::scan::ScanRules;
use synccore::shutdown::Shutdown;
use synccore::watch::{Adder, Changes};

use crate::base::{self, Pair};
use crate::merge::{self, MergeOptions, Side};
use crate::pass::{self, HashCache, Kept, SyncOptions, SyncReport};

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
    pass::check_empty_sides(&kept.trees, Some(&kept.base), &pair.roots, options.rails)?;
    let cache = HashCache::default();
    let merge_options = MergeOptions::for_this_process();
    let merged = pass::merge_and_check(
        &kept.trees,
        Some(&kept.base),
        &kept.roots,
        &cache,
        &merge_options,
        pair,
        options,
    )?;
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
fn touched(plans: &[&Plan]) -> BTreeSet<RelPath> {
    let root = || RelPath::from_bytes(b"");
    let mut dirs = BTreeSet::new();
    for step in plans.iter().flat_map(|p| &p.steps) {
        dirs.insert(step.path.parent().unwrap_or_else(root));
        if let Action::Move { to, .. } | Action::Rename { to, .. } = &step.action {
            dirs.insert(to.parent().unwrap_or_else(root));
        }
    }
    dirs
}

/// The paths twoway writes itself inside the sides: its log and its home.
pub fn quiet(pair: &Pair, log: &Path) -> Vec<PathBuf> {
    synccore::watch::quiet_paths(&[log, &pair.home], &pair.roots)
}
