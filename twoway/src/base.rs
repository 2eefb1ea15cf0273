//! The merge base of a `twoway` pair (SPEC section 4): what both directories held after the
//! last successful pass, per path, with each side's inode so that it doubles as a hash cache.
//! Stored as versioned JSON under the home, written atomically after the data operations.
//! A corrupt or newer-format file is reported and treated as "no base" (union semantics,
//! which never delete).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use synccore::checksum::Digest;
use synccore::entry::{Kind, Mtime, Owner};
use synccore::error::{Error, Result};
use synccore::fsio::{Rename, Root};
use synccore::jsonbytes::Bytes;
use synccore::relpath::RelPath;

mod journal;
pub use journal::append;

/// The format written by this version. Format 1 (rows as unnamed 9-element arrays, no
/// owners) is still read; newer files are refused (treated as no base).
pub const FORMAT: u32 = 2;

/// What one path held on both sides after the last pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseEntry {
    pub kind: Kind,
    pub size: u64,
    pub mtime: Mtime,
    pub mode: u32,
    /// Owner and group, recorded when the pass kept owners (run as root); `None` when unknown.
    pub owner: Option<Owner>,
    /// SHA-256 of a file's content, when the pass knew it.
    pub hash: Option<Digest>,
    /// Inode on side A and on side B: a side whose (size, mtime, inode) still match is unchanged.
    pub ino: [u64; 2],
    /// Device of the entry on side A and on side B (inode numbers are per device): with the
    /// inode, it finds a renamed entry (the renames issue). 0 when unknown (a base written
    /// before devices were recorded), which finds nothing.
    pub dev: [u64; 2],
}

/// The base of a pair: entries sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Base {
    pub entries: Vec<(RelPath, BaseEntry)>,
}

impl Base {
    /// Looks a path up.
    pub fn get(&self, path: &RelPath) -> Option<&BaseEntry> {
        self.entries.binary_search_by(|(p, _)| p.cmp(path)).ok().map(|i| &self.entries[i].1)
    }

    /// Number of non-directory entries.
    pub fn file_count(&self) -> usize {
        self.entries.iter().filter(|(_, e)| e.kind != Kind::Dir).count()
    }
}

/// One entry as stored (format 2): one JSON object per line, with one-letter keys (the base
/// of a large tree has a row per file, read and written on every pass that changes
/// something, so its size is its cost; docs/formats.md spells the keys out).
#[derive(Debug, Serialize, Deserialize)]
struct Row {
    #[serde(rename = "p")]
    path: Bytes,
    /// `f` file, `d` directory, `l` symlink.
    #[serde(rename = "k")]
    kind: char,
    #[serde(rename = "s")]
    size: u64,
    /// Seconds and nanoseconds.
    #[serde(rename = "t")]
    mtime: (i64, u32),
    #[serde(rename = "m")]
    mode: u32,
    /// `[uid, gid]`.
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    owner: Option<(u32, u32)>,
    /// Inode on side A and side B.
    #[serde(rename = "i")]
    ino: (u64, u64),
    /// Device on side A and side B, when it is not the header's `dev`.
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    dev: Option<(u64, u64)>,
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    hash: Option<Digest>,
    /// A symlink's target.
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    target: Option<Bytes>,
}

impl Row {
    /// The raw bytes of the row's path (empty when malformed), for sorting legacy rows.
    fn path_bytes(&self) -> Vec<u8> {
        self.path.clone().into_bytes().unwrap_or_default()
    }

    /// The stored form of one entry; `dev` is the header's.
    fn of(path: &RelPath, e: &BaseEntry, dev: Option<(u64, u64)>) -> Row {
        let (kind, target) = match &e.kind {
            Kind::File => ('f', None),
            Kind::Dir => ('d', None),
            Kind::Symlink(t) => ('l', Some(Bytes::of(t))),
        };
        Row {
            path: Bytes::of(path.as_bytes()),
            kind,
            size: e.size,
            mtime: (e.mtime.secs, e.mtime.nanos),
            mode: e.mode,
            owner: e.owner.map(|o| (o.uid, o.gid)),
            ino: (e.ino[0], e.ino[1]),
            dev: Some((e.dev[0], e.dev[1])).filter(|d| Some(*d) != dev),
            hash: e.hash,
            target,
        }
    }

