//! The hash cache of `_1` as an append-only journal (issue 17 point 3: "a versioned pass writes
//! only what changed"): `__versions__/<name>/hashes-<id>.jsonl` beside the manifest, JSON
//! Lines. The first line is a header, `{"hashes":1,"id":"<id>"}`; each further line is a row
//! of [`FileRecord`] (`[path, sha256, size, mtime seconds, mtime nanoseconds, inode]`: a
//! file of `_1` as SOURCE had it when hashed) or `{"gone": path}` (a path `_1` no longer has
//! as a regular file). Replayed in order, the last line for a path wins.
//!
//! A rotation appends the rows that differ between the old `_1` and the new one, so it writes
//! about 110 bytes per changed file instead of a row per file of the tree. The manifest names
//! the journal and the length of it that describes its `_1` ([`HashesRef`]); the rotation
//! appends and makes the lines durable *before* it writes the pending manifest (step 2 of
//! [`crate::versions::rotation`]), so whichever way a crash is repaired, the manifest and the
//! journal's first `bytes` bytes describe the slot that is `_1`:
//!
//! - killed before the pending manifest exists: the rotation is rolled back, the manifest
//!   still names the old length, and the lines after it (complete or cut short) are never
//!   read; the next rotation finds the file longer than the manifest says and compacts;
//! - killed after: the rotation is rolled forward and the manifest names the new length,
//!   whose lines are durable.
//!
//! Compaction writes the live rows to a new journal (a new `<id>`, written atomically), which
//! the next manifest names; the journal it replaces is removed once that manifest is in
//! place ([`remove_others`]). A rotation compacts when there is no journal to extend (the
//! first version, a manifest of format 2, a lost journal), when the journal is not exactly
//! the length its manifest vouches for (an unfinished append), and when it would hold more
//! than twice as many lines as live rows plus 1,000, so that rewriting the live rows is paid
//! for by at least as many appended ones: amortised, at most about two rows per changed file.
//!
//! This module is the format and its crash safety; what oneway trusts the rows for is its own
//! (`oneway::versioned::cache`).

use std::ffi::OsStr;
use std::io::Read as _;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoResultExt, Op, Result};
use crate::fsio::Root;
use crate::jsonbytes::Bytes;
use crate::relpath::RelPath;
use crate::versions::manifest::{FileRecord, HashesRef};

/// The journal format this code writes and reads.
pub const FORMAT: u32 = 1;

const PREFIX: &str = "hashes-";
const SUFFIX: &str = ".jsonl";

/// A journal holding more than `GROWTH` lines per live row plus [`SLACK`] is compacted.
const GROWTH: u64 = 2;
const SLACK: u64 = 1_000;

/// The first line.
#[derive(Debug, Serialize, Deserialize)]
struct Head {
    hashes: u32,
    id: String,
}

/// A line that drops a path.
#[derive(Debug, Serialize, Deserialize)]
struct Gone {
    gone: Bytes,
}

/// One line after the header.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Set(FileRecord),
    Gone(RelPath),
}

impl Line {
    fn path(&self) -> &RelPath {
        match self {
            Line::Set(r) => &r.path,
            Line::Gone(p) => p,
        }
    }
}

/// True for the name of a journal file (`hashes-<id>.jsonl`, one component).
pub fn is_journal_name(name: &OsStr) -> bool {
    id_of(name).is_some()
}

/// The `<id>` of a journal's file name.
fn id_of(name: &OsStr) -> Option<&[u8]> {
    let id = name.as_bytes().strip_prefix(PREFIX.as_bytes())?.strip_suffix(SUFFIX.as_bytes())?;
    let plain = !id.is_empty() && id.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-');
    plain.then_some(id)
}

