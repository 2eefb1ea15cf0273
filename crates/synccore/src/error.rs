//! The one error type of the library. Every I/O failure carries the path it happened on and
//! the operation that failed, so that a message always names both (STYLE "Errors").

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::relpath::escape_path;

/// What the library was doing when an I/O call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    ReadDir,
    Stat,
    Create,
    Write,
    Sync,
    Rename,
    Remove,
    CreateDir,
    Symlink,
    ReadLink,
    SetMeta,
    Lock,
    Canonicalize,
    HardLink,
}

impl Op {
    fn verb(self) -> &'static str {
        match self {
            Op::Read => "cannot read",
            Op::ReadDir => "cannot list directory",
            Op::Stat => "cannot stat",
            Op::Create => "cannot create",
            Op::Write => "cannot write",
            Op::Sync => "cannot sync",
            Op::Rename => "cannot rename",
            Op::Remove => "cannot remove",
            Op::CreateDir => "cannot create directory",
            Op::Symlink => "cannot create symlink",
            Op::ReadLink => "cannot read symlink",
            Op::SetMeta => "cannot set metadata of",
            Op::Lock => "cannot lock",
            Op::Canonicalize => "cannot resolve",
            Op::HardLink => "cannot hard-link",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.verb())
    }
}

/// Wraps a path so that it prints quoted and byte-exact (non-UTF-8 bytes as `\xNN`).
pub struct Quoted<'a>(pub &'a Path);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", escape_path(self.0))
    }
}

/// How a safety rail (SPEC section 5) stopped a pass before it changed anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rail {
    /// The side that should hold the data is empty while the other side (or the base) is not.
    EmptySide { empty: PathBuf, other: PathBuf },
    /// The pass would delete more than the allowed share of a side's files.
    TooManyDeletes { side: PathBuf, deletes: usize, files: usize, max_percent: u8 },
}

impl fmt::Display for Rail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rail::EmptySide { empty, other } => write!(
                f,
                "{} is empty or missing while {} has files; refusing to sync (is a disk unmounted?)",
                Quoted(empty),
                Quoted(other)
            ),
            Rail::TooManyDeletes { side, deletes, files, max_percent } => write!(
                f,
                "the pass would delete {deletes} of {files} files in {}, more than {max_percent} %; \
                 run with --force if that is intended",
                Quoted(side)
            ),
        }
    }
}

/// Every failure the library reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {}: {source}", Quoted(path))]
    Io { op: Op, path: PathBuf, source: io::Error },

    #[error("cannot rename {} to {}: {source}", Quoted(from), Quoted(to))]
    RenameIo { from: PathBuf, to: PathBuf, source: io::Error },

    #[error("{}: does not exist", Quoted(path))]
    Missing { path: PathBuf },

    #[error("{}: not a directory", Quoted(path))]
    NotADirectory { path: PathBuf },

    #[error("{} and {} are the same directory", Quoted(a), Quoted(b))]
    SameDirectory { a: PathBuf, b: PathBuf },

    #[error("{} lies inside {}; one directory may not contain the other", Quoted(inner), Quoted(outer))]
    RootsOverlap { inner: PathBuf, outer: PathBuf },

    #[error("{} is locked by another running process{}", Quoted(path), holder_suffix(*pid))]
    Locked { path: PathBuf, pid: Option<u32> },

    /// Bad input: a path or value the user gave that cannot be used (exit 2).
    #[error("{}: {reason}", Quoted(path))]
    Invalid { path: PathBuf, reason: String },

    /// One of the program's own files (a merge state, a manifest, a register) cannot be
    /// used: unreadable JSON, a newer format. Reported with what happens instead.
    #[error("{}: {reason}", Quoted(path))]
    Corrupt { path: PathBuf, reason: String },

    /// Something the program needs before it can work could not be set up (signal handlers,
    /// the log): not the user's input, not a per-file failure.
    #[error("cannot set up {what}: {reason}")]
    Setup { what: &'static str, reason: String },

    /// A copy that feeds a swap (a restore's copy of a version, of DIR into an undo
    /// generation) was not complete; nothing was swapped (hardening issue, point 2).
    #[error("{}: {reason}", Quoted(path))]
    Incomplete { path: PathBuf, reason: String },

    #[error("{0}")]
    Aborted(Rail),

    /// A remote store (issue 18) failed or refused a request: one line naming what was being
    /// done and the store's URL, which never carries a secret (`syncremote` scrubs them).
    #[error("{op} {url}: {reason}")]
    Remote { op: &'static str, url: String, reason: String },

    /// A remote store's current version was changed by another writer after this pass read
    /// it: the pointer was not switched, so nothing of this pass became current (issue 18).
    #[error(
        "{url}: changed by another writer since this pass read it; this pass's version was not \
         made current (the next pass starts from the new one)"
    )]
    RemoteChanged { url: String },

    #[error("interrupted by a signal")]
    Interrupted,

    /// A thread of the pass panicked: a bug. The pass stops and changes nothing further.
    #[error("internal error: {what} panicked; the pass was stopped (please report this)")]
    Panicked { what: &'static str },
}

