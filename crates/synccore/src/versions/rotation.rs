//! Swapping a freshly built version into `_1` (SPEC section 3: "the new slot is built under a
//! temporary name and swapped in by renames, the manifest written last"), and repairing a swap
//! that a crash interrupted. Version trees are never modified in place: a slot only ever
//! appears, is renamed whole, or is removed whole.
//!
//! A rotation, in order (each rename followed by an fsync of `__versions__/<name>`):
//!
//! 1. build the new tree in `.synccore-tmp-next` and make it durable (the caller);
//! 2. write the new manifest to `.synccore-tmp-manifest` (atomically and durably) — from here
//!    on the rotation is committed to and a crash rolls it *forward*;
//! 3. `_0` → `.synccore-tmp-drop` (only when `_1` exists: an old `_1` is about to become `_0`);
//! 4. `_1` → `_0`;
//! 5. `.synccore-tmp-next` → `_1`;
//! 6. `.synccore-tmp-manifest` → `manifest.json`;
//! 7. remove `.synccore-tmp-drop`.
//!
//! The state machine below decides the next move from nothing but which of `_1`, `_0`,
//! `next`, `drop` and the pending manifest exist, so the same code runs a rotation and finishes
//! (or undoes) an interrupted one:
//!
//! | pending manifest | next | `_1` | `_0` | drop | move |
//! | --- | --- | --- | --- | --- | --- |
//! | yes | yes | yes | yes | yes | remove drop (stale: left by an older rotation) |
//! | yes | yes | yes | yes | no | `_0` → drop (step 3) |
//! | yes | yes | yes | no | any | `_1` → `_0` (step 4) |
//! | yes | yes | no | any | any | next → `_1` (step 5) |
//! | yes | no | any | any | any | pending → `manifest.json` (step 6) |
//! | no | any | any | any | yes | remove drop (step 7, or a leftover) |
//! | no | yes | any | any | no | remove next: an unfinished build (roll back) |
//! | no | no | any | any | no | done |
//!
//! Before step 2 the slots and `manifest.json` are untouched (old state); once the pending
//! manifest exists the moves only go forward, and after step 6 both slots and the manifest are
//! the new state. Hence after a `kill -9` anywhere, the next pass's [`repair`] leaves `_1` and
//! `_0` each either the old or the new complete version, with the manifest describing them.
//! Other temporaries in the directory (a half-written pending manifest) are simply removed,
//! except the undo slot the previous program's restore retired (`.synccore-tmp-undo-old`,
//! user data that the next restore migrates, see [`crate::versions::undo`]).

use std::path::Path;

use crate::error::Result;
use crate::fsio::{self, Rename, Root};
use crate::versions::{Slot, names};

/// Which of the rotation's paths exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Found {
    pub pending: bool,
    pub next: bool,
    pub latest: bool,
    pub previous: bool,
    pub drop: bool,
}

/// One move of the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    RemoveDrop,
    PreviousToDrop,
    LatestToPrevious,
    NextToLatest,
    CommitManifest,
    RemoveNext,
    Done,
}

/// The next move from a state (the table in the module comment).
pub fn next_move(f: Found) -> Move {
    match f {
        // A drop left by an older rotation goes first, so that `_0` can take its name.
        Found { pending: true, next: true, latest: true, previous: true, drop: true }
        | Found { pending: false, drop: true, .. } => Move::RemoveDrop,
        Found { pending: true, next: true, latest: true, previous: true, drop: false } => {
            Move::PreviousToDrop
        }
        Found { pending: true, next: true, latest: true, previous: false, .. } => Move::LatestToPrevious,
        Found { pending: true, next: true, latest: false, .. } => Move::NextToLatest,
        Found { pending: true, next: false, .. } => Move::CommitManifest,
        Found { pending: false, next: true, drop: false, .. } => Move::RemoveNext,
        Found { pending: false, next: false, drop: false, .. } => Move::Done,
    }
}

/// What [`repair`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Repair {
    /// An interrupted rotation was carried to its end.
    pub finished_rotation: bool,
    /// An unfinished build was discarded (the slots keep the state before it).
    pub discarded_build: bool,
    /// Other leftover temporaries removed.
    pub removed_leftovers: usize,
}

impl Repair {
    /// True when the repair changed anything.
    pub fn did_something(&self) -> bool {
        self.finished_rotation || self.discarded_build || self.removed_leftovers > 0
    }
}

