//! The three-way merge of `twoway` (SPEC section 4): each path's state on side A and side B is
//! compared with the base (the state after the last successful pass), decided by the pure
//! function [`decide`] (one row of SPEC's merge table per match arm), and the decisions are
//! turned into one [`Plan`] per side, carried out by the same `apply` engine as the mirror.

use std::collections::HashSet;

use synccore::checksum::Digest;
use synccore::diff::{DiffOptions, compare, create_step, delete_step, meta_action};
use synccore::entry::{Entry, Kind};
use synccore::plan::{Action, Plan, Stamp, Step};
use synccore::relpath::RelPath;
use synccore::scan::Tree;

use crate::base::{Base, BaseEntry};
use crate::renames;

/// Side A (index 0) or side B (index 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    A,
    B,
}

impl Side {
    /// 0 for A, 1 for B.
    pub fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }

    /// The other side.
    #[must_use]
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    /// `A: ` or `B: `, the prefix of a log line about this side.
    pub fn prefix(self) -> &'static str {
        match self {
            Side::A => "A: ",
            Side::B => "B: ",
        }
    }

    /// `A` or `B`.
    pub fn name(self) -> &'static str {
        match self {
            Side::A => "A",
            Side::B => "B",
        }
    }

    /// `a` or `b`, as in conflict names.
    pub fn letter(self) -> char {
        match self {
            Side::A => 'a',
            Side::B => 'b',
        }
    }
}

/// How one side changed a path since the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Not in the base and not on this side.
    Absent,
    /// Same as the base.
    Unchanged,
    /// Not in the base, present now.
    Created,
    /// Different from the base (content, kind, target, mode or mtime).
    Modified,
    /// In the base, gone now.
    Deleted,
}

/// What to do with one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Both sides already agree.
    Keep,
    /// Both sides deleted it: forget it.
    Forget,
    /// Make `to` hold what the other side has (create, update or metadata only).
    Copy { to: Side },
    /// Delete it on `on` (the other side deleted it and `on` did not change it).
    Delete { on: Side },
    /// Both changed it differently: `winner` is copied over, the loser kept aside.
    Conflict { winner: Side },
}

/// Pure decision for one path from each side's change and whether the two sides now hold
/// equal content (asked only when both sides have the path). One arm per row of the table.
#[allow(clippy::match_same_arms)] // arms mirror the rows of SPEC's table, kept apart on purpose
pub fn decide(a: Change, b: Change, equal: impl FnOnce() -> bool, winner: impl FnOnce() -> Side) -> Decision {
    use Change::{Absent, Created, Deleted, Modified, Unchanged};
    match (a, b) {
        (Unchanged, Unchanged) | (Absent, Absent) => Decision::Keep,
        // One side changed, the other did not: the change propagates, whatever its mtime.
        (Unchanged, Modified | Created) | (Absent, Created) => Decision::Copy { to: Side::A },
        (Modified | Created, Unchanged) | (Created, Absent) => Decision::Copy { to: Side::B },
        (Unchanged, Deleted) => Decision::Delete { on: Side::A },
        (Deleted, Unchanged) => Decision::Delete { on: Side::B },
        // Modify beats delete: the changed entry is restored on the deleting side.
        (Modified | Created, Deleted | Absent) => Decision::Copy { to: Side::B },
        (Deleted | Absent, Modified | Created) => Decision::Copy { to: Side::A },
        (Deleted, Deleted | Absent) | (Absent, Deleted) => Decision::Forget,
        // Both changed (or both created with no base): equal content is no conflict.
        (Modified | Created, Modified | Created) => {
            if equal() {
                Decision::Keep
            } else {
                Decision::Conflict { winner: winner() }
            }
        }
        (Unchanged, Absent) | (Absent, Unchanged) => Decision::Forget,
    }
}

/// The merge's result: what to do on each side, and the conflicts found.
#[derive(Debug, Default)]
pub struct Merge {
    /// Steps on side A (sources read from B), index 0; steps on side B, index 1.
    pub plans: [Plan; 2],
    /// Steps on side A and side B carried out before the plans: the moves that follow the other
    /// side's renames, then the conflicts' set-asides.
    pub renames: [Plan; 2],
    /// Paths where both sides changed differently, which side won, and the conflict copy
    /// that keeps the loser (issue 16, point 10: the summary names it).
    pub conflicts: Vec<Conflict>,
}

