//! The remote layout's two small formats (docs/formats.md, "Remote stores"): the manifest, a
//! version of a tree as JSON Lines sorted by path bytes and sealed by a SHA-256 trailer, and
//! the head, the one object that says which manifests are current. Objects are named by the
//! SHA-256 of their content ([`ObjectId`]). Pure code: no I/O beyond `Read`/`Write`.

use std::fmt;
use std::io::{BufRead, Write};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use synccore::entry::{Entry, Kind, MODE_MASK, Mtime, Owner};
use synccore::jsonbytes::Bytes;
use synccore::relpath::RelPath;

/// The manifest format this code writes (and the newest it reads).
pub const MANIFEST_FORMAT: u32 = 1;
/// The head format this code writes (and the newest it reads).
pub const HEAD_FORMAT: u32 = 1;

/// The SHA-256 of an object's content: its name in the store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId(pub [u8; 32]);

impl ObjectId {
    /// The object's key below the store's root: `objects/<2 hex>/<64 hex>` (a fan-out of 256
    /// keeps SFTP directories small; S3 does not care).
    pub fn key(&self) -> String {
        let hex = self.to_string();
        format!("objects/{}/{hex}", &hex[..2])
    }

    /// The id of an object key, if it is one.
    pub fn from_key(key: &str) -> Option<ObjectId> {
        let rest = key.strip_prefix("objects/")?;
        let (fan, hex) = rest.split_once('/')?;
        let id = hex.parse::<ObjectId>().ok()?;
        (fan.len() == 2 && hex.starts_with(fan)).then_some(id)
    }

    /// The id of `bytes`.
    pub fn of(bytes: &[u8]) -> ObjectId {
        ObjectId(Sha256::digest(bytes).into())
    }
}

impl From<synccore::checksum::Digest> for ObjectId {
    /// A file checksum (SPEC section 2) is its object's id.
    fn from(d: synccore::checksum::Digest) -> ObjectId {
        ObjectId(d.0)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({self})")
    }
}

impl FromStr for ObjectId {
    type Err = ();

    /// 64 lowercase hex digits (what `Display` writes; uppercase would name another key).
    fn from_str(s: &str) -> Result<Self, ()> {
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(());
        }
        let mut id = [0u8; 32];
        hex::decode_to_slice(s, &mut id).map_err(|_| ())?;
        Ok(ObjectId(id))
    }
}

/// One entry of a remote version: what an object store cannot keep itself (mode, mtime,
/// symlinks, empty directories) and, for a file, the object holding its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    pub path: RelPath,
    pub kind: Kind,
    /// Bytes of a file; 0 for a directory; the target's length for a symlink.
    pub size: u64,
    pub mtime: Mtime,
    /// Permission bits, masked with [`MODE_MASK`].
    pub mode: u32,
    /// The owner, when the writer kept owners (it ran as root).
    pub owner: Option<Owner>,
    /// The object of a file's content; `None` for directories and symlinks.
    pub object: Option<ObjectId>,
}

impl RemoteEntry {
    /// The entry for a scanned local entry; `object` is the file's SHA-256 (required for a
    /// file, ignored otherwise).
    pub fn from_entry(e: &Entry, object: Option<ObjectId>, keep_owner: bool) -> RemoteEntry {
        RemoteEntry {
            path: e.path.clone(),
            kind: e.kind.clone(),
            size: e.size,
            mtime: e.mtime,
            mode: e.mode & MODE_MASK,
            owner: keep_owner.then_some(e.owner),
            object: if e.kind == Kind::File { object } else { None },
        }
    }

    /// As a synccore [`Entry`] for the pipeline (a remote entry has no inode or device: 0).
    pub fn to_entry(&self) -> Entry {
        Entry {
            path: self.path.clone(),
            kind: self.kind.clone(),
            size: self.size,
            mtime: self.mtime,
            mode: self.mode,
            ino: 0,
            dev: 0,
            owner: self.owner.unwrap_or_default(),
        }
    }
}

/// A manifest row as stored (one-letter keys: a large tree has a row per file).
#[derive(Serialize, Deserialize)]
struct Row {
    p: Bytes,
    k: char,
    #[serde(default, skip_serializing_if = "is_zero")]
    s: u64,
    t: (i64, u32),
    m: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    o: Option<(u32, u32)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    h: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    l: Option<Bytes>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// The manifest's first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestHeader {
    pub format: u32,
    /// The head generation this manifest was written for.
    pub generation: u64,
    /// When the writer made it (RFC 3339, UTC; the writer's clock, for people).
    pub created: String,
}

