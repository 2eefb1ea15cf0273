//! `__versions__/<name>/manifest.json` (SPEC section 3): the source path, a record per slot
//! (directory checksum, when it was taken, how long it took, file count, bytes), and one
//! compact row per file of the latest slot, which doubles as the hash cache that lets a pass
//! over an unchanged SOURCE read no file contents.
//!
//! ```json
//! {"format":2,"source":"/home/ann/docs",
//!  "_1":{"checksum":"<64 hex>","taken":"2026-03-01T12:00:00.123456789Z","duration_ms":412,
//!        "files":20000,"bytes":209715200},
//!  "_0":{...},
//!  "files":[["a/b.txt","<64 hex>",1234,1700000000,123456789,3145730], ...]}
//! ```
//!
//! A file row is `[path, sha256, size, mtime seconds, mtime nanoseconds, inode]`, with size,
//! mtime and inode as SOURCE had them when the file was hashed. Paths (the source path and
//! each row's) use the one encoding of raw bytes of every file the programs write
//! ([`crate::jsonbytes`]): a string when they are UTF-8, else `{"hex": "…"}`. Format 1 wrote
//! such paths as arrays of byte values; it is still read. Rows are sorted by path bytes. This
//! module is the format; what oneway trusts the rows for (its hash cache) is oneway's.

use std::path::{Path, PathBuf};

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::checksum::Digest;
use crate::entry::Mtime;
use crate::error::{Error, Result};
use crate::fsio::Root;
use crate::relpath::RelPath;

/// The manifest format this code writes; format 1 is read too.
pub const FORMAT: u32 = 2;

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// SOURCE's canonical absolute path.
    #[serde(with = "raw_path")]
    pub source: PathBuf,
    /// What `_1` holds.
    #[serde(rename = "_1", default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<SlotRecord>,
    /// What `_0` holds.
    #[serde(rename = "_0", default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<SlotRecord>,
    /// The regular files of `_1` as SOURCE had them, sorted by path: the hash cache.
    #[serde(default)]
    pub files: Vec<FileRecord>,
}

/// What one slot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRecord {
    /// The directory checksum (SPEC section 2) of the slot's tree.
    pub checksum: Digest,
    /// When SOURCE was scanned for this version: RFC 3339, UTC.
    pub taken: String,
    /// How long the pass that made the version took, in milliseconds.
    pub duration_ms: u64,
    /// Regular files in the slot.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
}

impl SlotRecord {
    /// `taken` as seconds since the epoch (`None` if it does not parse).
    pub fn taken_secs(&self) -> Option<i64> {
        chrono::DateTime::parse_from_rfc3339(&self.taken).ok().map(|t| t.timestamp())
    }
}

/// One regular file of the latest slot, with SOURCE's stamp when it was hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "FileRow", into = "FileRow")]
pub struct FileRecord {
    pub path: RelPath,
    pub digest: Digest,
    pub size: u64,
    pub mtime: Mtime,
    pub ino: u64,
}

