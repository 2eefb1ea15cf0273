//! Walks a tree into a sorted list of entries (SPEC section 2), never following a symlink.
//! Each directory is opened relative to its parent's open descriptor (`O_NOFOLLOW`) and each
//! entry is `lstat`ed relative to its directory, so a directory swapped for a symlink while
//! the walk runs cannot lead it outside the root (the security issue): the swapped entry is
//! reported as what it now is. (A walker of its own rather than walkdir, which follows paths:
//! see docs/architecture.md for which walker walks what.) Problems below the root are not
//! fatal: they are collected with their paths, and every path that could not be read is
//! remembered so that nothing under it is ever deleted elsewhere.
//!
//! A scan may apply ignore rules (issue 14, [`crate::ignore`]): each directory's listing says
//! whether it holds a `.syncignore` (read then, one `openat`), and an ignored entry is only
//! named in [`Tree::ignored`]: never `lstat`ed (when the listing gives its type), opened or
//! descended into.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::FileType;

use crate::checksum::{Digest, Kept};
use crate::entry::{Entry, Kind, MODE_MASK, Mtime, Owner};
use crate::error::{Error, IoResultExt, Op, Result};
use crate::fsio::{Dir, Root, is_temp_name};
use crate::ignore::{self, Chain, Excludes, Found, Rules};
use crate::relpath::RelPath;

/// The result of walking one root.
#[derive(Debug, Default)]
pub struct Tree {
    /// Every file, directory and symlink below the root, sorted by path bytes.
    pub entries: Vec<Entry>,
    /// Paths that could not be read (a directory's listing or an entry's metadata). Nothing at
    /// or below them may be deleted on the other side.
    pub unreadable: Vec<RelPath>,
    /// Per-path problems, for the log; each also counts as a failed entry.
    pub errors: Vec<Error>,
    /// Special files (fifo, socket, device) that were skipped.
    pub special: Vec<RelPath>,
    /// Temporary files a killed pass left behind; the next pass removes them.
    pub leftovers: Vec<RelPath>,
    /// The device of the root (an entry on another device lies below a mount point).
    pub dev: u64,
    /// Ignored entries (issue 14), sorted; what lies below an ignored directory is not listed.
    pub ignored: Vec<RelPath>,
    /// The ignore rules this scan read (with [`ScanRules::Read`]).
    pub rules: Rules,
    /// Entries listed that were gone by the time the scan read them: the tree changed under
    /// the scan. Each is also in [`Tree::unreadable`], so that nothing at or below it is
    /// deleted on the other side before a pass has seen where it went (a directory renamed
    /// mid-scan is then a move on the next pass, not a deletion now and a copy then); a
    /// version, a picture of one moment, is taken again.
    pub vanished: u64,
}

/// Which ignore rules a scan applies (issue 14).
#[derive(Debug, Clone, Copy)]
pub enum ScanRules<'r> {
    /// None: every entry is listed.
    None,
    /// The `.syncignore` files of the tree, read as it is walked, plus these patterns.
    Read(&'r Excludes),
    /// Rules read by earlier scans, not the files on disk now: an entry is ignored when any
    /// of them ignores it.
    Given(&'r [&'r Rules]),
}

impl Tree {
    /// Looks an entry up by path.
    pub fn get(&self, path: &RelPath) -> Option<&Entry> {
        self.entries.binary_search_by(|e| e.path.cmp(path)).ok().map(|i| &self.entries[i])
    }

    /// Number of non-directory entries (files and symlinks).
    pub fn file_count(&self) -> usize {
        self.entries.iter().filter(|e| !e.is_dir()).count()
    }

    /// True when `path` is at or below a path that could not be read.
    pub fn is_protected(&self, path: &RelPath) -> bool {
        self.unreadable.iter().any(|u| path.is_within(u))
    }

