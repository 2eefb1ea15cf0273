//! `twoway` merge semantics end to end (SPEC section 4): every row of the merge table,
//! first passes, conflicts, type changes, symlinks, modes, mtimes and hostile names.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use e2e::{assert_same_synced, at, cmd, dir, file, link, run, set_mtime, snapshot, stamps};
use tempfile::TempDir;

const T: (i64, u32) = (1_700_000_000, 123_456_789);

/// A sandbox with `a/`, `b/` and `home/`.
pub struct Pair {
    pub sb: TempDir,
    pub a: PathBuf,
    pub b: PathBuf,
    /// Whether passes run the recovery system (its versioning children).
    recovery: bool,
}

impl Pair {
    /// A pair whose passes run with `--no-recovery`: a test of the merge gains nothing from two
    /// versioning children per pass, and they cost most of its time (hardening issue, part C).
    pub fn new() -> Self {
        let sb = tempfile::tempdir().unwrap();
        let (a, b) = (sb.path().join("a"), sb.path().join("b"));
        fs::create_dir(&a).unwrap();
        fs::create_dir(&b).unwrap();
        Pair { sb, a, b, recovery: false }
    }

    /// A pair whose passes run the recovery system, for the tests of recovery.
    pub fn with_recovery() -> Self {
        Pair { recovery: true, ..Pair::new() }
    }

    pub fn root(&self) -> &Path {
        self.sb.path()
    }

    /// Runs `twoway a b --home home --once` plus `extra` (plus `--no-recovery` unless the pair
    /// was made [`Pair::with_recovery`]): (exit code, stdout, log).
    #[must_use = "check the exit status: a setup step that failed unnoticed makes a test fail for the wrong reason"]
    pub fn pass(&self, extra: &[&str]) -> (i32, String, String) {
        let mut c = cmd("twoway", self.root());
        c.args(["a", "b", "--home", "home", "--once", "--log", "twoway.log"]).args(extra);
        if !self.recovery && !extra.contains(&"--no-recovery") {
            c.arg("--no-recovery");
        }
        let out = run(c);
        let log = fs::read_to_string(self.root().join("twoway.log")).unwrap_or_default();
        fs::remove_file(self.root().join("twoway.log")).ok();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), log)
    }

    /// A pass that must succeed and leave both sides equal.
    pub fn sync(&self) -> String {
        let (code, _, log) = self.pass(&[]);
        assert_eq!(code, 0, "{log}");
        assert_same_synced(&self.a, &self.b);
        log
    }

    /// Names in a directory of side a.
    pub fn names(side: &Path, rel: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(side.join(rel))
            .unwrap()
            .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap()
}

#[test]
fn first_pass_unions_disjoint_trees() {
    let p = Pair::new();
    file(&p.a, b"only-a/x", b"ax", 0o644, T);
    file(&p.b, b"only-b/y", b"by", 0o640, T);
    dir(&p.a, b"empty-a", 0o700);
    p.sync();
    assert_eq!(read(&p.b.join("only-a/x")), "ax");
    assert_eq!(read(&p.a.join("only-b/y")), "by");
    assert!(p.b.join("empty-a").is_dir());
}

#[test]
fn first_pass_with_identical_files_rewrites_nothing() {
    let p = Pair::new();
    for side in [&p.a, &p.b] {
        file(side, b"same", b"identical", 0o644, T);
    }
    let before = (stamps(&p.a), stamps(&p.b));
    let log = p.sync();
    assert!(log.contains("Total number of operations: 0"), "{log}");
    assert_eq!((stamps(&p.a), stamps(&p.b)), before);
}

