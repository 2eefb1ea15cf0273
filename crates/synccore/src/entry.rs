//! One scanned file-system entry (SPEC section 2 "entry"): what a sync compares and records.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::relpath::RelPath;

/// A modification time with nanosecond precision, comparable and exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Mtime {
    pub secs: i64,
    pub nanos: u32,
}

impl Mtime {
    /// The modification time of `meta`, exact to the nanosecond.
    pub fn of(meta: &Metadata) -> Self {
        Mtime { secs: meta.mtime(), nanos: meta.mtime_nsec() as u32 }
    }

    /// The modification time in an `lstat` result.
    pub fn of_stat(st: &rustix::fs::Stat) -> Self {
        Mtime { secs: st.st_mtime, nanos: st.st_mtime_nsec as u32 }
    }

    /// The status-change time (ctime) in an `lstat` result.
    pub fn ctime_of_stat(st: &rustix::fs::Stat) -> Self {
        Mtime { secs: st.st_ctime, nanos: st.st_ctime_nsec as u32 }
    }

    /// As a `SystemTime`, for `File::set_times`.
    pub fn to_system_time(self) -> SystemTime {
        let nanos = Duration::new(0, self.nanos);
        if self.secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(self.secs as u64) + nanos
        } else {
            UNIX_EPOCH - Duration::from_secs(self.secs.unsigned_abs()) + nanos
        }
    }

    /// As a `Timespec`, for `utimensat`.
    pub fn to_timespec(self) -> rustix::fs::Timespec {
        rustix::fs::Timespec { tv_sec: self.secs, tv_nsec: i64::from(self.nanos) }
    }
}

/// What an entry is. Special files (fifo, socket, device) are never entries: scan skips them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    File,
    Dir,
    /// A symbolic link and the raw bytes of its target; never followed.
    Symlink(#[serde(with = "crate::jsonbytes::raw")] Box<[u8]>),
}

impl Kind {
    /// A short word for log lines.
    pub fn word(&self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink(_) => "symlink",
        }
    }
}

/// The permission bits a sync reproduces: rwx for all, plus sticky. Never setuid or setgid
/// (SPEC section 3), so a backup can never grant more than the source file had meant to.
pub const MODE_MASK: u32 = 0o1777;

/// Who owns an entry: numeric user and group ids, as `rsync -a` keeps them when run as root
/// (SPEC section 3 "Mirror").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    /// The owner recorded in `meta`.
    pub fn of(meta: &Metadata) -> Self {
        Owner { uid: meta.uid(), gid: meta.gid() }
    }

    /// The owner in an `lstat` result.
    pub fn of_stat(st: &rustix::fs::Stat) -> Self {
        Owner { uid: st.st_uid, gid: st.st_gid }
    }
}

/// True when this process may give files away to any owner (it runs as root): only then are
/// owners compared and kept exactly. Otherwise the system decides who owns what we create,
/// and a pass keeps only what it is allowed to (the group, where the user is a member).
pub fn keeps_owners() -> bool {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| rustix::process::geteuid().is_root())
}

/// A scanned entry below a root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: RelPath,
    pub kind: Kind,
    /// Bytes for files, 0 for directories, target length for symlinks.
    pub size: u64,
    pub mtime: Mtime,
    /// Permission bits, masked with [`MODE_MASK`].
    pub mode: u32,
    /// Inode number, for the hash caches (a replaced file gets a new inode) and to recognise
    /// a moved entry (the renames issue).
    pub ino: u64,
    /// The device the entry lies on: an inode number names one entry only on one device,
    /// and a rename cannot cross devices.
    pub dev: u64,
    /// Owner and group.
    pub owner: Owner,
}

impl Entry {
    /// An entry for tests and examples: `path` of `kind`, `size` bytes, mtime `secs` (whole
    /// seconds), mode 644 (755 for a directory), inode 1, owned by root.
    pub fn example(path: &str, kind: Kind, size: u64, secs: i64) -> Self {
        let mode = if kind == Kind::Dir { 0o755 } else { 0o644 };
        Entry {
            path: RelPath::from_bytes(path.as_bytes()),
            kind,
            size,
            mtime: Mtime { secs, nanos: 0 },
            mode,
            ino: 1,
            dev: 1,
            owner: Owner::default(),
        }
    }

    /// An empty entry (no path), left where a walk took an entry out of a listing.
    pub fn placeholder() -> Self {
        Entry {
            path: RelPath::from_bytes(b""),
            kind: Kind::File,
            size: 0,
            mtime: Mtime { secs: 0, nanos: 0 },
            mode: 0,
            ino: 0,
            dev: 0,
            owner: Owner::default(),
        }
    }

    /// True for a regular file.
    pub fn is_file(&self) -> bool {
        self.kind == Kind::File
    }

    /// True for a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }
}
