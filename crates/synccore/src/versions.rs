//! The versions layout (SPEC section 3 "Versioned"): where `oneway --versioned` keeps the latest
//! (`_1`) and previous (`_0`) state of a SOURCE, its manifest and its lock. Everything that
//! names a path below a versions root lives here, so that a later `twoway --restore` reads
//! exactly what `oneway` writes:
//!
//! ```text
//! ROOT/__versions__/<name>/_1/            latest state of SOURCE
//! ROOT/__versions__/<name>/_0/            the state before it
//! ROOT/__versions__/<name>/manifest.json  see [`manifest`]
//! ROOT/__versions__/<name>/hashes-<id>.jsonl  the hash cache of `_1`, see [`hashes`]
//! ROOT/__versions__/<name>/lock           flock held by the process that owns the slots
//! ROOT/__versions__/<name>/_undo/<stamp>/  what a directory held before a restore, see [`undo`]
//! ```
//!
//! `<name>` is SOURCE's base name, a dash and the first 8 hex digits of the SHA-256 of SOURCE's
//! canonical absolute path bytes, so two sources with one base name never collide. How a new
//! version is swapped in (and how an interrupted swap is repaired) is [`rotation`].

pub mod hashes;
pub mod manifest;
pub mod rotation;
pub mod undo;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::checksum::Digest;
use crate::error::{Error, Result};
use crate::fsio::Root;

/// The directory below a versions root that holds one directory per protected SOURCE.
pub const VERSIONS_DIR: &str = "__versions__";

/// One of the two version slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// `_1`: the latest state.
    Latest,
    /// `_0`: the state before the latest.
    Previous,
}

impl Slot {
    /// The slot's directory name.
    pub fn dir_name(self) -> &'static str {
        match self {
            Slot::Latest => "_1",
            Slot::Previous => "_0",
        }
    }
}

/// The `<name>` of SOURCE's versions: base name, `-`, 8 hex digits of SHA-256 of the canonical
/// absolute path. Raw bytes throughout, so a non-UTF-8 base name is kept as it is.
pub fn version_name(source: &Path) -> OsString {
    let hash = Digest::of_bytes(source.as_os_str().as_bytes()).to_hex();
    // Only `/` has no base name; it cannot be a SOURCE (every ROOT would lie inside it).
    let base = source.file_name().unwrap_or(OsStr::new("root"));
    let mut name = base.as_bytes().to_vec();
    name.push(b'-');
    name.extend_from_slice(&hash.as_bytes()[..8]);
    OsString::from_vec(name)
}

/// Names inside `__versions__/<name>` (relative to the [`Root`] that [`Layout::open`] gives).
pub mod names {
    /// The manifest.
    pub const MANIFEST: &str = "manifest.json";
    /// The lock held while a process owns the slots (rotation or restore).
    pub const LOCK: &str = "lock";
    /// Where the next `_1` is built (a temporary name: scans skip it, repair removes it).
    pub const NEXT: &str = ".synccore-tmp-next";
    /// Where the retired `_0` waits to be removed.
    pub const DROP: &str = ".synccore-tmp-drop";
    /// The manifest of a rotation in progress, written before the renames and renamed over
    /// [`MANIFEST`] after them.
    pub const PENDING_MANIFEST: &str = ".synccore-tmp-manifest";
}

/// Where one SOURCE's versions live: `ROOT/__versions__/<name>`. Its files are reached only
/// through [`Layout::open`], a root opened beneath ROOT without following any symlink (the
/// security issue); the absolute paths here are for messages and locks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// ROOT, the versions root.
    root: PathBuf,
    /// `__versions__/<name>` below ROOT.
    rel: PathBuf,
}

impl Layout {
    /// The layout for `source` (canonical absolute) below the versions root `root`.
    pub fn new(root: &Path, source: &Path) -> Self {
        Layout { root: root.to_path_buf(), rel: Path::new(VERSIONS_DIR).join(version_name(source)) }
    }

