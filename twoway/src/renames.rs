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
//! The renames are found among what the merge's first reading collected ([`Candidates`]:
//! what changed, never the trees); the merge then reads both sides and the base again as the
//! renames leave them ([`Moved`]), so that every other change (an edit the other side made to
//! the renamed file, a file it added inside a renamed directory) follows the entry to its new
//! path. Renames are kept only when they are
//! independent: none at or below another's old or new path, on either side (a rename inside
//! a directory renamed in the same interval is copied instead).

use std::collections::{HashMap, HashSet};

use synccore::entry::{Entry, Kind};
use synccore::moves::Move;
use synccore::plan::{Action, Phased, Plan, Stamp, Step};
use synccore::relpath::RelPath;

use crate::base::BaseEntry;
use crate::merge::{Change, HashFn, Side, change};
use crate::merger::Candidates;

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

    /// How the second reading of the merge takes both sides and the base: side `i` without
    /// what its moves take away and with it at the new paths; the base likewise for every move.
    /// Fails only when the spilled list of new entries cannot be read back.
    pub fn moved(&self, c: &Candidates) -> std::io::Result<Moved> {
        let mut out = Moved::default();
        for side in [Side::A, Side::B] {
            let (i, renamer) = (side.index(), side.other().index());
            let side_moves = &self.on[i];
            if side_moves.is_empty() {
                continue;
            }
            let forward = Forward::of(side_moves);
            out.prune[i] = side_moves.iter().map(|m| m.from.clone()).collect();
            out.back[i] = side_moves.iter().map(|m| (m.to.clone(), m.from.clone())).collect();
            // This side's entries below the old paths: those the base knew (gone on the side
            // that renamed) and those it did not (new here).
            let known = c.gone[renamer].iter().filter_map(|(_, _, theirs)| Ok(theirs.clone()).transpose());
            for e in known.chain(c.new[i].iter()) {
                let mut e = e?;
                if let Some(to) = forward.apply(&e.path) {
                    e.path = to;
                    out.extra[i].push(e);
                }
            }
            for (path, b, _) in &c.gone[renamer] {
                if let Some(to) = forward.apply(path) {
                    out.base_extra.push((to, b.clone()));
                }
            }
            out.base_prune.extend(out.prune[i].iter().cloned());
        }
        for extra in &mut out.extra {
            extra.sort_by(|a, b| a.path.cmp(&b.path));
            extra.dedup_by(|a, b| a.path == b.path);
        }
        out.base_extra.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// Both sides and the base as the renames will leave them, for the merge's second reading.
#[derive(Debug, Default)]
pub struct Moved {
    /// Per side: the subtrees the moves take away...
    pub prune: [Vec<RelPath>; 2],
    /// ...and its entries there, at their new paths (sorted).
    pub extra: [Vec<Entry>; 2],
    /// The base likewise (every move).
    pub base_prune: Vec<RelPath>,
    pub base_extra: Vec<(RelPath, BaseEntry)>,
    /// Per side: new path -> old path of each move, to read content where it is on disk now.
    back: [HashMap<RelPath, RelPath>; 2],
}

impl Moved {
    /// Where a path of `side`'s moved tree is on disk before the renames; `None` when it did
    /// not move.
    pub fn original_path(&self, side: Side, path: &RelPath) -> Option<RelPath> {
        let back = &self.back[side.index()];
        if back.is_empty() {
            return None;
        }
        let bytes = path.as_bytes();
        let mut end = bytes.len();
        loop {
            if let Some(from) = back.get(&RelPath::from_bytes(&bytes[..end])) {
                return Some(RelPath::from_bytes(&[from.as_bytes(), &bytes[end..]].concat()));
            }
            end = bytes[..end].iter().rposition(|&b| b == b'/')?;
        }
    }
}

/// Old path -> new path of a set of independent moves.
struct Forward<'m>(HashMap<&'m [u8], &'m RelPath>);

impl<'m> Forward<'m> {
    fn of(moves: &'m [Move]) -> Self {
        Forward(moves.iter().map(|m| (m.from.as_bytes(), &m.to)).collect())
    }

    /// Where `path` goes, when a move takes it.
    fn apply(&self, path: &RelPath) -> Option<RelPath> {
        let bytes = path.as_bytes();
        let mut end = bytes.len();
        loop {
            if let Some(to) = self.0.get(&bytes[..end]) {
                return Some(RelPath::from_bytes(&[to.as_bytes(), &bytes[end..]].concat()));
            }
            end = bytes[..end].iter().rposition(|&b| b == b'/')?;
        }
    }
}

/// The steps a side carries out before its plan: the directories its moves need (taken out
/// of `plan`, parents first), the moves, then the conflicts' set-asides (at the paths the
/// moves leave them).
pub fn first_steps(moves: Vec<Move>, plan: &mut Phased, set_asides: Plan) -> std::io::Result<Plan> {
    let needed: HashSet<RelPath> =
        moves.iter().flat_map(|m| std::iter::successors(m.to.parent(), RelPath::parent)).collect();
    let mut first: Vec<Step> = Vec::new();
    if !moves.is_empty() {
        let mut rest = Phased::default();
        for step in std::mem::take(&mut plan.first) {
            rest.push_first(step);
        }
        for step in plan.removals.iter() {
            rest.push_removal(step?)?;
        }
        for step in plan.creations.iter() {
            let step = step?;
            if matches!(step.action, Action::Mkdir { .. }) && needed.contains(&step.path) {
                first.push(step);
            } else {
                rest.push_creation(step)?;
            }
        }
        for step in plan.metas.iter() {
            rest.push_meta(step?)?;
        }
        rest.seal()?;
        *plan = rest;
    }
    first.sort_by(|a, b| a.path.cmp(&b.path));
    first.extend(
        moves.into_iter().map(|m| Step { path: m.from, action: Action::Move { to: m.to, was: m.was } }),
    );
    first.extend(set_asides.steps);
    Ok(Plan { steps: first })
}

/// What a side has at a path now: `Some((is a directory, device))`, `None` when nothing.
pub type Lookup<'a> = dyn Fn(Side, &RelPath) -> Option<(bool, u64)> + 'a;

/// Finds the renames both sides made since the base, among what the merge collected, keeping
/// only the independent ones the other side can carry out. `protected` says whether a path is
/// at or below one that could not be read on either side; `lookup` what a side has at a path.
pub fn detect(
    c: &Candidates,
    protected: &dyn Fn(&RelPath) -> bool,
    lookup: &Lookup<'_>,
    owners: bool,
    hash: &mut HashFn<'_>,
) -> Renames {
    let mut found = [Vec::new(), Vec::new()];
    for side in [Side::A, Side::B] {
        let candidates = candidates(side, c, hash);
        if !candidates.is_empty() {
            found[side.other().index()] = accept(candidates, side, c, (protected, lookup), owners, hash);
        }
    }
    // A rename that touches what the other side's renames touch is dropped on both sides.
    let paths = |moves: &[Move]| Paths::of(moves.iter().flat_map(|m| [&m.from, &m.to]));
    let (on_a, on_b) = (paths(&found[0]), paths(&found[1]));
    let [mut a, mut b] = found;
    a.retain(|m| !on_b.overlaps(&m.from) && !on_b.overlaps(&m.to));
    b.retain(|m| !on_a.overlaps(&m.from) && !on_a.overlaps(&m.to));
    Renames { on: [a, b] }
}

/// A path a side no longer has: its path, the base's entry, the other side's entry there.
type Gone<'c> = (&'c RelPath, &'c BaseEntry, Option<&'c Entry>);

