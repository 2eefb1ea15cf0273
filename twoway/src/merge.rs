//! The three-way merge of `twoway` (SPEC section 4): each path's state on side A and side B is
//! compared with the base (the state after the last successful pass), decided by the pure
//! function [`decide`] (one row of SPEC's merge table per match arm), and the decisions are
//! turned into one [`Plan`] per side, carried out by the same `apply` engine as the mirror.

use std::collections::HashSet;

use synccore::checksum::Digest;
use synccore::diff::{DiffOptions, Entries, Relocated, compare, meta_action};
use synccore::entry::{Entry, Kind};
use synccore::error::{Error, Op, Result};
use synccore::plan::{Action, Step};
use synccore::relpath::RelPath;
use synccore::scan::Tree;

use crate::base::{Base, BaseEntry};
pub use crate::merger::next_row;
use crate::merger::{BaseRows, Merger, NextBase};
use crate::renames::{self, Moved};

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
pub type Merge = crate::merger::Merged;

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

/// One reading of both sides and the base by a [`Merger`] (a pass reads them once, or twice
/// when renames were found: the second time as the renames leave them). The reader runs the
/// merger over its sources and returns what it made, with each side's notes (unreadable
/// paths: never taken for deleted).
pub type Reader<'r> = dyn FnMut(Option<&Moved>) -> Result<(Merge, [Tree; 2])> + 'r;

/// Merges both sides against the base (SPEC section 4), reading them through `read`. Paths at
/// or below a directory that could not be read on either side are left alone.
///
/// Renames one side made are found among what the first reading collected ([`renames`]);
/// when there are some, both sides and the base are read again as the renames leave them
/// (they become moves on the other side, carried out first), so edits follow renamed entries.
pub fn merge(
    read: &mut Reader<'_>,
    lookup: &renames::Lookup<'_>,
    options: &MergeOptions,
    hash: &mut HashFn<'_>,
) -> Result<(Merge, [Tree; 2])> {
    let (first, notes) = read(None)?;
    let Some(candidates) = &first.candidates else { return Ok((first, notes)) };
    let protected = |p: &RelPath| notes.iter().any(|t| t.is_protected(p));
    let found = renames::detect(candidates, &protected, lookup, options.owners, hash);
    if found.is_empty() {
        return Ok((first, notes));
    }
    let moved = found.moved(candidates).map_err(spill_error)?;
    let (mut merge, notes) = read(Some(&moved))?;
    for (i, moves) in found.on.into_iter().enumerate() {
        let set_asides = std::mem::take(&mut merge.renames[i]);
        merge.renames[i] =
            renames::first_steps(moves, &mut merge.plans[i], set_asides).map_err(spill_error)?;
    }
    Ok((merge, notes))
}

/// Merges two trees held in memory against a base held in memory (watch mode, tests): the
/// same [`merge`], its readings over the kept trees.
pub fn merge_trees(
    trees: [&Tree; 2],
    base: Option<&Base>,
    options: &MergeOptions,
    hash: &mut HashFn<'_>,
) -> Merge {
    let empty = Base::default();
    let base = base.unwrap_or(&empty);
    let exists = |side: Side, p: &RelPath| trees[side.index()].get(p).is_some();
    let known = |_: Side, _: &Entry| None;
    let hashes = std::cell::RefCell::new(hash);
    let mut read = |moved: Option<&Moved>| -> Result<(Merge, [Tree; 2])> {
        let mut sides = [Entries::of(trees[0]), Entries::of(trees[1])];
        let [a, b] = &mut sides;
        let empty: Vec<Entry> = Vec::new();
        let (prune, extra) = match moved {
            Some(m) => (m.prune.clone(), m.extra.clone()),
            None => ([Vec::new(), Vec::new()], [empty.clone(), empty]),
        };
        let [pa, pb] = &prune;
        let [ea, eb] = extra;
        let (mut ra, mut rb) = (Relocated::new(a, pa, ea), Relocated::new(b, pb, eb));
        let rows = base.entries.iter().cloned();
        let mut base_rows: Box<BaseRows<'_>> = match moved {
            Some(m) => Box::new(relocated_rows(rows, &m.base_prune, m.base_extra.clone())),
            None => Box::new(rows),
        };
        let collect = moved.is_none() && !base.entries.is_empty();
        let mut guard = hashes.borrow_mut();
        let mut on_disk = |side: Side, e: &Entry| match moved.and_then(|m| m.original_path(side, &e.path)) {
            Some(path) => (**guard)(side, &Entry { path, ..e.clone() }),
            None => (**guard)(side, e),
        };
        let out = Merger::new(options, &exists, &known, collect)
            .run([&mut ra, &mut rb], &mut *base_rows, &mut on_disk)
            .map_err(spill_error)?;
        Ok((out, [notes_of(trees[0]), notes_of(trees[1])]))
    };
    let mut outer = |side: Side, e: &Entry| (**hashes.borrow_mut())(side, e);
    let lookup = |side: Side, p: &RelPath| trees[side.index()].get(p).map(|e| (e.is_dir(), e.dev));
    merge(&mut read, &lookup, options, &mut outer).map(|(merged, _)| merged).unwrap_or_default()
}

/// The base's rows without the subtrees at `prune`, with `extra` (sorted) in: the base as
/// renames leave it.
pub fn relocated_rows<'r>(
    rows: impl Iterator<Item = (RelPath, BaseEntry)> + 'r,
    prune: &'r [RelPath],
    extra: Vec<(RelPath, BaseEntry)>,
) -> impl Iterator<Item = (RelPath, BaseEntry)> + 'r {
    let pruned = rows.filter(move |(p, _)| !prune.iter().any(|x| p.is_within(x)));
    let mut extra = extra.into_iter().peekable();
    let mut pruned = pruned.peekable();
    std::iter::from_fn(move || match (pruned.peek(), extra.peek()) {
        (Some((a, _)), Some((b, _))) if b < a => extra.next(),
        (Some(_), _) => pruned.next(),
        (None, _) => extra.next(),
    })
}

