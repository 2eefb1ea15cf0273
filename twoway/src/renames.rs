//! Renames in a two-way pair (the renames issue): an entry that one side moved is moved on the
//! other side too, with one rename, instead of being copied there again and deleted.
//!
//! A side renamed path P to Q when P is gone on that side while the inode the base recorded
//! for P (on the same device) is now at Q, a path the base does not know, and it is still the
//! same entry: a file with the base's size and mtime and the same content (inode numbers are
//! reused, and unstable on some network and FUSE file systems: the content is checked against
//! the base's hash, or, where the base has none, against the other side's file at P), a
//! symlink with the same target, or a directory. The rename is carried out on the other side
//! when that side still has P as the same entry (the same inode, edited in place or not, or
//! unchanged by the quick check), has nothing at Q, and can rename within one device.
//! Otherwise the ordinary merge decides both paths, which keeps everything: a delete and a
//! create, with a conflict where the other side made Q too.
//!
//! The merge then runs on both sides and the base as the renames leave them, so that every
//! other change (an edit the other side made to the renamed file, a file it added inside a
//! renamed directory) follows the entry to its new path. Renames are kept only when they are
//! independent: none at or below another's old or new path, on either side (a rename inside
//! a directory renamed in the same interval is copied instead).

use std::collections::{HashMap, HashSet};

use synccore::entry::{Entry, Kind};
use synccore::moves::{Move, Relocation};
use synccore::plan::{Action, Plan, Stamp, Step};
use synccore::relpath::RelPath;
use synccore::scan::Tree;

use crate::base::{Base, BaseEntry};
use crate::merge::{Change, HashFn, Side, change};

/// The renames each side made: `on[i]` are carried out on side `i` (the other side made them).
#[derive(Debug, Default)]
pub struct Renames {
    pub on: [Vec<Move>; 2],
}

impl Renames {
    /// True when neither side renamed anything.
    pub fn is_empty(&self) -> bool {
        self.on.iter().all(Vec::is_empty)
    }

    /// Both sides and the base as they will be once the renames are carried out.
    pub fn carried_out(&self, trees: [&Tree; 2], base: &Base) -> Moved<'_> {
        let relocations = [Relocation::new(&self.on[0]), Relocation::new(&self.on[1])];
        let trees = [relocations[0].tree(trees[0]), relocations[1].tree(trees[1])];
        let forward = |p: &RelPath| relocations[0].forward(p).or_else(|| relocations[1].forward(p));
        let mut entries: Vec<(RelPath, BaseEntry)> =
            base.entries.iter().map(|(p, e)| (forward(p).unwrap_or_else(|| p.clone()), e.clone())).collect();
        entries.sort_unstable_by(|x, y| x.0.cmp(&y.0));
        Moved { trees, base: Base { entries }, relocations }
    }
}

/// Both sides and the base as the renames will leave them.
pub struct Moved<'m> {
    pub trees: [Tree; 2],
    pub base: Base,
    relocations: [Relocation<'m>; 2],
}

impl Moved<'_> {
    /// Where a path of `side`'s moved tree is on disk before the renames; `None` when it did
    /// not move.
    pub fn original_path(&self, side: Side, path: &RelPath) -> Option<RelPath> {
        self.relocations[side.index()].back(path)
    }
}

/// The steps a side carries out before its plan: the directories its moves need (taken out
/// of `plan`, parents first), the moves, then the conflicts' set-asides (at the paths the
/// moves leave them).
pub fn first_steps(moves: Vec<Move>, plan: &mut Plan, set_asides: Plan) -> Plan {
    let destinations = Paths::of(moves.iter().filter_map(|m| m.to.parent()).collect::<Vec<_>>().iter());
    let (mut first, rest): (Vec<Step>, Vec<Step>) = std::mem::take(&mut plan.steps)
        .into_iter()
        .partition(|s| matches!(s.action, Action::Mkdir { .. }) && destinations.holds_or_above(&s.path));
    plan.steps = rest;
    first.sort_by(|a, b| a.path.cmp(&b.path));
    first.extend(
        moves.into_iter().map(|m| Step { path: m.from, action: Action::Move { to: m.to, was: m.was } }),
    );
    first.extend(set_asides.steps);
    Plan { steps: first }
}

