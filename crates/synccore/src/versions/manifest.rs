//! `__versions__/<name>/manifest.json` (SPEC section 3): the source path, a record per slot
//! (directory checksum, when it was taken, how long it took, file count, bytes), and where the
//! hash cache of the latest slot lies: a journal beside the manifest ([`crate::versions::hashes`],
//! issue 17 point 3), named with the length of it that this manifest vouches for. The manifest
//! stays small (a few hundred bytes whatever the tree), so a rotation that rewrites it writes
//! little; the hash cache grows by appends.
//!
//! ```json
//! {"format":3,"source":"/home/ann/docs",
//!  "_1":{"checksum":"<64 hex>","taken":"2026-03-01T12:00:00.123456789Z","duration_ms":412,
//!        "files":20000,"bytes":209715200},
//!  "_0":{...},
//!  "hashes":{"file":"hashes-187b2c3d4e5f6a7b-3f2a-0.jsonl","bytes":2241234,"lines":20200}}
//! ```
//!
//! Formats 1 and 2 embedded the hash cache as `"files"`: one compact row per file of `_1`,
//! `[path, sha256, size, mtime seconds, mtime nanoseconds, inode]`, with size, mtime and inode
//! as SOURCE had them when the file was hashed (the same rows the journal holds, see
//! [`FileRecord`]). They are still read, rows included ([`Manifest::load_with_rows`]), so the
//! first pass after an upgrade neither rotates nor hashes again; the next rotation writes
//! format 3. Paths (the source path and each row's) use the one encoding of raw bytes of every
//! file the programs write ([`crate::jsonbytes`]): a string when they are UTF-8, else
//! `{"hex": "…"}`. Format 1 wrote such paths as arrays of byte values; it is still read. This
//! module is the format; what oneway trusts the rows for (its hash cache) is oneway's.

use std::path::{Path, PathBuf};

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::checksum::Digest;
use crate::entry::Mtime;
use crate::error::{Error, Result};
use crate::fsio::Root;
use crate::relpath::RelPath;

/// The manifest format this code writes; formats 1 and 2 are read too.
pub const FORMAT: u32 = 3;

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    /// The hash cache of `_1`: its journal and how much of it this manifest vouches for
    /// (absent before the first version, in a manifest rebuilt from the slots until its
    /// journal is written, and in formats 1 and 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashes: Option<HashesRef>,
}

/// The manifest as stored, in any format this code reads.
#[derive(Deserialize)]
struct Stored {
    format: u32,
    #[serde(with = "raw_path")]
    source: PathBuf,
    #[serde(rename = "_1", default)]
    latest: Option<SlotRecord>,
    #[serde(rename = "_0", default)]
    previous: Option<SlotRecord>,
    #[serde(default)]
    hashes: Option<HashesRef>,
    /// Formats 1 and 2: the hash cache, embedded.
    #[serde(default)]
    files: Option<Vec<FileRecord>>,
}