/// The compact on-disk form of a [`FileRecord`]: a JSON array, not an object.
#[derive(Serialize, Deserialize)]
struct FileRow(#[serde(with = "raw_bytes")] Vec<u8>, Digest, u64, i64, u32, u64);

impl From<FileRow> for FileRecord {
    fn from(FileRow(path, digest, size, secs, nanos, ino): FileRow) -> Self {
        FileRecord { path: RelPath::from_bytes(&path), digest, size, mtime: Mtime { secs, nanos }, ino }
    }
}

impl From<FileRecord> for FileRow {
    fn from(r: FileRecord) -> Self {
        FileRow(r.path.as_bytes().to_vec(), r.digest, r.size, r.mtime.secs, r.mtime.nanos, r.ino)
    }
}

impl Manifest {
    /// An empty manifest for `source`.
    pub fn new(source: &Path) -> Self {
        Manifest {
            format: FORMAT,
            source: source.to_path_buf(),
            latest: None,
            previous: None,
            files: Vec::new(),
        }
    }

    /// Reads the manifest of the versions directory `v`; `Ok(None)` when there is none.
    /// Anything unreadable or of another format is [`Error::Corrupt`] naming the file.
    pub fn load(v: &Root) -> Result<Option<Manifest>> {
        let rel = Path::new(crate::versions::names::MANIFEST);
        let Some(bytes) = v.read(rel)? else { return Ok(None) };
        Self::from_bytes(&bytes).map(Some).map_err(|reason| Error::Corrupt { path: v.path_of(rel), reason })
    }

    /// Parses a manifest (rows are sorted if they are not).
    pub fn from_bytes(bytes: &[u8]) -> Result<Manifest, String> {
        let mut m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("not a valid versions manifest: {e}"))?;
        if m.format != FORMAT && m.format != 1 {
            return Err(format!("manifest format {} is not supported (expected {FORMAT})", m.format));
        }
        m.format = FORMAT;
        if !m.files.is_sorted_by(|a, b| a.path < b.path) {
            m.files.sort_by(|a, b| a.path.cmp(&b.path));
            m.files.dedup_by(|a, b| a.path == b.path);
        }
        Ok(m)
    }

    /// The compact JSON form.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Cannot fail: no maps, and every field serializes infallibly. Were it ever to, an
        // empty manifest is read as invalid and rebuilt from the slots, never trusted.
        let mut out = serde_json::to_vec(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// The row of `path`, if the latest slot has a regular file there.
    pub fn file(&self, path: &RelPath) -> Option<&FileRecord> {
        self.files.binary_search_by(|r| r.path.cmp(path)).ok().map(|i| &self.files[i])
    }
}

/// Serde for raw bytes in [`crate::jsonbytes`]'s encoding (a string when they are UTF-8, else
/// `{"hex": …}`); reading also accepts format 1's arrays of byte values.
mod raw_bytes {
    use super::{Deserializer, SeqAccess, Serialize, Serializer, Visitor, de};
    use crate::jsonbytes::Bytes;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        Bytes::of(bytes).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_any(RawVisitor)
    }

    struct RawVisitor;

    impl<'de> Visitor<'de> for RawVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string, {\"hex\": ...} or an array of bytes")
        }

        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Vec<u8>, A::Error> {
            let mut bytes = None;
            while let Some(key) = map.next_key::<String>()? {
                if key != "hex" {
                    return Err(de::Error::unknown_field(&key, &["hex"]));
                }
                let text: String = map.next_value()?;
                bytes = Some(hex::decode(&text).map_err(|_| de::Error::custom("bad hex in a path"))?);
            }
            bytes.ok_or_else(|| de::Error::missing_field("hex"))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            Ok(v.as_bytes().to_vec())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

/// [`raw_bytes`] for a `PathBuf`.
mod raw_path {
    use std::ffi::OsString;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};

    use super::{Deserializer, Path, PathBuf, Serializer, raw_bytes};

    pub fn serialize<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
        raw_bytes::serialize(path.as_os_str().as_bytes(), s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        raw_bytes::deserialize(d).map(|b| PathBuf::from(OsString::from_vec(b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    fn record(checksum: &[u8], taken: &str) -> SlotRecord {
        SlotRecord {
            checksum: Digest::of_bytes(checksum),
            taken: taken.into(),
            duration_ms: 12,
            files: 2,
            bytes: 10,
        }
    }

    fn sample() -> Manifest {
        let mut m = Manifest::new(Path::new(OsStr::from_bytes(b"/src/bad\xffname")));
        m.latest = Some(record(b"one", "2026-03-01T12:00:00.5Z"));
        m.previous = Some(record(b"zero", "2026-02-01T12:00:00Z"));
        for (path, ino) in [(&b"a/b.txt"[..], 7), (b"z/\xfe\n", 8)] {
            m.files.push(FileRecord {
                path: RelPath::from_bytes(path),
                digest: Digest::of_bytes(path),
                size: 5,
                mtime: Mtime { secs: 1_700_000_000, nanos: 999_999_999 },
                ino,
            });
        }
        m
    }

    #[test]
    fn round_trips_byte_exact() {
        let m = sample();
        let bytes = m.to_bytes();
        assert_eq!(Manifest::from_bytes(&bytes).unwrap(), m);
        let text = String::from_utf8(bytes).unwrap();
        // Non-UTF-8 paths are {"hex": ...}; UTF-8 ones stay readable strings.
        assert!(text.contains(r#""source":{"hex":"2f7372632f626164ff6e616d65"}"#), "{text}");
        assert!(text.contains(r#"["a/b.txt","#), "{text}");
        assert!(text.contains(r#"[{"hex":"7a2ffe0a"},"#), "{text}");
        assert!(text.contains(r#""_1":{"checksum":""#), "{text}");
        assert!(text.starts_with(r#"{"format":2,"#), "{text}");
    }

    #[test]
    fn format_1_with_byte_arrays_is_still_read() {
        let digest = Digest::of_bytes(b"x");
        let text = format!(
            r#"{{"format":1,"source":[47,115,255],"files":[[[122,254],"{digest}",5,1700000000,7,8]]}}"#
        );
        let m = Manifest::from_bytes(text.as_bytes()).unwrap();
        assert_eq!(m.source, Path::new(OsStr::from_bytes(b"/s\xff")));
        assert_eq!(m.files[0].path, RelPath::from_bytes(b"z\xfe"));
        assert_eq!(m.format, FORMAT, "written back as the current format");
    }

    #[test]
    fn rows_are_compact() {
        let m = sample();
        let row = serde_json::to_string(&m.files[0]).unwrap();
        assert_eq!(
            row,
            format!(r#"["a/b.txt","{}",5,1700000000,999999999,7]"#, Digest::of_bytes(b"a/b.txt"))
        );
    }

    #[test]
    fn bad_manifests_are_refused_with_a_reason() {
        assert!(Manifest::from_bytes(b"{").unwrap_err().contains("not a valid versions manifest"));
        let mut m = sample();
        m.format = 99;
        assert!(Manifest::from_bytes(&m.to_bytes()).unwrap_err().contains("format 99"));
        let d = tempfile::tempdir().unwrap();
        let v = Root::open(d.path()).unwrap();
        assert_eq!(Manifest::load(&v).unwrap(), None);
        std::fs::write(d.path().join("manifest.json"), "[]").unwrap();
        let err = Manifest::load(&v).unwrap_err();
        assert!(err.to_string().contains("manifest.json"), "{err}");
    }
}