    /// Leaves out what `rules` (another scan's) ignore, as if this scan had applied them too:
    /// the entries go, the topmost of them are added to [`Tree::ignored`] (issue 14: twoway
    /// ignores a path that either side's rules ignore).
    pub fn leave_out(&mut self, rules: &Rules) {
        if rules.is_empty() {
            return;
        }
        let mask = rules.ignored_mask(self.entries.iter().map(|e| (&e.path, e.is_dir())));
        let mut dirs: std::collections::HashSet<&RelPath> = std::collections::HashSet::new();
        for (e, ignored) in self.entries.iter().zip(&mask) {
            if !*ignored {
                continue;
            }
            if e.is_dir() {
                dirs.insert(&e.path);
            }
            if !e.path.parent().is_some_and(|p| dirs.contains(&p)) {
                self.ignored.push(e.path.clone());
            }
        }
        let gone: Vec<RelPath> = self.ignored.clone();
        let below = |p: &RelPath| gone.iter().any(|g| p.is_within(g));
        let mut keep = mask.iter().map(|m| !m);
        self.entries.retain(|_| keep.next().unwrap_or(true));
        self.unreadable.retain(|p| !below(p));
        self.special.retain(|p| !below(p) && !rules.is_ignored(p.as_bytes(), false));
        self.leftovers.retain(|p| !below(p));
        self.ignored.sort_unstable();
        self.ignored.dedup();
    }
}

/// Walks the tree at `root`. Fails only when the root itself cannot be read.
pub fn scan(root: &Root) -> Result<Tree> {
    scan_with(root, ScanRules::None)
}

/// Walks the tree at `root`, leaving out what `rules` ignore. Fails when the root itself
/// cannot be read, or (bad input) when a `.syncignore` holds a pattern the matcher refuses.
pub fn scan_with(root: &Root, rules: ScanRules<'_>) -> Result<Tree> {
    scan_watched(root, rules, &mut |_| {})
}

/// [`scan_with`], telling `before` each directory's relative path before it is listed (the
/// root's is empty): watch mode watches a directory first, so that no change made in it
/// after its listing goes unseen.
pub fn scan_watched(
    root: &Root,
    rules: ScanRules<'_>,
    before: &mut (dyn FnMut(&[u8]) + Send),
) -> Result<Tree> {
    let mut tree = crate::walk::collect(crate::walk::Walker::watched(root, rules, Box::new(before))?)?;
    // The tree lives for the whole pass: give back the growth slack (up to half of it).
    tree.entries.shrink_to_fit();
    Ok(tree)
}

/// Walks a tree that only the program writes (a version slot, an undo generation) with
/// walkdir, which the design names for the job: by path, sorted by name, never following
/// symlinks. It is not used on SOURCE, BACKUP, A, B or DIR, where another user could swap a
/// directory for a symlink while the walk runs: a path-based walker could be led outside the
/// tree, the descriptor-based [`scan`] cannot (docs/architecture.md says which walks what).
/// Reads of the files it lists still go through `root`'s descriptors.
pub fn scan_owned(root: &Root) -> Result<Tree> {
    let top = root.path();
    let mut tree = Tree { dev: root.top().stat_self().at(Op::Stat, top)?.st_dev, ..Tree::default() };
    let walk = walkdir::WalkDir::new(top).min_depth(1).follow_links(false).sort_by_file_name();
    // Our temporaries (a half-built tree) are not part of it.
    for item in walk.into_iter().filter_entry(|dent| !is_temp_name(dent.file_name())) {
        let dent = match item {
            Ok(dent) => dent,
            Err(e) => {
                let path = e.path().unwrap_or(top).to_path_buf();
                let rel =
                    path.strip_prefix(top).map_or_else(|_| RelPath::from_bytes(b""), RelPath::from_path);
                tree.unreadable.push(rel);
                let source = e.into_io_error().unwrap_or_else(|| io::Error::other("a directory loop"));
                tree.errors.push(Error::Io { op: Op::ReadDir, path, source });
                continue;
            }
        };
        let Ok(rel) = dent.path().strip_prefix(top).map(RelPath::from_path) else { continue };
        let (dir, name) = root.parent_of(rel.as_path()).at(Op::Stat, dent.path())?;
        match entry_at(&dir, name, rel.clone()) {
            Ok(Some(entry)) => tree.entries.push(entry),
            Ok(None) => tree.special.push(rel),
            Err(err) => {
                tree.unreadable.push(rel);
                tree.errors.push(err);
            }
        }
    }
    // walkdir sorts siblings by name; the total order is the bytes of the whole path.
    tree.entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    Ok(tree)
}