/// The manifest's last line: counts and the SHA-256 of every byte before this line, so that a
/// truncated or altered manifest is refused whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEnd {
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Serialize, Deserialize)]
struct EndLine {
    end: ManifestEnd,
}

/// Why a manifest or head cannot be used: its bytes could not be read (`io`: the store or
/// the connection failed) or they are not a valid manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    pub message: String,
    pub io: bool,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn bad(msg: impl Into<String>) -> FormatError {
    FormatError { message: msg.into(), io: false }
}

fn io_failed(e: &std::io::Error) -> FormatError {
    FormatError { message: e.to_string(), io: true }
}

/// Writes a manifest row by row into any `Write` (a streaming upload): entries must come in
/// strictly increasing path byte order, which the writer checks.
pub struct ManifestWriter<W: Write> {
    out: W,
    hash: Sha256,
    last: Option<RelPath>,
    end: ManifestEnd,
}

impl<W: Write> ManifestWriter<W> {
    /// Starts a manifest (writes the header line).
    pub fn new(out: W, header: &ManifestHeader) -> std::io::Result<Self> {
        let mut w = ManifestWriter {
            out,
            hash: Sha256::new(),
            last: None,
            end: ManifestEnd { entries: 0, files: 0, bytes: 0, sha256: String::new() },
        };
        w.line(&serde_json::to_vec(header)?)?;
        Ok(w)
    }

    fn line(&mut self, json: &[u8]) -> std::io::Result<()> {
        self.hash.update(json);
        self.hash.update(b"\n");
        self.out.write_all(json)?;
        self.out.write_all(b"\n")
    }

    /// Appends an entry.
    pub fn push(&mut self, e: &RemoteEntry) -> std::io::Result<()> {
        if self.last.as_ref().is_some_and(|last| *last >= e.path) {
            return Err(std::io::Error::other(format!("manifest entries out of order at {}", e.path)));
        }
        let (k, h, l) = match &e.kind {
            Kind::File => {
                let Some(id) = e.object else {
                    return Err(std::io::Error::other(format!("file {} has no object", e.path)));
                };
                self.end.files += 1;
                self.end.bytes += e.size;
                ('f', Some(id.to_string()), None)
            }
            Kind::Dir => ('d', None, None),
            Kind::Symlink(target) => ('l', None, Some(Bytes::of(target))),
        };
        let size = if matches!(e.kind, Kind::Dir | Kind::Symlink(_)) { 0 } else { e.size };
        let row = Row {
            p: Bytes::of(e.path.as_bytes()),
            k,
            s: size,
            t: (e.mtime.secs, e.mtime.nanos),
            m: e.mode & MODE_MASK,
            o: e.owner.map(|o| (o.uid, o.gid)),
            h,
            l,
        };
        self.line(&serde_json::to_vec(&row)?)?;
        self.end.entries += 1;
        self.last = Some(e.path.clone());
        Ok(())
    }

    /// The output, abandoning the manifest (after a failed [`ManifestWriter::push`]).
    pub fn into_inner(self) -> W {
        self.out
    }

    /// Writes the trailer and returns the output and the counts.
    pub fn finish(mut self) -> std::io::Result<(W, ManifestEnd)> {
        self.end.sha256 = hex::encode(self.hash.finalize_reset());
        let end = EndLine { end: self.end.clone() };
        let json = serde_json::to_vec(&end)?;
        self.out.write_all(&json)?;
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        Ok((self.out, end.end))
    }
}

/// Reads a manifest row by row, checking the order, the kinds, the counts and the trailer's
/// SHA-256; yields [`FormatError`] on the first fault (a reader must then use none of it).
pub struct ManifestReader<R: BufRead> {
    input: R,
    hash: Sha256,
    header: ManifestHeader,
    last: Option<RelPath>,
    seen: ManifestEnd,
    done: bool,
    line: Vec<u8>,
}

impl<R: BufRead> ManifestReader<R> {
    /// Reads the header.
    pub fn new(mut input: R) -> Result<Self, FormatError> {
        let mut line = Vec::new();
        input.read_until(b'\n', &mut line).map_err(|e| io_failed(&e))?;
        let mut hash = Sha256::new();
        hash.update(&line);
        let header: ManifestHeader =
            serde_json::from_slice(&line).map_err(|e| bad(format!("not a manifest header: {e}")))?;
        if header.format == 0 || header.format > MANIFEST_FORMAT {
            return Err(bad(format!(
                "manifest format {} is not one this version reads (1 to {MANIFEST_FORMAT}); a newer version wrote it",
                header.format
            )));
        }
        let seen = ManifestEnd { entries: 0, files: 0, bytes: 0, sha256: String::new() };
        Ok(ManifestReader { input, hash, header, last: None, seen, done: false, line })
    }