/// One rename a side made: its old path, the entry at the new path, and the base's entry.
type Candidate<'c> = (RelPath, Entry, &'c BaseEntry, Option<&'c Entry>);

/// `side`'s renames by inode, outermost first, with the other side's entry at the old path.
fn candidates<'c>(side: Side, c: &'c Candidates, hash: &mut HashFn<'_>) -> Vec<Candidate<'c>> {
    let i = side.index();
    // Paths gone on this side by (device, inode); one inode at two paths (hard links) is
    // ambiguous and matches nothing.
    let mut by_inode: HashMap<(u64, u64), Option<Gone<'_>>> = HashMap::new();
    for (path, b, theirs) in &c.gone[i] {
        if b.dev[i] != 0 && b.ino[i] != 0 {
            let key = (b.dev[i], b.ino[i]);
            by_inode.entry(key).and_modify(|v| *v = None).or_insert(Some((path, b, theirs.as_ref())));
        }
    }
    if by_inode.is_empty() {
        return Vec::new();
    }
    let mut found: Vec<Candidate<'c>> = Vec::new();
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    for e in c.new[i].iter().flatten() {
        let Some(Some((path, b, theirs))) = by_inode.get(&(e.dev, e.ino)) else { continue };
        if !seen.insert((e.dev, e.ino)) {
            // A second new path with this inode: a hard link made, not a rename.
            found.retain(|(p, ..)| p != *path);
            continue;
        }
        if still_the_same(side, &e, b, hash) {
            found.push(((*path).clone(), e, b, *theirs));
        }
    }
    found.sort_by(|x, y| x.0.cmp(&y.0));
    found
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

/// The candidates that are independent of each other and can be carried out on the other
/// side, as moves on that side.
fn accept(
    candidates: Vec<Candidate<'_>>,
    side: Side,
    c: &Candidates,
    (protected, lookup): (&dyn Fn(&RelPath) -> bool, &Lookup<'_>),
    owners: bool,
    hash: &mut HashFn<'_>,
) -> Vec<Move> {
    let other = side.other();
    let o = other.index();
    // What the other side has at the candidates' new paths, and which paths it lost.
    let tos: HashSet<&RelPath> = candidates.iter().map(|(_, e, ..)| &e.path).collect();
    let occupied: HashSet<RelPath> =
        c.new[o].iter().flatten().map(|e| e.path).filter(|p| tos.contains(p)).collect();
    let theirs_gone: HashSet<&RelPath> = c.gone[o].iter().map(|(p, ..)| p).collect();
    let there = There { side: other, lookup, gone: &theirs_gone, occupied: &occupied, dev: c.dev[o] };
    let mut accepted: Vec<Move> = Vec::new();
    let mut taken = Paths::default();
    let mut moved_dirs = Paths::default();
    for (from, e, b, theirs) in candidates {
        // Inside a directory that moves as a whole: nothing to do when it keeps its place
        // there, and copied when it moved on from there (renames are kept independent).
        if moved_dirs.overlaps(&from) || taken.overlaps(&from) || taken.overlaps(&e.path) {
            continue;
        }
        let Some(theirs) = theirs else { continue };
        if protected(&from) || protected(&e.path) {
            continue;
        }
        let same_kind = std::mem::discriminant(&theirs.kind) == std::mem::discriminant(&b.kind);
        let same_entry =
            theirs.ino == b.ino[o] || change(other, Some(theirs), Some(b), owners, hash) == Change::Unchanged;
        if !same_kind
            || !same_entry
            || !there.movable(theirs, &e.path)
            || !same_content(side, &e, theirs, b, hash)
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

/// What the side that carries a rename out has, as far as the rename cares.
struct There<'a> {
    side: Side,
    lookup: &'a Lookup<'a>,
    gone: &'a HashSet<&'a RelPath>,
    occupied: &'a HashSet<RelPath>,
    dev: u64,
}

impl There<'_> {
    /// True when `theirs` can be renamed to `to` here: nothing is at `to`, every directory on
    /// the way is a directory here or one it is about to get (new on the side that renamed:
    /// one this side deleted would be deleted there too), on `theirs`'s device.
    fn movable(&self, theirs: &Entry, to: &RelPath) -> bool {
        if self.occupied.contains(to) {
            return false;
        }
        let mut parent = to.parent();
        while let Some(p) = parent {
            match (self.lookup)(self.side, &p) {
                Some((is_dir, dev)) => return is_dir && dev == theirs.dev,
                None if self.gone.contains(&p) => return false,
                None => parent = p.parent(),
            }
        }
        self.dev == theirs.dev
    }
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
    use crate::merge::{MergeOptions, merge_trees};
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
        let m = merge_trees([&ta, &tb], Some(&base(&before)), &opts, &mut by_side_and_path);
        assert!(m.renames[1].is_empty(), "{m:?}");
        let lines: Vec<String> =
            m.plans[1].to_plan().unwrap().steps.iter().map(ToString::to_string).collect();
        assert_eq!(lines, vec![r#"delete "x""#, r#"copy "y" (3 B)"#]);
    }
}
