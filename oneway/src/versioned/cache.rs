//! The hash cache of `oneway --versioned` (SPEC section 7: "every pass hashed both sides in
//! full ... Here: quick check, hash cache, hard-linked versions"): a row per file of the
//! latest version, by path, with SOURCE's (size, mtime, inode) when it was hashed, kept in
//! the journal beside the manifest (`synccore::versions::hashes`; formats 1 and 2 of the
//! manifest embedded them). A pass trusts a row for a file that did not move since, so a pass
//! over an unchanged SOURCE reads no file contents; and a new version hard-links every file
//! whose content, mode, mtime and owner `_1` already holds, so a version costs only the bytes
//! that changed. Rows hashed from `_1` itself (a lost journal or manifest rebuilt) serve the
//! hard links but never vouch for a SOURCE file: their inodes are `_1`'s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use synccore::checksum::{Digest, directory_checksum_of, file_checksum_in};
use synccore::entry::Entry;
use synccore::error::{Error, Result};
use synccore::fsio::Root;
use synccore::plan::{Action, Plan};
use synccore::relpath::RelPath;
use synccore::scan::Tree;
use synccore::versions::Slot;
use synccore::versions::manifest::{self, FileRecord, HashesRef, Manifest};

/// The hash cache of `_1` as a pass found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cache {
    /// `_1`'s regular files, sorted by path.
    pub rows: Vec<FileRecord>,
    /// Where they came from.
    pub origin: Origin,
}

/// Where a [`Cache`]'s rows came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Origin {
    /// No version yet (or none readable): no rows.
    #[default]
    Empty,
    /// The journal the manifest names, as far as the manifest vouches for it; the next
    /// rotation appends to it.
    Journal(HashesRef),
    /// Embedded in a manifest of format 1 or 2; the next rotation writes a journal.
    Legacy,
    /// Hashed from `_1` because the journal or the manifest was lost: the stamps are `_1`'s
    /// files', so the rows vouch for `_1`'s content (hard links) and never for SOURCE's.
    Slot,
}

impl Cache {
    /// The row of `path`, if `_1` has a regular file there.
    pub fn file(&self, path: &RelPath) -> Option<&FileRecord> {
        manifest::find(&self.rows, path)
    }

    /// True when the rows may vouch for SOURCE's files (SOURCE's stamps when hashed).
    pub fn vouches_for_source(&self) -> bool {
        matches!(self.origin, Origin::Journal(_) | Origin::Legacy)
    }

    /// The journal a rotation extends, with the rows it holds.
    pub fn journal(&self) -> Option<(&HashesRef, &[FileRecord])> {
        match &self.origin {
            Origin::Journal(r) => Some((r, &self.rows)),
            _ => None,
        }
    }
}

/// Cached hashes of files modified less than this long before their hash was taken are not
/// trusted: a write in the same timestamp tick as the hashing would leave size and mtime equal
/// (git's "racily clean" entries).
const RACY_SECS: i64 = 2;

/// The cached digest of a SOURCE file, if its (size, mtime, inode) is what it was when it was
/// hashed and that mtime lay safely before the hashing. Looked up by path only: a renamed file
/// is hashed again (read, not copied: [`link_unchanged`] still finds its content in `_1`).
/// Finding it by its inode instead would trust a recycled inode number whenever a new file
/// happens to have the old one's size and mtime, and link the wrong content into a version.
pub fn cached_digest(manifest: &Manifest, cache: &Cache, entry: &Entry) -> Option<Digest> {
    if !cache.vouches_for_source() {
        return None;
    }
    let taken = manifest.latest.as_ref()?.taken_secs()?;
    let row = cache.file(&entry.path)?;
    let same = row.size == entry.size && row.mtime == entry.mtime && row.ino == entry.ino;
    (same && entry.mtime.secs < taken - RACY_SECS).then_some(row.digest)
}

