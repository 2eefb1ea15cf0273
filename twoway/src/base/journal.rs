//! The base's journal (the watch issue): a watch pass records what changed in the base by
//! appending rows to `state.delta` beside `state.json`, instead of rewriting the whole base
//! per keystroke; a full pass (or a journal grown past a quarter of the base) folds it back
//! into a new `state.json`.
//!
//! The first line names the generation of the `state.json` it extends
//! (`{"base":"<generation>"}`); each further line is a row of the base (format 2, an entry
//! added or changed) or `{"p":"<path>","gone":true}` (an entry dropped). A journal of another
//! generation (a crash between writing a new `state.json` and removing the old journal) is
//! ignored, and so is a last line that a crash cut short: each append is made durable before
//! the pass reports it, and a base that lags behind only makes the next pass compare again.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use synccore::error::{Error, Result};
use synccore::fsio::Root;
use synccore::jsonbytes::Bytes;
use synccore::relpath::RelPath;

use super::{Base, BaseEntry, Row};

/// The journal's first line.
#[derive(Debug, Serialize, Deserialize)]
struct Head {
    base: String,
}

/// A line that drops an entry.
#[derive(Debug, Serialize, Deserialize)]
struct Gone {
    #[serde(rename = "p")]
    path: Bytes,
    gone: bool,
}

/// `state.delta` beside `state.json`.
fn path_of(rel: &Path) -> PathBuf {
    rel.with_extension("delta")
}

/// A new generation name: the time in nanoseconds and the process id, in hex.
pub fn new_generation() -> String {
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!("{nanos:x}-{:x}", std::process::id())
}

/// Removes the journal (after a new `state.json` took it in).
pub fn remove(home: &Root, rel: &Path) -> Result<()> {
    match home.remove_file(&path_of(rel)) {
        Err(err) if err.io_kind() == Some(std::io::ErrorKind::NotFound) => Ok(()),
        other => other,
    }
}

/// The journal beside `rel` (of `generation`): the last change of each path it names, and how
/// many rows it held. Empty when there is none or it belongs to another generation.
pub fn load(
    home: &Root,
    rel: &Path,
    generation: Option<&str>,
) -> Result<(std::collections::BTreeMap<RelPath, Option<BaseEntry>>, usize)> {
    let journal = path_of(rel);
    let mut changes = std::collections::BTreeMap::new();
    let Some(text) = home.read(&journal)? else { return Ok((changes, 0)) };
    let corrupt = |reason: &str| Error::Corrupt { path: home.path_of(&journal), reason: reason.into() };
    // Only complete lines count: a crash can cut the last one short.
    let mut lines = complete_lines(&text).split(|&b| b == b'\n').filter(|l| !l.is_empty());
    let head: Option<Head> = lines.next().and_then(|l| serde_json::from_slice(l).ok());
    match (head, generation) {
        (Some(head), Some(generation)) if head.base == generation => {}
        // Another generation's journal: superseded by the file it sits beside.
        _ => return Ok((changes, 0)),
    }
    let mut rows = 0;
    for line in lines {
        rows += 1;
        if let Ok(row) = serde_json::from_slice::<Row>(line) {
            let (path, entry) =
                row.into_entry(None).ok_or_else(|| corrupt("corrupt merge state journal: bad entry"))?;
            changes.insert(path, Some(entry));
        } else {
            let gone: Gone =
                serde_json::from_slice(line).map_err(|_| corrupt("corrupt merge state journal"))?;
            let path =
                gone.path.into_bytes().ok_or_else(|| corrupt("corrupt merge state journal: bad path"))?;
            changes.insert(RelPath::from_bytes(&path), None);
        }
    }
    Ok((changes, rows))
}

