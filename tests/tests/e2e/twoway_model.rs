//! Property test (STYLE "Tests"): random edit sequences on both sides with real `twoway` passes
//! in between: writes, deletes, and renames and moves of files and directories (the renames
//! issue). After every pass the sides are equal, and every version a user wrote since the
//! last pass survives on both sides, at its path, where it was moved, or as a conflict copy:
//! nothing is lost.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use e2e::{Node, file, snapshot, snapshot_synced};
use proptest::prelude::*;

use crate::twoway_merge::Pair;

/// Paths the edits touch: `a` is a file or a directory (holding `a/x`) depending on history.
const PATHS: [&str; 5] = ["a", "b", "d/c", "d/e", "a/x"];

/// Where renames take entries from and to: files or directories, in and out of directories.
const MOVES: [&str; 8] = ["a", "b", "d", "e", "d/c", "e/c", "f/g", "a/x"];

#[derive(Debug, Clone)]
enum Edit {
    Write { side: bool, path: usize },
    Delete { side: bool, path: usize },
    DeleteDir { side: bool },
    Rename { side: bool, from: usize, to: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<bool>(), 0..PATHS.len()).prop_map(|(side, path)| Edit::Write { side, path }),
        2 => (any::<bool>(), 0..PATHS.len()).prop_map(|(side, path)| Edit::Delete { side, path }),
        1 => any::<bool>().prop_map(|side| Edit::DeleteDir { side }),
        3 => (any::<bool>(), 0..MOVES.len(), 0..MOVES.len()).prop_map(|(side, from, to)| Edit::Rename { side, from, to }),
    ]
}

/// Removes whatever is at `p` (file, link or whole directory).
fn remove(p: &Path) {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).unwrap(),
        Ok(_) => fs::remove_file(p).unwrap(),
        Err(_) => {}
    }
}

/// Writes `content` at `rel` like a user would: whatever file stands where a directory is
/// needed, or directory where the file goes, is removed first.
fn user_write(root: &Path, rel: &str, content: &[u8], mtime: i64) {
    let mut prefix = root.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        prefix.push(part);
        if fs::symlink_metadata(&prefix).is_ok_and(|m| !m.is_dir()) {
            remove(&prefix);
        }
    }
    let target = root.join(rel);
    if target.is_dir() {
        remove(&target);
    }
    file(root, rel.as_bytes(), content, 0o644, (mtime, 0));
}

/// Renames `from` to `to` like `mv -n` with the directories it needs: nothing happens when
/// `from` is missing, `to` exists, `to` lies inside `from`, or a file stands where `to` needs
/// a directory.
fn user_rename(root: &Path, from: &str, to: &str) {
    let (src, dst) = (root.join(from), root.join(to));
    if fs::symlink_metadata(&src).is_err() || fs::symlink_metadata(&dst).is_ok() || dst.starts_with(&src) {
        return;
    }
    if let Some(parent) = dst.parent()
        && fs::create_dir_all(parent).is_ok()
    {
        fs::rename(&src, &dst).unwrap();
    }
}

/// Contents of every file below `root`.
fn contents(root: &Path) -> BTreeSet<Vec<u8>> {
    snapshot(root)
        .into_values()
        .filter_map(|n| match n {
            Node::File { content, .. } => Some(content),
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_edits_on_both_sides_lose_nothing(rounds in prop::collection::vec(prop::collection::vec(edit(), 1..6), 1..5)) {
        let p = Pair::new();
        file(&p.a, b"anchor", b"keeps both sides non-empty", 0o644, (1_600_000_000, 0));
        p.sync();
        let mut clock = 1_700_000_000;
        for (r, edits) in rounds.iter().enumerate() {
            let mut written: Vec<Vec<u8>> = Vec::new();
            for (i, e) in edits.iter().enumerate() {
                clock += 1;
                match *e {
                    Edit::Write { side, path } => {
                        let root = if side { &p.a } else { &p.b };
                        let content = format!("round {r} edit {i} side {}", if side { 'a' } else { 'b' }).into_bytes();
                        user_write(root, PATHS[path], &content, clock);
                        written.push(content);
                    }
                    Edit::Delete { side, path } => remove(&(if side { &p.a } else { &p.b }).join(PATHS[path])),
                    Edit::DeleteDir { side } => remove(&(if side { &p.a } else { &p.b }).join("d")),
                    Edit::Rename { side, from, to } => user_rename(if side { &p.a } else { &p.b }, MOVES[from], MOVES[to]),
                }
            }
            // What users wrote this round and still hold at pass time must survive the pass.
            let mut held = contents(&p.a);
            held.extend(contents(&p.b));
            let must_survive: Vec<Vec<u8>> = written.into_iter().filter(|c| held.contains(c)).collect();
            let (code, _, log) = p.pass(&["--force"]);
            prop_assert_eq!(code, 0, "{}", log);
            prop_assert_eq!(snapshot_synced(&p.a), snapshot_synced(&p.b), "sides differ after round {}: {}", r, log);
            let after = contents(&p.a);
            for c in must_survive {
                prop_assert!(after.contains(&c), "lost {:?} in round {}: {}", String::from_utf8_lossy(&c), r, log);
            }
        }
    }
}
