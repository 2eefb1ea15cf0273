//! Metadata every program keeps (SPEC section 3 "Mirror", the hardening issue points 7 and 8):
//! a symlink's own mtime, and, run as root, the owner and group of every entry, in the
//! mirror, the versions and both directions of twoway. A pass after any pass does nothing.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use e2e::{cmd, dir, file, is_root, link, owner_and_mtime, run, set_link_mtime, set_owner, stamps};

use crate::twoway_merge::Pair;

const T: (i64, u32) = (1_700_000_000, 0);
const LINK_TIME: (i64, u32) = (1_500_000_000, 123_456_789);

/// Runs `oneway src dst --once` (plus `extra`) in `sb`: (code, log).
fn oneway(sb: &Path, extra: &[&str]) -> (i32, String) {
    let mut c = cmd("oneway", sb);
    c.args(["src", "dst", "--once", "--log", "meta.log"]).args(extra);
    let out = run(c);
    let log = fs::read_to_string(sb.join("meta.log")).unwrap_or_default();
    fs::remove_file(sb.join("meta.log")).ok();
    (out.status.code().unwrap_or(-1), log)
}

fn twoway(p: &Pair) -> (i32, String) {
    let mut c = cmd("twoway", p.root());
    c.args(["a", "b", "--home", "home", "--once", "--no-recovery", "--log", "meta.log"]);
    let out = run(c);
    let log = fs::read_to_string(p.root().join("meta.log")).unwrap_or_default();
    fs::remove_file(p.root().join("meta.log")).ok();
    (out.status.code().unwrap_or(-1), log)
}

fn sandbox() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let sb = tempfile::tempdir().unwrap();
    let (src, dst) = (sb.path().join("src"), sb.path().join("dst"));
    fs::create_dir(&src).unwrap();
    (sb, src, dst)
}

/// The number of operations a pass reports in its closing summary line.
fn operations(log: &str) -> u64 {
    let line = log.lines().rev().find(|l| l.contains("Total number of operations:")).unwrap_or_default();
    line.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(u64::MAX)
}

#[test]
fn the_mirror_keeps_symlink_mtimes_and_a_second_pass_does_nothing() {
    let (sb, src, dst) = sandbox();
    file(&src, b"target.txt", b"t", 0o644, T);
    link(&src, b"rel", b"target.txt");
    link(&src, b"sub/dangling", b"../nowhere");
    set_link_mtime(&src.join("rel"), LINK_TIME);
    set_link_mtime(&src.join("sub/dangling"), (1_400_000_000, 1));
    let (code, log) = oneway(sb.path(), &[]);
    assert_eq!(code, 0, "{log}");
    for name in ["rel", "sub/dangling"] {
        assert_eq!(owner_and_mtime(&dst.join(name)).1, owner_and_mtime(&src.join(name)).1, "{name}");
    }
    let (code, log) = oneway(sb.path(), &[]);
    assert_eq!((code, operations(&log)), (0, 0), "{log}");
    // A link whose own mtime changed (`touch -h`) gets the new mtime, not a new link.
    set_link_mtime(&src.join("rel"), (1_600_000_000, 5));
    let ino = fs::symlink_metadata(dst.join("rel")).unwrap().ino();
    let (code, log) = oneway(sb.path(), &[]);
    assert_eq!((code, operations(&log)), (0, 1), "{log}");
    assert_eq!(owner_and_mtime(&dst.join("rel")).1, (1_600_000_000, 5));
    assert_eq!(fs::symlink_metadata(dst.join("rel")).unwrap().ino(), ino);
}

#[test]
fn twoway_keeps_link_mtimes_so_the_second_pass_touches_nothing() {
    let p = Pair::new();
    file(&p.a, b"target.txt", b"t", 0o644, T);
    for i in 0..5 {
        let name = format!("links/l{i}");
        link(&p.a, name.as_bytes(), b"../target.txt");
        set_link_mtime(&p.a.join(&name), (LINK_TIME.0 + i, 7));
    }
    let (code, log) = twoway(&p);
    assert_eq!(code, 0, "{log}");
    for i in 0..5 {
        let name = format!("links/l{i}");
        assert_eq!(owner_and_mtime(&p.b.join(&name)).1, (LINK_TIME.0 + i, 7), "{name}");
    }
    let before = stamps(&p.a);
    let (code, log) = twoway(&p);
    assert_eq!((code, operations(&log)), (0, 0), "{log}");
    assert_eq!(stamps(&p.a), before, "the user's own links on A were rewritten");
}

/// Skips (with the reason printed) unless the tests run as root.
fn root_only() -> bool {
    if !is_root() {
        eprintln!("skipped: owners can only be given away by root");
    }
    is_root()
}