/// What hashing SOURCE cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hashed {
    /// Files whose content was read (cache misses).
    pub files: u64,
    /// Bytes read to hash them.
    pub bytes: u64,
}

/// The directory checksum of SOURCE, reading only files the hash cache cannot vouch for (all
/// of them with `rehash`); `rows` receives every file's record (the next cache).
pub fn source_checksum(
    tree: &Tree,
    source: &Root,
    (manifest, cache): (&Manifest, &Cache),
    rehash: bool,
    shutdown: &AtomicBool,
    hashed: &mut Hashed,
    rows: &mut Vec<FileRecord>,
) -> Result<Digest> {
    directory_checksum_of(&tree.entries, |e| {
        if shutdown.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let cached = if rehash { None } else { cached_digest(manifest, cache, e) };
        let digest = if let Some(d) = cached {
            d
        } else {
            hashed.files += 1;
            hashed.bytes += e.size;
            file_checksum_in(source, &e.path)?
        };
        rows.push(FileRecord { path: e.path.clone(), digest, size: e.size, mtime: e.mtime, ino: e.ino });
        Ok(digest)
    })
}

/// Turns each copy of a file that `_1` already holds with equal content hash, mode and mtime
/// (and owner, with `owners`: a hard link shares all of them) into a hard link to it (a path
/// relative to the versions directory, `_1/...`): at the same path, or, for a file that was
/// renamed or copied, at any path of `_1` with that content. `new_rows` are SOURCE's files
/// with their digests; `old` describes `_1` (sorted by path); `stat` reads the entry at a path
/// of `_1` (`None` when absent or unreadable).
pub fn link_unchanged(
    plan: &mut Plan,
    new_rows: &[FileRecord],
    old: &[FileRecord],
    owners: bool,
    stat: &mut dyn FnMut(&RelPath) -> Option<Entry>,
) {
    let mut by_digest: Option<HashMap<Digest, Vec<&FileRecord>>> = None;
    for step in &mut plan.steps {
        let Action::Copy { size, mode, mtime, owner } = step.action else { continue };
        let new = new_rows.binary_search_by(|r| r.path.cmp(&step.path)).ok().map(|i| &new_rows[i]);
        let Some(new) = new else { continue };
        // The file in `_1` must be the one the manifest describes, and share mode, mtime and
        // (where owners are kept) owner.
        let mut linkable = |prev: &FileRecord| {
            prev.digest == new.digest
                && prev.size == size
                && stat(&prev.path).is_some_and(|e| {
                    e.is_file()
                        && e.size == size
                        && e.mode == mode
                        && e.mtime == mtime
                        && e.mtime == prev.mtime
                        && (!owners || e.owner == owner)
                })
        };
        let at_path = manifest::find(old, &step.path).filter(|prev| linkable(prev));
        let found = at_path.or_else(|| {
            let index = by_digest.get_or_insert_with(|| {
                let mut index: HashMap<Digest, Vec<&FileRecord>> = HashMap::new();
                for r in old {
                    index.entry(r.digest).or_default().push(r);
                }
                index
            });
            index.get(&new.digest)?.iter().copied().find(|prev| linkable(prev))
        });
        if let Some(prev) = found {
            step.action = Action::HardLink { existing: in_slot(Slot::Latest, &prev.path) };
        }
    }
}

/// The files of `_1` (`old`, sorted by path) whose content the new version (`new_rows`) no
/// longer holds: a file gone from its path counts unless its content appeared at a new path
/// (it was renamed or moved, and a move is not a delete).
pub fn deleted_files(old: &[FileRecord], new_rows: &[FileRecord]) -> usize {
    let is_new_path = |r: &&FileRecord| manifest::find(old, &r.path).is_none();
    let mut arrived: HashMap<Digest, usize> = HashMap::new();
    for r in new_rows.iter().filter(is_new_path) {
        *arrived.entry(r.digest).or_default() += 1;
    }
    let gone = old.iter().filter(|r| new_rows.binary_search_by(|n| n.path.cmp(&r.path)).is_err());
    gone.filter(|r| match arrived.get_mut(&r.digest) {
        Some(n) if *n > 0 => {
            *n -= 1;
            false
        }
        _ => true,
    })
    .count()
}