/// One conflict of a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub path: RelPath,
    pub winner: Side,
    /// The loser's new name, on both sides once the pass is over.
    pub copy: RelPath,
}

/// Options of a merge.
#[derive(Debug, Clone)]
pub struct MergeOptions {
    /// The UTC time stamp used in conflict names, `yyyymmddThhmmssZ`.
    pub stamp: String,
    /// Compare and propagate owners (run as root; see [`crate::entry::keeps_owners`]).
    pub owners: bool,
}

impl MergeOptions {
    /// The options of a merge run by this process now.
    pub fn for_this_process() -> Self {
        MergeOptions { stamp: conflict_stamp(), owners: synccore::entry::keeps_owners() }
    }

    fn mirror(&self) -> DiffOptions {
        // The merge already knows one side changed: sizes that agree are decided by content.
        DiffOptions { checksum: true, owners: self.owners }
    }
}

/// Hashes a file of one side; `None` when it cannot be read (then it counts as different).
pub type HashFn<'a> = dyn FnMut(Side, &Entry) -> Option<Digest> + 'a;

/// Merges the two scanned sides against the base. Paths at or below a directory that could
/// not be read on either side are left alone (never treated as deleted).
///
/// Renames one side made are found first ([`renames`]); they become moves on the other side,
/// and the paths are merged as both sides and the base will be once they are made.
pub fn merge(trees: [&Tree; 2], base: Option<&Base>, options: &MergeOptions, hash: &mut HashFn<'_>) -> Merge {
    let empty = Base::default();
    let base = base.unwrap_or(&empty);
    let found = renames::detect(trees, base, options.owners, hash);
    if found.is_empty() {
        return merge_paths(trees, base, options, hash);
    }
    let moved = found.carried_out(trees, base);
    // Content is read where each entry is on disk now, before the renames.
    let mut hash_on_disk = |side: Side, e: &Entry| match moved.original_path(side, &e.path) {
        Some(path) => hash(side, &Entry { path, ..e.clone() }),
        None => hash(side, e),
    };
    let mut merge = merge_paths([&moved.trees[0], &moved.trees[1]], &moved.base, options, &mut hash_on_disk);
    for (i, moves) in found.on.into_iter().enumerate() {
        let set_asides = std::mem::take(&mut merge.renames[i]);
        merge.renames[i] = renames::first_steps(moves, &mut merge.plans[i], set_asides);
    }
    merge
}

/// The merge of every path, with no renames to find.
fn merge_paths(trees: [&Tree; 2], base: &Base, options: &MergeOptions, hash: &mut HashFn<'_>) -> Merge {
    let rows = join(trees, base);
    let mut decisions: Vec<Option<Decision>> = rows
        .iter()
        .map(|row| {
            if trees.iter().any(|t| t.is_protected(row.path)) {
                return None;
            }
            let [a, b] = row.sides;
            let ca = change(Side::A, a, row.base, options.owners, hash);
            let cb = change(Side::B, b, row.base, options.owners, hash);
            let equal = || matches!((a, b), (Some(a), Some(b)) if same_content(a, b, hash));
            Some(decide(ca, cb, equal, || winner(a, b)))
        })
        .collect();
    keep_needed_dirs(&rows, &mut decisions);

    let mut merge = Merge::default();
    // Temporaries a killed pass left behind are removed on the side that has them.
    for (plan, tree) in merge.plans.iter_mut().zip(trees) {
        plan.steps.extend(tree.leftovers.iter().map(|p| Step { path: p.clone(), action: Action::Cleanup }));
    }
    let mut taken: HashSet<Vec<u8>> = HashSet::new();
    for (row, d) in rows.iter().zip(decisions) {
        let Some(d) = d else { continue };
        match d {
            Decision::Keep => sync_meta(&mut merge, row, options),
            Decision::Forget => {}
            Decision::Copy { to } => copy_step(&mut merge.plans[to.index()], row, to, options, hash),
            Decision::Delete { on } => {
                if let Some(e) = row.sides[on.index()] {
                    merge.plans[on.index()].steps.push(delete_step(e));
                }
            }
            Decision::Conflict { winner } => {
                let loser = winner.other();
                let (Some(w), Some(l)) = (row.sides[winner.index()], row.sides[loser.index()]) else {
                    continue;
                };
                let aside = conflict_name(&l.path, &options.stamp, loser, trees, &mut taken);
                merge.renames[loser.index()].steps.push(Step {
                    path: l.path.clone(),
                    action: Action::Rename { to: aside.clone(), was: Stamp::of(l) },
                });
                // The loser, under its new name, is copied to the winner's side...
                let mut moved = l.clone();
                moved.path = aside.clone();
                merge.plans[winner.index()].steps.push(create_step(&moved));
                // ...and the winner takes the path on the loser's side (now free).
                merge.plans[loser.index()].steps.push(create_step(w));
                merge.conflicts.push(Conflict { path: row.path.clone(), winner, copy: aside });
            }
        }
    }
    for plan in &mut merge.plans {
        order(plan, options.owners);
    }
    merge
}

