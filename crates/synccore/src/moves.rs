//! Moves in the mirror (the renames issue): a file, symlink or directory that disappeared from
//! SOURCE at one path while the same thing appeared at another is moved inside BACKUP with one
//! rename, not copied again and deleted.
//!
//! Candidates are matched between a plan's deletes (in the target) and its creates (in the
//! source) the way the quick check matches files (SPEC section 2): size, mtime, mode, and the
//! owner where owners are kept; a symlink by its target and mtime. Content is read only where
//! that cannot decide: under `--checksum`, or when several candidates tie (then they are paired
//! by digest, each file hashed at most once). A directory whose whole subtree moved unchanged
//! is one directory rename; otherwise its files move one by one. A move never crosses devices,
//! and never needs a directory that the target holds as something else.

use std::cell::RefCell;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use crate::checksum::Digest;
use crate::entry::{Entry, Kind, Mtime, Owner};
use crate::plan::Stamp;
use crate::relpath::RelPath;
use crate::scan::Tree;
use crate::spill::Spill;

mod whole;

/// Which tree an entry belongs to, for the content oracle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Which {
    Source,
    Target,
}

/// The content oracle of a diff: a file's digest (`None` when it cannot be read).
pub type Digests<'a> = dyn FnMut(Which, &Entry) -> Option<Digest> + 'a;

/// One move: the target's entry at `from` goes to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub from: RelPath,
    pub to: RelPath,
    /// The target entry as scanned (re-checked before the rename).
    pub was: Stamp,
}

/// What identifies a file or symlink for matching without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    File { size: u64, mtime: Mtime, mode: u32, owner: Option<Owner> },
    Link { target: Box<[u8]>, mtime: Mtime, owner: Option<Owner> },
}

fn key(e: &Entry, owners: bool) -> Option<Key> {
    let owner = owners.then_some(e.owner);
    match &e.kind {
        Kind::File => Some(Key::File { size: e.size, mtime: e.mtime, mode: e.mode, owner }),
        Kind::Symlink(t) => Some(Key::Link { target: t.clone(), mtime: e.mtime, owner }),
        Kind::Dir => None,
    }
}

/// What a diff changes, as far as moves care: the target's entries it deletes (in path
/// order), the source's entries it creates (in path order, possibly spilled), what the target
/// has at a path (`Some((is a directory, device))`: asked only for the way to a candidate
/// move's destination), and the target root's device.
pub struct Changed<'a> {
    pub deleted: &'a [Entry],
    pub created: &'a Spill<Entry>,
    pub target_at: &'a TargetAt<'a>,
    pub target_dev: u64,
}

/// What the target has at a path now: `Some((is a directory, device))`, `None` when nothing.
pub type TargetAt<'a> = dyn Fn(&RelPath) -> Option<(bool, u64)> + 'a;

/// Finds the moves among a diff's deletes and creates. `verify` asks for content even for a
/// single candidate (`--checksum`). Reads the created entries only when something was deleted.
pub fn find(changed: &Changed<'_>, owners: bool, verify: bool, digest: &mut Digests<'_>) -> Vec<Move> {
    if changed.deleted.is_empty() {
        return Vec::new();
    }
    let deleted_files: HashSet<&RelPath> =
        changed.deleted.iter().filter(|e| !e.is_dir()).map(|e| &e.path).collect();
    let target = Target {
        at: changed.target_at,
        files: &deleted_files,
        dev: changed.target_dev,
        seen: RefCell::new(HashMap::new()),
    };
    // Whole directories first (without `--checksum`, which reads every file it pairs), then
    // file by file what they do not cover.
    let whole = if verify { Vec::new() } else { whole::find(changed, owners, &target) };
    let covered = Relocation::new(&whole);
    let mut gone: HashMap<Key, Vec<&Entry>> = HashMap::new();
    for e in changed.deleted {
        if let Some(k) = key(e, owners).filter(|_| !covered.moves_from(&e.path)) {
            gone.entry(k).or_default().push(e);
        }
    }
    let mut moves = Vec::new();
    if !gone.is_empty() {
        // The created entries that could be one of them (only those are kept).
        let mut new: HashMap<Key, Vec<Entry>> = HashMap::new();
        // A failure to read them back pairs nothing (the files are copied).
        let _ = changed.created.each(|e| {
            if let Some(k) = key(e, owners).filter(|k| gone.contains_key(k))
                && !covered.moves_to(&e.path)
            {
                new.entry(k).or_default().push(e.clone());
            }
        });
        for (k, olds) in &gone {
            let Some(news) = new.get(k) else { continue };
            let news: Vec<&Entry> = news.iter().collect();
            let by_content = verify || olds.len() > 1 || news.len() > 1;
            let zero = matches!(k, Key::File { size: 0, .. } | Key::Link { .. });
            for (old, new) in pair(olds, &news, by_content && !zero, digest) {
                if target.movable(old, &new.path) {
                    moves.push(Move { from: old.path.clone(), to: new.path.clone(), was: Stamp::of(old) });
                }
            }
        }
        moves.sort_by(|a, b| a.from.cmp(&b.from));
        moves = promote_directories(moves, changed, &target);
    }
    if !whole.is_empty() {
        moves.extend(whole);
        moves.sort_by(|a, b| a.from.cmp(&b.from));
    }
    moves
}