    /// The entry a stored row describes; `None` when it is malformed.
    fn into_entry(self, dev: Option<(u64, u64)>) -> Option<(RelPath, BaseEntry)> {
        let path = RelPath::from_bytes(&self.path.into_bytes()?);
        let kind = match (self.kind, self.target) {
            ('f', None) => Kind::File,
            ('d', None) => Kind::Dir,
            ('l', Some(t)) => Kind::Symlink(t.into_bytes()?.into()),
            _ => return None,
        };
        let entry = BaseEntry {
            hash: self.hash.filter(|_| kind == Kind::File),
            kind,
            size: self.size,
            mtime: Mtime { secs: self.mtime.0, nanos: self.mtime.1 },
            mode: self.mode,
            owner: self.owner.map(|(uid, gid)| Owner { uid, gid }),
            ino: [self.ino.0, self.ino.1],
            dev: self.dev.or(dev).map_or([0, 0], |(a, b)| [a, b]),
        };
        Some((path, entry))
    }
}

/// One entry as format 1 stored it: `[path, kind, size, secs, nanos, mode, ino_a, ino_b,
/// hash-or-target]`.
#[derive(Debug, Deserialize)]
struct RowV1(Bytes, char, u64, i64, u32, u32, u64, u64, Option<Bytes>);

impl From<RowV1> for Row {
    fn from(RowV1(path, kind, size, secs, nanos, mode, ino_a, ino_b, extra): RowV1) -> Self {
        let (hash, target) = match kind {
            'f' => (
                extra.and_then(Bytes::into_bytes).and_then(|h| std::str::from_utf8(&h).ok()?.parse().ok()),
                None,
            ),
            _ => (None, extra),
        };
        let ino = (ino_a, ino_b);
        Row { path, kind, size, mtime: (secs, nanos), mode, owner: None, ino, dev: None, hash, target }
    }
}

/// Format 1: one JSON object holding everything.
#[derive(Debug, Deserialize)]
struct FileV1 {
    entries: Vec<RowV1>,
}

/// The first line of a state file (format 1: the whole file): which format it is and whose
/// it is.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: u32,
    /// The pair's sides in the order it was first synced (see [`Pair`]).
    a: Bytes,
    b: Bytes,
    #[serde(default)]
    saved: String,
    /// The device of most entries on side A and side B (a row's `v` says where it differs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dev: Option<(u64, u64)>,
    /// Which write of the file this is: the journal beside it names the one it extends.
    #[serde(rename = "gen", default, skip_serializing_if = "Option::is_none")]
    generation: Option<String>,
}

/// A pair of directories and where its base and lock live. The pair is the same whichever
/// order its directories are named in (the hardening issue, point 4): one base, one lock, and
/// sides A and B as the pair was first synced, so that ties, the `-a`/`-b` conflict suffixes
/// and log prefixes never depend on the order of the arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// Canonical roots of side A and side B, in the pair's recorded order.
    pub roots: [PathBuf; 2],
    /// The home (canonical) that holds the pair's directory.
    pub home: PathBuf,
    /// `pairs/<id>` below the home, `<id>` derived from both roots independently of their
    /// order.
    pub dir: PathBuf,
    /// A base (relative to the home) written by an earlier version under the key of the
    /// reversed order, not yet moved to [`Pair::dir`].
    legacy: Option<PathBuf>,
}

impl Pair {
    /// Finds the pair of `a` and `b` (canonical) under `home`, reading (never writing) the
    /// recorded base to learn the pair's order.
    pub fn locate(home: &Path, a: PathBuf, b: PathBuf) -> Self {
        let pairs = Path::new("pairs");
        let dir = pairs.join(key(&a, &b, true));
        let state = dir.join(STATE_FILE);
        let home_root = Root::open(home).ok();
        let exists = |rel: &Path| home_root.as_ref().is_some_and(|r| r.exists(rel));
        // Earlier versions keyed the pair by the order of the arguments of its first pass.
        let legacy = [key(&a, &b, false), key(&b, &a, false)]
            .into_iter()
            .map(|k| pairs.join(k).join(STATE_FILE))
            .find(|p| *p != state && !exists(&state) && exists(p));
        let recorded = home_root.and_then(|r| read_header(&r, legacy.as_deref().unwrap_or(&state)));
        let roots = match recorded {
            Some((ra, rb)) if ra == b && rb == a => [b, a],
            _ => [a, b],
        };
        Pair { roots, home: home.to_path_buf(), dir, legacy }
    }