/// One path's entries on each side and in the base.
struct Row<'t> {
    path: &'t RelPath,
    sides: [Option<&'t Entry>; 2],
    base: Option<&'t BaseEntry>,
}

/// A sorted three-way merge-join of both trees and the base.
fn join<'t>(trees: [&'t Tree; 2], base: &'t Base) -> Vec<Row<'t>> {
    let (sides, based) = ([&trees[0].entries, &trees[1].entries], &base.entries);
    // Cursors into side A, side B and the base.
    let mut at = [0usize; 3];
    let mut rows = Vec::with_capacity(sides[0].len().max(sides[1].len()));
    loop {
        let next = [
            sides[0].get(at[0]).map(|e| &e.path),
            sides[1].get(at[1]).map(|e| &e.path),
            based.get(at[2]).map(|e| &e.0),
        ];
        let Some(path) = next.iter().flatten().min().copied() else { break };
        let on = |i: usize| sides[i].get(at[i]).filter(|e| &e.path == path);
        let row = Row {
            path,
            sides: [on(0), on(1)],
            base: based.get(at[2]).filter(|e| &e.0 == path).map(|e| &e.1),
        };
        at[0] += usize::from(row.sides[0].is_some());
        at[1] += usize::from(row.sides[1].is_some());
        at[2] += usize::from(row.base.is_some());
        rows.push(row);
    }
    rows
}

/// How `side` changed a path relative to the base. Reads content only when the metadata
/// says the file may have changed but its size did not.
pub(crate) fn change(
    side: Side,
    now: Option<&Entry>,
    base: Option<&BaseEntry>,
    owners: bool,
    hash: &mut HashFn<'_>,
) -> Change {
    match (now, base) {
        (None, None) => Change::Absent,
        (Some(_), None) => Change::Created,
        (None, Some(_)) => Change::Deleted,
        (Some(e), Some(b)) => {
            // An owner counts when owners are kept and the base knows it.
            let owner_same = !owners || b.owner.is_none_or(|o| o == e.owner);
            let unchanged = owner_same
                && match (&e.kind, &b.kind) {
                    // Directory mtimes move with their contents; only the mode is the dir's own.
                    (Kind::Dir, Kind::Dir) => e.mode == b.mode,
                    (Kind::Symlink(x), Kind::Symlink(y)) => x == y,
                    // The quick check of SPEC section 2: same size, mtime and mode is the same
                    // file. A new inode alone (`cp -p f t && mv t f`, a restore, a file system
                    // without stable inode numbers) is no edit; where the base has the content
                    // hash, it is checked, else the quick check decides.
                    (Kind::File, Kind::File) => {
                        e.size == b.size
                            && e.mtime == b.mtime
                            && e.mode == b.mode
                            && (b.ino[side.index()] == e.ino
                                || b.hash.is_none_or(|h| hash(side, e) == Some(h)))
                    }
                    _ => false,
                };
            if unchanged { Change::Unchanged } else { Change::Modified }
        }
    }
}

