//! Turns the directories a user named into canonical absolute paths, once, and checks them
//! against SPEC section 5 before anything is touched: `./x`, `x/` and a symlinked spelling of
//! one directory are the same directory, and neither root may contain the other.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, IoResultExt, Op, Result};

/// The canonical path of an existing directory.
pub fn existing_dir(path: &Path) -> Result<PathBuf> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Missing { path: path.to_path_buf() });
        }
        Err(e) => {
            return Err(Error::Io { op: Op::Stat, path: path.to_path_buf(), source: e });
        }
        Ok(m) if !m.is_dir() => {
            return Err(Error::NotADirectory { path: path.to_path_buf() });
        }
        Ok(_) => {}
    }
    std::fs::canonicalize(path).at(Op::Canonicalize, path)
}

/// The canonical path a directory has or will have once created: the nearest existing
/// ancestor is canonicalized and the missing rest appended. An existing non-directory fails.
pub fn future_dir(path: &Path) -> Result<PathBuf> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_dir() => Err(Error::NotADirectory { path: path.to_path_buf() }),
        // A missing path, or one below a file: `absolute` names the offending component.
        Err(e) if !matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
            Err(Error::Io { op: Op::Stat, path: path.to_path_buf(), source: e })
        }
        _ => absolute(path),
    }
}

/// The canonical absolute form of `path`, which need not exist: resolved component by
/// component while it exists (following symlinks and `..` as the kernel would), the missing
/// rest appended lexically (it holds no symlinks yet). A file in the middle fails.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().at(Op::Canonicalize, Path::new("."))?.join(path)
    };
    let mut out = PathBuf::from("/");
    let mut exists = true;
    let mut comps = absolute.components().peekable();
    while let Some(comp) = comps.next() {
        match comp {
            Component::Normal(name) if exists => {
                let next = out.join(name);
                match std::fs::metadata(&next) {
                    Ok(m) if m.is_dir() || comps.peek().is_none() => {
                        out = std::fs::canonicalize(&next).at(Op::Canonicalize, &next)?;
                    }
                    Ok(_) => return Err(Error::NotADirectory { path: next }),
                    Err(_) => {
                        exists = false;
                        out = next;
                    }
                }
            }
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

/// True when `dir` is a directory holding at least one entry other than our own temporaries:
/// something a missing source must never be allowed to wipe. Used to tell an unmounted disk
/// (exit 3, SPEC section 5's empty-source rail) from a mistyped path (exit 2). A directory
/// that cannot be listed counts as holding entries: nothing proves it is empty.
pub fn holds_entries(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut listing) => listing.any(|e| e.map_or(true, |e| !crate::fsio::is_temp_name(&e.file_name()))),
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory),
    }
}

/// Refuses two roots that are the same directory or where one lies inside the other.
pub fn check_disjoint(a: &Path, b: &Path) -> Result<()> {
    if a == b {
        return Err(Error::SameDirectory { a: a.to_path_buf(), b: b.to_path_buf() });
    }
    if b.starts_with(a) {
        return Err(Error::RootsOverlap { inner: b.to_path_buf(), outer: a.to_path_buf() });
    }
    if a.starts_with(b) {
        return Err(Error::RootsOverlap { inner: a.to_path_buf(), outer: b.to_path_buf() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_directory_are_equal() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, d.path().join("alias")).unwrap();
        let canon = existing_dir(&real).unwrap();
        assert_eq!(existing_dir(&d.path().join("alias/")).unwrap(), canon);
        assert_eq!(existing_dir(&d.path().join("real/./")).unwrap(), canon);
        assert_eq!(future_dir(&d.path().join("alias/new/../new2")).unwrap(), canon.join("new2"));
        assert!(matches!(check_disjoint(&canon, &canon.join("x")), Err(Error::RootsOverlap { .. })));
        assert!(matches!(check_disjoint(&canon, &canon), Err(Error::SameDirectory { .. })));
        check_disjoint(&canon.join("a"), &canon.join("ab")).unwrap();
    }

    #[test]
    fn missing_and_file_roots_are_refused() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(existing_dir(&d.path().join("nope")), Err(Error::Missing { .. })));
        let f = d.path().join("file");
        std::fs::write(&f, "x").unwrap();
        assert!(matches!(existing_dir(&f), Err(Error::NotADirectory { .. })));
        assert!(matches!(future_dir(&f), Err(Error::NotADirectory { .. })));
        assert!(future_dir(&f.join("below")).is_err());
    }

    #[test]
    fn only_user_entries_count_as_something_to_protect() {
        let d = tempfile::tempdir().unwrap();
        assert!(!holds_entries(&d.path().join("nope")));
        assert!(!holds_entries(d.path()));
        std::fs::write(d.path().join(".synccore-tmp-left"), "x").unwrap();
        assert!(!holds_entries(d.path()), "our leftovers are not the user's files");
        assert!(!holds_entries(&d.path().join(".synccore-tmp-left")), "a file is not a directory");
        std::fs::create_dir(d.path().join("empty-dir")).unwrap();
        assert!(holds_entries(d.path()));
    }
}