/// A tree's notes without its entries.
fn notes_of(tree: &Tree) -> Tree {
    Tree { unreadable: tree.unreadable.clone(), dev: tree.dev, ..Tree::default() }
}

/// An I/O error of the temporary file a large plan spills to.
pub fn spill_error(source: std::io::Error) -> Error {
    Error::Io { op: Op::Write, path: std::env::temp_dir(), source }
}

/// Steps that make `to` hold `from` where it holds `old` (both files or symlinks, or kinds
/// that differ): the mirror's own comparison (`diff::compare`), asking for content whenever
/// sizes agree, since the merge already knows one side changed. Returns the creation-phase
/// step and the removals it needs first.
pub(crate) fn compare_sides(
    from: &Entry,
    old: &Entry,
    to: Side,
    options: &MergeOptions,
    hash: &mut HashFn<'_>,
) -> (Option<Step>, Vec<Step>) {
    let mut same = |source: &Entry, target: &Entry| match to {
        Side::B => same_content(source, target, hash),
        Side::A => same_content(target, source, hash),
    };
    let mut removals = Vec::new();
    let step = compare(from, old, options.mirror(), &mut same, &mut removals);
    (step, removals)
}

/// How `side` changed a path relative to the base. Reads content only when the metadata
/// says the file may have changed but its size did not.
pub fn change(
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
pub(crate) fn same_content(a: &Entry, b: &Entry, hash: &mut HashFn<'_>) -> bool {
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
pub(crate) fn winner(a: Option<&Entry>, b: Option<&Entry>) -> Side {
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

/// The step that gives `target` the metadata of `from` (equal content). Directory mtimes are
/// not synced (they move with their contents on each side).
pub(crate) fn meta_step(from: &Entry, target: &Entry, options: &MergeOptions) -> Option<Step> {
    let action = if from.is_dir() {
        let mode = (from.mode != target.mode).then_some(from.mode);
        let owner = (options.owners && from.owner != target.owner).then_some(from.owner);
        (mode.is_some() || owner.is_some()).then_some(Action::Meta { mode, mtime: None, owner, dir: true })?
    } else {
        meta_action(from, target, options.mirror())?
    };
    Some(Step { path: from.path.clone(), action })
}

/// `<stem>.conflict-<stamp>-<a|b><.ext>` beside the original, free on both sides (`taken`
/// says whether a side has something at a path) and not given out before in this pass.
pub(crate) fn conflict_name(
    path: &RelPath,
    stamp: &str,
    side: Side,
    taken_on_disk: &dyn Fn(&RelPath) -> bool,
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
        if !taken_on_disk(&candidate) && taken.insert(out) {
            return candidate;
        }
    }
    unreachable!("some conflict name is free")
}

/// The time stamp for conflict names now: UTC `yyyymmddThhmmssZ`.
pub fn conflict_stamp() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string()
}

/// The base after a pass, from fresh scans of both sides held in memory (watch mode): the
/// rows of [`next_row`].
pub fn next_base(
    trees: [&Tree; 2],
    old: Option<&Base>,
    owners: bool,
    known: &dyn Fn(Side, &Entry) -> Option<Digest>,
) -> Base {
    let empty = Base::default();
    let old = old.unwrap_or(&empty);
    let (mut a, mut b) = (Entries::of(trees[0]), Entries::of(trees[1]));
    let mut rows = old.entries.iter().cloned();
    let entries = NextBase::new([&mut a, &mut b], &mut rows, owners, known).collect();
    Base { entries }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::Change::{Absent, Created, Deleted, Modified, Unchanged};
    use super::*;
    use synccore::plan::Plan;

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
        let m =
            merge_trees([&ta, &tb], base, &opts, &mut |_, e| Some(Digest::of_bytes(&e.size.to_le_bytes())));
        let show = |p: &synccore::plan::Phased, r: &Plan| {
            let p = p.to_plan().unwrap();
            r.steps.iter().chain(&p.steps).map(ToString::to_string).collect::<Vec<_>>()
        };
        [show(&m.plans[0], &m.renames[0]), show(&m.plans[1], &m.renames[1])]
    }

    #[test]
    fn a_pass_with_nothing_changed_reads_no_content() {
        let now = vec![d("d"), f("d/x", 3, 1, 1), f("y", 4, 2, 2)];
        let (ta, tb) = (tree(now.clone()), tree(now.clone()));
        let opts = MergeOptions { stamp: "s".into(), owners: false };
        let m = merge_trees([&ta, &tb], Some(&base(&now)), &opts, &mut |_, e| panic!("hashed {:?}", e.path));
        assert!(m.plans.iter().all(synccore::plan::Phased::is_empty) && m.renames.iter().all(Plan::is_empty));
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
        let m = merge_trees([&a, &b], Some(&base(&before)), &opts, &mut |_, _| None);
        assert!(m.plans.iter().all(synccore::plan::Phased::is_empty), "{m:?}");
    }

    #[test]
    fn conflict_names_keep_dotfiles_and_never_collide() {
        let t = tree(vec![f("dir/.bashrc.conflict-S-b", 1, 1, 1)]);
        let mut taken = HashSet::new();
        let name = |p: &str, taken: &mut HashSet<Vec<u8>>| {
            conflict_name(&RelPath::from_bytes(p.as_bytes()), "S", Side::B, &|c| t.get(c).is_some(), taken)
                .to_string()
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