/// Equal content on both sides: same kind and bytes (files), same target (symlinks).
fn same_content(a: &Entry, b: &Entry, hash: &mut HashFn<'_>) -> bool {
    match (&a.kind, &b.kind) {
        (Kind::Dir, Kind::Dir) => true,
        (Kind::Symlink(x), Kind::Symlink(y)) => x == y,
        (Kind::File, Kind::File) => {
            a.size == b.size && {
                let ha = hash(Side::A, a);
                ha.is_some() && ha == hash(Side::B, b)
            }
        }
        _ => false,
    }
}

/// The conflict winner: a directory over anything else (it keeps its contents), else the
/// newer mtime, a tie going to A.
fn winner(a: Option<&Entry>, b: Option<&Entry>) -> Side {
    match (a, b) {
        (Some(a), Some(b)) if a.is_dir() != b.is_dir() => {
            if a.is_dir() {
                Side::A
            } else {
                Side::B
            }
        }
        (Some(a), Some(b)) if b.mtime > a.mtime => Side::B,
        _ => Side::A,
    }
}

/// For a path both sides hold with equal content: the newer metadata goes to the other side.
fn sync_meta(merge: &mut Merge, row: &Row<'_>, options: &MergeOptions) {
    let [Some(a), Some(b)] = row.sides else { return };
    if a.kind != b.kind {
        return;
    }
    let (from, to) = if b.mtime > a.mtime { (b, Side::A) } else { (a, Side::B) };
    let target = if to == Side::A { a } else { b };
    if let Some(step) = meta_step(from, target, options) {
        merge.plans[to.index()].steps.push(step);
    }
}

/// The step that gives `target` the metadata of `from` (equal content). Directory mtimes are
/// not synced (they move with their contents on each side).
fn meta_step(from: &Entry, target: &Entry, options: &MergeOptions) -> Option<Step> {
    let action = if from.is_dir() {
        let mode = (from.mode != target.mode).then_some(from.mode);
        let owner = (options.owners && from.owner != target.owner).then_some(from.owner);
        (mode.is_some() || owner.is_some()).then_some(Action::Meta { mode, mtime: None, owner, dir: true })?
    } else {
        meta_action(from, target, options.mirror())?
    };
    Some(Step { path: from.path.clone(), action })
}

/// Steps that make side `to` hold what the other side has at this row's path: the mirror's
/// own comparison (`plan::compare`), asking for content whenever sizes agree, since the
/// merge already knows one side changed.
fn copy_step(plan: &mut Plan, row: &Row<'_>, to: Side, options: &MergeOptions, hash: &mut HashFn<'_>) {
    let Some(from) = row.sides[to.other().index()] else { return };
    let Some(old) = row.sides[to.index()] else {
        plan.steps.push(create_step(from));
        return;
    };
    if from.is_dir() && old.is_dir() {
        plan.steps.extend(meta_step(from, old, options));
        return;
    }
    let mut same = |source: &Entry, target: &Entry| match to {
        Side::B => same_content(source, target, hash),
        Side::A => same_content(target, source, hash),
    };
    let mut removals = Vec::new();
    let step = compare(from, old, options.mirror(), &mut same, &mut removals);
    plan.steps.extend(removals);
    plan.steps.extend(step);
}

/// A directory must stay when anything below it survives the pass: changed or new files
/// inside a directory deleted on one side win over the deletion (the directory is recreated
/// on the deleting side, SPEC section 4), and a directory that the other side replaced by a
/// file while its contents changed here wins over that file, which is kept as a conflict
/// copy. `None` decisions are protected paths, which always stay.
fn keep_needed_dirs(rows: &[Row<'_>], decisions: &mut [Option<Decision>]) {
    // The side on which a decision would remove a directory.
    let removes_dir = |row: &Row<'_>, d: &Option<Decision>| match *d {
        Some(Decision::Delete { on }) if row.sides[on.index()].is_some_and(Entry::is_dir) => Some(on),
        Some(Decision::Copy { to })
            if row.sides[to.index()].is_some_and(Entry::is_dir)
                && row.sides[to.other().index()].is_some_and(|e| !e.is_dir()) =>
        {
            Some(to)
        }
        _ => None,
    };
    if !rows.iter().zip(decisions.iter()).any(|(r, d)| removes_dir(r, d).is_some()) {
        return;
    }
    let mut needed: HashSet<RelPath> = HashSet::new();
    // Children sort after their parent, so in reverse they are decided first.
    for (row, d) in rows.iter().zip(decisions.iter_mut()).rev() {
        if let Some(side) = removes_dir(row, d)
            && needed.contains(row.path)
        {
            *d = Some(match d {
                Some(Decision::Delete { .. }) => Decision::Copy { to: side.other() },
                _ => Decision::Conflict { winner: side },
            });
        }
        let survives = !matches!(d, Some(Decision::Forget | Decision::Delete { .. }));
        if survives {
            let mut parent = row.path.parent();
            while let Some(p) = parent {
                parent = p.parent();
                if !needed.insert(p) {
                    break;
                }
            }
        }
    }
}