/// Swaps the built tree at [`names::NEXT`] in as `_1` (the old `_1` becomes `_0`, the old
/// `_0` is dropped) and installs `manifest` (steps 2–7). `v` is the versions directory
/// ([`crate::versions::Layout::open`]). The built tree must already be durable.
pub fn swap_in(v: &Root, manifest: &[u8]) -> Result<()> {
    v.write_atomic(Path::new(names::PENDING_MANIFEST), manifest)?;
    settle(v)
}

/// At most this many moves settle any state (the longest path through the table is six).
const MAX_MOVES: usize = 16;

/// Drives the state machine to `Done`, or fails when something keeps it from settling (say,
/// another process recreating paths behind our back despite the lock).
fn settle(v: &Root) -> Result<()> {
    drive(v, MAX_MOVES)?;
    match next_move(found(v)) {
        Move::Done => Ok(()),
        stuck => Err(crate::error::Error::Incomplete {
            path: v.path().to_path_buf(),
            reason: format!("the versions do not settle (next move {stuck:?}); please inspect them"),
        }),
    }
}

/// Brings the versions directory `v` to a settled state after whatever a killed pass left:
/// finishes a committed rotation, discards an unfinished build, removes leftover temporaries.
pub fn repair(v: &Root) -> Result<Repair> {
    let mut report = Repair::default();
    let own = [names::NEXT, names::DROP, names::PENDING_MANIFEST];
    for name in v.entries(Path::new(""))? {
        // The previous program's retired undo slot holds user data under a temporary name:
        // it is left for the next restore to migrate (`undo::migrate`).
        let legacy = crate::versions::undo::is_old_retired(&name);
        if fsio::is_temp_name(&name) && !own.iter().any(|o| name == *o) && !legacy {
            v.remove_tree(Path::new(&name))?;
            report.removed_leftovers += 1;
        }
    }
    let start = found(v);
    settle(v)?;
    report.finished_rotation = start.pending;
    report.discarded_build = !start.pending && start.next;
    if start.drop && !start.pending {
        report.removed_leftovers += 1;
    }
    if report.removed_leftovers > 0 {
        v.sync_dir(Path::new(""))?;
    }
    Ok(report)
}

/// What exists now.
pub fn found(v: &Root) -> Found {
    let exists = |name: &str| v.exists(Path::new(name));
    Found {
        pending: exists(names::PENDING_MANIFEST),
        next: exists(names::NEXT),
        latest: exists(Slot::Latest.dir_name()),
        previous: exists(Slot::Previous.dir_name()),
        drop: exists(names::DROP),
    }
}

