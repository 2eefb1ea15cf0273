//! Undo generations (SPEC section 4 "Restore"; hardening issue point 1): every restore keeps
//! what the directory held as a new generation, so that no restore — not a second one, not a
//! retried one — destroys anything:
//!
//! ```text
//! __versions__/<name>/_undo/<stamp>/                    what DIR held before a restore
//! __versions__/<name>/_undo/.synccore-tmp-generation    a generation being built (temporary)
//! __versions__/<name>/_undo-legacy/                     an old single undo slot being migrated
//! ```
//!
//! A `<stamp>` is the UTC second the generation was made, `20261125T143000Z`, with `-2`, `-3`…
//! appended when that name is taken; stamps order the generations, and a new one is always
//! made later than every existing one (even when the clock went back), so "the newest" is
//! simply the greatest. Generations are plain trees like the version slots, never modified in
//! place and never dropped automatically; a user removes one with `rm -rf`.
//!
//! The previous version of the program kept a single slot: `_undo` held the tree itself, and a
//! restore killed at the wrong moment left the slot before it as `.synccore-tmp-undo-old`.
//! [`migrate`] turns both into generations (stamped with their mtime) before anything else
//! touches the versions, by renames only, so a crash at any point of it loses nothing.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime};

use crate::error::{Error, Result};
use crate::fsio::{self, Rename, Root, TEMP_PREFIX};

/// The directory of the generations below `__versions__/<name>`.
pub const UNDO_DIR: &str = "_undo";

/// Where an old-style `_undo` waits between the two renames of its migration. Not a
/// temporary name: the rotation repair removes temporaries, and this holds user data.
const LEGACY_DIR: &str = "_undo-legacy";

/// The slot the previous program's restore retired before replacing `_undo` (left behind when
/// it was killed between its renames).
const OLD_RETIRED: &str = ".synccore-tmp-undo-old";

const FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// The latest second a four-digit year can name (9999-12-31T23:59:59Z).
const MAX_SECS: i64 = 253_402_300_799;

/// The name of a generation: a UTC second and a sequence number (1 = no suffix, else `-N`).
/// Ordered by time, then sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    secs: i64,
    seq: u32,
}

impl Stamp {
    /// The stamp of a moment (seconds since the epoch, clamped to the years 1970–9999 that
    /// the name can spell).
    pub fn at(secs: i64) -> Self {
        Stamp { secs: secs.clamp(0, MAX_SECS), seq: 1 }
    }

    /// Parses a generation's name; only the canonical spelling is a stamp.
    pub fn parse(name: &str) -> Option<Self> {
        let (time, seq) = match name.split_once('-') {
            Some((time, seq)) => (time, seq.parse::<u32>().ok().filter(|&n| n >= 2)?),
            None => (name, 1),
        };
        let secs = NaiveDateTime::parse_from_str(time, FORMAT).ok()?.and_utc().timestamp();
        let stamp = Stamp { secs, seq };
        (stamp.to_string() == name).then_some(stamp)
    }

    /// The stamp for a new generation made at `now`: later than every `existing` one, so
    /// that it is the newest (two restores within one second get `-2`; a clock that went
    /// back gets the newest existing second with the next suffix).
    pub fn next(now: i64, existing: &[Stamp]) -> Self {
        let at_now = Stamp::at(now);
        match existing.iter().max() {
            Some(newest) if *newest >= at_now => {
                Stamp { secs: newest.secs, seq: newest.seq.saturating_add(1) }
            }
            _ => at_now,
        }
    }