/// A new journal id: the time in nanoseconds, the process id and a counter, in hex.
fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!("{nanos:x}-{:x}-{:x}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The rows of `_1` that `r` (from the manifest of the versions directory `v`) vouches for,
/// sorted by path. A journal that is missing, shorter than `r.bytes`, of another id, or
/// whose vouched-for part does not parse line by line is [`Error::Corrupt`] naming it: the
/// caller rebuilds the cache from `_1`, never trusting part of it.
pub fn load(v: &Root, r: &HashesRef) -> Result<Vec<FileRecord>> {
    let rel = Path::new(&r.file);
    let path = v.path_of(rel);
    let corrupt = |reason: String| Error::Corrupt { path: path.clone(), reason };
    let Some(id) = id_of(OsStr::new(&r.file)) else {
        return Err(corrupt("the manifest names no hash journal".into()));
    };
    let file = match v.open_read(rel) {
        Ok(f) => f,
        Err(err) if err.io_kind() == Some(std::io::ErrorKind::NotFound) => {
            return Err(corrupt("the hash journal is missing".into()));
        }
        Err(err) => return Err(err),
    };
    let mut bytes = Vec::new();
    // Only the part the manifest vouches for: what follows is an unfinished rotation's.
    file.take(r.bytes).read_to_end(&mut bytes).at(Op::Read, &path)?;
    if (bytes.len() as u64) < r.bytes {
        return Err(corrupt(format!("the hash journal holds {} of {} bytes", bytes.len(), r.bytes)));
    }
    let lines = parse(&bytes, id).map_err(|reason| corrupt(format!("bad hash journal: {reason}")))?;
    if lines.len() as u64 != r.lines {
        return Err(corrupt(format!("the hash journal holds {} lines, not {}", lines.len(), r.lines)));
    }
    Ok(replay(lines))
}

/// The lines after the header of a journal's vouched-for part, which must end with a newline.
fn parse(bytes: &[u8], id: &[u8]) -> Result<Vec<Line>, String> {
    let Some(body) = bytes.strip_suffix(b"\n") else { return Err("its last line is cut short".into()) };
    let mut lines = body.split(|&b| b == b'\n');
    let head: Head =
        lines.next().and_then(|l| serde_json::from_slice(l).ok()).ok_or_else(|| "no header".to_string())?;
    if head.hashes != FORMAT || head.id.as_bytes() != id {
        return Err(format!("header of format {} and id {}", head.hashes, head.id));
    }
    lines
        .enumerate()
        .map(|(i, line)| {
            let bad = |e: serde_json::Error| format!("line {}: {e}", i + 2);
            if line.first() == Some(&b'[') {
                serde_json::from_slice::<FileRecord>(line).map(Line::Set).map_err(bad)
            } else {
                let gone: Gone = serde_json::from_slice(line).map_err(bad)?;
                let path = gone.gone.into_bytes().ok_or_else(|| format!("line {}: bad hex", i + 2))?;
                Ok(Line::Gone(RelPath::from_bytes(&path)))
            }
        })
        .collect()
}

/// The state the lines leave, sorted by path: per path, the last line wins.
fn replay(mut lines: Vec<Line>) -> Vec<FileRecord> {
    if !lines.is_sorted_by(|a, b| a.path() < b.path()) {
        // Stable: lines of one path keep their journal order.
        lines.sort_by(|a, b| a.path().cmp(b.path()));
    }
    let mut out = Vec::with_capacity(lines.len());
    let mut lines = lines.into_iter().peekable();
    while let Some(line) = lines.next() {
        if lines.peek().is_some_and(|next| next.path() == line.path()) {
            continue;
        }
        if let Line::Set(row) = line {
            out.push(row);
        }
    }
    out
}

/// What [`record`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// What the next manifest names.
    pub hashes: HashesRef,
    /// Bytes written to the journal (appended, or the whole compacted file).
    pub bytes_written: u64,
    /// True when a new journal was written (the one it replaces is removed by
    /// [`remove_others`] once the manifest naming the new one is in place).
    pub compacted: bool,
}