    /// The header.
    pub fn header(&self) -> &ManifestHeader {
        &self.header
    }

    fn next_entry(&mut self) -> Result<Option<RemoteEntry>, FormatError> {
        self.line.clear();
        let n = self.input.read_until(b'\n', &mut self.line).map_err(|e| io_failed(&e))?;
        if n == 0 || self.line.last() != Some(&b'\n') {
            return Err(bad("truncated (no end line)"));
        }
        if self.line.starts_with(b"{\"end\":") {
            let end: EndLine =
                serde_json::from_slice(&self.line).map_err(|e| bad(format!("bad end line: {e}")))?;
            let hash = hex::encode(self.hash.finalize_reset());
            let mut expect = self.seen.clone();
            expect.sha256 = hash;
            if end.end != expect {
                return Err(bad("the end line does not match the content (altered or truncated)"));
            }
            let mut rest = Vec::new();
            self.input.read_until(b'\n', &mut rest).map_err(|e| io_failed(&e))?;
            if !rest.is_empty() {
                return Err(bad("data after the end line"));
            }
            return Ok(None);
        }
        self.hash.update(&self.line);
        let row: Row = serde_json::from_slice(&self.line).map_err(|e| bad(format!("bad row: {e}")))?;
        let path = row.p.into_bytes().filter(|p| valid_path(p)).ok_or_else(|| bad("bad path"))?;
        let path = RelPath::from_bytes(&path);
        if self.last.as_ref().is_some_and(|last| *last >= path) {
            return Err(bad(format!("rows out of order at {path}")));
        }
        let (kind, object) = match (row.k, row.h, row.l) {
            ('f', Some(h), None) => {
                (Kind::File, Some(h.parse().map_err(|()| bad(format!("bad object id at {path}")))?))
            }
            ('d', None, None) => (Kind::Dir, None),
            ('l', None, Some(t)) => (
                Kind::Symlink(t.into_bytes().ok_or_else(|| bad(format!("bad target at {path}")))?.into()),
                None,
            ),
            _ => return Err(bad(format!("bad kind at {path}"))),
        };
        let size = match &kind {
            Kind::Symlink(t) => t.len() as u64,
            _ => row.s,
        };
        if object.is_some() {
            self.seen.files += 1;
            self.seen.bytes += size;
        }
        self.seen.entries += 1;
        self.last = Some(path.clone());
        let (secs, nanos) = row.t;
        if nanos >= 1_000_000_000 {
            return Err(bad(format!("bad mtime at {path}")));
        }
        Ok(Some(RemoteEntry {
            path,
            kind,
            size,
            mtime: Mtime { secs, nanos },
            mode: row.m & MODE_MASK,
            owner: row.o.map(|(uid, gid)| Owner { uid, gid }),
            object,
        }))
    }
}

/// A relative path a manifest may hold: not empty, no empty, `.` or `..` component, no NUL.
fn valid_path(p: &[u8]) -> bool {
    !p.is_empty()
        && !p.contains(&0)
        && p.split(|&b| b == b'/').all(|c| !c.is_empty() && c != b"." && c != b"..")
}

impl<R: BufRead> Iterator for ManifestReader<R> {
    type Item = Result<RemoteEntry, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_entry() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// The head object: which manifests are the latest (`_1`) and the previous (`_0`) version.
/// Switched as a whole: conditionally on its ETag, or by a rename where the store has no
/// conditional writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadFile {
    pub format: u32,
    /// Counts commits: 0 before the first, then 1, 2, ... Manifests carry it in their name.
    pub generation: u64,
    /// The latest version's manifest key.
    #[serde(rename = "_1")]
    pub latest: Option<String>,
    /// The previous version's manifest key (versioned stores; `None` for a mirror).
    #[serde(rename = "_0")]
    pub previous: Option<String>,
}

impl HeadFile {
    /// Parses a head, refusing a newer format or manifest keys that lie elsewhere.
    pub fn parse(bytes: &[u8]) -> Result<HeadFile, FormatError> {
        let head: HeadFile = serde_json::from_slice(bytes).map_err(|e| bad(format!("not a head: {e}")))?;
        if head.format == 0 || head.format > HEAD_FORMAT {
            return Err(bad(format!("head format {} is not one this version reads", head.format)));
        }
        for key in head.latest.iter().chain(&head.previous) {
            if manifest_generation(key).is_none() {
                return Err(bad(format!("{key:?} is not a manifest key")));
            }
        }
        Ok(head)
    }
}

/// The key of a new manifest: `manifests/<generation, 20 digits>-<16 hex>.jsonl`, the hex
/// unique to the writer, so that two writers of one generation never collide.
pub fn manifest_key(generation: u64, unique: &str) -> String {
    format!("manifests/{generation:020}-{unique}.jsonl")
}

