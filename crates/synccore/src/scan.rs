//! Walks a tree into a sorted list of entries (SPEC section 2), never following a symlink.
//! Each directory is opened relative to its parent's open descriptor (`O_NOFOLLOW`) and each
//! entry is `lstat`ed relative to its directory, so a directory swapped for a symlink while
//! the walk runs cannot lead it outside the root (the security issue): the swapped entry is
//! reported as what it now is. (A walker of its own rather than walkdir, which follows paths:
//! see docs/architecture.md for which walker walks what.) Problems below the root are not
//! fatal: they are collected with their paths, and every path that could not be read is
//! remembered so that nothing under it is ever deleted elsewhere.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::FileType;

use crate::entry::{Entry, Kind, MODE_MASK, Mtime, Owner};
use crate::error::{Error, IoResultExt, Op, Result};
use crate::fsio::{Dir, Root, is_temp_name};
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
}

/// Walks the tree at `root`. Fails only when the root itself cannot be read.
pub fn scan(root: &Root) -> Result<Tree> {
    let top = root.top();
    // Fail early, with the root's own name, when the root cannot be listed at all.
    top.entries().at(Op::ReadDir, root.path())?;
    let mut tree = Tree { dev: top.stat_self().at(Op::Stat, root.path())?.st_dev, ..Tree::default() };
    walk(top, &mut tree);
    // Directories are listed depth first in no particular order; the total order is bytes.
    tree.entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
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
struct Pending {
    parent: Arc<Dir>,
    name: OsString,
    rel: Vec<u8>,
    entry: usize,
}

/// Lists every directory below `top` depth first.
fn walk(top: &Arc<Dir>, tree: &mut Tree) {
    let mut pending = Vec::new();
    let mut dropped = Vec::new();
    list(top, &[], tree, &mut pending);
    while let Some(p) = pending.pop() {
        let dir = match p.parent.open_subdir(&p.name) {
            Ok(dir) => Arc::new(dir),
            // Removed since it was listed: it is simply gone.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                dropped.push(p.entry);
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
        list(&dir, &p.rel, tree, &mut pending);
    }
    if !dropped.is_empty() {
        dropped.sort_unstable();
        let mut index = 0;
        tree.entries.retain(|_| {
            index += 1;
            dropped.binary_search(&(index - 1)).is_err()
        });
    }
}

/// Lists one directory (`rel` below the root), `lstat`ing each entry relative to it; its
/// subdirectories are queued on `pending`.
fn list(dir: &Arc<Dir>, rel: &[u8], tree: &mut Tree, pending: &mut Vec<Pending>) {
    let names = match dir.entries() {
        Ok(names) => names,
        Err(e) => {
            tree.unreadable.push(RelPath::from_bytes(rel));
            tree.errors.push(Error::Io { op: Op::ReadDir, path: dir.path().to_path_buf(), source: e });
            return;
        }
    };
    for (name, _) in names {
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
        match entry_at(dir, &name, path.clone()) {
            Ok(Some(entry)) => {
                if entry.is_dir() {
                    pending.push(Pending {
                        parent: Arc::clone(dir),
                        name,
                        rel: child,
                        entry: tree.entries.len(),
                    });
                }
                tree.entries.push(entry);
            }
            Ok(None) => tree.special.push(path),
            // Gone since it was listed.
            Err(err) if err.io_kind() == Some(io::ErrorKind::NotFound) => {}
            Err(err) => {
                tree.unreadable.push(path);
                tree.errors.push(err);
            }
        }
    }
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
    let st = dir.stat(name).at(Op::Stat, &dir.path_of(name))?;
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => {
            let target = dir.read_link(name).at(Op::ReadLink, &dir.path_of(name))?;
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
        mtime: Mtime::of_stat(&st),
        mode: st.st_mode & MODE_MASK,
        ino: st.st_ino,
        dev: st.st_dev,
        owner: Owner::of_stat(&st),
    }))
}

/// The entry at `rel` below `root`, if it exists and is not a special file.
pub fn entry_of(root: &Root, rel: &RelPath) -> Result<Option<Entry>> {
    let (dir, name) = root.parent_of(rel.as_path()).at(Op::Stat, &root.path_of(rel.as_path()))?;
    entry_at(&dir, name, rel.clone())
}

/// Joins a relative path onto a root path (for messages and the programs' own files).
pub fn join(root: &Path, rel: &RelPath) -> PathBuf {
    root.join(rel.as_path())
}