/// Where the hash cache of `_1` lies (format 3): a journal in the versions directory, of
/// which the first `bytes` bytes, holding `lines` lines after its header, describe `_1`.
/// Whatever follows them was appended by a rotation that never committed (see
/// [`crate::versions::hashes`]) and is not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashesRef {
    /// The journal's file name in the versions directory, `hashes-<id>.jsonl`.
    pub file: String,
    /// Its length that this manifest vouches for.
    pub bytes: u64,
    /// Lines (rows and removals) in those bytes after the header.
    pub lines: u64,
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
        Manifest { format: FORMAT, source: source.to_path_buf(), latest: None, previous: None, hashes: None }
    }

    /// Reads the manifest of the versions directory `v`; `Ok(None)` when there is none.
    /// Anything unreadable or of another format is [`Error::Corrupt`] naming the file.
    pub fn load(v: &Root) -> Result<Option<Manifest>> {
        Ok(Self::load_with_rows(v)?.map(|(m, _)| m))
    }

    /// [`Manifest::load`], with the hash cache that a manifest of format 1 or 2 embeds (sorted
    /// by path; `None` for format 3, whose cache is its journal).
    pub fn load_with_rows(v: &Root) -> Result<Option<(Manifest, Option<Vec<FileRecord>>)>> {
        let rel = Path::new(crate::versions::names::MANIFEST);
        let Some(bytes) = v.read(rel)? else { return Ok(None) };
        Self::parse(&bytes).map(Some).map_err(|reason| Error::Corrupt { path: v.path_of(rel), reason })
    }

    /// Parses a manifest, dropping the rows of an old format.
    pub fn from_bytes(bytes: &[u8]) -> Result<Manifest, String> {
        Self::parse(bytes).map(|(m, _)| m)
    }

    /// Parses a manifest of any format this code reads, with the rows formats 1 and 2 embed
    /// (sorted by path if they are not).
    pub fn parse(bytes: &[u8]) -> Result<(Manifest, Option<Vec<FileRecord>>), String> {
        let stored: Stored =
            serde_json::from_slice(bytes).map_err(|e| format!("not a valid versions manifest: {e}"))?;
        let rows = match stored.format {
            FORMAT => None,
            1 | 2 => Some(sorted_rows(stored.files.unwrap_or_default())),
            other => return Err(format!("manifest format {other} is not supported (expected {FORMAT})")),
        };
        let manifest = Manifest {
            format: FORMAT,
            source: stored.source,
            latest: stored.latest,
            previous: stored.previous,
            hashes: if rows.is_some() { None } else { stored.hashes },
        };
        Ok((manifest, rows))
    }

    /// The compact JSON form.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Cannot fail: no maps, and every field serializes infallibly. Were it ever to, an
        // empty manifest is read as invalid and rebuilt from the slots, never trusted.
        let mut out = serde_json::to_vec(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

/// Rows sorted by path, one per path (the last of equal ones).
pub fn sorted_rows(mut rows: Vec<FileRecord>) -> Vec<FileRecord> {
    if !rows.is_sorted_by(|a, b| a.path < b.path) {
        rows.sort_by(|a, b| a.path.cmp(&b.path));
        rows.reverse();
        rows.dedup_by(|later, earlier| later.path == earlier.path);
        rows.reverse();
    }
    rows
}

/// The row of `path` among `rows` (sorted by path), if there is one.
pub fn find<'r>(rows: &'r [FileRecord], path: &RelPath) -> Option<&'r FileRecord> {
    rows.binary_search_by(|r| r.path.cmp(path)).ok().map(|i| &rows[i])
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

    fn rows() -> Vec<FileRecord> {
        [(&b"a/b.txt"[..], 7), (b"z/\xfe\n", 8)]
            .into_iter()
            .map(|(path, ino)| FileRecord {
                path: RelPath::from_bytes(path),
                digest: Digest::of_bytes(path),
                size: 5,
                mtime: Mtime { secs: 1_700_000_000, nanos: 999_999_999 },
                ino,
            })
            .collect()
    }

    fn sample() -> Manifest {
        let mut m = Manifest::new(Path::new(OsStr::from_bytes(b"/src/bad\xffname")));
        m.latest = Some(record(b"one", "2026-03-01T12:00:00.5Z"));
        m.previous = Some(record(b"zero", "2026-02-01T12:00:00Z"));
        m.hashes = Some(HashesRef { file: "hashes-1-2-0.jsonl".into(), bytes: 300, lines: 2 });
        m
    }

    #[test]
    fn round_trips_byte_exact() {
        let m = sample();
        let bytes = m.to_bytes();
        assert_eq!(Manifest::parse(&bytes).unwrap(), (m, None));
        let text = String::from_utf8(bytes).unwrap();
        // Non-UTF-8 paths are {"hex": ...}; UTF-8 ones stay readable strings.
        assert!(text.contains(r#""source":{"hex":"2f7372632f626164ff6e616d65"}"#), "{text}");
        assert!(text.contains(r#""_1":{"checksum":""#), "{text}");
        assert!(text.contains(r#""hashes":{"file":"hashes-1-2-0.jsonl","bytes":300,"lines":2}"#), "{text}");
        assert!(text.starts_with(r#"{"format":3,"#), "{text}");
        assert!(!text.contains("files\":["), "no rows in the manifest: {text}");
    }

    #[test]
    fn the_manifest_stays_small_whatever_the_tree() {
        let mut m = sample();
        m.latest.as_mut().unwrap().files = 10_000_000;
        assert!(m.to_bytes().len() < 512, "{}", m.to_bytes().len());
    }

    #[test]
    fn format_2_is_read_with_its_rows() {
        let digest = Digest::of_bytes(b"x");
        let text = format!(
            r#"{{"format":2,"source":"/s","_1":{{"checksum":"{digest}","taken":"2026-03-01T12:00:00Z","duration_ms":1,"files":2,"bytes":10}},"files":[["z","{digest}",5,1700000000,7,8],["a/b","{digest}",5,1700000000,7,9]]}}"#
        );
        let (m, rows) = Manifest::parse(text.as_bytes()).unwrap();
        assert_eq!(m.format, FORMAT, "written back as the current format");
        assert_eq!(m.hashes, None);
        assert_eq!(m.latest.unwrap().checksum, digest);
        let rows = rows.unwrap();
        let paths: Vec<&[u8]> = rows.iter().map(|r| r.path.as_bytes()).collect();
        assert_eq!(paths, [&b"a/b"[..], b"z"], "sorted");
        assert_eq!(find(&rows, &RelPath::from_bytes(b"z")).map(|r| r.ino), Some(8));
        assert_eq!(find(&rows, &RelPath::from_bytes(b"y")), None);
    }

    #[test]
    fn format_1_with_byte_arrays_is_still_read() {
        let digest = Digest::of_bytes(b"x");
        let text = format!(
            r#"{{"format":1,"source":[47,115,255],"files":[[[122,254],"{digest}",5,1700000000,7,8]]}}"#
        );
        let (m, rows) = Manifest::parse(text.as_bytes()).unwrap();
        assert_eq!(m.source, Path::new(OsStr::from_bytes(b"/s\xff")));
        assert_eq!(rows.unwrap()[0].path, RelPath::from_bytes(b"z\xfe"));
        assert_eq!(m.format, FORMAT, "written back as the current format");
    }

    #[test]
    fn rows_are_compact_and_the_last_of_equal_paths_wins() {
        let rows = rows();
        let row = serde_json::to_string(&rows[0]).unwrap();
        assert_eq!(
            row,
            format!(r#"["a/b.txt","{}",5,1700000000,999999999,7]"#, Digest::of_bytes(b"a/b.txt"))
        );
        let mut unsorted = vec![rows[1].clone(), rows[0].clone(), rows[1].clone()];
        unsorted[2].ino = 99;
        let sorted = sorted_rows(unsorted);
        assert_eq!(sorted.len(), 2);
        assert_eq!((sorted[0].ino, sorted[1].ino), (7, 99));
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
