//! Partial rescans (watch mode, the watch issue): a tree from an earlier scan brought up to
//! date by listing again only the directories that had events, in proportion to what
//! changed, never the whole tree.
//!
//! Each directory named is listed again (one `getdents` and one `lstat` per entry, exactly as
//! the full scan lists it, with the same ignore rules); a subdirectory it holds that the tree
//! did not know (new, or replaced: another inode) is walked whole, the watcher told of each
//! directory before it is opened; a known subdirectory keeps its subtree. What a directory no
//! longer holds leaves the tree with everything below it. A directory's own entry (its mode
//! and mtime live in its parent's listing) is read again too. A `.syncignore` that appeared,
//! changed or went away changes which entries the tree should hold anywhere below it: that
//! asks for a full scan instead.

use std::collections::{BTreeSet, HashSet};

use crate::entry::Entry;
use crate::error::{Error, Op, Result};
use crate::fsio::Root;
use crate::ignore::RULES_FILE;
use crate::plan::Stamp;
use crate::relpath::RelPath;
use crate::scan::{self, ScanRules, Tree, descend, entry_of, list};

/// Brings `tree` (a scan of `root`) up to date for the directories `dirs` (relative, the root
/// being the empty path), with the ignore rules the scan applied (`Given`: rules files are
/// not read again; one that changed asks for a full scan). Directories in `created` were made or moved in since: they are
/// walked whole even when their inode number is one the tree knows (numbers are recycled).
/// `watch` is called with each new directory before it is listed. With `own_rules` (the
/// tree's rules come from its own `.syncignore` files), a rules file that appeared, changed or
/// went away returns why only a full scan will do (then `tree` is left as it was); a tree
/// scanned with another tree's rules (BACKUP with SOURCE's) holds rules files as plain files.
pub fn rescan(
    root: &Root,
    tree: &mut Tree,
    scan_rules: ScanRules<'_>,
    dirs: &BTreeSet<RelPath>,
    created: &BTreeSet<RelPath>,
    own_rules: bool,
    watch: &mut dyn FnMut(&RelPath),
) -> Result<Option<String>> {
    let mut todo: BTreeSet<RelPath> = dirs.iter().map(|d| known_dir_at_or_above(tree, d)).collect();
    let mut fresh = Tree { dev: tree.dev, ..Tree::default() };
    // Directories whose direct entries were listed again, and roots of subtrees walked whole.
    let (mut relisted, mut walked): (HashSet<Vec<u8>>, HashSet<Vec<u8>>) = (HashSet::new(), HashSet::new());
    while let Some(d) = todo.pop_first() {
        if relisted.contains(d.as_bytes()) || has_ancestor_in(&walked, d.as_bytes()) || is_ignored(tree, &d) {
            continue;
        }
        let dir = match root.dir_now(d.as_path()) {
            Ok(dir) => dir,
            // Gone or replaced since: its parent's listing says what is there now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || scan::is_not_a_dir(&e) => {
                if let Some(parent) = d.parent() {
                    todo.insert(parent);
                }
                continue;
            }
            Err(source) => {
                fresh.unreadable.push(d.clone());
                fresh.errors.push(Error::Io { op: Op::ReadDir, path: root.path_of(d.as_path()), source });
                relisted.insert(d.as_bytes().to_vec());
                continue;
            }
        };
        let start = fresh.entries.len();
        let mut pending = Vec::new();
        list(&dir, d.as_bytes(), &mut fresh, scan_rules, &mut pending, None)?;
        relisted.insert(d.as_bytes().to_vec());
        if let Some(reason) = rules_changed(tree, &d, &fresh.entries[start..]).filter(|_| own_rules) {
            return Ok(Some(reason));
        }
        // Known subdirectories (same inode) keep their subtrees; others are walked whole.
        pending.retain(|p| {
            let now = &fresh.entries[p.entry];
            created.contains(&now.path)
                || !tree
                    .get(&now.path)
                    .is_some_and(|old| old.is_dir() && old.ino == now.ino && old.dev == now.dev)
        });
        walked.extend(pending.iter().map(|p| p.rel.clone()));
        let before = fresh.entries.len();
        descend(pending, &mut fresh, scan_rules, &mut |rel| watch(&RelPath::from_bytes(rel)))?;
        if own_rules && fresh.entries[before..].iter().any(|e| e.path.file_name() == RULES_FILE) {
            return Ok(Some(format!("a new directory holds a {RULES_FILE} file")));
        }
        // The directory's own entry, unless its parent's listing just gave it.
        if let Some(parent) =
            d.parent().or_else(|| (!d.as_bytes().is_empty()).then(|| RelPath::from_bytes(b"")))
            && !relisted.contains(parent.as_bytes())
        {
            match entry_of(root, &d) {
                Ok(Some(own)) => fresh.entries.push(own),
                Ok(None) | Err(_) => {
                    todo.insert(parent);
                }
            }
        }
    }
    merge(tree, fresh, &relisted, &walked);
    Ok(None)
}

