//! Directories that moved whole and unchanged, found before any file is paired: a pass after
//! `mv photos archive/2024` deletes and creates every entry below, and pairing them file by
//! file only to find at the end that they all moved together costs more than the rest of the
//! pass. So each deleted directory's subtree and each created directory's subtree is first
//! reduced to a signature (every entry's path relative to the directory, its kind and its
//! quick-check [`Key`], in path order), and a deleted directory whose signature one created
//! directory alone shares is moved there in one rename, after an exact comparison of both
//! lists (a signature only proposes). Signatures that several directories share (copies of
//! one directory) are left to the file-by-file pairing, which reads content where names tie.
//!
//! Memory: one signature per deleted and per created directory; it grows with the changed
//! entries, never with the tree.

use std::hash::{BuildHasher, Hash, Hasher};

use foldhash::quality::{FixedState, FoldHasher};
use foldhash::{HashMap, HashMapExt};

use crate::entry::Entry;
use crate::plan::Stamp;
use crate::relpath::RelPath;

use super::{Changed, Key, Move, Target, below, key};

/// What a subtree holds, reduced: how many entries, and two independently seeded 64-bit
/// hashes of their relative paths and keys in path order. Equal signatures only propose a
/// move (the lists are compared before it is made), so a fast hash does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Signature {
    entries: u64,
    hashes: (u64, u64),
}

/// A signature being computed, fed one entry at a time in path order.
struct Signing {
    entries: u64,
    hashers: (FoldHasher<'static>, FoldHasher<'static>),
}

impl Signing {
    fn new() -> Self {
        let (first, second) = (FixedState::with_seed(0x5eed_0001), FixedState::with_seed(0x5eed_0002));
        Signing { entries: 0, hashers: (first.build_hasher(), second.build_hasher()) }
    }

    fn add(&mut self, relative: &[u8], key: Option<&Key>) {
        self.entries += 1;
        for hasher in [&mut self.hashers.0, &mut self.hashers.1] {
            relative.hash(hasher);
            key.hash(hasher);
        }
    }

    fn finish(&self) -> Signature {
        Signature { entries: self.entries, hashes: (self.hashers.0.finish(), self.hashers.1.finish()) }
    }
}

/// `path` relative to its ancestor `dir` (the bytes after `dir/`).
fn relative<'p>(path: &'p RelPath, dir: &[u8]) -> &'p [u8] {
    path.as_bytes().get(dir.len() + 1..).unwrap_or_default()
}

/// The ancestors of `path` (as byte prefixes), nearest first.
fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut end = path.len();
    std::iter::from_fn(move || {
        end = path[..end].iter().rposition(|&b| b == b'/')?;
        Some(&path[..end])
    })
}

/// Finds the directories of `changed` that moved whole and unchanged (outermost first, in the
/// order of their `from`). `owners` as for the quick check's keys. A failure to read the
/// created entries back finds none (their files are then paired one by one, or copied).
pub(super) fn find(changed: &Changed<'_>, owners: bool, target: &Target<'_>) -> Vec<Move> {
    let deleted = changed.deleted;
    // The deleted directories by signature (their index in `deleted`). Empty ones are left
    // out: creating one costs what renaming it would.
    let mut olds: HashMap<Signature, Vec<usize>> = HashMap::new();
    for (at, dir) in deleted.iter().enumerate().filter(|(_, e)| e.is_dir()) {
        let inside = below(deleted, &dir.path);
        if inside.is_empty() {
            continue;
        }
        let mut signing = Signing::new();
        for e in inside {
            signing.add(relative(&e.path, dir.path.as_bytes()), key(e, owners).as_ref());
        }
        olds.entry(signing.finish()).or_default().push(at);
    }
    if olds.is_empty() {
        return Vec::new();
    }
    let Ok(news) = created_signatures(changed, owners, &olds) else { return Vec::new() };
    // Proposals: a deleted directory and the one created directory with its signature, where
    // no other directory on either side has it.
    let mut proposed: Vec<(usize, RelPath)> = olds
        .iter()
        .filter_map(|(signature, ats)| match (ats.as_slice(), news.get(signature).map(Vec::as_slice)) {
            ([at], Some([to])) => Some((*at, to.clone())),
            _ => None,
        })
        .collect();
    if proposed.is_empty() {
        return Vec::new();
    }
    // Outermost first: in path order a directory comes before everything below it.
    proposed.sort_unstable_by_key(|(at, _)| *at);
    let Ok(verified) = verify(changed, &proposed, owners) else { return Vec::new() };
    let mut moves: Vec<Move> = Vec::new();
    for ((at, to), same) in proposed.iter().zip(verified) {
        let dir = &deleted[*at];
        let nested = moves.iter().any(|m| dir.path.is_within(&m.from) || to.is_within(&m.to));
        if same && !nested && target.movable(dir, to) {
            moves.push(Move { from: dir.path.clone(), to: to.clone(), was: Stamp::of(dir) });
        }
    }
    moves
}