/// Runs the state machine for at most `max_moves` moves (tests stop it early to simulate a
/// crash); returns the number of moves made.
fn drive(v: &Root, max_moves: usize) -> Result<usize> {
    let (latest, previous) = (Slot::Latest.dir_name(), Slot::Previous.dir_name());
    let mut moves = 0;
    while moves < max_moves {
        let rename = |from: &str, to: &str| {
            v.rename(Path::new(from), Path::new(to), Rename::Replace).and_then(|()| v.sync_dir(Path::new("")))
        };
        match next_move(found(v)) {
            Move::Done => break,
            Move::RemoveDrop => v.remove_tree(Path::new(names::DROP))?,
            Move::RemoveNext => v.remove_tree(Path::new(names::NEXT))?,
            Move::PreviousToDrop => rename(previous, names::DROP)?,
            Move::LatestToPrevious => rename(latest, previous)?,
            Move::NextToLatest => rename(names::NEXT, latest)?,
            Move::CommitManifest => rename(names::PENDING_MANIFEST, names::MANIFEST)?,
        }
        moves += 1;
    }
    Ok(moves)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::versions::Layout;
    use std::fs;

    fn layout(root: &Path) -> Layout {
        Layout::new(root, Path::new("/some/source"))
    }

    /// Slots whose only file names their version.
    fn put(dir: &Path, version: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("v"), version).unwrap();
    }

    fn version(dir: &Path) -> Option<String> {
        fs::read_to_string(dir.join("v")).ok()
    }

    /// `_1`, `_0` and the manifest as (latest, previous, manifest).
    fn state(l: &Layout) -> (Option<String>, Option<String>, Option<String>) {
        (
            version(&l.slot(Slot::Latest)),
            version(&l.slot(Slot::Previous)),
            fs::read_to_string(l.manifest()).ok(),
        )
    }

    fn leftovers(l: &Layout) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(l.dir())
            .unwrap()
            .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(fsio::TEMP_PREFIX))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn decision_table() {
        let f = |pending, next, latest, previous, drop| Found { pending, next, latest, previous, drop };
        let rows = [
            (f(true, true, true, true, true), Move::RemoveDrop),
            (f(true, true, true, true, false), Move::PreviousToDrop),
            (f(true, true, true, false, true), Move::LatestToPrevious),
            (f(true, true, true, false, false), Move::LatestToPrevious),
            (f(true, true, false, true, true), Move::NextToLatest),
            (f(true, true, false, false, false), Move::NextToLatest),
            (f(true, false, true, true, true), Move::CommitManifest),
            (f(false, false, true, true, true), Move::RemoveDrop),
            (f(false, true, true, true, true), Move::RemoveDrop),
            (f(false, true, true, true, false), Move::RemoveNext),
            (f(false, false, true, true, false), Move::Done),
            (f(false, false, false, false, false), Move::Done),
        ];
        for (state, expected) in rows {
            assert_eq!(next_move(state), expected, "{state:?}");
        }
    }

    /// Crash a rotation after every possible number of moves (and before the pending manifest
    /// exists), repair, and check the result is wholly old or wholly new.
    #[test]
    fn a_crash_at_any_move_repairs_to_old_or_new() {
        for (has_previous, has_latest) in [(true, true), (false, true), (false, false)] {
            for crash_after in 0..=7 {
                let d = tempfile::tempdir().unwrap();
                let l = layout(d.path());
                let v = l.open(true).unwrap().unwrap();
                if has_previous {
                    put(&l.slot(Slot::Previous), "old0");
                }
                if has_latest {
                    put(&l.slot(Slot::Latest), "old1");
                    fs::write(l.manifest(), "M-old").unwrap();
                }
                let old = state(&l);
                put(&l.dir().join(names::NEXT), "new");
                // A half-written manifest temporary from write_atomic, too.
                fs::write(l.dir().join(fsio::temp_name()), "half").unwrap();
                let committed = crash_after > 0;
                if committed {
                    v.write_atomic(Path::new(names::PENDING_MANIFEST), b"M-new").unwrap();
                    drive(&v, crash_after - 1).unwrap();
                }
                let report = repair(&v).unwrap();
                let now = state(&l);
                if committed {
                    let previous = if has_latest { Some("old1".into()) } else { old.1.clone() };
                    assert_eq!(now, (Some("new".into()), previous, Some("M-new".into())), "{crash_after}");
                } else {
                    assert_eq!(now, old, "rolled back");
                    assert!(report.discarded_build);
                }
                assert!(leftovers(&l).is_empty(), "{:?}", leftovers(&l));
                assert_eq!(repair(&v).unwrap(), Repair::default(), "a second repair has nothing to do");
            }
        }
    }

    #[test]
    fn swap_in_rotates_and_drops_the_oldest() {
        let d = tempfile::tempdir().unwrap();
        let l = layout(d.path());
        let v = l.open(true).unwrap().unwrap();
        for (i, version) in ["v1", "v2", "v3"].iter().enumerate() {
            put(&l.dir().join(names::NEXT), version);
            swap_in(&v, format!("M{i}").as_bytes()).unwrap();
        }
        assert_eq!(state(&l), (Some("v3".into()), Some("v2".into()), Some("M2".into())));
        assert!(leftovers(&l).is_empty());
        assert_eq!(repair(&v).unwrap(), Repair::default());
    }

    #[test]
    fn repair_leaves_an_old_retired_undo_slot_for_the_restore_to_migrate() {
        let d = tempfile::tempdir().unwrap();
        let l = layout(d.path());
        let v = l.open(true).unwrap().unwrap();
        put(&l.dir().join(".synccore-tmp-undo-old"), "old undo");
        put(&l.dir().join(".synccore-tmp-undo"), "a copy that an old restore left half-built");
        assert_eq!(repair(&v).unwrap().removed_leftovers, 1);
        assert_eq!(version(&l.dir().join(".synccore-tmp-undo-old")).as_deref(), Some("old undo"));
    }

    #[test]
    fn a_missing_versions_directory_is_not_created_to_be_repaired() {
        let d = tempfile::tempdir().unwrap();
        assert!(layout(d.path()).open(false).unwrap().is_none());
        assert!(!d.path().join("__versions__").exists());
    }
}
