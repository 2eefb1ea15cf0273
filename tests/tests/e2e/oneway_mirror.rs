//! `oneway` mirror semantics (SPEC section 3 "Mirror").

use std::fs;
use std::path::Path;

use e2e::{assert_same_tree, at, cmd, dir, file, link, run, set_mtime, snapshot, stamps, temporaries};
use tempfile::TempDir;

const T: (i64, u32) = (1_700_000_000, 123_456_789);

/// Runs `oneway SRC DST --once` plus `extra` in the sandbox; returns (exit code, stdout, log).
#[must_use = "check the exit status: a setup step that failed unnoticed makes a test fail for the wrong reason"]
fn once(sb: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut c = cmd("oneway", sb);
    c.args(["src", "dst", "--once", "--log", "oneway.log"]).args(extra);
    let out = run(c);
    let log = fs::read_to_string(sb.join("oneway.log")).unwrap_or_default();
    fs::remove_file(sb.join("oneway.log")).ok();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), log)
}

/// A pass that must succeed (exit 0); returns its log. For setup passes too: a setup pass
/// that failed unnoticed would make the test fail later, for the wrong reason.
fn mirrored(sb: &Path, extra: &[&str]) -> String {
    let (code, _, log) = once(sb, extra);
    assert_eq!(code, 0, "{log}");
    log
}

fn sandbox() -> (TempDir, std::path::PathBuf) {
    let sb = tempfile::tempdir().unwrap();
    let src = sb.path().join("src");
    fs::create_dir(&src).unwrap();
    (sb, src)
}

/// A tree with everything SPEC section 3 says a mirror keeps.
fn rich_tree(src: &Path) {
    dir(src, b"a/b/c", 0o755);
    dir(src, b"empty", 0o700);
    dir(src, b"nested/empty/deeper", 0o755);
    file(src, b"a/plain.txt", b"hello\n", 0o644, T);
    file(src, b"a/b/run.sh", b"#!/bin/sh\necho hi\n", 0o755, (1_600_000_000, 1));
    file(src, b"a/b/c/zero", b"", 0o600, (1_500_000_000, 999_999_999));
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    file(src, b"big.bin", &big, 0o644, T);
    file(src, b"non-utf8-\xff\xfe.txt", b"bytes", 0o644, T);
    file(src, b"new\nline", b"nl", 0o644, T);
    file(src, b"-leading-dash", b"dash", 0o644, T);
    file(src, b"with spaces and \"quotes\"", b"sp", 0o644, T);
    file(src, b"a/caf\xc3\xa9", b"utf8", 0o644, T);
    link(src, b"a/rel-link", b"plain.txt");
    link(src, b"abs-link", b"/etc/hostname");
    link(src, b"dangling", b"does/not/exist");
    link(src, b"a/b/up", b"../../big.bin");
    // Directory mtimes last, after their contents exist.
    for d in [&b"a/b/c"[..], b"a/b", b"a", b"empty", b"nested/empty/deeper", b"nested/empty", b"nested"] {
        set_mtime(&at(src, d), (1_650_000_000, 42));
    }
}