/// Opens `path` as a root and walks it (for trees the caller has no root of yet).
pub fn scan_path(path: &Path) -> Result<Tree> {
    scan(&Root::open(path)?)
}

/// A directory waiting to be listed: its parent, its name there, its relative path, and the
/// index of its own entry (so that the entry can be corrected when the directory turns out
/// to have been replaced since it was stat'ed).
pub(crate) struct Pending {
    parent: Arc<Dir>,
    name: OsString,
    pub(crate) rel: Vec<u8>,
    pub(crate) entry: usize,
}

/// Lists the `pending` directories and everything below them, depth first; `before` is told
/// each directory's relative path before it is opened (the watcher watches it first).
pub(crate) fn descend(
    mut pending: Vec<Pending>,
    tree: &mut Tree,
    rules: ScanRules<'_>,
    before: &mut dyn FnMut(&[u8]),
) -> Result<()> {
    let mut dropped = Vec::new();
    while let Some(p) = pending.pop() {
        before(&p.rel);
        let dir = match p.parent.open_subdir(&p.name) {
            Ok(dir) => Arc::new(dir),
            // Removed or renamed since it was listed: gone, and protected from deletions
            // elsewhere until a pass sees where it went (see `Tree::vanished`).
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                dropped.push(p.entry);
                tree.vanished += 1;
                tree.unreadable.push(RelPath::from_bytes(&p.rel));
                continue;
            }
            // Replaced (by a symlink, say) since it was listed: never followed, recorded as
            // what it is now.
            Err(e) if is_not_a_dir(&e) => {
                let rel = RelPath::from_bytes(&p.rel);
                match entry_at(&p.parent, &p.name, rel.clone()) {
                    Ok(Some(now)) if !now.is_dir() => tree.entries[p.entry] = now,
                    Ok(None) => {
                        dropped.push(p.entry);
                        tree.special.push(rel);
                    }
                    _ => {
                        tree.unreadable.push(rel);
                        tree.errors.push(Error::Io {
                            op: Op::ReadDir,
                            path: p.parent.path_of(&p.name),
                            source: e,
                        });
                    }
                }
                continue;
            }
            Err(e) => {
                tree.unreadable.push(RelPath::from_bytes(&p.rel));
                tree.errors.push(Error::Io { op: Op::ReadDir, path: p.parent.path_of(&p.name), source: e });
                continue;
            }
        };
        list(&dir, &p.rel, tree, rules, &mut pending, None)?;
    }
    if !dropped.is_empty() {
        dropped.sort_unstable();
        let mut index = 0;
        tree.entries.retain(|_| {
            index += 1;
            dropped.binary_search(&(index - 1)).is_err()
        });
    }
    Ok(())
}

/// Where a walk that reads small files puts their contents (see [`list`]).
pub(crate) struct SmallFiles<'a> {
    /// The largest file read, in bytes.
    pub up_to: u64,
    /// The bytes `bytes` may still take; past it, a content is kept as its digest.
    pub room: usize,
    /// The bytes of the files read, one after the other.
    pub bytes: &'a mut Vec<u8>,
    /// Each content with the index of its entry in the listing's `tree.entries`.
    pub read: &'a mut Vec<(usize, Kept)>,
}