/// Finds the renames both sides made since the base, keeping only the independent ones that
/// can be carried out on the other side.
pub fn detect(trees: [&Tree; 2], base: &Base, owners: bool, hash: &mut HashFn<'_>) -> Renames {
    let mut found = [Vec::new(), Vec::new()];
    for side in [Side::A, Side::B] {
        // Renames that `side` made, carried out on the other side.
        let candidates = candidates(side, trees, base, hash);
        found[side.other().index()] = accept(candidates, side, trees, base, owners, hash);
    }
    // A rename that touches what the other side's renames touch is dropped on both sides.
    let paths = |moves: &[Move]| Paths::of(moves.iter().flat_map(|m| [&m.from, &m.to]));
    let (on_a, on_b) = (paths(&found[0]), paths(&found[1]));
    let [mut a, mut b] = found;
    a.retain(|m| !on_b.overlaps(&m.from) && !on_b.overlaps(&m.to));
    b.retain(|m| !on_a.overlaps(&m.from) && !on_a.overlaps(&m.to));
    Renames { on: [a, b] }
}

/// `side`'s renames as (old path, new path, base entry) by inode, outermost first.
fn candidates<'t>(
    side: Side,
    trees: [&'t Tree; 2],
    base: &'t Base,
    hash: &mut HashFn<'_>,
) -> Vec<(RelPath, &'t Entry, &'t BaseEntry)> {
    let i = side.index();
    let (gone, new) = gone_and_new(trees[i], base);
    if gone.is_empty() || new.is_empty() {
        return Vec::new();
    }
    // Paths gone on this side by (device, inode); one inode at two paths (hard links) is
    // ambiguous and matches nothing.
    let mut by_inode: HashMap<(u64, u64), Option<(&RelPath, &BaseEntry)>> = HashMap::new();
    for (path, b) in gone {
        if b.dev[i] != 0 && b.ino[i] != 0 {
            by_inode.entry((b.dev[i], b.ino[i])).and_modify(|v| *v = None).or_insert(Some((path, b)));
        }
    }
    let mut found: Vec<(RelPath, &Entry, &BaseEntry)> = Vec::new();
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    for e in new {
        let Some(Some((path, b))) = by_inode.get(&(e.dev, e.ino)) else { continue };
        if !seen.insert((e.dev, e.ino)) {
            // A second new path with this inode: a hard link made, not a rename.
            found.retain(|(p, _, _)| p != *path);
            continue;
        }
        if still_the_same(side, e, b, hash) {
            found.push(((*path).clone(), e, b));
        }
    }
    found.sort_by(|x, y| x.0.cmp(&y.0));
    found
}

/// The base's paths that `tree` no longer has, and `tree`'s entries the base does not know
/// (a merge-join of the two sorted lists).
fn gone_and_new<'t>(tree: &'t Tree, base: &'t Base) -> (Vec<(&'t RelPath, &'t BaseEntry)>, Vec<&'t Entry>) {
    let (mut gone, mut new) = (Vec::new(), Vec::new());
    let (mut t, mut b) = (tree.entries.iter().peekable(), base.entries.iter().peekable());
    loop {
        match (t.peek(), b.peek()) {
            (None, None) => break,
            (Some(e), Some((p, _))) if e.path == *p => {
                t.next();
                b.next();
            }
            (Some(e), Some((p, _))) if e.path > *p => gone.extend(b.next().map(|(p, e)| (p, e))),
            (Some(_), _) => new.extend(t.next()),
            (None, Some(_)) => gone.extend(b.next().map(|(p, e)| (p, e))),
        }
    }
    (gone, new)
}