#[test]
fn run_as_root_the_mirror_keeps_owners_and_an_owner_change_is_a_meta_step() {
    if !root_only() {
        return;
    }
    let (sb, src, dst) = sandbox();
    dir(&src, b"d", 0o750);
    file(&src, b"d/f", b"data", 0o640, T);
    link(&src, b"d/l", b"f");
    set_link_mtime(&src.join("d/l"), LINK_TIME);
    set_owner(&src.join("d"), 1234, 2345);
    set_owner(&src.join("d/f"), 3456, 4567);
    set_owner(&src.join("d/l"), 5678, 6789);
    let (code, log) = oneway(sb.path(), &[]);
    assert_eq!(code, 0, "{log}");
    for name in ["d", "d/f", "d/l"] {
        assert_eq!(owner_and_mtime(&dst.join(name)).0, owner_and_mtime(&src.join(name)).0, "{name}");
    }
    assert_eq!(operations(&oneway(sb.path(), &[]).1), 0);
    // An owner-only change: a meta step, the same inode.
    set_owner(&src.join("d/f"), 42, 43);
    let ino = fs::metadata(dst.join("d/f")).unwrap().ino();
    let (code, log) = oneway(sb.path(), &[]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("meta \"d/f\" owner 42:43"), "{log}");
    assert_eq!(owner_and_mtime(&dst.join("d/f")).0, (42, 43));
    assert_eq!(fs::metadata(dst.join("d/f")).unwrap().ino(), ino);
}

#[test]
fn run_as_root_versions_keep_owners_and_link_only_files_with_the_same_owner() {
    if !root_only() {
        return;
    }
    let (sb, src, _) = sandbox();
    file(&src, b"same", b"unchanged", 0o644, T);
    file(&src, b"chowned", b"unchanged too", 0o644, T);
    file(&src, b"edited", b"v1", 0o644, T);
    for name in ["same", "chowned", "edited"] {
        set_owner(&src.join(name), 1000, 1000);
    }
    let versioned = || {
        let mut c = cmd("oneway", sb.path());
        c.args(["src", "vers", "--versioned", "--once", "--log", "v.log"]);
        let out = run(c);
        assert_eq!(out.status.code(), Some(0), "{}", fs::read_to_string(sb.path().join("v.log")).unwrap());
    };
    versioned();
    let slots = fs::read_dir(sb.path().join("vers/__versions__")).unwrap().next().unwrap().unwrap().path();
    assert_eq!(owner_and_mtime(&slots.join("_1/same")).0, (1000, 1000));
    // Rotate: one file edited, one only given to another owner.
    file(&src, b"edited", b"v2", 0o644, (T.0 + 1, 0));
    set_owner(&src.join("edited"), 1000, 1000);
    set_owner(&src.join("chowned"), 2000, 2000);
    versioned();
    let ino = |slot: &str, name: &str| fs::metadata(slots.join(slot).join(name)).unwrap().ino();
    assert_eq!(ino("_1", "same"), ino("_0", "same"), "an unchanged file is a hard link");
    assert_ne!(ino("_1", "chowned"), ino("_0", "chowned"), "a link would share the old owner");
    assert_eq!(owner_and_mtime(&slots.join("_1/chowned")).0, (2000, 2000));
    assert_eq!(owner_and_mtime(&slots.join("_0/chowned")).0, (1000, 1000));
}

#[test]
fn run_as_root_twoway_keeps_owners_both_ways() {
    if !root_only() {
        return;
    }
    let p = Pair::new();
    file(&p.a, b"f", b"data", 0o644, T);
    link(&p.a, b"l", b"f");
    set_owner(&p.a.join("f"), 1111, 2222);
    set_owner(&p.a.join("l"), 3333, 4444);
    let (code, log) = twoway(&p);
    assert_eq!(code, 0, "{log}");
    assert_eq!(owner_and_mtime(&p.b.join("f")).0, (1111, 2222));
    assert_eq!(owner_and_mtime(&p.b.join("l")).0, (3333, 4444));
    assert_eq!(operations(&twoway(&p).1), 0);
    // An owner change on B (chown keeps the mtime) reaches A, and is not reverted.
    set_owner(&p.b.join("f"), 5555, 6666);
    let (code, log) = twoway(&p);
    assert_eq!(code, 0, "{log}");
    assert_eq!(owner_and_mtime(&p.a.join("f")).0, (5555, 6666), "{log}");
    assert_eq!(owner_and_mtime(&p.b.join("f")).0, (5555, 6666), "{log}");
    assert_eq!(operations(&twoway(&p).1), 0);
}