/// Lists one directory (`rel` below the root), `lstat`ing each entry relative to it; its
/// subdirectories are queued on `pending`. Ignored entries are only named (issue 14). With
/// `small`, a regular file (as the listing says) is opened instead of `lstat`ed, and one of
/// at most `small.up_to` bytes is read and hashed while it is open (see [`opened_file_at`]).
pub(crate) fn list(
    dir: &Arc<Dir>,
    rel: &[u8],
    tree: &mut Tree,
    rules: ScanRules<'_>,
    pending: &mut Vec<Pending>,
    mut small: Option<SmallFiles<'_>>,
) -> Result<()> {
    let names = match dir.entries() {
        Ok(names) => names,
        Err(e) => {
            tree.unreadable.push(RelPath::from_bytes(rel));
            tree.errors.push(Error::Io { op: Op::ReadDir, path: dir.path().to_path_buf(), source: e });
            return Ok(());
        }
    };
    let chains = match rules {
        ScanRules::None => Vec::new(),
        ScanRules::Read(_) => {
            // The listing says whether there is a rules file: no extra call where there is none.
            if let Some((_, kind)) = names.iter().find(|(n, _)| n.as_bytes() == ignore::RULES_FILE.as_bytes())
                && !read_rules(dir, rel, *kind, tree)?
            {
                return Ok(());
            }
            vec![tree.rules.chain(rel)]
        }
        ScanRules::Given(sets) => sets.iter().map(|r| r.chain(rel)).collect(),
    };
    let chains: Vec<Chain> = chains.into_iter().filter(|c| !c.is_empty()).collect();
    for (name, kind) in names {
        let mut child = Vec::with_capacity(rel.len() + 1 + name.len());
        if !rel.is_empty() {
            child.extend_from_slice(rel);
            child.push(b'/');
        }
        child.extend_from_slice(name.as_bytes());
        let path = RelPath::from_bytes(&child);
        if is_temp_name(&name) {
            tree.leftovers.push(path);
            continue;
        }
        let ignored = |is_dir: bool| chains.iter().any(|c| ignore::decide(c, &child, is_dir));
        // The listing's type decides without an `lstat` where the file system gives one.
        let known_dir = match kind {
            FileType::Unknown => None,
            kind => Some(kind == FileType::Directory),
        };
        if !chains.is_empty() && known_dir.is_some_and(ignored) {
            tree.ignored.push(path);
            continue;
        }
        let opened = match &mut small {
            Some(small) if kind == FileType::RegularFile => opened_file_at(dir, &name, &path, small),
            _ => None,
        };
        let (found, read) = match opened {
            Some((entry, read)) => (Ok(Some(entry)), read),
            None => (entry_at(dir, &name, path.clone()), None),
        };
        match found {
            Ok(Some(entry)) if known_dir.is_none() && !chains.is_empty() && ignored(entry.is_dir()) => {
                tree.ignored.push(path);
            }
            Ok(Some(entry)) => {
                if entry.is_dir() {
                    pending.push(Pending {
                        parent: Arc::clone(dir),
                        name,
                        rel: child,
                        entry: tree.entries.len(),
                    });
                }
                if let (Some(small), Some(read)) = (&mut small, read) {
                    small.read.push((tree.entries.len(), read));
                }
                tree.entries.push(entry);
            }
            Ok(None) => tree.special.push(path),
            // Gone since it was listed (see `Tree::vanished`).
            Err(err) if err.io_kind() == Some(io::ErrorKind::NotFound) => {
                tree.vanished += 1;
                tree.unreadable.push(path);
            }
            Err(err) => {
                tree.unreadable.push(path);
                tree.errors.push(err);
            }
        }
    }
    Ok(())
}