    /// The base to read, relative to the home: [`Pair::state`], or a legacy one not moved yet.
    pub fn base_to_read(&self) -> PathBuf {
        self.legacy.clone().unwrap_or_else(|| self.state())
    }

    /// `pairs/<id>/state.json` (relative to the home), where the base is written.
    pub fn state(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The pair's lock file.
    pub fn lock_path(&self) -> PathBuf {
        self.home.join(&self.dir).join("lock")
    }

    /// True when the pair has a base (it was synced before).
    pub fn has_base(&self) -> bool {
        self.legacy.is_some() || self.home.join(self.state()).exists()
    }

    /// Moves a legacy base to [`Pair::state`] (atomically; call with the lock held, never in a
    /// dry run), so that an upgrade never turns the next pass into a first (union) pass.
    pub fn adopt_legacy_base(&mut self) -> Result<()> {
        let Some(legacy) = self.legacy.take() else { return Ok(()) };
        let home = Root::open(&self.home)?;
        home.create_dirs(&self.dir)?;
        home.rename(&legacy, &self.state(), Rename::NoReplace)?;
        home.sync_dir(&self.dir)?;
        if let Some(old_dir) = legacy.parent() {
            // The old directory held only the base, a lock file and a status (issue 16); leave it
            // if anything else.
            let _ = home.remove_file(&old_dir.join("lock"));
            let _ = home.remove_file(&old_dir.join(synccli::status::FILE_NAME));
            let _ = home.remove_dir(old_dir);
        }
        Ok(())
    }
}

const STATE_FILE: &str = "state.json";

/// The id of a pair's directory: 16 hex digits of SHA-256 over both roots, sorted when
/// `sorted` (the key of this version), else in the given order (the key of format-1 days).
fn key(a: &Path, b: &Path, sorted: bool) -> String {
    let (x, y) = if sorted && b < a { (b, a) } else { (a, b) };
    let mut bytes = x.as_os_str().as_bytes().to_vec();
    bytes.push(0);
    bytes.extend_from_slice(y.as_os_str().as_bytes());
    Digest::of_bytes(&bytes).to_hex()[..16].to_string()
}

/// The sides recorded in the state file at `rel` below `home`, if it is readable: its first
/// line only.
pub fn read_header(home: &Root, rel: &Path) -> Option<(PathBuf, PathBuf)> {
    let file = home.open_read(rel).ok()?;
    let mut line = Vec::new();
    std::io::BufRead::read_until(&mut std::io::BufReader::new(file), b'\n', &mut line).ok()?;
    let header: Header = serde_json::from_slice(&line).ok()?;
    Some((header.a.into_path()?, header.b.into_path()?))
}

/// Loads the base at `rel` below `home`. `Ok(None)` when there is none yet; `Err` (reported by
/// the caller, then treated as no base) when it is unreadable, corrupt or of a newer format.
pub fn load(home: &Root, rel: &Path) -> Result<Option<Base>> {
    Ok(load_stored(home, rel)?.map(|s| s.base))
}

/// A base as stored: the full file with the journal beside it replayed.
#[derive(Debug)]
pub struct Stored {
    pub base: Base,
    /// The generation of the full file (empty for a file written before generations).
    pub generation: String,
    /// Rows in the journal (0 when there is none).
    pub journal: usize,
}

/// [`load`], with what a watch pass needs to append to the journal instead of rewriting.
pub fn load_stored(home: &Root, rel: &Path) -> Result<Option<Stored>> {
    let Some(mut reader) = Reader::open(home, rel)? else { return Ok(None) };
    let entries: Vec<(RelPath, BaseEntry)> = reader.by_ref().collect();
    if let Some(problem) = reader.problem() {
        return Err(problem);
    }
    let Reader { generation, journal_rows, .. } = reader;
    Ok(Some(Stored { base: Base { entries }, generation, journal: journal_rows }))
}

/// Writes the base at `rel` below `home` atomically: the header line, then one line per entry;
/// then drops the journal it supersedes. Returns the new file's generation.
pub fn save(home: &Root, rel: &Path, a: &Path, b: &Path, state: &Base) -> Result<String> {
    let dev = most_common_dev(state);
    save_rows(home, rel, (a, b), dev, &mut state.entries.iter().cloned())
}

/// The base read one row at a time, in path order (the scale issue): `state.json` line by
/// line, its journal (small, in memory) laid over it. A malformed or misordered row ends the
/// rows and is reported by [`Reader::problem`]: the pass then runs as with no base.
pub struct Reader {
    rows: Rows,
    journal: std::iter::Peekable<std::collections::btree_map::IntoIter<RelPath, Option<BaseEntry>>>,
    next_file_row: Option<(RelPath, BaseEntry)>,
    dev: Option<(u64, u64)>,
    path: std::path::PathBuf,
    last: Option<RelPath>,
    problem: Option<Error>,
    /// The generation of the file and the rows its journal holds.
    pub generation: String,
    pub journal_rows: usize,
}

/// Where the file's rows come from: format 2 line by line, or format 1 (legacy) in memory.
enum Rows {
    Lines(std::io::Lines<std::io::BufReader<std::fs::File>>),
    Loaded(std::vec::IntoIter<Row>),
    None,
}

impl Reader {
    /// Opens the base at `rel` below `home`; `Ok(None)` when there is none yet.
    pub fn open(home: &Root, rel: &Path) -> Result<Option<Reader>> {
        let path = home.path_of(rel);
        let corrupt = |reason: String| Error::Corrupt { path: path.clone(), reason };
        let file = match home.open_read(rel) {
            Ok(file) => file,
            Err(err) if err.io_kind() == Some(std::io::ErrorKind::NotFound) => return Ok(None),
            Err(err) => return Err(err),
        };
        let mut lines = std::io::BufRead::lines(std::io::BufReader::with_capacity(1 << 16, file));
        let first = lines.next().transpose().map_err(|e| corrupt(format!("unreadable merge state: {e}")))?;
        let header: Option<Header> = first.as_deref().and_then(|l| serde_json::from_str(l).ok());
        let (header, rows) = match header {
            Some(h) if h.format == FORMAT => (h, Rows::Lines(lines)),
            // Format 1 (one object) or something else: read whole, as before.
            _ => {
                let Some(text) = home.read(rel)? else { return Ok(None) };
                let header: Header = serde_json::from_slice(&text)
                    .or_else(|_| {
                        let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
                        serde_json::from_slice(first)
                    })
                    .map_err(|e| corrupt(format!("corrupt merge state: {e}")))?;
                if header.format != 1 {
                    return Err(corrupt(format!(
                        "merge state format {} is not {FORMAT} (written by another version)",
                        header.format
                    )));
                }
                let file: FileV1 = serde_json::from_slice(&text)
                    .map_err(|e| corrupt(format!("corrupt merge state: {e}")))?;
                let mut rows: Vec<Row> = file.entries.into_iter().map(Row::from).collect();
                rows.sort_by_key(Row::path_bytes);
                (header, Rows::Loaded(rows.into_iter()))
            }
        };
        let (journal, journal_rows) = journal::load(home, rel, header.generation.as_deref())?;
        let mut reader = Reader {
            rows,
            journal: journal.into_iter().peekable(),
            next_file_row: None,
            dev: header.dev,
            path,
            last: None,
            problem: None,
            generation: header.generation.unwrap_or_default(),
            journal_rows,
        };
        reader.next_file_row = reader.read_file_row();
        Ok(Some(reader))
    }

