//! Walks a tree into a sorted list of entries (SPEC section 2), never following symlinks.
//! Problems below the root are not fatal: they are collected with their paths, and every path
//! that could not be read is remembered so that nothing under it is ever deleted elsewhere.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use crate::entry::{Entry, Kind, MODE_MASK, Mtime};
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
    let walker = WalkDir::new(root).min_depth(1).follow_links(false).sort_by_file_name();
    for item in walker {
        match item {
            Ok(dent) => {
                let rel = relative(root, dent.path());
                if is_temp_name(dent.file_name()) {
                    tree.leftovers.push(rel);
                    continue;
                }
                match entry_of(dent.path(), rel.clone()) {
                    Ok(Some(entry)) => tree.entries.push(entry),
                    Ok(None) => tree.special.push(rel),
                    Err(err) => {
                        tree.unreadable.push(rel);
                        tree.errors.push(err);
                    }
                }
            }
            Err(err) => {
                let path = err.path().map_or_else(|| root.to_path_buf(), Path::to_path_buf);
                // A directory that vanished between listing and reading is simply gone.
                let vanished = err.io_error().is_some_and(|e| e.kind() == io::ErrorKind::NotFound);
                let rel = relative(root, &path);
                if vanished && path != root {
                    continue;
                }
                tree.unreadable.push(rel);
                let source = err.into_io_error().unwrap_or_else(|| io::Error::other("walk error"));
                tree.errors.push(Error::Io { op: Op::ReadDir, path, source });
            }
        }
    }
    // walkdir yields a directory's subtree before its next sibling; the total order is bytes.
    tree.entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    // The tree lives for the whole pass: give back the growth slack (up to half of it).
    tree.entries.shrink_to_fit();
    // A directory that failed to list was pushed as an entry too: keep it, it exists.
    Ok(tree)
}

/// Reads one entry's metadata; `Ok(None)` for special files.
pub fn entry_of(path: &Path, rel: RelPath) -> Result<Option<Entry>> {
    let meta = std::fs::symlink_metadata(path).at(Op::Stat, path)?;
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
        mtime: Mtime::of(&meta),
        mode: meta.mode() & MODE_MASK,
        ino: meta.ino(),
    }))
}

fn relative(root: &Path, path: &Path) -> RelPath {
    let rel = path.strip_prefix(root).unwrap_or(path);
    RelPath::from_bytes(rel.as_os_str().as_bytes())
}

/// Joins a relative path onto a root.
pub fn join(root: &Path, rel: &RelPath) -> PathBuf {
    root.join(rel.as_path())
}