/// Reads the `.syncignore` of `dir` (`rel` below the root; `kind` from the listing) into
/// `tree.rules`, through the directory's descriptor and never through a symlink. False when
/// the file cannot be read: the directory is then unreadable as a whole (not listed, nothing
/// below it deleted elsewhere), since what it holds cannot be told apart; the root's own
/// file fails the scan. A bad pattern is bad input and ends the scan.
fn read_rules(dir: &Dir, rel: &[u8], kind: FileType, tree: &mut Tree) -> Result<bool> {
    let name = OsStr::new(ignore::RULES_FILE);
    let path = dir.path_of(name);
    let read = || -> io::Result<Vec<u8>> {
        let file = dir.open_read(name)?;
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut &file, &mut bytes)?;
        Ok(bytes)
    };
    let found = match kind {
        FileType::Symlink => Found::Symlink,
        FileType::RegularFile | FileType::Unknown => match read() {
            Ok(bytes) => Found::Read(bytes),
            Err(e) if is_not_a_dir(&e) => Found::Symlink,
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => Found::NotAFile,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(source) if rel.is_empty() => return Err(Error::Io { op: Op::Read, path, source }),
            Err(source) => {
                tree.unreadable.push(RelPath::from_bytes(rel));
                tree.errors.push(Error::Io { op: Op::Read, path, source });
                return Ok(false);
            }
        },
        _ => Found::NotAFile,
    };
    tree.rules.add(rel, found, &path)?;
    Ok(true)
}

/// True for the errors of opening something that is no longer a directory without following
/// it: `ELOOP` (a symlink) or `ENOTDIR`.
pub fn is_not_a_dir(e: &io::Error) -> bool {
    [rustix::io::Errno::LOOP, rustix::io::Errno::NOTDIR]
        .iter()
        .any(|x| e.raw_os_error() == Some(x.raw_os_error()))
}

/// The entry `name` in `dir` (`rel` below the root), from its `lstat`; `Ok(None)` for special
/// files.
pub fn entry_at(dir: &Dir, name: &OsStr, rel: RelPath) -> Result<Option<Entry>> {
    let st = dir.stat(name).at(Op::Stat, || dir.path_of(name))?;
    entry_of_stat(dir, name, rel, &st)
}

/// The regular file `name` in `dir` (`rel` below the root) as an entry, from the `fstat` of
/// the file opened (never through a symlink) in place of an `lstat`, with its content when it
/// holds at most `small.up_to` bytes (read in one call while it is open, into `small.bytes`
/// while it has room, else kept as its SHA-256). A
/// `--checksum` mirror reads every file anyway: for a small one this is one open instead of
/// an `lstat` and an open, and the content is known before the diff asks (issue 17). `None`
/// when it cannot be opened as a regular file (the caller `lstat`s it, which reports what is
/// there); the content is `None` when the read does not give exactly the bytes the `fstat`
/// promised (a file changing meanwhile is compared later, as any other).
fn opened_file_at(
    dir: &Dir,
    name: &OsStr,
    rel: &RelPath,
    small: &mut SmallFiles<'_>,
) -> Option<(Entry, Option<Kept>)> {
    let (file, st) = dir.open_read_stat(name).ok()?;
    let entry = entry_of_stat(dir, name, rel.clone(), &st).ok().flatten()?;
    if entry.size > small.up_to {
        return Some((entry, None));
    }
    let Some(size) = usize::try_from(entry.size).ok() else { return Some((entry, None)) };
    // Appends the file's bytes to `buffer` (read into its spare room, nothing zeroed first),
    // with room for one byte more than promised: a file that grew meanwhile fills it. A file
    // that did not give exactly its size appends and keeps nothing (compared later).
    let read_into = |buffer: &mut Vec<u8>| -> bool {
        let at = buffer.len();
        buffer.reserve(size + 1);
        let exact = rustix::io::read(&file, rustix::buffer::spare_capacity(buffer)) == Ok(size);
        if !exact {
            buffer.truncate(at);
        }
        exact
    };
    let read = if size <= small.room {
        let at = small.bytes.len();
        let kept = read_into(small.bytes).then(|| Kept::Bytes(at..at + size));
        small.room -= small.bytes.len() - at;
        kept
    } else {
        SMALL_READ.with_borrow_mut(|buffer| {
            buffer.clear();
            read_into(buffer).then(|| Kept::Digest(Digest::of_bytes(buffer)))
        })
    };
    Some((entry, read))
}