/// `rel` inside a slot, as a path relative to the versions directory.
pub fn in_slot(slot: Slot, rel: &RelPath) -> RelPath {
    let mut bytes = slot.dir_name().as_bytes().to_vec();
    bytes.push(b'/');
    bytes.extend_from_slice(rel.as_bytes());
    RelPath::from_bytes(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use synccore::entry::{Kind, Mtime, Owner};
    use synccore::plan::{self, StepKind};

    const T: Mtime = Mtime { secs: 1_700_000_000, nanos: 5 };

    fn row(path: &str, content: &str) -> FileRecord {
        FileRecord {
            path: RelPath::from_bytes(path.as_bytes()),
            digest: Digest::of_bytes(content.as_bytes()),
            size: content.len() as u64,
            mtime: T,
            ino: 1,
        }
    }

    fn copy(path: &str, size: u64, mode: u32, mtime: Mtime) -> plan::Step {
        plan::Step {
            path: RelPath::from_bytes(path.as_bytes()),
            action: Action::Copy { size, mode, mtime, owner: Owner::default() },
        }
    }

    #[test]
    fn only_equal_hash_mode_and_mtime_become_hard_links() {
        let old = vec![row("changed", "aaa"), row("mode", "bbb"), row("same", "ccc"), row("touched", "ddd")];
        let new_rows = vec![
            row("changed", "AAA"),
            row("mode", "bbb"),
            row("new", "eee"),
            row("same", "ccc"),
            row("touched", "ddd"),
        ];
        let later = Mtime { secs: T.secs + 1, nanos: 0 };
        let mut plan = Plan {
            steps: vec![
                copy("changed", 3, 0o644, T),
                copy("mode", 3, 0o755, T),
                copy("new", 3, 0o644, T),
                copy("same", 3, 0o644, T),
                copy("touched", 3, 0o644, later),
            ],
        };
        // `_1` holds every old file with mode 644 and mtime T.
        let mut stat = |p: &RelPath| {
            Some(Entry {
                path: p.clone(),
                kind: Kind::File,
                size: 3,
                mtime: T,
                mode: 0o644,
                ino: 9,
                dev: 1,
                owner: Owner::default(),
            })
        };
        link_unchanged(&mut plan, &new_rows, &old, true, &mut stat);
        let kinds: Vec<String> =
            plan.steps.iter().map(|s| format!("{} {}", s.kind().word(), s.path)).collect();
        assert_eq!(kinds, ["copy changed", "copy mode", "copy new", "hardlink same", "copy touched"]);
        assert_eq!(plan.steps[3].action, Action::HardLink { existing: RelPath::from_bytes(b"_1/same") });
        // A `_1` file that is not what the manifest says (or is gone) is never linked.
        let mut plan = Plan { steps: vec![copy("same", 3, 0o644, T)] };
        link_unchanged(&mut plan, &new_rows, &old, true, &mut |_| None);
        assert_eq!(plan.count(StepKind::Copy), 1);
    }

    #[test]
    fn a_renamed_file_is_linked_by_content_and_is_no_delete() {
        let old = vec![row("a/old", "data"), row("gone", "xyz")];
        let new_rows = vec![row("b/new", "data"), row("other", "other")];
        let mut plan = Plan { steps: vec![copy("b/new", 4, 0o644, T), copy("other", 5, 0o644, T)] };
        let mut stat = |p: &RelPath| {
            let mut e = Entry::example("x", Kind::File, 4, T.secs);
            (e.path, e.mtime, e.mode) = (p.clone(), T, 0o644);
            (p.as_bytes() == b"a/old").then_some(e)
        };
        link_unchanged(&mut plan, &new_rows, &old, false, &mut stat);
        assert_eq!(plan.steps[0].action, Action::HardLink { existing: RelPath::from_bytes(b"_1/a/old") });
        assert_eq!(plan.count(StepKind::Copy), 1);
        // `a/old` moved to `b/new`; only `gone` was deleted.
        assert_eq!(deleted_files(&old, &new_rows), 1);
    }

    #[test]
    fn cache_hits_only_on_equal_stamp_taken_well_after_the_mtime() {
        let (m, cache) = sample();
        let row = &cache.rows[0];
        let entry = |size, secs, ino| Entry {
            path: row.path.clone(),
            kind: Kind::File,
            size,
            mtime: Mtime { secs, nanos: 999_999_999 },
            mode: 0o644,
            ino,
            dev: 1,
            owner: Owner::default(),
        };
        let cached = |m: &Manifest, e: &Entry| cached_digest(m, &cache, e);
        assert_eq!(cached(&m, &entry(5, 1_700_000_000, 7)), Some(row.digest));
        assert_eq!(cached(&m, &entry(6, 1_700_000_000, 7)), None, "size");
        assert_eq!(cached(&m, &entry(5, 1_700_000_001, 7)), None, "mtime");
        assert_eq!(cached(&m, &entry(5, 1_700_000_000, 8)), None, "inode");
        // Hashed in the same second the file was written: not trusted.
        let mut racy = m.clone();
        racy.latest.as_mut().unwrap().taken = "2023-11-14T22:13:21Z".into(); // 1_700_000_001
        assert_eq!(cached(&racy, &entry(5, 1_700_000_000, 7)), None);
        // Elsewhere with the same inode, size and mtime: a renamed file, or a recycled inode
        // number; never trusted.
        let mut elsewhere = entry(5, 1_700_000_000, 7);
        elsewhere.path = RelPath::from_bytes(b"moved/b.txt");
        assert_eq!(cached(&m, &elsewhere), None);
    }

    #[test]
    fn rows_hashed_from_the_slot_never_vouch_for_source() {
        let (m, mut cache) = sample();
        let row = cache.rows[0].clone();
        let entry = Entry {
            path: row.path.clone(),
            kind: Kind::File,
            size: row.size,
            mtime: row.mtime,
            mode: 0o644,
            ino: row.ino,
            dev: 1,
            owner: Owner::default(),
        };
        assert_eq!(cached_digest(&m, &cache, &entry), Some(row.digest));
        cache.origin = Origin::Legacy;
        assert_eq!(cached_digest(&m, &cache, &entry), Some(row.digest), "a format 2 manifest's rows");
        // `_1`'s inode may equal a SOURCE file's on another device: no stamp of a slot's file
        // ever stands for SOURCE's content.
        cache.origin = Origin::Slot;
        assert_eq!(cached_digest(&m, &cache, &entry), None);
        assert_eq!(cache.journal(), None);
    }

    fn sample() -> (Manifest, Cache) {
        let mut m = Manifest::new(Path::new("/src"));
        m.latest = Some(synccore::versions::manifest::SlotRecord {
            checksum: Digest::of_bytes(b"one"),
            taken: "2026-03-01T12:00:00.5Z".into(),
            duration_ms: 12,
            files: 1,
            bytes: 5,
        });
        let rows = vec![FileRecord {
            path: RelPath::from_bytes(b"a/b.txt"),
            digest: Digest::of_bytes(b"a/b.txt"),
            size: 5,
            mtime: Mtime { secs: 1_700_000_000, nanos: 999_999_999 },
            ino: 7,
        }];
        let hashes = HashesRef { file: "hashes-1-1-0.jsonl".into(), bytes: 200, lines: 1 };
        (m, Cache { rows, origin: Origin::Journal(hashes) })
    }
}
