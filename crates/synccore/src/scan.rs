//! Walks a tree into a sorted list of entries (SPEC section 2), never following symlinks.
//! (A small walker of its own rather than walkdir: see [`walk`] for the measured reason.)
//! Problems below the root are not fatal: they are collected with their paths, and every path
//! that could not be read is remembered so that nothing under it is ever deleted elsewhere.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::entry::{Entry, Kind, MODE_MASK, Mtime, Owner};
use crate::error::{Error, IoResultExt, Op, Result};
use crate::fsio::is_temp_name;
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

/// Walks `root` (which must be a directory). Fails only when the root itself cannot be read.
pub fn scan(root: &Path) -> Result<Tree> {
    let meta = std::fs::symlink_metadata(root).at(Op::Stat, root)?;
    if !meta.is_dir() {
        return Err(Error::NotADirectory { path: root.to_path_buf() });
    }
    // Fail early, with the root's own name, when the root cannot be listed at all.
    std::fs::read_dir(root).at(Op::ReadDir, root)?;

    let mut tree = Tree::default();
    walk(root, &mut tree);
    // Directories are listed depth first in no particular order; the total order is bytes.
    tree.entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    // The tree lives for the whole pass: give back the growth slack (up to half of it).
    tree.entries.shrink_to_fit();
    // A directory that failed to list was pushed as an entry too: keep it, it exists.
    Ok(tree)
}

/// Lists every directory below `root` depth first. Each entry is stat'ed relative to its
/// open directory (`DirEntry::metadata` is `fstatat(dirfd, name)`): a path lookup of one
/// component instead of the whole path, which halves the kernel time of a no-change pass
/// over a large tree compared with a walker that stats full paths. Nothing is followed.
fn walk(root: &Path, tree: &mut Tree) {
    let mut pending: Vec<(PathBuf, Vec<u8>)> = vec![(root.to_path_buf(), Vec::new())];
    while let Some((dir, rel)) = pending.pop() {
        let listing = match std::fs::read_dir(&dir) {
            Ok(listing) => listing,
            // A directory that vanished since it was listed is simply gone.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                tree.unreadable.push(RelPath::from_bytes(&rel));
                tree.errors.push(Error::Io { op: Op::ReadDir, path: dir, source: e });
                continue;
            }
        };
        for item in listing {
            let dent = match item {
                Ok(dent) => dent,
                Err(e) => {
                    tree.unreadable.push(RelPath::from_bytes(&rel));
                    tree.errors.push(Error::Io { op: Op::ReadDir, path: dir.clone(), source: e });
                    break;
                }
            };
            let name = dent.file_name();
            let mut child = Vec::with_capacity(rel.len() + 1 + name.len());
            if !rel.is_empty() {
                child.extend_from_slice(&rel);
                child.push(b'/');
            }
            child.extend_from_slice(name.as_bytes());
            let path = RelPath::from_bytes(&child);
            if is_temp_name(&name) {
                tree.leftovers.push(path);
                continue;
            }
            let entry = match dent.metadata() {
                Ok(meta) => entry_from(&meta, path.clone(), &dir.join(&name)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => Err(Error::Io { op: Op::Stat, path: dir.join(&name), source: e }),
            };
            match entry {
                Ok(Some(entry)) => {
                    if entry.is_dir() {
                        pending.push((dir.join(&name), child));
                    }
                    tree.entries.push(entry);
                }
                Ok(None) => tree.special.push(path),
                Err(err) => {
                    tree.unreadable.push(path);
                    tree.errors.push(err);
                }
            }
        }
    }
}

/// Reads one entry's metadata; `Ok(None)` for special files.
pub fn entry_of(path: &Path, rel: RelPath) -> Result<Option<Entry>> {
    let meta = std::fs::symlink_metadata(path).at(Op::Stat, path)?;
    entry_from(&meta, rel, path)
}

/// An entry from already-read metadata (`path` is needed only to read a symlink's target);
/// `Ok(None)` for special files.
fn entry_from(meta: &std::fs::Metadata, rel: RelPath, path: &Path) -> Result<Option<Entry>> {
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        Kind::File
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        let target = std::fs::read_link(path).at(Op::ReadLink, path)?;
        Kind::Symlink(target.as_os_str().as_bytes().into())
    } else {
        return Ok(None);
    };
    let size = match &kind {
        Kind::File => meta.len(),
        Kind::Dir => 0,
        Kind::Symlink(t) => t.len() as u64,
    };
    Ok(Some(Entry {
        path: rel,
        kind,
        size,
        mtime: Mtime::of(meta),
        mode: meta.mode() & MODE_MASK,
        ino: meta.ino(),
        owner: Owner::of(meta),
    }))
}

/// Joins a relative path onto a root.
pub fn join(root: &Path, rel: &RelPath) -> PathBuf {
    root.join(rel.as_path())
}