/// The generation in a manifest key, if it is one.
pub fn manifest_generation(key: &str) -> Option<u64> {
    let name = key.strip_prefix("manifests/")?.strip_suffix(".jsonl")?;
    let (generation, unique) = name.split_once('-')?;
    let ok = generation.len() == 20 && !unique.is_empty() && unique.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| generation.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entries() -> Vec<RemoteEntry> {
        let e = |p: &[u8], kind: Kind, size: u64, object: Option<ObjectId>| RemoteEntry {
            path: RelPath::from_bytes(p),
            kind,
            size,
            mtime: Mtime { secs: 1_700_000_000, nanos: 123_456_789 },
            mode: 0o644,
            owner: None,
            object,
        };
        vec![
            e(b"a", Kind::Dir, 0, None),
            e(b"a/empty", Kind::File, 0, Some(ObjectId::of(b""))),
            e(b"a/x.txt", Kind::File, 5, Some(ObjectId::of(b"hello"))),
            e(b"b\xff\n", Kind::File, 1, Some(ObjectId::of(b"z"))),
            e(b"link", Kind::Symlink((*b"a/x.txt").into()), 7, None),
        ]
    }

    fn write(list: &[RemoteEntry]) -> Vec<u8> {
        let header = ManifestHeader { format: 1, generation: 3, created: "2026-11-26T00:00:00Z".into() };
        let mut w = ManifestWriter::new(Vec::new(), &header).unwrap();
        for e in list {
            w.push(e).unwrap();
        }
        w.finish().unwrap().0
    }

    #[test]
    fn manifest_round_trips_raw_names_kinds_and_times() {
        let bytes = write(&entries());
        let r = ManifestReader::new(&bytes[..]).unwrap();
        assert_eq!(r.header().generation, 3);
        let back: Vec<RemoteEntry> = r.collect::<Result<_, _>>().unwrap();
        assert_eq!(back, entries());
        // One short line per entry.
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.lines().nth(3).unwrap().len() < 150, "{text}");
    }

    #[test]
    fn truncated_altered_or_unordered_manifests_are_refused() {
        let bytes = write(&entries());
        let cut = &bytes[..bytes.len() - 20];
        let r: Result<Vec<_>, _> = ManifestReader::new(cut).unwrap().collect();
        assert!(r.is_err());
        let without_end: Vec<u8> =
            bytes.split(|&b| b == b'\n').take(6).flat_map(|l| [l, b"\n"].concat()).collect();
        let r: Result<Vec<_>, _> = ManifestReader::new(&without_end[..]).unwrap().collect();
        assert_eq!(r.unwrap_err().message, "truncated (no end line)");
        let altered = String::from_utf8_lossy(&bytes).replace("\"m\":420", "\"m\":511").into_bytes();
        let r: Result<Vec<_>, _> = ManifestReader::new(&altered[..]).unwrap().collect();
        assert!(r.unwrap_err().message.contains("does not match"));
        let header = ManifestHeader { format: 1, generation: 1, created: String::new() };
        let mut w = ManifestWriter::new(Vec::new(), &header).unwrap();
        w.push(&entries()[1]).unwrap();
        assert!(w.push(&entries()[0]).is_err());
        let newer = br#"{"format":2,"generation":1,"created":""}"#;
        assert!(ManifestReader::new(&newer[..]).is_err());
    }

    #[test]
    fn object_keys_and_ids() {
        let id = ObjectId::of(b"hello");
        let key = id.key();
        assert_eq!(key, "objects/2c/2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(ObjectId::from_key(&key), Some(id));
        assert_eq!(
            ObjectId::from_key("objects/2d/2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
            None
        );
        assert!(
            "2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824".parse::<ObjectId>().is_err()
        );
    }

    #[test]
    fn head_and_manifest_keys() {
        let key = manifest_key(7, "0123456789abcdef");
        assert_eq!(key, "manifests/00000000000000000007-0123456789abcdef.jsonl");
        assert_eq!(manifest_generation(&key), Some(7));
        assert_eq!(manifest_generation("manifests/7-x.jsonl"), None);
        let head = HeadFile { format: 1, generation: 7, latest: Some(key), previous: None };
        let json = serde_json::to_vec(&head).unwrap();
        assert_eq!(HeadFile::parse(&json).unwrap(), head);
        assert!(HeadFile::parse(br#"{"format":1,"generation":1,"_1":"../etc/passwd","_0":null}"#).is_err());
        assert!(HeadFile::parse(br#"{"format":9,"generation":1,"_1":null,"_0":null}"#).is_err());
    }
}
