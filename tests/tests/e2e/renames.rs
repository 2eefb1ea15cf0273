//! Renames and moves cost a rename, not a copy (the renames issue): in the mirror, in the
//! versions and on twoway's other side a moved file keeps its inode, nothing is copied, and a
//! move never counts as a delete for `--max-delete`.

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use e2e::{assert_same_tree, cmd, file, run};
use tempfile::TempDir;

use crate::twoway_merge::Pair;

const T: (i64, u32) = (1_700_000_000, 123_456_789);

fn ino(path: &Path) -> u64 {
    fs::symlink_metadata(path).unwrap().ino()
}

/// `count` directories `d0`, `d1`, ... of three files each (distinct content), plus `top.txt`.
fn tree(root: &Path, count: usize) {
    for d in 0..count {
        for f in 0..3 {
            let rel = format!("d{d}/f{f}.txt");
            let content = format!("directory {d} file {f}\n").repeat(50 + d * 3 + f);
            file(root, rel.as_bytes(), content.as_bytes(), 0o644, T);
        }
    }
    file(root, b"top.txt", b"top\n", 0o644, T);
}

/// Moves the first half of `d*` under `moved/` and renames `top.txt`.
fn move_half(root: &Path, count: usize) {
    fs::create_dir(root.join("moved")).unwrap();
    for d in 0..count / 2 {
        fs::rename(root.join(format!("d{d}")), root.join(format!("moved/d{d}"))).unwrap();
    }
    fs::rename(root.join("top.txt"), root.join("renamed.txt")).unwrap();
}

fn oneway(sb: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut c = cmd("oneway", sb);
    c.args(["src", "dst", "--once", "--log", "oneway.log"]).args(extra);
    let out = run(c);
    let log = fs::read_to_string(sb.join("oneway.log")).unwrap_or_default();
    fs::remove_file(sb.join("oneway.log")).ok();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), log)
}

fn sandbox() -> (TempDir, PathBuf, PathBuf) {
    let sb = tempfile::tempdir().unwrap();
    let (src, dst) = (sb.path().join("src"), sb.path().join("dst"));
    fs::create_dir(&src).unwrap();
    (sb, src, dst)
}

/// The "0 bytes copied" of a pass line in a log.
fn bytes_copied(log: &str) -> &str {
    let line = log.lines().find(|l| l.contains("pass 1:")).unwrap_or_else(|| panic!("no pass line: {log}"));
    let end = line.find(" bytes copied").unwrap();
    line[..end].rsplit(' ').next().unwrap()
}