/// Orders a side's steps like a mirror plan: removals deepest first, then creations parents
/// first, then directory modes (and owners) deepest first.
fn order(plan: &mut Plan, owners: bool) {
    let steps = std::mem::take(&mut plan.steps);
    let (mut removals, rest): (Vec<Step>, Vec<Step>) = steps
        .into_iter()
        .partition(|s| matches!(s.action, Action::Delete { .. } | Action::Rmdir | Action::Cleanup));
    removals.sort_by(|a, b| b.path.cmp(&a.path));
    let (mut dir_meta, mut creations): (Vec<Step>, Vec<Step>) =
        rest.into_iter().partition(|s| matches!(s.action, Action::Meta { dir: true, .. }));
    creations.sort_by(|a, b| a.path.cmp(&b.path));
    // A created directory gets its final mode once its contents are in place.
    for s in &creations {
        if let Action::Mkdir { mode, owner } = s.action {
            let owner = owners.then_some(owner);
            dir_meta.push(Step {
                path: s.path.clone(),
                action: Action::Meta { mode: Some(mode), mtime: None, owner, dir: true },
            });
        }
    }
    dir_meta.sort_by(|a, b| b.path.cmp(&a.path));
    plan.steps = removals;
    plan.steps.extend(creations);
    plan.steps.extend(dir_meta);
}

/// `<stem>.conflict-<stamp>-<a|b><.ext>` beside the original, unique on both sides.
fn conflict_name(
    path: &RelPath,
    stamp: &str,
    side: Side,
    trees: [&Tree; 2],
    taken: &mut HashSet<Vec<u8>>,
) -> RelPath {
    let bytes = path.as_bytes();
    let name_start = bytes.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let name = &bytes[name_start..];
    // The extension starts at the last dot that is not the name's first byte.
    let dot = name.iter().rposition(|&b| b == b'.').filter(|&i| i > 0).unwrap_or(name.len());
    let (stem, ext) = name.split_at(dot);
    for n in 1.. {
        let mut out = bytes[..name_start].to_vec();
        out.extend_from_slice(stem);
        out.extend_from_slice(format!(".conflict-{stamp}-{}", side.letter()).as_bytes());
        if n > 1 {
            out.extend_from_slice(format!("-{n}").as_bytes());
        }
        out.extend_from_slice(ext);
        let candidate = RelPath::from_bytes(&out);
        if trees.iter().all(|t| t.get(&candidate).is_none()) && taken.insert(out) {
            return candidate;
        }
    }
    unreachable!("some conflict name is free")
}

/// The time stamp for conflict names now: UTC `yyyymmddThhmmssZ`.
pub fn conflict_stamp() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string()
}