/// `d` if the tree holds it as a directory (or it is the root), else its nearest ancestor
/// that it holds as one: a directory the tree does not know is listed by its parent.
fn known_dir_at_or_above(tree: &Tree, d: &RelPath) -> RelPath {
    let mut at = d.clone();
    loop {
        if at.as_bytes().is_empty() || tree.get(&at).is_some_and(Entry::is_dir) {
            return at;
        }
        at = at.parent().unwrap_or_else(|| RelPath::from_bytes(b""));
    }
}

/// True when `d` is at or below an ignored path (it is not in the tree).
fn is_ignored(tree: &Tree, d: &RelPath) -> bool {
    !d.as_bytes().is_empty() && tree.ignored.iter().any(|i| d.is_within(i))
}

/// Why the rules changed in directory `d`, if its `.syncignore` appeared, went or changed.
fn rules_changed(tree: &Tree, d: &RelPath, listed: &[Entry]) -> Option<String> {
    let mut path = d.as_bytes().to_vec();
    if !path.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(RULES_FILE.as_bytes());
    let path = RelPath::from_bytes(&path);
    let now = listed.iter().find(|e| e.path == path).map(Stamp::of);
    let was = tree.get(&path).map(Stamp::of);
    (now != was).then(|| format!("\"{path}\" changed"))
}

/// True when a proper ancestor of `path`, or `path` itself, is in `set`.
fn has_ancestor_in(set: &HashSet<Vec<u8>>, path: &[u8]) -> bool {
    if set.is_empty() {
        return false;
    }
    let mut end = path.len();
    loop {
        if set.contains(&path[..end]) {
            return true;
        }
        match path[..end].iter().rposition(|&b| b == b'/') {
            Some(i) => end = i,
            None => return false,
        }
    }
}

/// The parent of a relative path, as bytes (empty for a top-level entry).
fn parent_bytes(path: &[u8]) -> &[u8] {
    path.iter().rposition(|&b| b == b'/').map_or(&[][..], |i| &path[..i])
}