/// True when `e` (at a new path) is the entry `b` described: same kind, and for a file the
/// same size, mtime and (where known) content; for a symlink the same target.
fn still_the_same(side: Side, e: &Entry, b: &BaseEntry, hash: &mut HashFn<'_>) -> bool {
    match (&e.kind, &b.kind) {
        (Kind::Dir, Kind::Dir) => true,
        (Kind::Symlink(x), Kind::Symlink(y)) => x == y,
        (Kind::File, Kind::File) => {
            e.size == b.size && e.mtime == b.mtime && b.hash.is_none_or(|h| hash(side, e) == Some(h))
        }
        _ => false,
    }
}

/// The candidates that are independent of each other and can be carried out on the other
/// side, as moves on that side.
fn accept(
    candidates: Vec<(RelPath, &Entry, &BaseEntry)>,
    side: Side,
    trees: [&Tree; 2],
    base: &Base,
    owners: bool,
    hash: &mut HashFn<'_>,
) -> Vec<Move> {
    let other = side.other();
    let mut accepted: Vec<Move> = Vec::new();
    let mut taken = Paths::default();
    let mut moved_dirs = Paths::default();
    for (from, e, b) in candidates {
        // Inside a directory that moves as a whole: nothing to do when it keeps its place
        // there, and copied when it moved on from there (renames are kept independent).
        if moved_dirs.overlaps(&from) || taken.overlaps(&from) || taken.overlaps(&e.path) {
            continue;
        }
        let Some(theirs) = trees[other.index()].get(&from) else { continue };
        if !movable(other, theirs, b, &e.path, trees, base, owners, hash)
            || !same_content(side, e, theirs, b, hash)
        {
            continue;
        }
        taken.add(&from);
        taken.add(&e.path);
        if e.is_dir() {
            moved_dirs.add(&from);
        }
        accepted.push(Move { from, to: e.path.clone(), was: Stamp::of(theirs) });
    }
    accepted
}

/// True when the renamed file `e` holds what the other side holds at the old path, where the
/// base does not know the content (else [`still_the_same`] checked it against the base): an
/// inode number, size and mtime alone can belong to a new file that recycled the number of a
/// deleted one (files written with fixed mtimes, as archives and build tools do), and taking
/// it for a rename would leave the other side with the old content under the new name.
fn same_content(side: Side, e: &Entry, theirs: &Entry, b: &BaseEntry, hash: &mut HashFn<'_>) -> bool {
    if !e.is_file() || b.hash.is_some() {
        return true;
    }
    let ours = hash(side, e);
    ours.is_some() && ours == hash(side.other(), theirs)
}

/// True when `other` can carry out the rename of `theirs` (its entry at the old path) to
/// `to`: it is still the entry the base describes (the same inode, or unchanged), nothing
/// is at `to` there, every directory on the way to `to` is a directory there or one it is
/// about to get, on `theirs`'s device, and neither side has an unreadable path in the way.
#[allow(clippy::too_many_arguments)]
fn movable(
    other: Side,
    theirs: &Entry,
    b: &BaseEntry,
    to: &RelPath,
    trees: [&Tree; 2],
    base: &Base,
    owners: bool,
    hash: &mut HashFn<'_>,
) -> bool {
    let o = other.index();
    let same_kind = std::mem::discriminant(&theirs.kind) == std::mem::discriminant(&b.kind);
    let same_entry =
        theirs.ino == b.ino[o] || change(other, Some(theirs), Some(b), owners, hash) == Change::Unchanged;
    if !same_kind || !same_entry || trees[o].get(to).is_some() {
        return false;
    }
    if trees.iter().any(|t| t.is_protected(&theirs.path) || t.is_protected(to)) {
        return false;
    }
    let mut parent = to.parent();
    while let Some(p) = parent {
        match trees[o].get(&p) {
            Some(dir) => return dir.is_dir() && dir.dev == theirs.dev,
            // A directory the other side does not have is made by the merge only when it is
            // new on this side (one the other side deleted would be deleted here too).
            None if base.get(&p).is_some() => return false,
            None => parent = p.parent(),
        }
    }
    trees[o].dev == theirs.dev
}