/// Appends to the journal of the base at `rel` (of `generation`) what changed from `old` to
/// `new`; returns the number of rows the journal holds now.
pub fn append(
    home: &Root,
    rel: &Path,
    generation: &str,
    held: usize,
    old: &Base,
    new: &Base,
) -> Result<usize> {
    let encode = |e: serde_json::Error| Error::Corrupt {
        path: home.path_of(&path_of(rel)),
        reason: format!("cannot encode merge state journal: {e}"),
    };
    let mut out = Vec::new();
    let mut rows = 0;
    if held == 0 {
        serde_json::to_writer(&mut out, &Head { base: generation.to_string() }).map_err(encode)?;
        out.push(b'\n');
    }
    for (path, entry) in differences(old, new) {
        match entry {
            Some(e) => serde_json::to_writer(&mut out, &Row::of(path, e, None)),
            None => serde_json::to_writer(&mut out, &Gone { path: Bytes::of(path.as_bytes()), gone: true }),
        }
        .map_err(encode)?;
        out.push(b'\n');
        rows += 1;
    }
    if rows > 0 {
        if held == 0 {
            // A journal left by an older generation must not be extended.
            remove(home, rel)?;
        }
        home.append_durably(&path_of(rel), &out)?;
    }
    Ok(held + rows)
}

/// The entries `new` adds or changes (`Some`) and drops (`None`) relative to `old`, by path.
fn differences<'b>(old: &'b Base, new: &'b Base) -> Vec<(&'b RelPath, Option<&'b BaseEntry>)> {
    let (mut o, mut n) = (old.entries.iter().peekable(), new.entries.iter().peekable());
    let mut out = Vec::new();
    loop {
        match (o.peek(), n.peek()) {
            (None, None) => break,
            (Some((po, eo)), Some((pn, en))) if po == pn => {
                if eo != en {
                    out.push((pn, Some(en)));
                }
                o.next();
                n.next();
            }
            (Some((po, _)), Some((pn, _))) if po < pn => {
                out.push((po, None));
                o.next();
            }
            (Some((po, _)), None) => {
                out.push((po, None));
                o.next();
            }
            (_, Some((pn, en))) => {
                out.push((pn, Some(en)));
                n.next();
            }
        }
    }
    out
}

/// The part of `text` up to and including its last newline.
fn complete_lines(text: &[u8]) -> &[u8] {
    text.iter().rposition(|&b| b == b'\n').map_or(&[][..], |i| &text[..=i])
}

#[cfg(test)]
mod tests {
    use super::super::{load_stored, save};
    use super::*;
    use synccore::entry::{Kind, Mtime};

    fn entry(size: u64) -> BaseEntry {
        BaseEntry {
            kind: Kind::File,
            size,
            mtime: Mtime { secs: 5, nanos: 0 },
            mode: 0o644,
            owner: None,
            hash: None,
            ino: [1, 2],
            dev: [3, 4],
        }
    }
    fn base(rows: &[(&str, u64)]) -> Base {
        Base { entries: rows.iter().map(|(p, s)| (RelPath::from_bytes(p.as_bytes()), entry(*s))).collect() }
    }

    #[test]
    fn appended_changes_are_replayed_and_a_full_save_folds_them_in() {
        let d = tempfile::tempdir().unwrap();
        let home = Root::open(d.path()).unwrap();
        let rel = Path::new("pairs/x/state.json");
        let (a, b) = (Path::new("/a"), Path::new("/b"));
        let first = base(&[("a", 1), ("b", 2), ("c", 3)]);
        let generation = save(&home, rel, a, b, &first).unwrap();
        let second = base(&[("a", 1), ("b", 20), ("d", 4)]);
        assert_eq!(
            append(&home, rel, &generation, 0, &first, &second).unwrap(),
            3,
            "b changed, c gone, d new"
        );
        let third = base(&[("a", 1), ("b", 20), ("c", 30), ("d", 4)]);
        assert_eq!(append(&home, rel, &generation, 3, &second, &third).unwrap(), 4);
        let stored = load_stored(&home, rel).unwrap().unwrap();
        assert_eq!((stored.base, stored.journal), (third.clone(), 4));

        // A crash cut the last line short: the complete lines still count.
        let journal = d.path().join("pairs/x/state.delta");
        let mut text = std::fs::read(&journal).unwrap();
        text.extend_from_slice(br#"{"p":"e","k":"f""#);
        std::fs::write(&journal, &text).unwrap();
        assert_eq!(load_stored(&home, rel).unwrap().unwrap().base, third);

        // A full save takes the journal in and removes it; a journal of another generation
        // is ignored.
        save(&home, rel, a, b, &third).unwrap();
        assert!(!journal.exists());
        std::fs::write(&journal, b"{\"base\":\"old\"}\n{\"p\":\"a\",\"gone\":true}\n").unwrap();
        assert_eq!(load_stored(&home, rel).unwrap().unwrap().base, third);
    }
}