/// Records `new` (sorted by path) as the hash cache of the `_1` a rotation is about to swap
/// in: appends its differences from `current` (the manifest's journal and the rows it
/// vouches for) to that journal, or writes a new compacted journal (see the module comment
/// for when). Durable when it returns; call it before the rotation writes its pending
/// manifest, which must name the returned [`HashesRef`].
pub fn record(
    v: &Root,
    current: Option<(&HashesRef, &[FileRecord])>,
    new: &[FileRecord],
) -> Result<Recorded> {
    if let Some((r, old)) = current {
        let rel = Path::new(&r.file);
        // The file must end where the manifest says: a longer one holds an unfinished append,
        // which must never come to lie inside a vouched-for part.
        let intact = id_of(OsStr::new(&r.file)).is_some()
            && v.stat(rel).is_ok_and(|st| u64::try_from(st.st_size).ok() == Some(r.bytes));
        let changes = differences(old, new);
        let lines = r.lines + changes.len() as u64;
        if intact && lines <= GROWTH * new.len() as u64 + SLACK {
            let mut out = Vec::new();
            for line in &changes {
                encode(&mut out, line, v, rel)?;
            }
            if !out.is_empty() {
                v.append_durably(rel, &out)?;
            }
            let hashes = HashesRef { file: r.file.clone(), bytes: r.bytes + out.len() as u64, lines };
            return Ok(Recorded { hashes, bytes_written: out.len() as u64, compacted: false });
        }
    }
    compact(v, new)
}

/// Writes `rows` as a new journal, atomically.
fn compact(v: &Root, rows: &[FileRecord]) -> Result<Recorded> {
    let id = new_id();
    let file = format!("{PREFIX}{id}{SUFFIX}");
    let rel = Path::new(&file);
    let mut out = Vec::with_capacity(rows.len() * 120 + 64);
    serde_json::to_writer(&mut out, &Head { hashes: FORMAT, id })
        .map_err(|e| Error::Invalid { path: v.path_of(rel), reason: format!("cannot encode: {e}") })?;
    out.push(b'\n');
    for row in rows {
        encode(&mut out, &Line::Set(row.clone()), v, rel)?;
    }
    v.write_atomic(rel, &out)?;
    let hashes = HashesRef { file, bytes: out.len() as u64, lines: rows.len() as u64 };
    Ok(Recorded { hashes, bytes_written: out.len() as u64, compacted: true })
}

/// Appends one line.
fn encode(out: &mut Vec<u8>, line: &Line, v: &Root, rel: &Path) -> Result<()> {
    match line {
        Line::Set(row) => serde_json::to_writer(&mut *out, row),
        Line::Gone(path) => serde_json::to_writer(&mut *out, &Gone { gone: Bytes::of(path.as_bytes()) }),
    }
    .map_err(|e| Error::Invalid { path: v.path_of(rel), reason: format!("cannot encode: {e}") })?;
    out.push(b'\n');
    Ok(())
}

/// The lines that turn `old` into `new` (both sorted by path): rows that are new or differ,
/// removals of paths `new` lacks, in path order.
fn differences(old: &[FileRecord], new: &[FileRecord]) -> Vec<Line> {
    let mut out = Vec::new();
    let (mut o, mut n) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (o.peek(), n.peek()) {
            (None, None) => return out,
            (Some(a), Some(b)) if a.path == b.path => {
                if a != b {
                    out.push(Line::Set((*b).clone()));
                }
                o.next();
                n.next();
            }
            (Some(a), Some(b)) if a.path < b.path => {
                out.push(Line::Gone(a.path.clone()));
                o.next();
            }
            (Some(a), None) => {
                out.push(Line::Gone(a.path.clone()));
                o.next();
            }
            (_, Some(b)) => {
                out.push(Line::Set((*b).clone()));
                n.next();
            }
        }
    }
}