#[test]
fn exact_mirror_then_a_pass_that_writes_nothing() {
    let (sb, src) = sandbox();
    rich_tree(&src);
    let (code, _, log) = once(sb.path(), &[]);
    assert_eq!(code, 0, "{log}");
    let dst = sb.path().join("dst");
    assert_same_tree(&src, &dst);
    assert!(log.contains("[ONEWAY]"), "{log}");
    assert!(log.contains(r#"copy "non-utf8-\xff\xfe.txt""#), "names are escaped: {log}");
    assert!(log.contains(r#"copy "new\nline""#), "{log}");
    assert!(temporaries(&dst).is_empty());

    let before = stamps(&dst);
    let (code, _, log) = once(sb.path(), &[]);
    assert_eq!(code, 0);
    assert!(log.contains("Total number of operations: 0"), "{log}");
    assert_eq!(stamps(&dst), before, "a no-change pass must not write anything");
}

#[test]
fn setuid_bits_are_never_copied() {
    let (sb, src) = sandbox();
    file(&src, b"suid", b"x", 0o4755, T);
    assert_eq!(once(sb.path(), &[]).0, 0);
    let mode = fs::metadata(sb.path().join("dst/suid"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))
        .unwrap();
    assert_eq!(mode & 0o7777, 0o755);
}

#[test]
fn touch_only_change_fixes_mtime_without_copy() {
    let (sb, src) = sandbox();
    file(&src, b"f", b"content", 0o644, T);
    mirrored(sb.path(), &[]);
    let dst = sb.path().join("dst");
    let ino = stamps(&dst)[&b"f".to_vec()].0;
    set_mtime(&src.join("f"), (1_800_000_000, 5));
    let (code, _, log) = once(sb.path(), &[]);
    assert_eq!(code, 0);
    assert!(log.contains(r#"meta "f""#), "{log}");
    assert!(!log.contains(r#"update "f""#), "{log}");
    assert_eq!(stamps(&dst)[&b"f".to_vec()].0, ino, "same inode: no copy");
    assert_same_tree(&src, &dst);
}

#[test]
fn same_size_same_mtime_edit_is_caught_only_with_checksum() {
    let (sb, src) = sandbox();
    file(&src, b"f", b"aaaa", 0o644, T);
    mirrored(sb.path(), &[]);
    file(&src, b"f", b"bbbb", 0o644, T);
    let log = mirrored(sb.path(), &[]);
    assert!(log.contains("Total number of operations: 0"), "quick check trusts size+mtime: {log}");
    assert_eq!(fs::read(sb.path().join("dst/f")).unwrap(), b"aaaa");
    let (code, _, log) = once(sb.path(), &["--checksum"]);
    assert_eq!(code, 0);
    assert!(log.contains(r#"update "f""#), "{log}");
    assert_same_tree(&src, &sb.path().join("dst"));
}

#[test]
fn content_change_with_same_size_and_new_mtime_is_copied() {
    let (sb, src) = sandbox();
    file(&src, b"f", b"aaaa", 0o644, T);
    mirrored(sb.path(), &[]);
    file(&src, b"f", b"bbbb", 0o644, (T.0 + 1, 0));
    let log = mirrored(sb.path(), &[]);
    assert!(log.contains(r#"update "f""#), "{log}");
    assert_same_tree(&src, &sb.path().join("dst"));
}

#[test]
fn stray_backup_entries_are_deleted() {
    let (sb, src) = sandbox();
    file(&src, b"keep", b"k", 0o644, T);
    let dst = sb.path().join("dst");
    file(&dst, b"stray", b"s", 0o644, T);
    file(&dst, b"old/deep/er", b"s", 0o644, T);
    link(&dst, b"old-link", b"keep");
    let (code, _, log) = once(sb.path(), &[]);
    assert_eq!(code, 0, "{log}");
    assert_same_tree(&src, &dst);
}

#[test]
fn type_changes_both_ways() {
    let (sb, src) = sandbox();
    // Before: x file, y dir with content, z symlink, w file.
    file(&src, b"x", b"file", 0o644, T);
    file(&src, b"y/inner", b"in", 0o644, T);
    link(&src, b"z", b"x");
    file(&src, b"w", b"w", 0o644, T);
    link(&src, b"v", b"x");
    assert_eq!(once(sb.path(), &[]).0, 0);
    let dst = sb.path().join("dst");
    assert_same_tree(&src, &dst);
    // After: x dir, y file, z dir, w symlink, v file.
    fs::remove_file(src.join("x")).unwrap();
    file(&src, b"x/now-a-dir", b"d", 0o644, T);
    fs::remove_dir_all(src.join("y")).unwrap();
    file(&src, b"y", b"now a file", 0o644, T);
    fs::remove_file(src.join("z")).unwrap();
    dir(&src, b"z", 0o755);
    fs::remove_file(src.join("w")).unwrap();
    link(&src, b"w", b"y");
    fs::remove_file(src.join("v")).unwrap();
    file(&src, b"v", b"now a file", 0o644, T);
    let (code, _, log) = once(sb.path(), &["--force"]);
    assert_eq!(code, 0, "{log}");
    assert_same_tree(&src, &dst);
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let (sb, src) = sandbox();
    file(&src, b"a", b"1", 0o644, T);
    file(&src, b"b", b"2", 0o644, T);
    mirrored(sb.path(), &[]);
    // Another mtime than `a`'s: with the same size and mtime, `c` would be taken for `a` moved.
    file(&src, b"c", b"3", 0o644, (T.0 + 1, 0));
    fs::remove_file(src.join("a")).unwrap();
    let dst = sb.path().join("dst");
    let before = (snapshot(&dst), stamps(&dst));
    let (code, stdout, _) = once(sb.path(), &["--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!((snapshot(&dst), stamps(&dst)), before);
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.starts_with("meta")).collect();
    assert_eq!(lines, vec![r#"delete "a""#, r#"copy "c" (1 B)"#]);
    // The real pass carries out exactly that plan.
    let log = mirrored(sb.path(), &[]);
    assert!(log.contains(r#"delete "a""#) && log.contains(r#"copy "c" (1 B)"#), "{log}");
    assert_same_tree(&src, &dst);
}

#[test]
fn dry_run_into_a_missing_backup_creates_nothing() {
    let (sb, src) = sandbox();
    file(&src, b"a", b"1", 0o644, T);
    let (code, stdout, _) = once(sb.path(), &["--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(stdout.trim(), r#"copy "a" (1 B)"#);
    assert!(!sb.path().join("dst").exists());
}

#[test]
fn leftover_temporaries_are_removed_and_never_synced() {
    let (sb, src) = sandbox();
    file(&src, b"a", b"1", 0o644, T);
    file(&src, b".synccore-tmp-999-1", b"junk in source", 0o644, T);
    let dst = sb.path().join("dst");
    file(&dst, b"sub/.synccore-tmp-999-2", b"partial", 0o644, T);
    let (code, _, log) = once(sb.path(), &[]);
    assert_eq!(code, 0, "{log}");
    assert!(temporaries(&dst).is_empty());
    assert!(src.join(".synccore-tmp-999-1").exists(), "source is never written");
    assert!(!dst.join(".synccore-tmp-999-1").exists());
}

#[test]
fn special_files_are_skipped_with_a_warning() {
    let (sb, src) = sandbox();
    file(&src, b"a", b"1", 0o644, T);
    let fifo = src.join("pipe");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let (code, _, log) = once(sb.path(), &[]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("skipped special file \"pipe\""), "{log}");
    assert!(!sb.path().join("dst/pipe").exists());
}

#[test]
fn source_is_never_written() {
    let (sb, src) = sandbox();
    rich_tree(&src);
    let before = (snapshot(&src), stamps(&src));
    mirrored(sb.path(), &[]);
    file(&sb.path().join("dst"), b"extra", b"x", 0o644, T);
    mirrored(sb.path(), &["--checksum"]);
    assert_eq!((snapshot(&src), stamps(&src)), before);
}