/// What `movable` needs of the target: what it has at a path, the files the diff deletes,
/// and its root's device.
struct Target<'a> {
    at: &'a TargetAt<'a>,
    files: &'a HashSet<&'a RelPath>,
    dev: u64,
    /// What `at` said of each directory asked so far: the files moved into one new
    /// directory ask about the same ancestors (one lookup each, not one per file). It
    /// grows with the destinations of the changed entries, never with the tree.
    seen: RefCell<HashMap<RelPath, Option<(bool, u64)>>>,
}

impl Target<'_> {
    /// True when `old` can be renamed to `to` inside the target: on the same device as the
    /// nearest directory of the target on `to`'s way, with no ancestor of `to` that the
    /// target holds as something other than a directory.
    fn movable(&self, old: &Entry, to: &RelPath) -> bool {
        let mut parent = to.parent();
        while let Some(p) = parent {
            if self.files.contains(&p) {
                return false;
            }
            if let Some((is_dir, dev)) = self.at_path(&p) {
                return is_dir && dev == old.dev;
            }
            parent = p.parent();
        }
        self.dev == old.dev
    }

    /// `at(p)`, asked once per path.
    fn at_path(&self, p: &RelPath) -> Option<(bool, u64)> {
        if let Some(known) = self.seen.borrow().get(p) {
            return *known;
        }
        let found = (self.at)(p);
        self.seen.borrow_mut().insert(p.clone(), found);
        found
    }
}