    /// What ended the rows early (a malformed or misordered row), if anything did.
    pub fn problem(&mut self) -> Option<Error> {
        self.problem.take()
    }

    /// True when a problem was met (without taking it).
    pub fn has_problem(&self) -> bool {
        self.problem.is_some()
    }

    fn read_file_row(&mut self) -> Option<(RelPath, BaseEntry)> {
        if self.problem.is_some() {
            return None;
        }
        let row = match &mut self.rows {
            Rows::None => return None,
            Rows::Loaded(rows) => rows.next()?,
            Rows::Lines(lines) => loop {
                match lines.next()? {
                    Ok(line) if line.is_empty() => {}
                    Ok(line) => match serde_json::from_str::<Row>(&line) {
                        Ok(row) => break row,
                        Err(e) => return self.fail(format!("corrupt merge state: {e}")),
                    },
                    Err(e) => return self.fail(format!("unreadable merge state: {e}")),
                }
            },
        };
        let Some((path, entry)) = row.into_entry(self.dev) else {
            return self.fail("corrupt merge state: bad entry".into());
        };
        if self.last.as_ref().is_some_and(|last| *last >= path) {
            return self.fail("corrupt merge state: rows out of order".into());
        }
        self.last = Some(path.clone());
        Some((path, entry))
    }