    /// The layout whose `ROOT/__versions__/<name>` directory is `dir` (as `.info.json` records
    /// it for a protected directory).
    pub fn at(dir: &Path) -> Self {
        let name = dir.file_name().map(PathBuf::from).unwrap_or_default();
        let parent = dir.parent().unwrap_or(Path::new("/"));
        match (parent.file_name(), parent.parent()) {
            (Some(v), Some(root)) if v == VERSIONS_DIR => {
                Layout { root: root.to_path_buf(), rel: Path::new(VERSIONS_DIR).join(name) }
            }
            _ => Layout { root: parent.to_path_buf(), rel: name },
        }
    }

    /// ROOT.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `__versions__/<name>`, relative to ROOT.
    pub fn rel(&self) -> &Path {
        &self.rel
    }

    /// `ROOT/__versions__/<name>`: everything of this SOURCE lies below it.
    pub fn dir(&self) -> PathBuf {
        self.root.join(&self.rel)
    }

    /// `ROOT/__versions__/<name>/_1` or `_0`.
    pub fn slot(&self, slot: Slot) -> PathBuf {
        self.dir().join(slot.dir_name())
    }

    /// `ROOT/__versions__/<name>/_undo`: the undo generations of restores (see [`undo`]).
    pub fn undo(&self) -> PathBuf {
        self.dir().join(undo::UNDO_DIR)
    }

    /// `ROOT/__versions__/<name>/manifest.json`.
    pub fn manifest(&self) -> PathBuf {
        self.dir().join(names::MANIFEST)
    }

    /// `ROOT/__versions__/<name>/lock`.
    pub fn lock(&self) -> PathBuf {
        self.dir().join(names::LOCK)
    }

    /// Opens `__versions__/<name>` beneath ROOT (ROOT itself by its canonical path, everything
    /// below it without following a symlink). With `create`, missing directories are created;
    /// without, `Ok(None)` when they do not exist.
    pub fn open(&self, create: bool) -> Result<Option<Root>> {
        if create {
            crate::fsio::create_dirs(&self.root)?;
        }
        let root = match Root::open(&self.root) {
            Ok(root) => root,
            Err(Error::Missing { .. }) if !create => return Ok(None),
            Err(err) => return Err(err),
        };
        if create {
            root.create_dirs(&self.rel)?;
        }
        match root.open_root(&self.rel) {
            Ok(dir) => Ok(Some(dir)),
            Err(Error::Missing { .. }) if !create => Ok(None),
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_is_base_name_dash_8_hex_of_the_path() {
        let name = version_name(Path::new("/home/ann/Documents"));
        let hex = Digest::of_bytes(b"/home/ann/Documents").to_hex();
        assert_eq!(name, OsString::from(format!("Documents-{}", &hex[..8])));
        // One base name, two sources: two names.
        assert_ne!(version_name(Path::new("/a/docs")), version_name(Path::new("/b/docs")));
    }

    #[test]
    fn name_keeps_non_utf8_bytes() {
        let source = Path::new(OsStr::from_bytes(b"/x/caf\xe9"));
        let name = version_name(source);
        assert!(name.as_bytes().starts_with(b"caf\xe9-"));
        assert_eq!(name.len(), b"caf\xe9-".len() + 8);
    }

    #[test]
    fn layout_paths() {
        let layout = Layout::new(Path::new("/r"), Path::new("/s/docs"));
        let dir = PathBuf::from("/r/__versions__").join(version_name(Path::new("/s/docs")));
        assert_eq!(layout.dir(), dir);
        assert_eq!(layout.slot(Slot::Latest), dir.join("_1"));
        assert_eq!(layout.slot(Slot::Previous), dir.join("_0"));
        assert_eq!(layout.manifest(), dir.join("manifest.json"));
        assert_eq!(layout.lock(), dir.join("lock"));
        assert_eq!(layout.undo(), dir.join("_undo"));
        assert_eq!(Layout::at(&dir), layout);
        assert_eq!((layout.root(), layout.rel()), (Path::new("/r"), dir.strip_prefix("/r").unwrap()));
        for temp in [names::NEXT, names::DROP, names::PENDING_MANIFEST] {
            assert!(crate::fsio::is_temp_name(OsStr::new(temp)));
        }
    }
}