/// The base after a pass, from fresh scans of both sides: a path both sides agree on is
/// recorded with each side's inode; where they still disagree (a failed or skipped step)
/// the old base entry stays, so the next pass decides that path again.
pub fn next_base(
    trees: [&Tree; 2],
    old: Option<&Base>,
    owners: bool,
    known: &dyn Fn(Side, &Entry) -> Option<Digest>,
) -> Base {
    let empty = Base::default();
    let old = old.unwrap_or(&empty);
    let mut entries = Vec::with_capacity(trees[0].entries.len());
    for row in join(trees, old) {
        let agreed = match row.sides {
            [Some(a), Some(b)] if owners && a.owner != b.owner => false,
            [Some(a), Some(b)] => match (&a.kind, &b.kind) {
                (Kind::Dir, Kind::Dir) => true,
                (Kind::Symlink(x), Kind::Symlink(y)) => x == y,
                (Kind::File, Kind::File) => a.size == b.size && a.mtime == b.mtime && a.mode == b.mode,
                _ => false,
            },
            _ => false,
        };
        if agreed && !trees.iter().any(|t| t.is_protected(row.path)) {
            let [Some(a), Some(b)] = row.sides else { continue };
            let hash = if a.is_file() {
                known(Side::A, a).or_else(|| known(Side::B, b)).or_else(|| {
                    row.base.filter(|o| o.size == a.size && o.mtime == a.mtime).and_then(|o| o.hash)
                })
            } else {
                None
            };
            let entry = BaseEntry {
                kind: a.kind.clone(),
                size: a.size,
                mtime: a.mtime,
                mode: a.mode,
                owner: owners.then_some(a.owner),
                hash,
                ino: [a.ino, b.ino],
                dev: [a.dev, b.dev],
            };
            entries.push((row.path.clone(), entry));
        } else if let Some(o) = row.base {
            entries.push((row.path.clone(), o.clone()));
        }
    }
    Base { entries }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::Change::{Absent, Created, Deleted, Modified, Unchanged};
    use super::*;

    const NEVER: fn() -> bool = || panic!("content must not be compared");

    /// SPEC section 4's merge table, one assertion per row.
    #[test]
    fn merge_table() {
        let a_wins = || Side::A;
        // unchanged | changed / created / deleted -> B's change applied to A
        assert_eq!(decide(Unchanged, Modified, NEVER, a_wins), Decision::Copy { to: Side::A });
        assert_eq!(decide(Absent, Created, NEVER, a_wins), Decision::Copy { to: Side::A });
        assert_eq!(decide(Unchanged, Deleted, NEVER, a_wins), Decision::Delete { on: Side::A });
        // changed / created / deleted | unchanged -> A's change applied to B
        assert_eq!(decide(Modified, Unchanged, NEVER, a_wins), Decision::Copy { to: Side::B });
        assert_eq!(decide(Created, Absent, NEVER, a_wins), Decision::Copy { to: Side::B });
        assert_eq!(decide(Deleted, Unchanged, NEVER, a_wins), Decision::Delete { on: Side::B });
        // changed to X | changed to X -> nothing to copy
        assert_eq!(decide(Modified, Modified, || true, a_wins), Decision::Keep);
        // changed | changed, different -> conflict, the winner decided by mtime
        assert_eq!(decide(Modified, Modified, || false, || Side::B), Decision::Conflict { winner: Side::B });
        // changed | deleted -> restored on the deleting side
        assert_eq!(decide(Modified, Deleted, NEVER, a_wins), Decision::Copy { to: Side::B });
        assert_eq!(decide(Deleted, Modified, NEVER, a_wins), Decision::Copy { to: Side::A });
        // deleted | deleted -> dropped from the base
        assert_eq!(decide(Deleted, Deleted, NEVER, a_wins), Decision::Forget);
        // no base yet: union; same path with different content is a conflict
        assert_eq!(decide(Created, Created, || true, a_wins), Decision::Keep);
        assert_eq!(decide(Created, Created, || false, a_wins), Decision::Conflict { winner: Side::A });
        assert_eq!(decide(Unchanged, Unchanged, NEVER, a_wins), Decision::Keep);
    }

    pub(crate) fn e(path: &str, kind: Kind, size: u64, mtime: i64, ino: u64) -> Entry {
        Entry { mode: 0o644, ino, ..Entry::example(path, kind, size, mtime) }
    }
    pub(crate) fn f(path: &str, size: u64, mtime: i64, ino: u64) -> Entry {
        e(path, Kind::File, size, mtime, ino)
    }
    pub(crate) fn d(path: &str) -> Entry {
        Entry { mode: 0o755, ..e(path, Kind::Dir, 0, 1, 0) }
    }
    pub(crate) fn tree(mut entries: Vec<Entry>) -> Tree {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Tree { entries, dev: 1, ..Tree::default() }
    }
    /// A base in which both sides held exactly `entries` (inodes as given on both sides).
    pub(crate) fn base(entries: &[Entry]) -> Base {
        let mut v: Vec<_> = entries
            .iter()
            .map(|x| {
                let b = BaseEntry {
                    kind: x.kind.clone(),
                    size: x.size,
                    mtime: x.mtime,
                    mode: x.mode,
                    owner: None,
                    hash: None,
                    ino: [x.ino, x.ino],
                    dev: [x.dev, x.dev],
                };
                (x.path.clone(), b)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Base { entries: v }
    }
    /// Runs a merge where a file's content is identified by its size (equal size, equal bytes).
    pub(crate) fn run(a: Vec<Entry>, b: Vec<Entry>, base: Option<&Base>) -> [Vec<String>; 2] {
        let (ta, tb) = (tree(a), tree(b));
        let opts = MergeOptions { stamp: "20260101T000000Z".into(), owners: false };
        let m = merge([&ta, &tb], base, &opts, &mut |_, e| Some(Digest::of_bytes(&e.size.to_le_bytes())));
        let show =
            |p: &Plan, r: &Plan| r.steps.iter().chain(&p.steps).map(ToString::to_string).collect::<Vec<_>>();
        [show(&m.plans[0], &m.renames[0]), show(&m.plans[1], &m.renames[1])]
    }

    #[test]
    fn a_pass_with_nothing_changed_reads_no_content() {
        let now = vec![d("d"), f("d/x", 3, 1, 1), f("y", 4, 2, 2)];
        let (ta, tb) = (tree(now.clone()), tree(now.clone()));
        let opts = MergeOptions { stamp: "s".into(), owners: false };
        let m = merge([&ta, &tb], Some(&base(&now)), &opts, &mut |_, e| panic!("hashed {:?}", e.path));
        assert!(m.plans.iter().chain(&m.renames).all(Plan::is_empty));
    }

    #[test]
    fn first_pass_is_a_union_and_equal_files_are_not_rewritten() {
        let out = run(
            vec![f("same", 3, 1, 1), f("only-a", 1, 1, 2)],
            vec![f("same", 3, 1, 9), f("only-b", 2, 1, 3)],
            None,
        );
        assert_eq!(out[0], vec![r#"copy "only-b" (2 B)"#]);
        assert_eq!(out[1], vec![r#"copy "only-a" (1 B)"#]);
    }

    #[test]
    fn first_pass_conflict_keeps_the_loser() {
        let out = run(vec![f("x.txt", 3, 5, 1)], vec![f("x.txt", 4, 9, 2)], None);
        // B is newer: A's version is set aside on A, copied to B, and B's takes the path on A.
        assert_eq!(
            out[0],
            vec![r#"rename "x.txt" -> "x.conflict-20260101T000000Z-a.txt""#, r#"copy "x.txt" (4 B)"#]
        );
        assert_eq!(out[1], vec![r#"copy "x.conflict-20260101T000000Z-a.txt" (3 B)"#]);
    }

    #[test]
    fn one_sided_change_propagates_even_with_an_older_mtime() {
        let old = f("x", 3, 10, 1);
        let out = run(vec![f("x", 4, 2, 5)], vec![old.clone()], Some(&base(&[old])));
        assert_eq!(out[1], vec![r#"update "x" (4 B)"#]);
        assert!(out[0].is_empty());
    }

    #[test]
    fn a_new_inode_alone_is_no_change() {
        // B's file got a new inode with the same size, mtime and mode (`cp -p f t && mv t f`)
        // and no hash was recorded: the quick check decides it is unchanged, so A's deletion
        // propagates instead of B "restoring" it.
        let old = f("x", 3, 10, 1);
        let out = run(vec![], vec![f("x", 3, 10, 99)], Some(&base(&[old])));
        assert_eq!(out[1], vec![r#"delete "x""#]);
        assert!(out[0].is_empty());
    }

    #[test]
    fn touch_only_change_propagates_the_mtime() {
        let old = f("x", 3, 10, 1);
        let out = run(vec![f("x", 3, 20, 1)], vec![old.clone()], Some(&base(&[old])));
        assert_eq!(out[1], vec![r#"meta "x" mtime 20.000000000"#]);
    }

    #[test]
    fn modify_beats_delete() {
        let old = f("x", 3, 10, 1);
        let out = run(vec![], vec![f("x", 5, 11, 1)], Some(&base(&[old])));
        assert_eq!(out[0], vec![r#"copy "x" (5 B)"#]);
        assert!(out[1].is_empty());
    }

    #[test]
    fn deleted_dir_keeps_changed_and_new_files_and_drops_unchanged_ones() {
        let before = [d("d"), f("d/same", 1, 1, 1), f("d/edit", 2, 1, 2)];
        let b_now = vec![d("d"), f("d/same", 1, 1, 1), f("d/edit", 7, 9, 2), f("d/new", 3, 1, 3)];
        let out = run(vec![], b_now, Some(&base(&before)));
        assert_eq!(
            out[0],
            vec![r#"mkdir "d""#, r#"copy "d/edit" (7 B)"#, r#"copy "d/new" (3 B)"#, r#"meta "d" mode 755"#]
        );
        assert_eq!(out[1], vec![r#"delete "d/same""#]);
    }

    #[test]
    fn dir_replaced_by_a_file_loses_to_changes_inside_it() {
        let before = [d("a"), f("a/x", 1, 1, 1)];
        // A replaced dir `a` by a file; B edited `a/x`.
        let out = run(vec![f("a", 2, 5, 7)], vec![d("a"), f("a/x", 3, 9, 1)], Some(&base(&before)));
        assert_eq!(
            out[0],
            vec![
                r#"rename "a" -> "a.conflict-20260101T000000Z-a""#,
                r#"mkdir "a""#,
                r#"copy "a/x" (3 B)"#,
                r#"meta "a" mode 755"#
            ]
        );
        assert_eq!(out[1], vec![r#"copy "a.conflict-20260101T000000Z-a" (2 B)"#]);
    }

    #[test]
    fn deleted_dir_with_nothing_changed_inside_is_removed() {
        let before = [d("d"), d("d/e"), f("d/e/x", 1, 1, 1)];
        let out = run(vec![], before.to_vec(), Some(&base(&before)));
        assert_eq!(out[1], vec![r#"delete "d/e/x""#, r#"rmdir "d/e""#, r#"rmdir "d""#]);
    }

    #[test]
    fn both_deleted_is_forgotten_and_unreadable_paths_are_left_alone() {
        let before = [f("gone", 1, 1, 1), d("locked"), f("locked/x", 1, 1, 2)];
        let mut a = tree(vec![d("locked")]);
        a.unreadable.push(RelPath::from_bytes(b"locked"));
        let b = tree(vec![d("locked")]);
        let opts = MergeOptions { stamp: "s".into(), owners: false };
        let m = merge([&a, &b], Some(&base(&before)), &opts, &mut |_, _| None);
        assert!(m.plans.iter().all(Plan::is_empty), "{m:?}");
    }

    #[test]
    fn conflict_names_keep_dotfiles_and_never_collide() {
        let t = tree(vec![f("dir/.bashrc.conflict-S-b", 1, 1, 1)]);
        let mut taken = HashSet::new();
        let name = |p: &str, taken: &mut HashSet<Vec<u8>>| {
            conflict_name(&RelPath::from_bytes(p.as_bytes()), "S", Side::B, [&t, &t], taken).to_string()
        };
        assert_eq!(name("dir/.bashrc", &mut taken), "dir/.bashrc.conflict-S-b-2");
        assert_eq!(name("a.tar.gz", &mut taken), "a.tar.conflict-S-b.gz");
        assert_eq!(name("a.tar.gz", &mut taken), "a.tar.conflict-S-b-2.gz");
        assert_eq!(name("noext", &mut taken), "noext.conflict-S-b");
    }

    #[test]
    fn next_base_records_agreement_and_keeps_old_entries_where_sides_differ() {
        let old = base(&[f("failed-delete", 1, 1, 1)]);
        let a = tree(vec![f("x", 3, 1, 10), f("new-only-a", 1, 1, 11)]);
        let b = tree(vec![f("x", 3, 1, 20), f("failed-delete", 1, 1, 1)]);
        let next = next_base([&a, &b], Some(&old), false, &|_, _| None);
        let paths: Vec<String> = next.entries.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(paths, vec!["failed-delete", "x"]);
        assert_eq!(next.get(&RelPath::from_bytes(b"x")).map(|e| e.ino), Some([10, 20]));
    }
}
