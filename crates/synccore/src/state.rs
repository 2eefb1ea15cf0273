//! The merge base of a `twoway` pair (SPEC section 4): what both directories held after the
//! last successful pass, per path, with each side's inode so that it doubles as a hash cache.
//! Stored as versioned JSON under the home, written atomically after the data operations.
//! A corrupt or newer-format file is reported and treated as "no base" (union semantics,
//! which never delete).

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checksum::Digest;
use crate::entry::{Entry, Kind, Mtime};
use crate::error::{Error, IoResultExt, Result};
use crate::fsio;
use crate::jsonbytes::Bytes;
use crate::relpath::RelPath;

/// The format written by this version; newer files are refused (treated as no base).
pub const FORMAT: u32 = 1;

/// What one path held on both sides after the last pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseEntry {
    pub kind: Kind,
    pub size: u64,
    pub mtime: Mtime,
    pub mode: u32,
    /// SHA-256 of a file's content, when the pass knew it.
    pub hash: Option<Digest>,
    /// Inode on side A and on side B: a side whose (size, mtime, inode) still match is unchanged.
    pub ino: [u64; 2],
}

impl BaseEntry {
    /// The stamp a side must still have to count as unchanged since the base.
    pub fn matches(&self, side: usize, e: &Entry) -> bool {
        self.kind == e.kind
            && self.size == e.size
            && self.mtime == e.mtime
            && self.mode == e.mode
            && self.ino[side] == e.ino
    }
}

/// The base of a pair: entries sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub entries: Vec<(RelPath, BaseEntry)>,
}

impl State {
    /// Looks a path up.
    pub fn get(&self, path: &RelPath) -> Option<&BaseEntry> {
        self.entries.binary_search_by(|(p, _)| p.cmp(path)).ok().map(|i| &self.entries[i].1)
    }

    /// Number of non-directory entries.
    pub fn file_count(&self) -> usize {
        self.entries.iter().filter(|(_, e)| e.kind != Kind::Dir).count()
    }
}

/// One entry as stored: `[path, kind, size, secs, nanos, mode, ino_a, ino_b, hash-or-target]`.
#[derive(Debug, Serialize, Deserialize)]
struct Row(Bytes, char, u64, i64, u32, u32, u64, u64, Option<Bytes>);

#[derive(Debug, Serialize, Deserialize)]
struct File {
    format: u32,
    a: Bytes,
    b: Bytes,
    saved: String,
    entries: Vec<Row>,
}

/// Where a pair's base and lock live: `<home>/pairs/<id>/`, `<id>` derived from both roots.
pub fn pair_dir(home: &Path, a: &Path, b: &Path) -> PathBuf {
    let mut key = a.as_os_str().as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(b.as_os_str().as_bytes());
    home.join("pairs").join(&Digest::of_bytes(&key).to_hex()[..16])
}

/// Loads the base at `path`. `Ok(None)` when there is none yet; `Err` (reported by the caller,
/// then treated as no base) when it is unreadable, corrupt or of a newer format.
pub fn load(path: &Path) -> Result<Option<State>> {
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(crate::error::Op::Read, path),
    };
    let corrupt = |reason: String| Error::Invalid { path: path.into(), reason };
    let file: File =
        serde_json::from_slice(&text).map_err(|e| corrupt(format!("corrupt merge state: {e}")))?;
    if file.format != FORMAT {
        return Err(corrupt(format!(
            "merge state format {} is not {FORMAT} (written by another version)",
            file.format
        )));
    }
    let mut entries = Vec::with_capacity(file.entries.len());
    for Row(p, kind, size, secs, nanos, mode, ino_a, ino_b, extra) in file.entries {
        let bad = || corrupt("corrupt merge state: bad entry".into());
        let path = RelPath::from_bytes(&p.into_bytes().ok_or_else(bad)?);
        let extra = extra.map(Bytes::into_bytes);
        let (kind, hash) = match (kind, extra) {
            ('f', None) => (Kind::File, None),
            ('f', Some(Some(h))) => {
                let h = std::str::from_utf8(&h).ok().and_then(|h| h.parse().ok()).ok_or_else(bad)?;
                (Kind::File, Some(h))
            }
            ('d', None) => (Kind::Dir, None),
            ('l', Some(Some(t))) => (Kind::Symlink(t.into()), None),
            _ => return Err(bad()),
        };
        let entry = BaseEntry { kind, size, mtime: Mtime { secs, nanos }, mode, hash, ino: [ino_a, ino_b] };
        entries.push((path, entry));
    }
    entries.sort_by(|x, y| x.0.cmp(&y.0));
    Ok(Some(State { entries }))
}

/// Writes the base atomically.
pub fn save(path: &Path, a: &Path, b: &Path, state: &State) -> Result<()> {
    let entries = state
        .entries
        .iter()
        .map(|(p, e)| {
            let (kind, extra) = match &e.kind {
                Kind::File => ('f', e.hash.map(|h| Bytes::Utf8(h.to_hex()))),
                Kind::Dir => ('d', None),
                Kind::Symlink(t) => ('l', Some(Bytes::of(t))),
            };
            Row(
                Bytes::of(p.as_bytes()),
                kind,
                e.size,
                e.mtime.secs,
                e.mtime.nanos,
                e.mode,
                e.ino[0],
                e.ino[1],
                extra,
            )
        })
        .collect();
    let file = File {
        format: FORMAT,
        a: Bytes::of(a.as_os_str().as_bytes()),
        b: Bytes::of(b.as_os_str().as_bytes()),
        saved: chrono::Utc::now().to_rfc3339(),
        entries,
    };
    let json = serde_json::to_vec(&file).map_err(|e| Error::Invalid {
        path: path.into(),
        reason: format!("cannot encode merge state: {e}"),
    })?;
    if let Some(dir) = path.parent() {
        crate::fsio::create_dirs(dir)?;
    }
    fsio::write_atomic(path, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind_and_raw_names() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pairs/x/state.json");
        let e = |kind, hash| BaseEntry {
            kind,
            size: 3,
            mtime: Mtime { secs: -5, nanos: 7 },
            mode: 0o644,
            hash,
            ino: [1, 2],
        };
        let state = State {
            entries: vec![
                (RelPath::from_bytes(b"a"), e(Kind::File, Some(Digest::of_bytes(b"x")))),
                (RelPath::from_bytes(b"b\xff"), e(Kind::File, None)),
                (RelPath::from_bytes(b"d"), e(Kind::Dir, None)),
                (RelPath::from_bytes(b"l"), e(Kind::Symlink(b"t\xfe".to_vec().into()), None)),
            ],
        };
        save(&p, Path::new("/a"), Path::new("/b"), &state).unwrap();
        assert_eq!(load(&p).unwrap(), Some(state));
        assert_eq!(load(&d.path().join("none")).unwrap(), None);
    }

    #[test]
    fn corrupt_and_newer_files_are_errors_naming_the_path() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        fs::write(&p, b"{not json").unwrap();
        let err = load(&p).unwrap_err().to_string();
        assert!(err.contains("state.json") && err.contains("corrupt"), "{err}");
        fs::write(&p, br#"{"format": 99, "a": "/a", "b": "/b", "saved": "", "entries": []}"#).unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("format 99"));
    }
}