#[test]
fn first_pass_same_name_different_content_is_a_conflict_keeping_the_loser() {
    let p = Pair::new();
    file(&p.a, b"doc.txt", b"from a", 0o644, (1_700_000_000, 0));
    file(&p.b, b"doc.txt", b"from b, newer", 0o644, (1_700_000_100, 0));
    let log = p.sync();
    assert!(log.contains("conflict at \"doc.txt\""), "{log}");
    assert_eq!(read(&p.a.join("doc.txt")), "from b, newer");
    let names = Pair::names(&p.a, "");
    assert_eq!(names.len(), 2, "{names:?}");
    let loser = names.iter().find(|n| n.starts_with("doc.conflict-") && n.ends_with("-a.txt")).unwrap();
    assert_eq!(read(&p.b.join(loser)), "from a");
}

#[test]
fn merge_table_one_sided_changes_propagate_both_ways() {
    let p = Pair::new();
    for name in ["mod-a", "mod-b", "new-dir/x", "del-a", "del-b"] {
        file(&p.a, name.as_bytes(), b"v1", 0o644, T);
    }
    p.sync();
    // A: modify, delete; B: modify, delete, create.
    file(&p.a, b"mod-a", b"changed on a", 0o644, (T.0 + 10, 0));
    fs::remove_file(p.a.join("del-a")).unwrap();
    file(&p.b, b"mod-b", b"changed on b", 0o644, (T.0 + 10, 0));
    fs::remove_file(p.b.join("del-b")).unwrap();
    file(&p.b, b"created-b", b"new", 0o644, T);
    let log = p.sync();
    assert!(!log.contains("conflict at"), "{log}");
    assert_eq!(read(&p.b.join("mod-a")), "changed on a");
    assert_eq!(read(&p.a.join("mod-b")), "changed on b");
    assert_eq!(read(&p.a.join("created-b")), "new");
    assert!(!p.b.join("del-a").exists() && !p.a.join("del-b").exists());
}

#[test]
fn merge_table_both_changed_the_same_way_is_not_a_conflict() {
    let p = Pair::new();
    file(&p.a, b"f", b"v1", 0o644, T);
    p.sync();
    for side in [&p.a, &p.b] {
        file(side, b"f", b"same new bytes", 0o644, (T.0 + 5, 0));
    }
    let log = p.sync();
    assert!(!log.contains("conflict at"), "{log}");
    assert_eq!(Pair::names(&p.a, ""), vec!["f"]);
    // And the base was updated: the next pass does nothing.
    assert!(p.sync().contains("Total number of operations: 0"));
}

#[test]
fn merge_table_both_changed_differently_newer_wins_tie_goes_to_a() {
    let p = Pair::new();
    file(&p.a, b"newer-b", b"v1", 0o644, T);
    file(&p.a, b"tie", b"v1", 0o644, T);
    p.sync();
    file(&p.a, b"newer-b", b"a's edit", 0o644, (T.0 + 5, 0));
    file(&p.b, b"newer-b", b"b's later edit", 0o644, (T.0 + 9, 0));
    file(&p.a, b"tie", b"a's tie", 0o644, (T.0 + 5, 0));
    file(&p.b, b"tie", b"b's tie", 0o644, (T.0 + 5, 0));
    p.sync();
    assert_eq!(read(&p.a.join("newer-b")), "b's later edit");
    assert_eq!(read(&p.b.join("tie")), "a's tie");
    let names = Pair::names(&p.a, "");
    let kept: Vec<String> =
        names.iter().filter(|n| n.contains(".conflict-")).map(|n| read(&p.a.join(n))).collect();
    assert_eq!(kept.len(), 2, "{names:?}");
    assert!(kept.contains(&"a's edit".to_string()) && kept.contains(&"b's tie".to_string()), "{kept:?}");
}

#[test]
fn merge_table_modify_beats_delete_and_both_deleted_is_dropped() {
    let p = Pair::new();
    for name in ["edited-on-a", "edited-on-b", "gone"] {
        file(&p.a, name.as_bytes(), b"v1", 0o644, T);
    }
    p.sync();
    file(&p.a, b"edited-on-a", b"a2", 0o644, (T.0 + 1, 0));
    fs::remove_file(p.b.join("edited-on-a")).unwrap();
    file(&p.b, b"edited-on-b", b"b2", 0o644, (T.0 + 1, 0));
    fs::remove_file(p.a.join("edited-on-b")).unwrap();
    fs::remove_file(p.a.join("gone")).unwrap();
    fs::remove_file(p.b.join("gone")).unwrap();
    p.sync();
    assert_eq!(read(&p.b.join("edited-on-a")), "a2");
    assert_eq!(read(&p.a.join("edited-on-b")), "b2");
    assert!(!p.a.join("gone").exists());
}