/// Removes the journals of the versions directory `v` other than `keep` (the one the
/// manifest names): ones replaced by a compaction, or written by a rotation that a crash
/// rolled back. Call it only when no rotation is pending (after
/// [`crate::versions::rotation::repair`] or [`crate::versions::rotation::swap_in`]), so that
/// the journal a pending manifest names is never taken for a leftover. Returns how many.
pub fn remove_others(v: &Root, keep: Option<&HashesRef>) -> Result<usize> {
    let mut removed = 0;
    for name in v.entries(Path::new(""))? {
        if is_journal_name(&name) && keep.is_none_or(|k| name.as_bytes() != k.file.as_bytes()) {
            v.remove_file(Path::new(&name))?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::Digest;
    use crate::entry::Mtime;
    use std::fs;

    fn row(path: &[u8], content: &str, ino: u64) -> FileRecord {
        FileRecord {
            path: RelPath::from_bytes(path),
            digest: Digest::of_bytes(content.as_bytes()),
            size: content.len() as u64,
            mtime: Mtime { secs: 1_700_000_000, nanos: 5 },
            ino,
        }
    }

    fn setup() -> (tempfile::TempDir, Root) {
        let d = tempfile::tempdir().unwrap();
        let v = Root::open(d.path()).unwrap();
        (d, v)
    }

    fn journals(d: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| is_journal_name(OsStr::new(n)))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_first_record_compacts_and_later_ones_append_only_the_differences() {
        let (d, v) = setup();
        let one = vec![row(b"a", "1", 1), row(b"b", "2", 2), row(b"c\xff", "3", 3)];
        let first = record(&v, None, &one).unwrap();
        assert!(first.compacted);
        assert_eq!(first.hashes.lines, 3);
        assert_eq!(load(&v, &first.hashes).unwrap(), one);

        // `a` changed, `b` gone, `d` new, `c\xff` untouched: three lines appended.
        let two = vec![row(b"a", "1'", 1), row(b"c\xff", "3", 3), row(b"d", "4", 4)];
        let second = record(&v, Some((&first.hashes, &one)), &two).unwrap();
        assert!(!second.compacted);
        assert_eq!(second.hashes.file, first.hashes.file);
        assert_eq!(second.hashes.lines, 6);
        assert_eq!(second.bytes_written, second.hashes.bytes - first.hashes.bytes);
        assert!(second.bytes_written < 3 * 120, "{}", second.bytes_written);
        let text = fs::read_to_string(d.path().join(&second.hashes.file)).unwrap();
        let appended: Vec<&str> = text.lines().skip(4).collect();
        assert_eq!(appended.len(), 3, "{text}");
        assert!(appended[0].starts_with("[\"a\",") && appended[2].starts_with("[\"d\","), "{text}");
        assert_eq!(appended[1], "{\"gone\":\"b\"}");
        assert_eq!(load(&v, &second.hashes).unwrap(), two);
        // The old reference still reads the old state: the appended lines lie after it.
        assert_eq!(load(&v, &first.hashes).unwrap(), one);

        // Nothing differs: nothing written.
        let third = record(&v, Some((&second.hashes, &two)), &two).unwrap();
        assert_eq!((third.bytes_written, &third.hashes), (0, &second.hashes));
        assert_eq!(journals(d.path()).len(), 1);
    }

    #[test]
    fn lines_appended_by_a_rotation_that_never_committed_are_not_read_and_force_a_compaction() {
        let (d, v) = setup();
        let one = vec![row(b"a", "1", 1), row(b"b", "2", 2)];
        let committed = record(&v, None, &one).unwrap().hashes;
        // A rotation appended its lines (the last one cut short by a crash), then died before
        // its manifest: the manifest still names `committed`.
        let two = vec![row(b"a", "other", 1)];
        let uncommitted = record(&v, Some((&committed, &one)), &two).unwrap().hashes;
        let path = d.path().join(&committed.file);
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut f, b"[\"b\",\"ab").unwrap();
        assert!(uncommitted.bytes > committed.bytes);
        assert_eq!(load(&v, &committed).unwrap(), one, "only the vouched-for part is read");

        // The next rotation (from the committed state) must not append after those lines.
        let three = vec![row(b"a", "1", 1), row(b"b", "2", 2), row(b"c", "3", 3)];
        let next = record(&v, Some((&committed, &one)), &three).unwrap();
        assert!(next.compacted);
        assert_ne!(next.hashes.file, committed.file);
        assert_eq!(load(&v, &next.hashes).unwrap(), three);
        // Once its manifest is in place, the old journal goes.
        assert_eq!(remove_others(&v, Some(&next.hashes)).unwrap(), 1);
        assert_eq!(journals(d.path()), std::slice::from_ref(&next.hashes.file));
        assert_eq!(load(&v, &next.hashes).unwrap(), three);
    }

    #[test]
    fn a_journal_that_does_not_match_its_manifest_is_corrupt_never_partly_trusted() {
        let (d, v) = setup();
        let one = vec![row(b"a", "1", 1), row(b"b", "2", 2)];
        let r = record(&v, None, &one).unwrap().hashes;
        let path = d.path().join(&r.file);
        let text = fs::read(&path).unwrap();
        let expect_corrupt = |r: &HashesRef, what: &str| {
            let err = load(&v, r).unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{what}: {err}");
            assert!(err.to_string().contains(&r.file), "{what}: names the file: {err}");
        };
        // Shorter than the manifest says (lost, or truncated by hand).
        fs::write(&path, &text[..text.len() - 3]).unwrap();
        expect_corrupt(&r, "short");
        // Cut inside a line at the vouched-for length.
        fs::write(&path, &text).unwrap();
        expect_corrupt(&HashesRef { bytes: r.bytes - 3, ..r.clone() }, "cut");
        // Another line count, another id, a bad line, a name that is no journal's.
        expect_corrupt(&HashesRef { lines: 3, ..r.clone() }, "lines");
        let other = format!("{PREFIX}0-0-0{SUFFIX}");
        fs::copy(&path, d.path().join(&other)).unwrap();
        expect_corrupt(&HashesRef { file: other, ..r.clone() }, "id");
        let mut bad = text.clone();
        let at = bad.len() - 10;
        bad[at] = b'}';
        fs::write(&path, &bad).unwrap();
        expect_corrupt(&r, "bad line");
        expect_corrupt(&HashesRef { file: "../manifest.json".into(), ..r.clone() }, "name");
        fs::remove_file(&path).unwrap();
        expect_corrupt(&r, "missing");
    }

    #[test]
    fn a_journal_grown_past_twice_its_live_rows_is_compacted() {
        let (_d, v) = setup();
        let rows = |version: u32| -> Vec<FileRecord> {
            (0..10u32).map(|i| row(format!("f{i}").as_bytes(), &format!("{i}.{version}"), 1)).collect()
        };
        let mut current = rows(0);
        let mut r = record(&v, None, &current).unwrap().hashes;
        let mut appends = 0;
        // Every rotation changes all 10 rows: 10 lines each, compacted once past 2 * 10 + 1000.
        for version in 1..200 {
            let next = rows(version);
            let recorded = record(&v, Some((&r, &current)), &next).unwrap();
            if recorded.compacted {
                assert!(r.lines + 10 > GROWTH * 10 + SLACK, "compacted early at {}", r.lines);
                assert_eq!(recorded.hashes.lines, 10);
                remove_others(&v, Some(&recorded.hashes)).unwrap();
            } else {
                appends += 1;
            }
            (r, current) = (recorded.hashes, next);
            assert_eq!(load(&v, &r).unwrap(), current);
        }
        assert!(appends > 150, "{appends}");
    }

    #[test]
    fn replay_lets_the_last_line_of_a_path_win() {
        let lines = vec![
            Line::Set(row(b"b", "1", 1)),
            Line::Set(row(b"a", "1", 1)),
            Line::Gone(RelPath::from_bytes(b"a")),
            Line::Set(row(b"b", "2", 2)),
            Line::Set(row(b"c", "3", 3)),
            Line::Gone(RelPath::from_bytes(b"c")),
            Line::Set(row(b"c", "4", 4)),
        ];
        assert_eq!(replay(lines), vec![row(b"b", "2", 2), row(b"c", "4", 4)]);
        let old = vec![row(b"a", "1", 1), row(b"b", "1", 1)];
        let new = vec![row(b"b", "1", 2), row(b"c", "1", 1)];
        let diff = differences(&old, &new);
        assert_eq!(
            diff,
            vec![
                Line::Gone(RelPath::from_bytes(b"a")),
                Line::Set(row(b"b", "1", 2)),
                Line::Set(row(b"c", "1", 1))
            ]
        );
        let mut all: Vec<Line> = old.iter().cloned().map(Line::Set).collect();
        all.extend(diff);
        assert_eq!(replay(all), new);
    }

    #[test]
    fn journal_names() {
        assert!(is_journal_name(OsStr::new("hashes-18a-2f-0.jsonl")));
        for name in
            ["hashes-.jsonl", "hashes-a/b.jsonl", "hashes-x.json", "manifest.json", "hashes-../x.jsonl"]
        {
            assert!(!is_journal_name(OsStr::new(name)), "{name}");
        }
        assert!(!crate::fsio::is_temp_name(OsStr::new("hashes-1-2-3.jsonl")), "repair must leave it");
    }
}