/// Pairs deleted and created entries of one key: in path order when the quick check decides,
/// else by digest (each file hashed once).
fn pair<'e>(
    olds: &[&'e Entry],
    news: &[&'e Entry],
    by_content: bool,
    digest: &mut Digests<'_>,
) -> Vec<(&'e Entry, &'e Entry)> {
    if !by_content {
        return olds.iter().copied().zip(news.iter().copied()).collect();
    }
    let mut pool: HashMap<Digest, Vec<&Entry>> = HashMap::new();
    for old in olds {
        if let Some(d) = digest(Which::Target, old) {
            pool.entry(d).or_default().push(old);
        }
    }
    let mut pairs = Vec::new();
    for new in news {
        if let Some(d) = digest(Which::Source, new)
            && let Some(old) = pool.get_mut(&d).and_then(Vec::pop)
        {
            pairs.push((old, *new));
        }
    }
    pairs
}

/// Replaces the moves of every file and symlink of a directory that moved whole (and
/// unchanged) by one move of the directory, outermost first.
fn promote_directories(moves: Vec<Move>, changed: &Changed<'_>, target: &Target<'_>) -> Vec<Move> {
    let removed: HashSet<&RelPath> = changed.deleted.iter().filter(|e| e.is_dir()).map(|e| &e.path).collect();
    if moves.is_empty() || removed.is_empty() {
        return moves;
    }
    let created_dirs: HashSet<RelPath> =
        changed.created.iter().flatten().filter(Entry::is_dir).map(|e| e.path).collect();
    let mut candidates: Vec<(RelPath, RelPath)> = Vec::new();
    for m in &moves {
        let (mut from, mut to) = (m.from.parent(), m.to.parent());
        while let (Some(f), Some(t)) = (from, to) {
            if removed.contains(&f) && created_dirs.contains(&t) && m.from.file_name() == m.to.file_name() {
                candidates.push((f.clone(), t.clone()));
            }
            if f.file_name() != t.file_name() {
                break;
            }
            (from, to) = (f.parent(), t.parent());
        }
    }
    candidates.sort();
    candidates.dedup();
    if candidates.is_empty() {
        return moves;
    }
    // Outermost first: a shorter `from` is an ancestor of longer ones it covers.
    candidates.sort_by_key(|(f, _)| f.as_bytes().len());
    let destination: HashMap<&RelPath, &RelPath> = moves.iter().map(|m| (&m.from, &m.to)).collect();
    // The created entries below the candidates' destinations (read once from the list).
    let tos: HashSet<&RelPath> = candidates.iter().map(|(_, t)| t).collect();
    let below_tos: Vec<Entry> = changed
        .created
        .iter()
        .flatten()
        .filter(|e| std::iter::successors(e.path.parent(), RelPath::parent).any(|p| tos.contains(&p)))
        .collect();
    let mut promoted: Vec<Move> = Vec::new();
    let mut covered: HashSet<RelPath> = HashSet::new();
    let is_covered = |covered: &HashSet<RelPath>, path: &RelPath| {
        std::iter::successors(Some(path.clone()), RelPath::parent).any(|p| covered.contains(&p))
    };
    for (from, to) in candidates {
        if is_covered(&covered, &from) {
            continue;
        }
        let Ok(at) = changed.deleted.binary_search_by(|e| e.path.cmp(&from)) else { continue };
        let dir = &changed.deleted[at];
        if target.movable(dir, &to) && moved_whole(&from, &to, &destination, changed.deleted, &below_tos) {
            covered.insert(from.clone());
            promoted.push(Move { from, to, was: Stamp::of(dir) });
        }
    }
    if promoted.is_empty() {
        return moves;
    }
    let mut kept: Vec<Move> = moves.iter().filter(|m| !is_covered(&covered, &m.from)).cloned().collect();
    kept.extend(promoted);
    kept.sort_by(|a, b| a.from.cmp(&b.from));
    kept
}

/// The entries strictly below `dir` in a list sorted by path: everything below `dir` sorts
/// between `dir/` and `dir0` (`0` follows `/`).
fn below<'e>(entries: &'e [Entry], dir: &RelPath) -> &'e [Entry] {
    let bound = |last: u8| [dir.as_bytes(), &[last]].concat();
    let (lo, hi) = (bound(b'/'), bound(b'0'));
    let start = entries.partition_point(|e| e.path.as_bytes() < &lo[..]);
    let end = entries.partition_point(|e| e.path.as_bytes() < &hi[..]);
    &entries[start..end]
}

/// True when the target's subtree `from` (all deleted) and the source's subtree `to` (all
/// created) hold the same entries at the same relative paths, every file and symlink of it
/// moved there (`destination` of each move's `from`).
fn moved_whole(
    from: &RelPath,
    to: &RelPath,
    destination: &HashMap<&RelPath, &RelPath>,
    deleted: &[Entry],
    created: &[Entry],
) -> bool {
    let olds = below(deleted, from);
    let news: HashSet<&RelPath> = below(created, to).iter().map(|e| &e.path).collect();
    if olds.len() != news.len() {
        return false;
    }
    olds.iter().all(|old| {
        let Some(rest) = old.path.as_bytes().get(from.as_bytes().len()..) else { return false };
        let new = RelPath::from_bytes(&[to.as_bytes(), rest].concat());
        news.contains(&new) && (old.is_dir() || destination.get(&old.path).is_some_and(|to| **to == new))
    })
}