    /// The first free stamp of the second `secs` (for a migrated slot, which is dated by its
    /// mtime and need not be the newest).
    pub fn free(secs: i64, existing: &[Stamp]) -> Self {
        let mut stamp = Stamp::at(secs);
        while existing.contains(&stamp) {
            stamp.seq = stamp.seq.saturating_add(1);
        }
        stamp
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = DateTime::from_timestamp(self.secs, 0).unwrap_or_default();
        write!(f, "{}", time.format(FORMAT))?;
        if self.seq > 1 {
            write!(f, "-{}", self.seq)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Stamp {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Stamp::parse(s)
            .ok_or_else(|| format!("{s:?} is not a stamp like 20261125T143000Z or 20261125T143000Z-2"))
    }
}

/// The generation to bring back: the newest when `wanted` is `None`, else `wanted` if it
/// exists. `None` when there is no such generation.
pub fn choose(stamps: &[Stamp], wanted: Option<Stamp>) -> Option<Stamp> {
    match wanted {
        None => stamps.iter().max().copied(),
        Some(w) => stamps.contains(&w).then_some(w),
    }
}

/// The generations in `_undo` of the versions directory `v`, oldest first; none when it is
/// missing. Anything that is not a directory named by a stamp is not a generation.
pub fn list(v: &Root) -> Result<Vec<Stamp>> {
    let mut stamps = Vec::new();
    for name in names_in(v, Path::new(UNDO_DIR))? {
        let Some(stamp) = name.to_str().and_then(Stamp::parse) else { continue };
        if is_dir(v, &Path::new(UNDO_DIR).join(&name)) {
            stamps.push(stamp);
        }
    }
    stamps.sort_unstable();
    Ok(stamps)
}

/// The names in the directory `rel` of `v`; none when it is missing (or not a directory).
fn names_in(v: &Root, rel: &Path) -> Result<Vec<OsString>> {
    match v.entries(rel) {
        Err(err) if is_missing(&err) => Ok(Vec::new()),
        other => other,
    }
}

fn is_missing(err: &Error) -> bool {
    matches!(err.io_kind(), Some(io::ErrorKind::NotFound | io::ErrorKind::NotADirectory))
}

fn is_dir(v: &Root, rel: &Path) -> bool {
    v.stat(rel)
        .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory)
}

/// True when `_undo` is an old single slot: it holds something other than generations and our
/// temporaries (the old program's copy never held a temporary name: scans skip them).
fn is_old_style(v: &Root) -> Result<bool> {
    for name in names_in(v, Path::new(UNDO_DIR))? {
        let generation =
            name.to_str().and_then(Stamp::parse).is_some() && is_dir(v, &Path::new(UNDO_DIR).join(&name));
        if !generation && !fsio::is_temp_name(&name) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// An old undo slot turned into a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    pub from: PathBuf,
    pub to: PathBuf,
}

/// Turns what the previous program left — an `_undo` holding a tree, its retired slot — into
/// generations, each stamped with its mtime. Crash-safe by construction: an old-style `_undo`
/// is first renamed to `_undo-legacy` (then `_undo` is recreated empty), and every legacy slot
/// reaches `_undo/<stamp>` by one rename; a run after a crash finds each slot where one of
/// these renames left it and carries on. Call with the versions lock held, before
/// [`crate::versions::rotation::repair`] (which removes temporary names).
pub fn migrate(v: &Root) -> Result<Vec<Migrated>> {
    let (undo, legacy) = (Path::new(UNDO_DIR), Path::new(LEGACY_DIR));
    if is_old_style(v)? {
        if v.exists(legacy) {
            return Err(Error::Invalid {
                path: v.path_of(legacy),
                reason: format!(
                    "an old undo slot is being migrated while {} holds another; move one of them \
                     out of the versions directory",
                    crate::error::Quoted(&v.path_of(undo))
                ),
            });
        }
        v.rename(undo, legacy, Rename::NoReplace)?;
        v.sync_dir(Path::new(""))?;
    }
    let mut migrated = Vec::new();
    for from in [legacy, Path::new(OLD_RETIRED)] {
        let Ok(st) = v.stat(from) else { continue };
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory {
            continue;
        }
        ensure(v)?;
        let to = undo.join(Stamp::free(st.st_mtime, &list(v)?).to_string());
        v.rename(from, &to, Rename::NoReplace)?;
        v.sync_dir(undo)?;
        v.sync_dir(Path::new(""))?;
        migrated.push(Migrated { from: v.path_of(from), to: v.path_of(&to) });
    }
    Ok(migrated)
}

/// True for the name of the slot the previous program's restore retired: user data under a
/// temporary name, which [`crate::versions::rotation::repair`] must leave for [`migrate`].
pub fn is_old_retired(name: &std::ffi::OsStr) -> bool {
    name == OLD_RETIRED
}

/// Creates `_undo` (durably) in the versions directory `v` if it is missing.
pub fn ensure(v: &Root) -> Result<()> {
    match v.create_dir(Path::new(UNDO_DIR), 0o755) {
        Ok(()) => v.sync_dir(Path::new("")),
        Err(err) if err.io_kind() == Some(io::ErrorKind::AlreadyExists) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Where a new generation is built before it is renamed to `_undo/<stamp>` (relative to the
/// versions directory).
pub fn building() -> PathBuf {
    Path::new(UNDO_DIR).join(format!("{TEMP_PREFIX}generation"))
}

/// `_undo/<stamp>`, relative to the versions directory.
pub fn generation(stamp: Stamp) -> PathBuf {
    Path::new(UNDO_DIR).join(stamp.to_string())
}

/// Removes the temporaries a killed restore left in `_undo` (half-built generations);
/// returns how many.
pub fn remove_leftovers(v: &Root) -> Result<usize> {
    let mut removed = 0;
    for name in names_in(v, Path::new(UNDO_DIR))? {
        if fsio::is_temp_name(&name) {
            v.remove_tree(&Path::new(UNDO_DIR).join(name))?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::versions::Layout;
    use std::fs;

    const NOV_25: i64 = 1_795_617_000; // 2026-11-25T14:30:00Z

    fn s(name: &str) -> Stamp {
        Stamp::parse(name).unwrap()
    }

    #[test]
    fn stamps_name_utc_seconds_with_a_suffix_when_taken() {
        assert_eq!(Stamp::at(NOV_25).to_string(), "20261125T143000Z");
        assert_eq!(Stamp::next(NOV_25, &[]).to_string(), "20261125T143000Z");
        // Two restores within one second.
        let first = Stamp::next(NOV_25, &[]);
        let second = Stamp::next(NOV_25, &[first]);
        assert_eq!(second.to_string(), "20261125T143000Z-2");
        assert_eq!(Stamp::next(NOV_25, &[first, second]).to_string(), "20261125T143000Z-3");
        // A clock that went back still makes the newest generation.
        let later = s("20261126T000000Z");
        let next = Stamp::next(NOV_25, &[later]);
        assert_eq!(next.to_string(), "20261126T000000Z-2");
        assert!(next > later);
        // A new second starts without a suffix.
        assert_eq!(Stamp::next(NOV_25 + 1, &[first, second]).to_string(), "20261125T143001Z");
        // Moments the name cannot spell are clamped.
        assert_eq!(Stamp::at(-5).to_string(), "19700101T000000Z");
        assert_eq!(Stamp::at(i64::MAX).to_string(), "99991231T235959Z");
    }

    #[test]
    fn only_canonical_names_parse() {
        for good in ["20261125T143000Z", "20261125T143000Z-2", "20261125T143000Z-10", "19700101T000000Z"] {
            assert_eq!(s(good).to_string(), good);
        }
        for bad in [
            "",
            "latest",
            "20261125T143000",
            "20261125t143000Z",
            "20261125T143000Z-1",
            "20261125T143000Z-02",
            "20261125T143000Z-+2",
            "20261125T143000Z-",
            "20261325T143000Z",
            "2026-11-25T14:30:00Z",
            "+20261125T143000Z",
            "20261125T143000Z-2-3",
        ] {
            assert_eq!(Stamp::parse(bad), None, "{bad}");
        }
        assert!("yesterday".parse::<Stamp>().unwrap_err().contains("20261125T143000Z"));
    }

    #[test]
    fn stamps_order_by_time_then_suffix() {
        let mut names =
            [s("20261125T143000Z-10"), s("20261125T143001Z"), s("20261125T143000Z-2"), s("20261125T143000Z")];
        names.sort();
        let sorted: Vec<String> = names.iter().map(ToString::to_string).collect();
        assert_eq!(
            sorted,
            ["20261125T143000Z", "20261125T143000Z-2", "20261125T143000Z-10", "20261125T143001Z"]
        );
        assert_eq!(Stamp::free(NOV_25, &[s("20261125T143000Z")]).to_string(), "20261125T143000Z-2");
    }

    #[test]
    fn choose_takes_the_newest_or_the_named_one() {
        let gens = [s("20261125T143000Z"), s("20261125T143000Z-2"), s("20250101T000000Z")];
        assert_eq!(choose(&gens, None), Some(s("20261125T143000Z-2")));
        assert_eq!(choose(&gens, Some(s("20250101T000000Z"))), Some(s("20250101T000000Z")));
        assert_eq!(choose(&gens, Some(s("20000101T000000Z"))), None);
        assert_eq!(choose(&[], None), None);
    }

    fn layout(root: &Path) -> (Layout, Root) {
        let layout = Layout::new(root, Path::new("/some/dir"));
        let v = layout.open(true).unwrap().unwrap();
        (layout, v)
    }

    fn mtime(path: &Path, secs: i64) {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
        fs::File::open(path).unwrap().set_times(fs::FileTimes::new().set_modified(t)).unwrap();
    }

    #[test]
    fn listing_ignores_what_is_not_a_generation() {
        let d = tempfile::tempdir().unwrap();
        let (l, v) = layout(d.path());
        assert_eq!(list(&v).unwrap(), []);
        fs::create_dir_all(l.undo().join("20261125T143000Z-2")).unwrap();
        fs::create_dir_all(l.undo().join("20261125T143000Z")).unwrap();
        fs::create_dir_all(l.dir().join(building())).unwrap();
        fs::write(l.undo().join("20261126T000000Z"), "a file is not a generation").unwrap();
        assert_eq!(list(&v).unwrap(), [s("20261125T143000Z"), s("20261125T143000Z-2")]);
        assert_eq!(remove_leftovers(&v).unwrap(), 1);
        assert!(!l.dir().join(building()).exists());
    }

    #[test]
    fn an_old_slot_becomes_a_generation_stamped_with_its_mtime() {
        let d = tempfile::tempdir().unwrap();
        let (l, v) = layout(d.path());
        fs::create_dir_all(l.undo().join("sub")).unwrap();
        fs::write(l.undo().join("sub/f"), "old").unwrap();
        mtime(&l.undo(), NOV_25);
        let retired = l.dir().join(OLD_RETIRED);
        fs::create_dir_all(&retired).unwrap();
        fs::write(retired.join("g"), "older").unwrap();
        mtime(&retired, NOV_25);
        let done = migrate(&v).unwrap();
        assert_eq!(done.len(), 2);
        assert_eq!(fs::read_to_string(l.undo().join("20261125T143000Z/sub/f")).unwrap(), "old");
        assert_eq!(fs::read_to_string(l.undo().join("20261125T143000Z-2/g")).unwrap(), "older");
        assert!(!l.dir().join(LEGACY_DIR).exists() && !retired.exists());
        assert_eq!(migrate(&v).unwrap(), [], "a second run has nothing to do");
        // Generations alone (and our temporaries) are not an old slot; nor is an empty `_undo`.
        fs::create_dir_all(l.dir().join(building())).unwrap();
        assert!(!is_old_style(&v).unwrap());
        let d = tempfile::tempdir().unwrap();
        let (l, v) = layout(d.path());
        fs::create_dir(l.undo()).unwrap();
        assert_eq!(migrate(&v).unwrap(), []);
    }

    #[test]
    fn a_migration_interrupted_after_its_first_rename_is_finished() {
        let d = tempfile::tempdir().unwrap();
        let (l, v) = layout(d.path());
        // Killed after `_undo` → `_undo-legacy` (and possibly after `_undo` was recreated).
        for recreated in [false, true] {
            let legacy = l.dir().join(LEGACY_DIR);
            fs::create_dir_all(&legacy).unwrap();
            fs::write(legacy.join("f"), "old").unwrap();
            mtime(&legacy, NOV_25);
            if recreated {
                fs::create_dir_all(l.undo()).unwrap();
            }
            let done = migrate(&v).unwrap();
            assert_eq!(done.len(), 1);
            assert_eq!(fs::read_to_string(done[0].to.join("f")).unwrap(), "old");
        }
        assert_eq!(list(&v).unwrap(), [s("20261125T143000Z"), s("20261125T143000Z-2")]);
    }

    #[test]
    fn an_old_slot_beside_an_unfinished_migration_is_refused_not_mixed() {
        let d = tempfile::tempdir().unwrap();
        let (l, v) = layout(d.path());
        fs::create_dir_all(l.dir().join(LEGACY_DIR)).unwrap();
        fs::create_dir_all(l.undo()).unwrap();
        fs::write(l.undo().join("f"), "a tree").unwrap();
        let err = migrate(&v).unwrap_err().to_string();
        assert!(err.contains("_undo-legacy") && err.contains("move one"), "{err}");
        assert!(l.undo().join("f").exists());
    }
}