/// A set of paths, answering whether a path is at, below or above one of them.
#[derive(Default)]
struct Paths {
    exact: HashSet<Vec<u8>>,
    ancestors: HashSet<Vec<u8>>,
}

impl Paths {
    fn of<'p>(paths: impl Iterator<Item = &'p RelPath>) -> Self {
        let mut set = Paths::default();
        for p in paths {
            set.add(p);
        }
        set
    }

    fn add(&mut self, path: &RelPath) {
        let bytes = path.as_bytes();
        self.exact.insert(bytes.to_vec());
        for (i, &c) in bytes.iter().enumerate() {
            if c == b'/' {
                self.ancestors.insert(bytes[..i].to_vec());
            }
        }
    }

    /// True when `path` is one of the paths or an ancestor of one.
    fn holds_or_above(&self, path: &RelPath) -> bool {
        self.exact.contains(path.as_bytes()) || self.ancestors.contains(path.as_bytes())
    }

    /// True when `path` is one of the paths, lies below one, or is an ancestor of one.
    fn overlaps(&self, path: &RelPath) -> bool {
        let bytes = path.as_bytes();
        if self.ancestors.contains(bytes) {
            return true;
        }
        let mut end = bytes.len();
        loop {
            if self.exact.contains(&bytes[..end]) {
                return true;
            }
            match bytes[..end].iter().rposition(|&c| c == b'/') {
                Some(i) => end = i,
                None => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::tests::{base, e, f, run, tree};
    use crate::merge::{MergeOptions, merge};
    use synccore::checksum::Digest;

    fn dir(path: &str, ino: u64) -> Entry {
        Entry { mode: 0o755, ..e(path, Kind::Dir, 0, 1, ino) }
    }

    #[test]
    fn a_file_renamed_on_one_side_is_renamed_on_the_other() {
        let before = [f("old.txt", 3, 5, 7)];
        let out = run(vec![f("new.txt", 3, 5, 7)], before.to_vec(), Some(&base(&before)));
        assert!(out[0].is_empty(), "{out:?}");
        assert_eq!(out[1], vec![r#"rename "old.txt" -> "new.txt""#]);
    }

    #[test]
    fn a_renamed_directory_takes_the_other_sides_edits_and_new_files_with_it() {
        let before = [dir("d", 1), f("d/x", 3, 5, 2), f("d/y", 4, 5, 3)];
        let a = vec![dir("e", 1), f("e/x", 3, 5, 2), f("e/y", 4, 5, 3)];
        // B edited d/x in place (same inode) and added d/new.
        let b = vec![dir("d", 1), f("d/x", 9, 6, 2), f("d/y", 4, 5, 3), f("d/new", 1, 6, 4)];
        let out = run(a, b, Some(&base(&before)));
        assert_eq!(out[1], vec![r#"rename "d" -> "e""#]);
        assert_eq!(out[0], vec![r#"copy "e/new" (1 B)"#, r#"update "e/x" (9 B)"#]);
    }

    #[test]
    fn moves_into_a_new_directory_make_it_first() {
        let before = [f("a", 3, 5, 2), f("b", 4, 5, 3)];
        let a = vec![dir("n", 9), f("n/a", 3, 5, 2), f("n/b", 4, 5, 3)];
        let out = run(a, before.to_vec(), Some(&base(&before)));
        assert_eq!(
            out[1],
            vec![r#"mkdir "n""#, r#"rename "a" -> "n/a""#, r#"rename "b" -> "n/b""#, r#"meta "n" mode 755"#]
        );
    }

    #[test]
    fn a_replaced_old_path_keeps_both() {
        // A renamed x to y; B saved a new x (a new inode, other content): B's x stays at x
        // (restored on A) and A's file at y reaches B by copy.
        let before = [f("x", 3, 5, 7)];
        let out = run(vec![f("y", 3, 5, 7)], vec![f("x", 8, 6, 70)], Some(&base(&before)));
        assert_eq!(out[0], vec![r#"copy "x" (8 B)"#]);
        assert_eq!(out[1], vec![r#"copy "y" (3 B)"#]);
    }

    #[test]
    fn renames_to_different_names_on_both_sides_keep_both_names() {
        let before = [f("x", 3, 5, 7)];
        let out = run(vec![f("ya", 3, 5, 7)], vec![f("yb", 3, 5, 7)], Some(&base(&before)));
        assert_eq!(out[0], vec![r#"copy "yb" (3 B)"#]);
        assert_eq!(out[1], vec![r#"copy "ya" (3 B)"#]);
    }

    #[test]
    fn a_target_the_other_side_made_meanwhile_is_a_conflict() {
        let before = [f("x", 3, 5, 7)];
        let out = run(vec![f("y", 3, 5, 7)], vec![f("x", 3, 5, 7), f("y", 4, 9, 8)], Some(&base(&before)));
        assert!(out.iter().flatten().all(|l| !l.contains(r#""x" -> "y""#)), "{out:?}");
        assert!(out[0].iter().any(|l| l.contains("conflict")), "{out:?}");
        assert_eq!(out[1][0], r#"delete "x""#);
    }

    #[test]
    fn another_device_or_other_content_is_no_rename() {
        let before = [f("x", 3, 5, 7)];
        let mut elsewhere = f("y", 3, 5, 7);
        elsewhere.dev = 2;
        let out = run(vec![elsewhere], before.to_vec(), Some(&base(&before)));
        assert_eq!(out[1], vec![r#"delete "x""#, r#"copy "y" (3 B)"#]);
        // The base knows x's content; y has x's inode, size and mtime but other bytes.
        let mut known = base(&before);
        known.entries[0].1.hash = Some(Digest::of_bytes(b"something else"));
        let out = run(vec![f("y", 3, 5, 7)], before.to_vec(), Some(&known));
        assert_eq!(out[1], vec![r#"delete "x""#, r#"copy "y" (3 B)"#]);
    }

    #[test]
    fn a_rename_inside_a_renamed_directory_is_copied() {
        let before = [dir("d", 1), f("d/x", 3, 5, 2)];
        let a = vec![dir("e", 1), f("e/z", 3, 5, 2)];
        let out = run(a, before.to_vec(), Some(&base(&before)));
        assert_eq!(out[1], vec![r#"rename "d" -> "e""#, r#"delete "e/x""#, r#"copy "e/z" (3 B)"#]);
    }

    #[test]
    fn a_recycled_inode_with_other_content_is_no_rename() {
        // A deleted x and wrote a new y that got x's inode number, size and mtime; the base
        // has no hash: the contents of A's y and B's x decide.
        let before = [f("x", 3, 5, 7)];
        let (ta, tb) = (tree(vec![f("y", 3, 5, 7)]), tree(before.to_vec()));
        let opts = MergeOptions { stamp: "s".into(), owners: false };
        let mut by_side_and_path =
            |side: Side, e: &Entry| Some(Digest::of_bytes(format!("{side:?} {}", e.path).as_bytes()));
        let m = merge([&ta, &tb], Some(&base(&before)), &opts, &mut by_side_and_path);
        assert!(m.renames[1].is_empty(), "{m:?}");
        let lines: Vec<String> = m.plans[1].steps.iter().map(ToString::to_string).collect();
        assert_eq!(lines, vec![r#"delete "x""#, r#"copy "y" (3 B)"#]);
    }
}