    fn fail(&mut self, reason: String) -> Option<(RelPath, BaseEntry)> {
        self.problem = Some(Error::Corrupt { path: self.path.clone(), reason });
        self.rows = Rows::None;
        None
    }
}

impl Iterator for Reader {
    type Item = (RelPath, BaseEntry);

    /// The next row: the file's, or the journal's where it names the same path or one the
    /// file lacks (a journal's removal drops the row).
    fn next(&mut self) -> Option<(RelPath, BaseEntry)> {
        loop {
            let journal_first = match (&self.next_file_row, self.journal.peek()) {
                (None, None) => return None,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((file, _)), Some((journal, _))) => journal <= file,
            };
            if !journal_first {
                let row = self.next_file_row.take();
                self.next_file_row = self.read_file_row();
                return row;
            }
            let Some((path, change)) = self.journal.next() else { continue };
            if self.next_file_row.as_ref().is_some_and(|(file, _)| *file == path) {
                self.next_file_row = self.read_file_row();
            }
            if let Some(entry) = change {
                return Some((path, entry));
            }
        }
    }
}

/// Writes the base at `rel` below `home` atomically from `rows` (in path order), one line
/// each after the header (`dev`: the roots' devices, a row naming its own where they differ);
/// then drops the journal it supersedes. Returns the new file's generation.
pub fn save_rows(
    home: &Root,
    rel: &Path,
    (a, b): (&Path, &Path),
    dev: Option<(u64, u64)>,
    rows: &mut dyn Iterator<Item = (RelPath, BaseEntry)>,
) -> Result<String> {
    let generation = journal::new_generation();
    let header = Header {
        format: FORMAT,
        a: Bytes::of(a.as_os_str().as_bytes()),
        b: Bytes::of(b.as_os_str().as_bytes()),
        saved: chrono::Utc::now().to_rfc3339(),
        dev,
        generation: Some(generation.clone()),
    };
    if let Some(dir) = rel.parent() {
        home.create_dirs(dir)?;
    }
    home.write_atomic_with(rel, &mut |out| {
        serde_json::to_writer(&mut *out, &header)?;
        out.write_all(b"\n")?;
        for (p, e) in &mut *rows {
            serde_json::to_writer(&mut *out, &Row::of(&p, &e, dev))?;
            out.write_all(b"\n")?;
        }
        Ok(())
    })?;
    journal::remove(home, rel)?;
    Ok(generation)
}