/// Where a set of moves takes paths: every path at or below a move's `from` goes to the same
/// place below its `to`. The moves must be independent (none at or below another's `from` or
/// `to`), as [`find`] and twoway's renames make them.
pub struct Relocation<'m> {
    forward: HashMap<&'m [u8], &'m RelPath>,
    back: HashMap<&'m [u8], &'m RelPath>,
}

impl<'m> Relocation<'m> {
    /// The relocation of `moves`.
    pub fn new(moves: impl IntoIterator<Item = &'m Move>) -> Self {
        let (mut forward, mut back) = (HashMap::new(), HashMap::new());
        for m in moves {
            forward.insert(m.from.as_bytes(), &m.to);
            back.insert(m.to.as_bytes(), &m.from);
        }
        Relocation { forward, back }
    }

    /// True when nothing moves.
    pub fn is_empty(&self) -> bool {
        self.forward.is_empty()
    }

    /// Where `path` is once the moves are made; `None` when no move takes it.
    pub fn forward(&self, path: &RelPath) -> Option<RelPath> {
        Self::map(&self.forward, path)
    }

    /// Where a path of the moved tree was before the moves; `None` when it did not move.
    pub fn back(&self, path: &RelPath) -> Option<RelPath> {
        Self::map(&self.back, path)
    }

    /// True when a move takes `path` (it is at or below a move's `from`).
    pub fn moves_from(&self, path: &RelPath) -> bool {
        Self::longest(&self.forward, path).is_some()
    }

    /// True when `path` is at or below a move's `to`.
    pub fn moves_to(&self, path: &RelPath) -> bool {
        Self::longest(&self.back, path).is_some()
    }

    /// `path` with its longest prefix (itself or an ancestor) that `map` holds replaced.
    fn map(map: &HashMap<&[u8], &RelPath>, path: &RelPath) -> Option<RelPath> {
        let (end, to) = Self::longest(map, path)?;
        let mut out = to.as_bytes().to_vec();
        out.extend_from_slice(&path.as_bytes()[end..]);
        Some(RelPath::from_bytes(&out))
    }