#[test]
fn mirror_moves_half_the_tree_by_renames_without_force() {
    let (sb, src, dst) = sandbox();
    tree(&src, 10);
    assert_eq!(oneway(sb.path(), &[]).0, 0);
    let before = ino(&dst.join("d1/f2.txt"));
    let top = ino(&dst.join("top.txt"));
    move_half(&src, 10);

    // The dry run shows renames, and counts nothing as deleted.
    let (code, out, log) = oneway(sb.path(), &["--dry-run", "--max-delete", "10"]);
    assert_eq!(code, 0, "{log}");
    assert!(out.contains(r#"rename "d1" -> "moved/d1""#), "{out}");
    assert!(out.contains(r#"rename "top.txt" -> "renamed.txt""#), "{out}");
    assert!(!out.contains("delete") && !out.contains("copy"), "{out}");

    // Half the files moved: far above a 10 % delete limit, yet no delete at all.
    let (code, _, log) = oneway(sb.path(), &["--max-delete", "10"]);
    assert_eq!(code, 0, "{log}");
    assert_same_tree(&src, &dst);
    assert_eq!(ino(&dst.join("moved/d1/f2.txt")), before, "moved, not copied");
    assert_eq!(ino(&dst.join("renamed.txt")), top);
    assert_eq!(bytes_copied(&log), "0", "{log}");
    assert!(log.contains("move 6,"), "five directory moves and a file rename: {log}");
}

#[test]
fn mirror_moves_an_edited_directory_file_by_file() {
    let (sb, src, dst) = sandbox();
    tree(&src, 2);
    assert_eq!(oneway(sb.path(), &[]).0, 0);
    let kept = ino(&dst.join("d0/f0.txt"));
    fs::rename(src.join("d0"), src.join("e0")).unwrap();
    file(&src, b"e0/f1.txt", b"edited after the move\n", 0o644, T);
    let (code, _, log) = oneway(sb.path(), &[]);
    assert_eq!(code, 0, "{log}");
    assert_same_tree(&src, &dst);
    assert_eq!(ino(&dst.join("e0/f0.txt")), kept, "the unchanged file moved");
    assert!(log.contains(r#"copy "e0/f1.txt""#), "the edited one is copied: {log}");
}

#[test]
fn mirror_moves_nested_directories_whole_in_one_rename_keeping_their_metadata() {
    let (sb, src, dst) = sandbox();
    for rel in ["a/b/c/x.txt", "a/b/y.txt", "a/z.txt", "a/b/c/d/w.txt", "other/o.txt"] {
        file(&src, rel.as_bytes(), format!("{rel}\n").repeat(20).as_bytes(), 0o640, T);
    }
    fs::set_permissions(src.join("a/b"), fs::Permissions::from_mode(0o750)).unwrap();
    assert_eq!(oneway(sb.path(), &[]).0, 0);
    let (dir_before, file_before) = (ino(&dst.join("a/b")), ino(&dst.join("a/b/c/d/w.txt")));
    fs::create_dir_all(src.join("x/y")).unwrap();
    fs::rename(src.join("a"), src.join("x/y/a2")).unwrap();

    let (code, _, log) = oneway(sb.path(), &[]);
    assert_eq!(code, 0, "{log}");
    assert_same_tree(&src, &dst);
    assert_eq!(log.matches(" rename \"").count(), 1, "one rename for the whole subtree: {log}");
    assert!(log.contains(r#"rename "a" -> "x/y/a2""#), "{log}");
    assert_eq!(ino(&dst.join("x/y/a2/b")), dir_before, "the directory itself moved");
    assert_eq!(ino(&dst.join("x/y/a2/b/c/d/w.txt")), file_before);
    assert_eq!(fs::metadata(dst.join("x/y/a2/b")).unwrap().mode() & 0o777, 0o750);
    // The moved directories kept their mode, owner and mtime: nothing to set on them.
    assert!(!log.contains(r#"meta "x/y/a2"#), "{log}");
    assert_eq!(bytes_copied(&log), "0", "{log}");
    // And the next pass has nothing left to do.
    let (code, _, log) = oneway(sb.path(), &[]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("Total number of operations: 0"), "{log}");
}

/// 300 new files under `new/`: more created entries than a pass keeps in memory with
/// [`SPILL_AT`], so that the list of them is spilled to a file and what comes after them in
/// path order (`zz/`) is read back from it.
fn many_new_files(root: &Path) {
    for i in 0..300 {
        file(root, format!("new/f{i:04}").as_bytes(), format!("{i}\n").as_bytes(), 0o644, T);
    }
}

/// The spill limit the tests of spilled lists set (debug builds; 16,384 otherwise).
const SPILL_AT: (&str, &str) = ("SYNCCORE_SPILL_LIMIT", "64");

#[test]
fn mirror_finds_a_move_among_more_created_entries_than_it_keeps_in_memory() {
    let (sb, src, dst) = sandbox();
    tree(&src, 2);
    assert_eq!(oneway(sb.path(), &[]).0, 0);
    let before = ino(&dst.join("d1/f2.txt"));
    many_new_files(&src);
    fs::create_dir(src.join("zz")).unwrap();
    fs::rename(src.join("d1"), src.join("zz/d1")).unwrap();

    let mut c = cmd("oneway", sb.path());
    c.args(["src", "dst", "--once", "--log", "oneway.log"]).env(SPILL_AT.0, SPILL_AT.1);
    assert_eq!(run(c).status.code(), Some(0));
    let log = fs::read_to_string(sb.path().join("oneway.log")).unwrap();
    assert_same_tree(&src, &dst);
    assert!(log.contains(r#"rename "d1" -> "zz/d1""#), "{}", &log[log.len().saturating_sub(3000)..]);
    assert_eq!(ino(&dst.join("zz/d1/f2.txt")), before, "moved, not copied");
}

#[test]
fn twoway_finds_a_rename_among_more_new_entries_than_it_keeps_in_memory() {
    let p = Pair::new();
    tree(&p.a, 2);
    p.sync();
    let before = ino(&p.b.join("d1/f2.txt"));
    many_new_files(&p.a);
    fs::create_dir(p.a.join("zz")).unwrap();
    fs::rename(p.a.join("d1"), p.a.join("zz/d1")).unwrap();

    let mut c = cmd("twoway", p.root());
    c.args(["a", "b", "--home", "home", "--once", "--no-recovery", "--log", "twoway.log"])
        .env(SPILL_AT.0, SPILL_AT.1);
    assert_eq!(run(c).status.code(), Some(0));
    let log = fs::read_to_string(p.root().join("twoway.log")).unwrap();
    e2e::assert_same_synced(&p.a, &p.b);
    assert!(log.contains(r#"B: rename "d1" -> "zz/d1""#), "{}", &log[log.len().saturating_sub(3000)..]);
    assert_eq!(ino(&p.b.join("zz/d1/f2.txt")), before, "moved, not copied");
}

#[test]
fn mirror_copies_of_one_directory_moved_under_swapped_names_keep_their_content() {
    // `p` and `q` list the same names, sizes and mtimes (a copy edited in place): only their
    // content tells them apart, and each must land where its content is wanted.
    let (sb, src, dst) = sandbox();
    file(&src, b"p/f.txt", b"PPPP content", 0o644, T);
    file(&src, b"q/f.txt", b"QQQQ content", 0o644, T);
    assert_eq!(oneway(sb.path(), &[]).0, 0);
    let (p_ino, q_ino) = (ino(&dst.join("p/f.txt")), ino(&dst.join("q/f.txt")));
    fs::create_dir(src.join("n")).unwrap();
    fs::rename(src.join("p"), src.join("n/q")).unwrap();
    fs::rename(src.join("q"), src.join("n/p")).unwrap();

    let (code, _, log) = oneway(sb.path(), &[]);
    assert_eq!(code, 0, "{log}");
    assert_same_tree(&src, &dst);
    assert_eq!(fs::read(dst.join("n/q/f.txt")).unwrap(), b"PPPP content");
    assert_eq!(fs::read(dst.join("n/p/f.txt")).unwrap(), b"QQQQ content");
    assert_eq!((ino(&dst.join("n/q/f.txt")), ino(&dst.join("n/p/f.txt"))), (p_ino, q_ino), "{log}");
    assert_eq!(bytes_copied(&log), "0", "{log}");
}

#[test]
fn mirror_checksum_verifies_a_move_by_content() {
    // Same size and mtime, other bytes: the quick check would take it for a move; `--checksum`
    // reads it and copies.
    let (sb, src, dst) = sandbox();
    file(&src, b"old.txt", b"content A", 0o644, T);
    assert_eq!(oneway(sb.path(), &[]).0, 0);
    fs::remove_file(src.join("old.txt")).unwrap();
    file(&src, b"new.txt", b"content B", 0o644, T);
    let (code, _, log) = oneway(sb.path(), &["--checksum"]);
    assert_eq!(code, 0, "{log}");
    assert_same_tree(&src, &dst);
    assert_eq!(fs::read(dst.join("new.txt")).unwrap(), b"content B");
}

#[test]
fn versions_hard_link_moved_files_and_do_not_count_them_as_deleted() {
    let sb = tempfile::tempdir().unwrap();
    let src = sb.path().join("src");
    fs::create_dir(&src).unwrap();
    tree(&src, 10);
    let versioned = |extra: &[&str]| {
        let mut c = cmd("oneway", sb.path());
        c.args(["src", "root", "--versioned", "--once"]).args(extra);
        run(c)
    };
    assert_eq!(versioned(&[]).status.code(), Some(0));
    let v = fs::read_dir(sb.path().join("root/__versions__")).unwrap().next().unwrap().unwrap().path();
    let old = ino(&v.join("_1/d1/f2.txt"));
    move_half(&src, 10);
    let out = versioned(&["--max-delete", "10"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ino(&v.join("_1/moved/d1/f2.txt")), old, "linked by content, not copied");
    assert_eq!(ino(&v.join("_0/d1/f2.txt")), old);
    assert_eq!(ino(&v.join("_1/renamed.txt")), ino(&v.join("_0/top.txt")));
    assert_same_tree(&src, &v.join("_1"));
}

#[test]
fn twoway_renames_on_one_side_are_renames_on_the_other() {
    let p = Pair::new();
    tree(&p.a, 10);
    p.sync();
    let before = ino(&p.b.join("d1/f2.txt"));
    let top = ino(&p.b.join("top.txt"));
    move_half(&p.a, 10);
    let (code, _, log) = p.pass(&["--max-delete", "10"]);
    assert_eq!(code, 0, "{log}");
    e2e::assert_same_synced(&p.a, &p.b);
    assert_eq!(ino(&p.b.join("moved/d1/f2.txt")), before);
    assert_eq!(ino(&p.b.join("renamed.txt")), top);
    assert_eq!(bytes_copied(&log), "0", "{log}");
    assert!(log.contains(r#"B: rename "d1" -> "moved/d1""#), "{log}");

    // And back the other way, from B.
    fs::rename(p.b.join("moved"), p.b.join("moved-again")).unwrap();
    let in_a = ino(&p.a.join("moved/d1/f2.txt"));
    p.sync();
    assert_eq!(ino(&p.a.join("moved-again/d1/f2.txt")), in_a);
}

#[test]
fn twoway_an_edit_on_the_other_side_follows_the_rename() {
    let p = Pair::new();
    tree(&p.a, 2);
    p.sync();
    fs::rename(p.a.join("d0"), p.a.join("e0")).unwrap();
    // B edits d0/f0.txt in place (same inode) and adds a file to d0.
    let edited = p.b.join("d0/f0.txt");
    let mut text = fs::read(&edited).unwrap();
    text.extend_from_slice(b"B's edit\n");
    fs::OpenOptions::new().write(true).open(&edited).unwrap().write_all_at(&text, 0).unwrap();
    file(&p.b, b"d0/new-on-b.txt", b"new\n", 0o644, T);
    let log = p.sync();
    assert!(log.contains(r#"B: rename "d0" -> "e0""#), "{log}");
    assert_eq!(fs::read(p.a.join("e0/f0.txt")).unwrap(), text, "B's edit at the new path");
    assert!(p.a.join("e0/new-on-b.txt").exists());
    assert!(!p.a.join("d0").exists() && !p.b.join("d0").exists());
}

#[test]
fn twoway_a_replaced_old_path_and_two_new_names_keep_everything() {
    let p = Pair::new();
    file(&p.a, b"x.txt", b"original\n", 0o644, T);
    file(&p.a, b"y.txt", b"why\n", 0o644, T);
    p.sync();
    // A renames x.txt; B saves a new x.txt (a new file: other inode and content).
    fs::rename(p.a.join("x.txt"), p.a.join("x-renamed.txt")).unwrap();
    fs::remove_file(p.b.join("x.txt")).unwrap();
    file(&p.b, b"x.txt", b"B's new version\n", 0o644, (T.0 + 10, 0));
    // Both rename y.txt, to different names.
    fs::rename(p.a.join("y.txt"), p.a.join("y-a.txt")).unwrap();
    fs::rename(p.b.join("y.txt"), p.b.join("y-b.txt")).unwrap();
    p.sync();
    assert_eq!(fs::read(p.a.join("x-renamed.txt")).unwrap(), b"original\n");
    assert_eq!(fs::read(p.a.join("x.txt")).unwrap(), b"B's new version\n");
    assert_eq!(fs::read(p.a.join("y-a.txt")).unwrap(), b"why\n");
    assert_eq!(fs::read(p.a.join("y-b.txt")).unwrap(), b"why\n");
}

#[test]
fn twoway_a_rename_onto_a_path_the_other_side_made_is_a_conflict() {
    let p = Pair::new();
    file(&p.a, b"x.txt", b"original\n", 0o644, T);
    p.sync();
    fs::rename(p.a.join("x.txt"), p.a.join("y.txt")).unwrap();
    file(&p.b, b"y.txt", b"B made y\n", 0o644, (T.0 + 10, 0));
    let log = p.sync();
    assert!(log.contains("conflict"), "{log}");
    let contents: Vec<Vec<u8>> =
        Pair::names(&p.a, ".").iter().map(|n| fs::read(p.a.join(n)).unwrap()).collect();
    assert!(
        contents.contains(&b"original\n".to_vec()) && contents.contains(&b"B made y\n".to_vec()),
        "{contents:?}"
    );
}

/// A pair synced with `tree(a, 10)`, then half of it moved on A: the pass under test comes next.
fn moved_pair() -> Pair {
    let p = Pair::new();
    tree(&p.a, 10);
    p.sync();
    move_half(&p.a, 10);
    p
}

#[test]
fn kill_9_at_every_rename_of_a_moving_pass_then_the_next_pass_converges() {
    // oneway and twoway alike: killed at each of the pass's renames (the moves, and the base
    // a twoway pass commits last), the next pass finishes the job and loses nothing.
    let Some(strace) = e2e::strace() else { return };
    let twoway = |p: &Pair| {
        let mut c = cmd("twoway", p.root());
        c.args(["a", "b", "--home", "home", "--once", "--no-recovery", "--log", "crash.log"]);
        c
    };
    let calls = e2e::count_calls(&strace, &twoway(&moved_pair()), "renameat2");
    assert!(calls >= 7, "six moves and the base: {calls}");
    for n in 1..=calls {
        let p = moved_pair();
        let moved = e2e::snapshot(&p.a);
        assert!(e2e::killed(&e2e::run_killed_at(&strace, &twoway(&p), "renameat2", n)), "twoway #{n}");
        let log = p.sync();
        assert!(log.contains(" 0 conflicts"), "twoway #{n}: {log}");
        assert_eq!(e2e::snapshot(&p.a), moved, "twoway #{n}: side A was only renamed in");
    }

    let mirror = |sb: &Path| {
        let mut c = cmd("oneway", sb);
        c.args(["src", "dst", "--once", "--log", "crash.log"]);
        c
    };
    let moved_mirror = || {
        let (sb, src, dst) = sandbox();
        tree(&src, 10);
        assert_eq!(oneway(sb.path(), &[]).0, 0);
        move_half(&src, 10);
        (sb, src, dst)
    };
    let calls = e2e::count_calls(&strace, &mirror(moved_mirror().0.path()), "renameat2");
    assert!(calls >= 6, "six moves: {calls}");
    for n in 1..=calls {
        let (sb, src, dst) = moved_mirror();
        assert!(e2e::killed(&e2e::run_killed_at(&strace, &mirror(sb.path()), "renameat2", n)), "oneway #{n}");
        assert_eq!(oneway(sb.path(), &[]).0, 0);
        assert_same_tree(&src, &dst);
    }
}

/// Runs `c` with `SYNCCORE_FAULT=stop:<point>`, renames `from` to `to` while it is stopped
/// there, lets it go on and returns its exit code.
fn rename_while_stopped(mut c: std::process::Command, point: &str, from: &Path, to: &Path) -> i32 {
    use e2e::SpawnGuarded;
    c.env("SYNCCORE_FAULT", format!("stop:{point}"));
    let mut child = c.spawn_guarded();
    assert!(e2e::wait_stopped(child.id(), std::time::Duration::from_secs(30)), "never reached {point}");
    fs::rename(from, to).unwrap();
    e2e::signal(child.id(), rustix::process::Signal::CONT);
    child.wait().unwrap().code().unwrap_or(-1)
}

#[test]
fn a_directory_renamed_between_the_listing_and_its_reading_is_a_move_not_a_deletion() {
    // The walk has listed the root (it saw `d1`), then `d1` is renamed before the walk opens
    // it: that pass must not delete the other side's `d1` (it does not know where it went),
    // and the next pass moves it there by a rename, copying nothing. Both programs.
    if !e2e::has_fault_points() {
        eprintln!("skipped: the binaries under test are not debug builds (no fault points)");
        return;
    }
    let (sb, src, dst) = sandbox();
    tree(&src, 4);
    assert_eq!(oneway(sb.path(), &[]).0, 0);
    let before = ino(&dst.join("d1/f2.txt"));
    let mut c = cmd("oneway", sb.path());
    c.args(["src", "dst", "--once", "--log", "race.log"]);
    let code = rename_while_stopped(c, "scan-source", &src.join("d1"), &src.join("e1"));
    let log = fs::read_to_string(sb.path().join("race.log")).unwrap();
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains(" delete \""), "{log}");
    assert_eq!(ino(&dst.join("d1/f2.txt")), before, "the mirror's d1 was touched: {log}");
    let (code, _, log) = oneway(sb.path(), &[]);
    assert_eq!(code, 0, "{log}");
    assert_same_tree(&src, &dst);
    assert_eq!(ino(&dst.join("e1/f2.txt")), before, "copied, not moved: {log}");
    assert_eq!(bytes_copied(&log), "0", "{log}");

    let p = Pair::new();
    tree(&p.a, 4);
    p.sync();
    let before = ino(&p.b.join("d1/f2.txt"));
    let mut c = cmd("twoway", p.root());
    c.args(["a", "b", "--home", "home", "--once", "--no-recovery", "--log", "race.log"]);
    let code = rename_while_stopped(c, "scan-a", &p.a.join("d1"), &p.a.join("e1"));
    let log = fs::read_to_string(p.root().join("race.log")).unwrap();
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains(" delete \""), "{log}");
    assert_eq!(ino(&p.b.join("d1/f2.txt")), before, "B's d1 was touched: {log}");
    let (code, _, log) = p.pass(&[]);
    assert_eq!(code, 0, "{log}");
    e2e::assert_same_synced(&p.a, &p.b);
    assert_eq!(ino(&p.b.join("e1/f2.txt")), before, "copied, not moved: {log}");
    assert_eq!(bytes_copied(&log), "0", "{log}");
}