/// The pair of devices most entries are on (the header's `dev`), so that a row names its
/// devices only below a mount point.
fn most_common_dev(state: &Base) -> Option<(u64, u64)> {
    let mut counts: std::collections::HashMap<[u64; 2], usize> = std::collections::HashMap::new();
    for (_, e) in &state.entries {
        *counts.entry(e.dev).or_default() += 1;
    }
    counts.into_iter().max_by_key(|&(dev, n)| (n, dev)).map(|([a, b], _)| (a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn round_trips_every_kind_and_raw_names() {
        let d = tempfile::tempdir().unwrap();
        let home = Root::open(d.path()).unwrap();
        let p = Path::new("pairs/x/state.json");
        let e = |kind, hash| BaseEntry {
            kind,
            size: 3,
            mtime: Mtime { secs: -5, nanos: 7 },
            mode: 0o644,
            owner: Some(Owner { uid: 1000, gid: 100 }),
            hash,
            ino: [1, 2],
            dev: [7, 8],
        };
        let mut mounted = e(Kind::File, None);
        mounted.dev = [7, 9];
        let state = Base {
            entries: vec![
                (RelPath::from_bytes(b"a"), e(Kind::File, Some(Digest::of_bytes(b"x")))),
                (RelPath::from_bytes(b"b\xff"), e(Kind::File, None)),
                (RelPath::from_bytes(b"d"), e(Kind::Dir, None)),
                (RelPath::from_bytes(b"l"), e(Kind::Symlink(b"t\xfe".to_vec().into()), None)),
                (RelPath::from_bytes(b"mnt"), mounted),
            ],
        };
        save(&home, p, Path::new("/a"), Path::new("/b"), &state).unwrap();
        assert_eq!(load(&home, p).unwrap(), Some(state));
        // Devices are written once in the header, and per row only where they differ.
        let text = String::from_utf8(fs::read(d.path().join(p)).unwrap()).unwrap();
        assert!(text.lines().next().unwrap().contains(r#""dev":[7,8]"#), "{text}");
        assert_eq!(text.matches(r#""v":"#).count(), 1, "{text}");
        assert_eq!(load(&home, Path::new("none")).unwrap(), None);
    }

    #[test]
    fn format_1_is_still_read() {
        let d = tempfile::tempdir().unwrap();
        let home = Root::open(d.path()).unwrap();
        let p = d.path().join("state.json");
        let hash = Digest::of_bytes(b"x").to_hex();
        let text = format!(
            r#"{{"format": 1, "a": "/a", "b": "/b", "saved": "", "entries": [
                ["f", "f", 3, -5, 7, 420, 1, 2, "{hash}"], ["l", "l", 1, 0, 0, 511, 3, 4, {{"hex": "fe"}}]]}}"#
        );
        fs::write(&p, text).unwrap();
        let state = load(&home, Path::new("state.json")).unwrap().unwrap();
        let file = state.get(&RelPath::from_bytes(b"f")).unwrap();
        assert_eq!((file.hash, file.owner, file.ino), (Some(Digest::of_bytes(b"x")), None, [1, 2]));
        let link = state.get(&RelPath::from_bytes(b"l")).unwrap();
        assert_eq!(link.kind, Kind::Symlink(b"\xfe".to_vec().into()));
    }

    #[test]
    fn a_pair_is_one_pair_in_either_order_and_keeps_its_first_order() {
        let d = tempfile::tempdir().unwrap();
        let (x, y) = (PathBuf::from("/data/x"), PathBuf::from("/data/y"));
        let first = Pair::locate(d.path(), y.clone(), x.clone());
        assert_eq!(first.roots, [y.clone(), x.clone()], "no base yet: the given order");
        save(&Root::open(d.path()).unwrap(), &first.state(), &y, &x, &Base::default()).unwrap();
        let swapped = Pair::locate(d.path(), x.clone(), y.clone());
        assert_eq!(swapped.roots, [y, x], "the recorded order");
        assert_eq!((&swapped.dir, swapped.lock_path()), (&first.dir, first.lock_path()));
    }

    #[test]
    fn corrupt_and_newer_files_are_errors_naming_the_path() {
        let d = tempfile::tempdir().unwrap();
        let home = Root::open(d.path()).unwrap();
        let p = d.path().join("state.json");
        fs::write(&p, b"{not json").unwrap();
        let err = load(&home, Path::new("state.json")).unwrap_err().to_string();
        assert!(err.contains("state.json") && err.contains("corrupt"), "{err}");
        fs::write(&p, br#"{"format": 99, "a": "/a", "b": "/b", "saved": "", "entries": []}"#).unwrap();
        assert!(load(&home, Path::new("state.json")).unwrap_err().to_string().contains("format 99"));
    }
}