    /// The longest prefix of `path` (itself or an ancestor) that `map` holds: its length, and
    /// where `map` takes it.
    fn longest<'a>(map: &HashMap<&[u8], &'a RelPath>, path: &RelPath) -> Option<(usize, &'a RelPath)> {
        if map.is_empty() {
            return None;
        }
        let bytes = path.as_bytes();
        let mut end = bytes.len();
        loop {
            if let Some(to) = map.get(&bytes[..end]) {
                return Some((end, to));
            }
            end = bytes[..end].iter().rposition(|&b| b == b'/')?;
        }
    }

    /// `tree` as it will be once the moves are made (sorted again).
    pub fn tree(&self, tree: &Tree) -> Tree {
        let mut entries: Vec<Entry> = tree
            .entries
            .iter()
            .map(|e| {
                let mut e = e.clone();
                if let Some(to) = self.forward(&e.path) {
                    e.path = to;
                }
                e
            })
            .collect();
        entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        Tree {
            entries,
            unreadable: tree.unreadable.clone(),
            errors: Vec::new(),
            special: tree.special.clone(),
            leftovers: tree.leftovers.clone(),
            dev: tree.dev,
            // Ignored entries move with a renamed directory that holds them (issue 14).
            ignored: tree.ignored.iter().map(|p| self.forward(p).unwrap_or_else(|| p.clone())).collect(),
            rules: tree.rules.clone(),
            vanished: tree.vanished,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{self, DiffOptions};

    fn tree(mut entries: Vec<Entry>) -> Tree {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Tree { entries, dev: 1, ..Tree::default() }
    }
    fn f(path: &str, size: u64, mtime: i64) -> Entry {
        Entry::example(path, Kind::File, size, mtime)
    }
    fn d(path: &str) -> Entry {
        Entry::example(path, Kind::Dir, 0, 1)
    }
    fn lines(source: Vec<Entry>, target: Vec<Entry>) -> Vec<String> {
        let plan = diff::plan(&tree(source), &tree(target), DiffOptions::default(), &mut |_, e| {
            Some(Digest::of_bytes(e.path.file_name().as_encoded_bytes()))
        })
        .unwrap();
        plan.steps.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_moved_file_is_one_rename_and_its_new_directory_comes_first() {
        let out = lines(vec![d("new"), f("new/a.txt", 5, 9)], vec![f("old.txt", 5, 9)]);
        assert_eq!(out[0], r#"mkdir "new""#);
        assert_eq!(out[1], r#"rename "old.txt" -> "new/a.txt""#);
        assert!(!out.iter().any(|l| l.starts_with("copy") || l.starts_with("delete")), "{out:?}");
    }

    #[test]
    fn a_directory_moved_whole_is_one_rename() {
        let before = vec![d("a"), d("a/sub"), f("a/sub/x", 1, 1), f("a/y", 2, 2)];
        let after =
            vec![d("b"), d("b/moved"), d("b/moved/sub"), f("b/moved/sub/x", 1, 1), f("b/moved/y", 2, 2)];
        let out = lines(after, before);
        assert_eq!(out.iter().filter(|l| l.starts_with("rename")).count(), 1, "{out:?}");
        assert!(out.contains(&r#"rename "a" -> "b/moved""#.to_string()), "{out:?}");
        assert!(!out.iter().any(|l| l.starts_with("copy") || l.starts_with("delete")), "{out:?}");
    }

    #[test]
    fn a_directory_moved_with_an_edit_inside_moves_file_by_file() {
        let before = vec![d("a"), f("a/x", 1, 1), f("a/y", 2, 2)];
        let after = vec![d("b"), f("b/x", 1, 1), f("b/y", 3, 3)];
        let out = lines(after, before);
        assert!(out.contains(&r#"rename "a/x" -> "b/x""#.to_string()), "{out:?}");
        assert!(out.contains(&r#"copy "b/y" (3 B)"#.to_string()), "{out:?}");
        assert!(out.contains(&r#"delete "a/y""#.to_string()), "{out:?}");
    }

    #[test]
    fn ties_are_paired_by_content_and_other_devices_are_copied() {
        // Two files of one size and mtime swap names under a new directory: content decides.
        let before = vec![f("p", 4, 1), f("q", 4, 1)];
        let after = vec![d("n"), f("n/q", 4, 1), f("n/p", 4, 1)];
        let out = lines(after, before);
        assert!(out.contains(&r#"rename "p" -> "n/p""#.to_string()), "{out:?}");
        assert!(out.contains(&r#"rename "q" -> "n/q""#.to_string()), "{out:?}");
        // A file on another device than its destination is copied.
        let mut other = f("old", 5, 9);
        other.dev = 2;
        let out = lines(vec![f("new", 5, 9)], vec![other]);
        assert!(out.iter().any(|l| l.starts_with("copy")), "{out:?}");
    }

    /// The plan's lines with content given by `contents` (path -> bytes) on both sides.
    fn lines_by_content(source: Vec<Entry>, target: Vec<Entry>, contents: &[(&str, &str)]) -> Vec<String> {
        let contents: HashMap<String, String> =
            contents.iter().map(|(p, c)| ((*p).to_string(), (*c).to_string())).collect();
        let plan = diff::plan(&tree(source), &tree(target), DiffOptions::default(), &mut |_, e| {
            contents.get(&e.path.to_string()).map(|c| Digest::of_bytes(c.as_bytes()))
        })
        .unwrap();
        plan.steps.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn nested_directories_moved_whole_are_one_rename_and_keep_their_metadata() {
        let before = vec![d("a"), d("a/s"), d("a/s/t"), f("a/s/t/x", 1, 1), f("a/s/y", 2, 2), f("a/z", 3, 3)];
        let after = vec![
            d("n"),
            d("n/m"),
            d("n/m/a2"),
            d("n/m/a2/s"),
            d("n/m/a2/s/t"),
            f("n/m/a2/s/t/x", 1, 1),
            f("n/m/a2/s/y", 2, 2),
            f("n/m/a2/z", 3, 3),
        ];
        let out = lines(after, before);
        assert_eq!(out.iter().filter(|l| l.starts_with("rename")).count(), 1, "{out:?}");
        assert!(out.contains(&r#"rename "a" -> "n/m/a2""#.to_string()), "{out:?}");
        // Only the directories made new get metadata: the moved ones kept theirs.
        assert!(!out.iter().any(|l| l.starts_with(r#"meta "n/m/a2"#)), "{out:?}");
        assert!(!out.iter().any(|l| l.starts_with("copy") || l.starts_with("delete")), "{out:?}");
    }

    #[test]
    fn a_moved_directory_whose_mode_changed_gets_only_its_mode() {
        let mut moved = d("b");
        moved.mode = 0o700;
        let out = lines(vec![moved, f("b/x", 1, 1)], vec![d("a"), f("a/x", 1, 1)]);
        assert!(out.contains(&r#"rename "a" -> "b""#.to_string()), "{out:?}");
        let metas: Vec<&String> = out.iter().filter(|l| l.starts_with(r#"meta "b""#)).collect();
        assert_eq!(metas.len(), 1, "{out:?}");
        assert!(metas[0].contains("mode 700") && !metas[0].contains("mtime"), "{out:?}");
    }

    #[test]
    fn copies_of_one_directory_moved_together_are_told_apart_by_content() {
        // Two directories with the same names, sizes and mtimes (copies, then edited in
        // place): their signatures tie, so the files are paired by what they hold.
        let before = vec![d("p"), f("p/f", 4, 1), d("q"), f("q/f", 4, 1)];
        let after = vec![d("n"), d("n/p"), f("n/p/f", 4, 1), d("n/q"), f("n/q/f", 4, 1)];
        let contents = [("p/f", "PPPP"), ("q/f", "QQQQ"), ("n/p/f", "QQQQ"), ("n/q/f", "PPPP")];
        let out = lines_by_content(after, before, &contents);
        // Each directory goes where its content is wanted (whole, once its one file is paired).
        assert!(out.contains(&r#"rename "p" -> "n/q""#.to_string()), "{out:?}");
        assert!(out.contains(&r#"rename "q" -> "n/p""#.to_string()), "{out:?}");
        assert!(!out.iter().any(|l| l.starts_with("copy")), "{out:?}");
        // With the contents where the names say, the copies move whole.
        let contents = [("p/f", "PPPP"), ("q/f", "QQQQ"), ("n/p/f", "PPPP"), ("n/q/f", "QQQQ")];
        let out = lines_by_content(
            vec![d("n"), d("n/p"), f("n/p/f", 4, 1), d("n/q"), f("n/q/f", 4, 1)],
            vec![d("p"), f("p/f", 4, 1), d("q"), f("q/f", 4, 1)],
            &contents,
        );
        assert!(out.contains(&r#"rename "p" -> "n/p""#.to_string()), "{out:?}");
        assert!(out.contains(&r#"rename "q" -> "n/q""#.to_string()), "{out:?}");
    }

    #[test]
    fn a_whole_move_and_a_move_with_an_edit_in_one_pass() {
        let before = vec![d("a"), f("a/x", 1, 1), f("a/y", 2, 2), d("b"), f("b/u", 5, 5), f("b/v", 6, 6)];
        let after = vec![
            d("k"),
            d("k/a"),
            f("k/a/x", 1, 1),
            f("k/a/y", 2, 2),
            d("k/b"),
            f("k/b/u", 5, 5),
            f("k/b/v", 7, 7),
        ];
        let out = lines(after, before);
        assert!(out.contains(&r#"rename "a" -> "k/a""#.to_string()), "{out:?}");
        assert!(out.contains(&r#"rename "b/u" -> "k/b/u""#.to_string()), "{out:?}");
        assert!(out.contains(&r#"copy "k/b/v" (7 B)"#.to_string()), "{out:?}");
        assert!(out.contains(&r#"delete "b/v""#.to_string()), "{out:?}");
    }

    #[test]
    fn a_destination_below_a_file_of_the_target_is_not_a_move() {
        // `x` is a file in the target and a directory in the source.
        let out = lines(vec![d("x"), f("x/a", 5, 9)], vec![f("x", 1, 1), f("old", 5, 9)]);
        assert!(out.iter().all(|l| !l.starts_with("rename")), "{out:?}");
    }
}