/// The signatures of the created directories, kept only where a deleted directory has the
/// same one. One read of the created entries: a directory comes before everything below it,
/// and every entry is fed to each of its created ancestors (the entries below one directory
/// arrive in path order, as the deleted ones do).
fn created_signatures(
    changed: &Changed<'_>,
    owners: bool,
    olds: &HashMap<Signature, Vec<usize>>,
) -> std::io::Result<HashMap<Signature, Vec<RelPath>>> {
    let mut signing: HashMap<Box<[u8]>, Signing> = HashMap::new();
    changed.created.each(|e| {
        let key = key(e, owners);
        let bytes = e.path.as_bytes();
        for ancestor in ancestors(bytes) {
            // A created entry's created ancestors are its nearest ones, up to the first the
            // target has.
            let Some(signing) = signing.get_mut(ancestor) else { break };
            signing.add(&bytes[ancestor.len() + 1..], key.as_ref());
        }
        if e.is_dir() {
            signing.insert(Box::from(bytes), Signing::new());
        }
    })?;
    let mut news: HashMap<Signature, Vec<RelPath>> = HashMap::new();
    for (path, signing) in signing {
        let signature = signing.finish();
        if olds.contains_key(&signature) {
            news.entry(signature).or_default().push(RelPath::from_bytes(&path));
        }
    }
    Ok(news)
}

/// For each proposal (a deleted directory's index, a created directory), whether the
/// created entries below the latter are the deleted ones below the former: the same relative
/// paths in the same order, directories at the same places, files and symlinks with equal
/// keys. One read of the created entries, each compared where it falls (a cursor per
/// proposal), nothing copied.
fn verify(changed: &Changed<'_>, proposed: &[(usize, RelPath)], owners: bool) -> std::io::Result<Vec<bool>> {
    struct Check<'a> {
        from: &'a RelPath,
        olds: &'a [Entry],
        next: usize,
        same: bool,
    }
    let mut checks: Vec<Check<'_>> = proposed
        .iter()
        .map(|(at, _)| {
            let from = &changed.deleted[*at].path;
            Check { from, olds: below(changed.deleted, from), next: 0, same: true }
        })
        .collect();
    let by_to: HashMap<&[u8], usize> =
        proposed.iter().enumerate().map(|(i, (_, to))| (to.as_bytes(), i)).collect();
    changed.created.each(|new| {
        let bytes = new.path.as_bytes();
        for ancestor in ancestors(bytes) {
            let Some(&i) = by_to.get(ancestor) else { continue };
            let check = &mut checks[i];
            let matches = check.olds.get(check.next).is_some_and(|old| {
                relative(&old.path, check.from.as_bytes()) == &bytes[ancestor.len() + 1..]
                    && old.is_dir() == new.is_dir()
                    && key(old, owners) == key(new, owners)
            });
            check.same &= matches;
            check.next += 1;
        }
    })?;
    Ok(checks.into_iter().map(|c| c.same && c.next == c.olds.len()).collect())
}