fn holder_suffix(pid: Option<u32>) -> String {
    pid.map_or_else(String::new, |pid| format!(" (pid {pid})"))
}

impl Error {
    /// The exit code SPEC section 5 gives this error when it ends a run:
    /// 2 for bad usage or input, 3 for a safety rail, 1 for anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Missing { .. }
            | Error::NotADirectory { .. }
            | Error::SameDirectory { .. }
            | Error::RootsOverlap { .. }
            | Error::Invalid { .. } => 2,
            Error::Aborted(_) | Error::Locked { .. } => 3,
            Error::Io { .. }
            | Error::RenameIo { .. }
            | Error::Interrupted
            | Error::Panicked { .. }
            | Error::Incomplete { .. }
            | Error::Corrupt { .. }
            | Error::Setup { .. }
            | Error::Remote { .. }
            | Error::RemoteChanged { .. } => 1,
        }
    }
}

impl Error {
    /// The underlying I/O error, if this is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io { source, .. } | Error::RenameIo { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The kind of the underlying I/O error, if this is one.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } | Error::RenameIo { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    /// True when the error means that what a scan saw is no longer there as it was (gone, or
    /// a directory on the way that is now a symlink or a file): the tree changed under the
    /// pass, which a later look may find settled.
    pub fn changed_under_us(&self) -> bool {
        self.io_error().is_some_and(crate::fsio::changed_under_us)
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches an operation and a path to an `io::Result`: `fs::read(p).at(Op::Read, p)?`, or
/// `dir.stat(name).at(Op::Stat, || dir.path_of(name))?` where the path must be made (then
/// only on failure: a walk asks this of every entry).
pub trait IoResultExt<T> {
    fn at(self, op: Op, path: impl ErrorPath) -> Result<T>;
}

impl<T> IoResultExt<T> for io::Result<T> {
    fn at(self, op: Op, path: impl ErrorPath) -> Result<T> {
        self.map_err(|source| Error::Io { op, path: path.into_path_buf(), source })
    }
}

/// The path an error names: a path at hand, or how to make one.
pub trait ErrorPath {
    fn into_path_buf(self) -> PathBuf;
}

impl ErrorPath for &Path {
    fn into_path_buf(self) -> PathBuf {
        self.to_path_buf()
    }
}

impl ErrorPath for &PathBuf {
    fn into_path_buf(self) -> PathBuf {
        self.clone()
    }
}

impl<F: FnOnce() -> PathBuf> ErrorPath for F {
    fn into_path_buf(self) -> PathBuf {
        self()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn io_error_names_op_and_path_losslessly() {
        let path = Path::new(OsStr::from_bytes(b"dir/bad\xffname\n"));
        let err = Error::Io { op: Op::Read, path: path.into(), source: io::Error::other("boom") };
        assert_eq!(err.to_string(), r#"cannot read "dir/bad\xffname\n": boom"#);
        assert_eq!(err.exit_code(), 1);
    }

    #[test]
    fn exit_codes_follow_spec() {
        assert_eq!(Error::Missing { path: "x".into() }.exit_code(), 2);
        let rail = Rail::EmptySide { empty: "a".into(), other: "b".into() };
        assert_eq!(Error::Aborted(rail).exit_code(), 3);
        assert_eq!(
            Error::Locked { path: "l".into(), pid: Some(7) }.to_string(),
            "\"l\" is locked by another running process (pid 7)"
        );
    }
}