#[test]
fn one_sided_change_with_an_older_mtime_still_propagates() {
    let p = Pair::new();
    file(&p.a, b"f", b"v1", 0o644, (1_800_000_000, 0));
    p.sync();
    file(&p.b, b"f", b"restored old copy", 0o644, (1_000_000_000, 0));
    p.sync();
    assert_eq!(read(&p.a.join("f")), "restored old copy");
}

#[test]
fn touch_only_change_propagates_the_mtime_without_a_copy() {
    let p = Pair::new();
    file(&p.a, b"f", b"v1", 0o644, T);
    p.sync();
    let ino = stamps(&p.b)[&b"f".to_vec()].0;
    set_mtime(&p.a.join("f"), (T.0 + 100, 7));
    let log = p.sync();
    assert!(log.contains(r#"B: meta "f""#), "{log}");
    assert_eq!(stamps(&p.b)[&b"f".to_vec()].0, ino);
}

#[test]
fn repeated_conflicts_on_one_path_keep_every_loser() {
    let p = Pair::new();
    file(&p.a, b"f.txt", b"v0", 0o644, T);
    p.sync();
    for round in 1..=3i64 {
        file(&p.a, b"f.txt", format!("a{round}").as_bytes(), 0o644, (T.0 + round * 10, 0));
        file(&p.b, b"f.txt", format!("b{round}").as_bytes(), 0o644, (T.0 + round * 10 + 1, 0));
        p.sync();
    }
    let names = Pair::names(&p.a, "");
    let mut kept: Vec<String> =
        names.iter().filter(|n| n.contains(".conflict-")).map(|n| read(&p.a.join(n))).collect();
    kept.sort();
    assert_eq!(kept, vec!["a1", "a2", "a3"], "{names:?}");
    assert_eq!(read(&p.a.join("f.txt")), "b3");
}

#[test]
fn file_replaced_by_a_directory_and_back() {
    let p = Pair::new();
    file(&p.a, b"x", b"a file", 0o644, T);
    p.sync();
    fs::remove_file(p.a.join("x")).unwrap();
    file(&p.a, b"x/inside", b"now a dir", 0o644, T);
    p.sync();
    assert_eq!(read(&p.b.join("x/inside")), "now a dir");
    fs::remove_dir_all(p.b.join("x")).unwrap();
    file(&p.b, b"x", b"a file again", 0o644, T);
    p.sync();
    assert_eq!(read(&p.a.join("x")), "a file again");
}

#[test]
fn deleted_directory_keeps_changed_and_new_files_from_the_other_side() {
    let p = Pair::new();
    file(&p.a, b"d/same", b"s", 0o644, T);
    file(&p.a, b"d/edit", b"e1", 0o644, T);
    file(&p.a, b"keep", b"k", 0o644, T);
    p.sync();
    fs::remove_dir_all(p.a.join("d")).unwrap();
    file(&p.b, b"d/edit", b"e2", 0o644, (T.0 + 1, 0));
    file(&p.b, b"d/new", b"n", 0o644, T);
    p.sync();
    assert_eq!(Pair::names(&p.a, "d"), vec!["edit", "new"]);
    assert_eq!(read(&p.a.join("d/edit")), "e2");
}

#[test]
fn directory_replaced_by_a_file_while_changed_inside_keeps_both() {
    let p = Pair::new();
    file(&p.a, b"d/x", b"x1", 0o644, T);
    p.sync();
    fs::remove_dir_all(p.a.join("d")).unwrap();
    file(&p.a, b"d", b"file now", 0o644, T);
    file(&p.b, b"d/x", b"x2", 0o644, (T.0 + 1, 0));
    p.sync();
    assert_eq!(read(&p.a.join("d/x")), "x2");
    let kept: Vec<String> =
        Pair::names(&p.a, "").into_iter().filter(|n| n.starts_with("d.conflict-")).collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(read(&p.a.join(&kept[0])), "file now");
}

#[test]
fn empty_directories_are_created_and_deleted_on_either_side() {
    let p = Pair::new();
    dir(&p.a, b"ea/deep", 0o755);
    dir(&p.b, b"eb", 0o700);
    p.sync();
    assert!(p.b.join("ea/deep").is_dir() && p.a.join("eb").is_dir());
    fs::remove_dir_all(p.b.join("ea")).unwrap();
    fs::remove_dir(p.a.join("eb")).unwrap();
    p.sync();
    assert!(!p.a.join("ea").exists() && !p.b.join("eb").exists());
}

#[test]
fn symlinks_modes_and_nanosecond_mtimes_both_ways() {
    let p = Pair::new();
    link(&p.a, b"rel", b"target/file");
    link(&p.b, b"dangling", b"/nowhere/at/all");
    file(&p.a, b"exec.sh", b"#!/bin/sh\n", 0o755, (1_600_000_000, 987_654_321));
    file(&p.b, b"private", b"p", 0o600, (1_600_000_001, 1));
    p.sync();
    assert_eq!(fs::read_link(p.b.join("rel")).unwrap(), Path::new("target/file"));
    // Retarget a link on B, change a mode on A.
    fs::remove_file(p.b.join("rel")).unwrap();
    link(&p.b, b"rel", b"elsewhere");
    fs::set_permissions(p.a.join("private"), fs::Permissions::from_mode(0o640)).unwrap();
    p.sync();
    assert_eq!(fs::read_link(p.a.join("rel")).unwrap(), Path::new("elsewhere"));
    assert_eq!(fs::metadata(p.b.join("private")).unwrap().permissions().mode() & 0o777, 0o640);
}

#[test]
fn non_utf8_and_hostile_names_both_ways() {
    let p = Pair::new();
    let names: [&[u8]; 4] = [b"bad-\xff\xfe", b"new\nline", b"-dash", b"sp ace \"q\""];
    for (i, n) in names.iter().enumerate() {
        let side = if i % 2 == 0 { &p.a } else { &p.b };
        file(side, n, n, 0o644, T);
    }
    let log = p.sync();
    assert!(log.contains(r#"copy "bad-\xff\xfe""#), "{log}");
    for n in names {
        assert_eq!(fs::read(at(&p.a, n)).unwrap(), n);
        assert_eq!(fs::read(at(&p.b, n)).unwrap(), n);
    }
}

#[test]
fn dry_run_changes_nothing_in_the_trees_or_the_home() {
    let p = Pair::new();
    file(&p.a, b"x", b"1", 0o644, T);
    file(&p.a, b"keep", b"k", 0o644, T);
    p.sync();
    file(&p.a, b"y", b"2", 0o644, T);
    fs::remove_file(p.b.join("x")).unwrap();
    let before = (snapshot(p.root()), stamps(p.root()));
    let (code, stdout, _) = p.pass(&["--dry-run"]);
    assert_eq!(code, 0);
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, vec![r#"A: delete "x""#, r#"B: copy "y" (1 B)"#]);
    fs::remove_file(p.root().join("twoway.log")).ok();
    assert_eq!((snapshot(p.root()), stamps(p.root())), before);
}

#[test]
fn dry_run_first_pass_does_not_create_the_home() {
    let p = Pair::new();
    file(&p.a, b"x", b"1", 0o644, T);
    let (code, stdout, _) = p.pass(&["--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(stdout.trim(), r#"B: copy "x" (1 B)"#);
    assert!(!p.root().join("home").exists());
}