/// Replaces in `tree` what `fresh` listed again: the direct entries of `relisted` directories,
/// everything below subdirectories that were walked whole or are gone, and the directories'
/// own entries.
fn merge(tree: &mut Tree, mut fresh: Tree, relisted: &HashSet<Vec<u8>>, walked: &HashSet<Vec<u8>>) {
    fresh.entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    // Subdirectories a relisted directory no longer holds as the same directory: their
    // subtrees go (the walked ones come back from `fresh`).
    let mut dropped: HashSet<Vec<u8>> = walked.clone();
    for e in &tree.entries {
        if e.is_dir() && relisted.contains(parent_bytes(e.path.as_bytes())) {
            let same = fresh.get(&e.path).is_some_and(|n| n.is_dir() && n.ino == e.ino && n.dev == e.dev);
            if !same {
                dropped.insert(e.path.as_bytes().to_vec());
            }
        }
    }
    let own: HashSet<&RelPath> = fresh.entries.iter().map(|e| &e.path).collect();
    let replaced = |path: &RelPath| {
        let parent = parent_bytes(path.as_bytes());
        relisted.contains(parent) || has_ancestor_in(&dropped, parent)
    };
    tree.entries.retain(|e| !replaced(&e.path) && !own.contains(&e.path));
    tree.entries.append(&mut fresh.entries);
    tree.entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    for (old, new) in [
        (&mut tree.ignored, fresh.ignored),
        (&mut tree.special, fresh.special),
        (&mut tree.leftovers, fresh.leftovers),
    ] {
        old.retain(|p| !replaced(p));
        old.extend(new);
        old.sort_unstable();
        old.dedup();
    }
    tree.unreadable.retain(|p| !replaced(p) && !relisted.contains(p.as_bytes()));
    tree.unreadable.extend(fresh.unreadable);
    tree.errors = fresh.errors;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn rel(s: &str) -> RelPath {
        RelPath::from_bytes(s.as_bytes())
    }

    fn paths(tree: &Tree) -> Vec<String> {
        tree.entries.iter().map(|e| e.path.to_string()).collect()
    }

    /// Rescans `dirs` and checks the result equals a full scan (entries with their stamps).
    fn rescan_matches_a_full_scan(
        root: &Root,
        tree: &mut Tree,
        dirs: &[&str],
        created: &[&str],
    ) -> Vec<String> {
        let dirs: BTreeSet<RelPath> = dirs.iter().map(|d| rel(d)).collect();
        let created: BTreeSet<RelPath> = created.iter().map(|d| rel(d)).collect();
        let mut watched = Vec::new();
        let rules = tree.rules.clone();
        let given = [&rules];
        let scan_rules = ScanRules::Given(&given);
        assert_eq!(
            rescan(root, tree, scan_rules, &dirs, &created, true, &mut |d| watched.push(d.to_string()))
                .unwrap(),
            None
        );
        let full = scan::scan(root).unwrap();
        assert_eq!(paths(tree), paths(&full));
        for (a, b) in tree.entries.iter().zip(&full.entries) {
            assert_eq!(Stamp::of(a), Stamp::of(b), "{}", a.path);
            assert_eq!((a.mode, &a.kind), (b.mode, &b.kind), "{}", a.path);
        }
        watched
    }

    #[test]
    fn listing_changed_directories_again_equals_a_full_scan() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        for dir in ["a/b", "a/c", "keep/deep", "gone/x"] {
            fs::create_dir_all(p.join(dir)).unwrap();
        }
        for f in ["a/1", "a/b/2", "a/c/3", "keep/deep/4", "gone/x/5", "top"] {
            fs::write(p.join(f), f).unwrap();
        }
        let root = Root::open(p).unwrap();
        let mut tree = scan::scan(&root).unwrap();

        // Edits in a/, a directory removed with its contents, a new tree, a file in a/b.
        fs::write(p.join("a/1"), "changed!").unwrap();
        fs::write(p.join("a/new"), "n").unwrap();
        fs::remove_dir_all(p.join("gone")).unwrap();
        fs::create_dir_all(p.join("fresh/sub/subsub")).unwrap();
        fs::write(p.join("fresh/sub/subsub/f"), "f").unwrap();
        fs::write(p.join("a/b/2b"), "2b").unwrap();
        symlink("top", p.join("a/link")).unwrap();
        let watched = rescan_matches_a_full_scan(&root, &mut tree, &["", "a", "a/b"], &["fresh"]);
        assert_eq!(watched, vec!["fresh", "fresh/sub", "fresh/sub/subsub"]);

        // A directory replaced by another of the same name, and a file replaced by a directory.
        fs::rename(p.join("a/c"), p.join("a/c-old")).unwrap();
        fs::create_dir(p.join("a/c")).unwrap();
        fs::remove_file(p.join("top")).unwrap();
        fs::create_dir(p.join("top")).unwrap();
        fs::write(p.join("top/inside"), "i").unwrap();
        rescan_matches_a_full_scan(&root, &mut tree, &["", "a"], &["a/c", "top"]);

        // An event named a directory that is gone: its parent is listed instead.
        fs::remove_dir_all(p.join("keep/deep")).unwrap();
        rescan_matches_a_full_scan(&root, &mut tree, &["keep/deep"], &[]);
    }

    #[test]
    fn a_changed_rules_file_asks_for_a_full_scan() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::create_dir(p.join("a")).unwrap();
        let root = Root::open(p).unwrap();
        let excludes = crate::ignore::Excludes::none();
        let mut tree = scan::scan_with(&root, ScanRules::Read(&excludes)).unwrap();
        fs::write(p.join("a/.syncignore"), "*.o\n").unwrap();
        let dirs = BTreeSet::from([rel("a")]);
        let rules = tree.rules.clone();
        let full =
            rescan(&root, &mut tree, ScanRules::Given(&[&rules]), &dirs, &BTreeSet::new(), true, &mut |_| {})
                .unwrap();
        assert!(full.is_some_and(|r| r.contains(".syncignore")));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write(usize),
        Remove(usize),
        Mkdir(usize),
        Rename(usize, usize),
    }

    use proptest::strategy::Strategy as _;

    const PATHS: [&str; 8] = ["a", "b", "a/x", "a/y", "b/x", "a/x/z", "c", "b/x/z"];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 200, failure_persistence: None, ..Default::default() })]

        /// Any sequence of changes, rescanned at the directories inotify names for them (the
        /// parent of every entry created, written, removed or renamed), equals a full scan.
        #[test]
        fn rescanning_the_directories_with_events_equals_a_full_scan(
            ops in proptest::collection::vec(
                proptest::prop_oneof![
                    (0..PATHS.len()).prop_map(Op::Write),
                    (0..PATHS.len()).prop_map(Op::Remove),
                    (0..PATHS.len()).prop_map(Op::Mkdir),
                    (0..PATHS.len(), 0..PATHS.len()).prop_map(|(a, b)| Op::Rename(a, b)),
                ],
                1..12,
            )
        ) {
            let d = tempfile::tempdir().unwrap();
            let p = d.path();
            fs::create_dir_all(p.join("a/x")).unwrap();
            fs::write(p.join("a/y"), "y").unwrap();
            let root = Root::open(p).unwrap();
            let mut tree = scan::scan(&root).unwrap();
            let (mut dirty, mut created) = (BTreeSet::new(), BTreeSet::new());
            let parent = |s: &str| rel(s).parent().unwrap_or_else(|| rel(""));
            for op in ops {
                let touched: Vec<&str> = match op {
                    Op::Write(i) => fs::write(p.join(PATHS[i]), format!("{i}")).map(|()| vec![PATHS[i]]).unwrap_or_default(),
                    Op::Remove(i) => {
                        let at = p.join(PATHS[i]);
                        let removed = if at.is_dir() { fs::remove_dir_all(&at) } else { fs::remove_file(&at) };
                        removed.map(|()| vec![PATHS[i]]).unwrap_or_default()
                    }
                    Op::Mkdir(i) => fs::create_dir(p.join(PATHS[i])).map(|()| vec![PATHS[i]]).unwrap_or_default(),
                    Op::Rename(i, j) => fs::rename(p.join(PATHS[i]), p.join(PATHS[j])).map(|()| vec![PATHS[i], PATHS[j]]).unwrap_or_default(),
                };
                // inotify reports a directory made or moved in as created.
                let made = match op {
                    Op::Mkdir(i) | Op::Rename(_, i) => Some(PATHS[i]).filter(|t| touched.contains(t) && p.join(t).is_dir()),
                    _ => None,
                };
                created.extend(made.map(rel));
                dirty.extend(touched.into_iter().map(parent));
            }
            let show = |set: &BTreeSet<RelPath>| set.iter().map(ToString::to_string).collect::<Vec<_>>();
            let (dirs, made) = (show(&dirty), show(&created));
            let dirs: Vec<&str> = dirs.iter().map(String::as_str).collect();
            let made: Vec<&str> = made.iter().map(String::as_str).collect();
            rescan_matches_a_full_scan(&root, &mut tree, &dirs, &made);
        }
    }
}