thread_local! {
    /// The buffer [`opened_file_at`] reads small files into, one per walking thread.
    static SMALL_READ: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The entry `name` in `dir` (`rel` below the root) for the metadata `st`; `Ok(None)` for
/// special files.
fn entry_of_stat(dir: &Dir, name: &OsStr, rel: RelPath, st: &rustix::fs::Stat) -> Result<Option<Entry>> {
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => {
            let target = dir.read_link(name).at(Op::ReadLink, || dir.path_of(name))?;
            Kind::Symlink(target.into())
        }
        _ => return Ok(None),
    };
    let size = match &kind {
        Kind::File => st.st_size as u64,
        Kind::Dir => 0,
        Kind::Symlink(t) => t.len() as u64,
    };
    Ok(Some(Entry {
        path: rel,
        kind,
        size,
        mtime: Mtime::of_stat(st),
        mode: st.st_mode & MODE_MASK,
        ino: st.st_ino,
        dev: st.st_dev,
        owner: Owner::of_stat(st),
    }))
}

/// The entry at `rel` below `root`, if it exists and is not a special file.
pub fn entry_of(root: &Root, rel: &RelPath) -> Result<Option<Entry>> {
    let (dir, name) = root.parent_of(rel.as_path()).at(Op::Stat, || root.path_of(rel.as_path()))?;
    entry_at(&dir, name, rel.clone())
}

/// Joins a relative path onto a root path (for messages and the programs' own files).
pub fn join(root: &Path, rel: &RelPath) -> PathBuf {
    root.join(rel.as_path())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn paths(v: &[RelPath]) -> Vec<String> {
        v.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn ignored_entries_are_named_not_listed_and_rules_files_are_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("deps/pkg")).unwrap();
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join(".syncignore"), "deps/\n*.o\n").unwrap();
        fs::write(root.join("deps/pkg/x"), "x").unwrap();
        fs::write(root.join("a.o"), "o").unwrap();
        fs::write(root.join("sub/b.o"), "o").unwrap();
        fs::write(root.join("outside-rules"), "*\n").unwrap();
        std::os::unix::fs::symlink(root.join("outside-rules"), root.join("sub/.syncignore")).unwrap();
        let excludes = Excludes::none();
        let tree = scan_with(&Root::open(root).unwrap(), ScanRules::Read(&excludes)).unwrap();
        let kept: Vec<String> = tree.entries.iter().map(|e| e.path.to_string()).collect();
        assert_eq!(kept, [".syncignore", "outside-rules", "sub", "sub/.syncignore"]);
        assert_eq!(paths(&tree.ignored), ["a.o", "deps", "sub/b.o"]);
        let not_read: Vec<RelPath> = tree.rules.not_read().map(|(p, _)| p).collect();
        assert_eq!(paths(&not_read), ["sub/.syncignore"]);
        // Another scan's rules, applied afterwards, give what a scan with them gives.
        let mut all = scan(&Root::open(root).unwrap()).unwrap();
        all.leave_out(&tree.rules);
        assert_eq!(all.entries, tree.entries);
        assert_eq!(all.ignored, tree.ignored);
    }

    #[test]
    fn a_bad_pattern_in_the_tree_fails_the_scan_as_bad_input() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("s")).unwrap();
        fs::write(d.path().join("s/.syncignore"), "[z-a]\n").unwrap();
        let err = scan_with(&Root::open(d.path()).unwrap(), ScanRules::Read(&Excludes::none())).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
    }
}
