//! `oneway --versioned` (SPEC section 3 "Versioned", section 7's versioned faults): slots,
//! rotation, hard-linked unchanged files, crash safety, the empty-source rail, the lock and
//! the dry run.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use e2e::{
    Rng, Snapshot, SpawnGuarded, assert_same_tree, at, cmd, dir, file, link, run, set_mtime, snapshot,
    stamps, temporaries, wait_for,
};

const T: (i64, u32) = (1_700_000_000, 123_456_789);

/// Runs `oneway src root --versioned --once` plus `extra` in the sandbox.
#[must_use = "check the exit status: a setup step that failed unnoticed makes a test fail for the wrong reason"]
pub(crate) fn versioned(sb: &Path, extra: &[&str]) -> Output {
    let mut c = cmd("oneway", sb);
    c.args(["src", "root", "--versioned", "--once"]).args(extra);
    run(c)
}

pub(crate) fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    stderr
}

/// `root/__versions__/<name>`: the one versions directory in the sandbox.
pub(crate) fn versions_dir(sb: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> =
        fs::read_dir(sb.join("root/__versions__")).unwrap().map(|d| d.unwrap().path()).collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

/// Stamps (inode, ctime) of everything in the versions directory but the lock file, whose pid
/// each run rewrites.
pub(crate) fn version_stamps(v: &Path) -> BTreeMap<Vec<u8>, (u64, i64, i64)> {
    let mut s = stamps(v);
    s.remove(&b"lock"[..]);
    s
}

fn ino(path: &Path) -> u64 {
    fs::symlink_metadata(path).unwrap().ino()
}

/// Everything a version keeps: modes, nanosecond mtimes, empty directories, symlinks, odd names.
fn rich_tree(src: &Path) {
    dir(src, b"docs/empty", 0o700);
    file(src, b"docs/a.txt", b"alpha\n", 0o644, T);
    file(src, b"docs/b.txt", b"bravo\n", 0o600, (1_600_000_000, 7));
    file(src, b"run.sh", b"#!/bin/sh\n", 0o755, T);
    file(src, b"bad-\xff\xfe name", b"bytes", 0o644, T);
    link(src, b"docs/to-a", b"a.txt");
    link(src, b"dangling", b"no/such/file");
    for d in [&b"docs/empty"[..], b"docs"] {
        set_mtime(&at(src, d), (1_650_000_000, 42));
    }
}

#[test]
fn first_pass_no_change_and_rotations_with_hard_links() {
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    let src = p.join("src");
    rich_tree(&src);

    // First pass: `_1` equals SOURCE, no `_0`.
    ok(&versioned(p, &[]));
    let v = versions_dir(p);
    assert!(v.file_name().unwrap().to_string_lossy().starts_with("src-"));
    assert_same_tree(&src, &v.join("_1"));
    assert!(!v.join("_0").exists());
    assert!(temporaries(&v).is_empty());
    let state1 = snapshot(&src);

    // Nothing changed: nothing written, the manifest included.
    let (before, manifest) = (version_stamps(&v), fs::read(v.join("manifest.json")).unwrap());
    let log = ok(&versioned(p, &[]));
    assert_eq!(version_stamps(&v), before, "a no-change pass writes nothing");
    assert_eq!(fs::read(v.join("manifest.json")).unwrap(), manifest);
    assert!(!log.contains("rotate \""), "{log}");

    // A change rotates: `_0` is the previous state, `_1` the new one.
    file(&src, b"docs/a.txt", b"alpha, edited\n", 0o644, (T.0 + 10, 0));
    set_mtime(&src.join("docs"), (1_650_000_000, 42));
    let log = ok(&versioned(p, &[]));
    assert!(log.contains("rotate \""), "{log}");
    assert_eq!(snapshot(&v.join("_0")), state1);
    assert_same_tree(&src, &v.join("_1"));
    // Unchanged files are one inode in both slots; the changed one is not.
    assert_eq!(ino(&v.join("_0/docs/b.txt")), ino(&v.join("_1/docs/b.txt")));
    assert_eq!(ino(&at(&v, b"_0/bad-\xff\xfe name")), ino(&at(&v, b"_1/bad-\xff\xfe name")));
    assert_ne!(ino(&v.join("_0/docs/a.txt")), ino(&v.join("_1/docs/a.txt")));
    let state2 = snapshot(&src);

    // A third state drops the oldest. A touch without new content is a copy, not a link
    // (a link would share the new mtime with `_0`).
    file(&src, b"run.sh", b"#!/bin/sh\necho 3\n", 0o755, T);
    set_mtime(&src.join("docs/b.txt"), (1_600_000_001, 0));
    fs::remove_file(src.join("docs/to-a")).unwrap();
    set_mtime(&src.join("docs"), (1_650_000_000, 42));
    ok(&versioned(p, &[]));
    assert_eq!(snapshot(&v.join("_0")), state2);
    assert_same_tree(&src, &v.join("_1"));
    assert_ne!(ino(&v.join("_0/docs/b.txt")), ino(&v.join("_1/docs/b.txt")));
    assert_eq!(ino(&v.join("_0/docs/a.txt")), ino(&v.join("_1/docs/a.txt")));
    assert!(temporaries(&v).is_empty());
    let mut names: Vec<String> =
        fs::read_dir(&v).unwrap().map(|d| d.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names.len(), 5, "only _0, _1, one hash journal, lock and manifest.json: {names:?}");
    assert!(synccore::versions::hashes::is_journal_name(names[2].as_ref()), "{names:?}");

    // A lost manifest is rebuilt from the slots, without a rotation.
    let manifest = fs::read(v.join("manifest.json")).unwrap();
    fs::remove_file(v.join("manifest.json")).unwrap();
    let slots = (snapshot(&v.join("_0")), snapshot(&v.join("_1")));
    let log = ok(&versioned(p, &[]));
    assert!(!log.contains("rotate \""), "{log}");
    assert_eq!((snapshot(&v.join("_0")), snapshot(&v.join("_1"))), slots);
    let rebuilt = String::from_utf8(fs::read(v.join("manifest.json")).unwrap()).unwrap();
    let checksum = |m: &str, slot: &str| {
        m.split(&format!("\"{slot}\":{{\"checksum\":\"")).nth(1).unwrap()[..64].to_owned()
    };
    let old = String::from_utf8(manifest).unwrap();
    assert_eq!(checksum(&rebuilt, "_1"), checksum(&old, "_1"));
    assert_eq!(checksum(&rebuilt, "_0"), checksum(&old, "_0"));
}

#[test]
fn the_same_tree_created_in_another_order_never_rotates() {
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    let src = p.join("src");
    let names: Vec<String> = (0..60).map(|i| format!("d{}/sub{}/f{i:02}", i % 3, i % 2)).collect();
    let build = |order: &mut dyn Iterator<Item = &String>| {
        for name in order {
            file(&src, name.as_bytes(), name.as_bytes(), 0o644, T);
        }
    };
    build(&mut names.iter());
    dir(&src, b"d1/empty", 0o755);
    ok(&versioned(p, &[]));
    let v = versions_dir(p);
    let before = version_stamps(&v);

    // Recreate everything in reverse order: new inodes, another directory order.
    fs::remove_dir_all(&src).unwrap();
    dir(&src, b"d1/empty", 0o755);
    build(&mut names.iter().rev());
    let log = ok(&versioned(p, &[]));
    assert!(!log.contains("rotate \""), "{log}");
    assert_eq!(version_stamps(&v), before);
}

/// A tree of 200 small files and two larger ones; with `changed_every` > 1, only every
/// `changed_every`-th small file (and the larger ones) gets new content.
pub(crate) fn rotating_tree(src: &Path, seed: u64, changed_every: u32) {
    let mut rng = Rng::new(seed);
    for i in 0..200u32 {
        if i % changed_every != 0 && src.join(format!("d{:02}/f{i:04}", i % 20)).exists() {
            continue;
        }
        let len = (rng.below(2048) + 1) as usize;
        file(
            src,
            format!("d{:02}/f{i:04}", i % 20).as_bytes(),
            &rng.bytes(len),
            0o644,
            (T.0 + seed as i64, i),
        );
    }
    for i in 0..2u32 {
        file(src, format!("big{i}").as_bytes(), &rng.bytes(256 << 10), 0o644, (T.0 + seed as i64, i));
    }
}

#[test]
fn kill_9_at_each_step_of_a_rotation_leaves_old_or_new_and_the_next_pass_repairs() {
    // SPEC section 3 "Versioned": rotation is crash-safe, an interrupted one is repaired by the
    // next pass. Each kill lands at a chosen step, the same on every machine (strace sends
    // SIGKILL on entering the N-th call; a kill after a fixed wait could miss the rotation,
    // hardening issue part C): building the new version (renameat2 commits a copied file, linkat
    // a hard link to `_1`), then each rename of the swap (pending manifest, `_0` dropped, `_1`
    // to `_0`, the new tree to `_1`, the manifest).
    let Some(strace) = e2e::strace() else { return };
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    let src = p.join("src");
    // `_1` = state 2 and `_0` = state 1, then SOURCE becomes state 3.
    let prepare = || {
        for dir in [&src, &p.join("root")] {
            if dir.exists() {
                fs::remove_dir_all(dir).unwrap();
            }
        }
        rotating_tree(&src, 1, 1);
        let state1 = snapshot(&src);
        ok(&versioned(p, &[]));
        rotating_tree(&src, 2, 2);
        let state2 = snapshot(&src);
        ok(&versioned(p, &[]));
        rotating_tree(&src, 3, 3);
        let state3 = snapshot(&src);
        assert!(state1 != state2 && state2 != state3);
        (state1, state2, state3)
    };
    let pass = || {
        let mut c = cmd("oneway", p);
        c.args(["src", "root", "--versioned", "--once"]);
        c
    };
    // Every rename is a renameat2: the build commits each copied file, then the swap makes
    // five (the pending manifest, `_0` dropped, `_1` to `_0`, the new tree to `_1`, the
    // manifest) and nothing follows. Where they lie is counted on the very pass.
    prepare();
    let total = e2e::count_calls(&strace, &pass(), "renameat2");
    assert!(total > 5, "a rotation makes at least five renames, counted {total}");
    let steps = [
        ("renameat2", 1),
        ("renameat2", total - 5),
        ("linkat", 1),
        ("linkat", 100),
        ("renameat2", total - 4),
        ("renameat2", total - 3),
        ("renameat2", total - 2),
        ("renameat2", total - 1),
        ("renameat2", total),
        ("renameat2", total + 1),
    ];
    for (syscall, n) in steps {
        let context = format!("killed at {syscall} #{n}");
        let (state1, state2, state3) = prepare();
        let v = versions_dir(p);
        let out = e2e::run_killed_at(&strace, &pass(), syscall, n);
        // The last step proves that the five renames are every step of the swap: it is never
        // reached.
        let expect_kill = (syscall, n) != ("renameat2", total + 1);
        assert_eq!(
            e2e::killed(&out),
            expect_kill,
            "{context}: killed {} (expected {expect_kill}; did the steps of a rotation change?): {}",
            e2e::killed(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        // Right after the kill, each slot that exists is one complete state.
        if v.join("_1").exists() {
            let latest = snapshot(&v.join("_1"));
            assert!(latest == state2 || latest == state3, "{context}: _1 is neither state");
        }
        if v.join("_0").exists() {
            let previous = snapshot(&v.join("_0"));
            assert!(previous == state1 || previous == state2, "{context}: _0 is neither state");
        }
        // The next pass repairs and converges: latest and previous, no leftovers.
        let log = ok(&versioned(p, &[]));
        assert!(temporaries(&v).is_empty(), "{context}: leftovers {:?}", temporaries(&v));
        assert_eq!(snapshot(&v.join("_1")), state3, "{context}: {log}");
        assert_eq!(snapshot(&v.join("_0")), state2, "{context}: {log}");
        // And the manifest agrees with the slots: the next pass sees nothing to do.
        let before = version_stamps(&v);
        let log = ok(&versioned(p, &[]));
        assert!(!log.contains("rotate \""), "{context}: {log}");
        assert_eq!(version_stamps(&v), before, "{context}");
    }
}

#[test]
fn a_pass_after_1_percent_changed_writes_at_most_1_1_times_the_changed_bytes() {
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    let src = p.join("src");
    let mut rng = Rng::new(3);
    for i in 0..1000u32 {
        let len = (rng.below(8192) + 100) as usize;
        file(&src, format!("d{:02}/f{i:04}", i % 20).as_bytes(), &rng.bytes(len), 0o644, (T.0, i));
    }
    ok(&versioned(p, &[]));
    let mut changed = 0u64;
    for i in (0..1000u32).step_by(100) {
        let len = (rng.below(8192) + 100) as usize;
        changed += len as u64;
        file(&src, format!("d{:02}/f{i:04}", i % 20).as_bytes(), &rng.bytes(len), 0o644, (T.0 + 1, i));
    }
    let log = ok(&versioned(p, &[]));
    let summary = log.lines().find(|l| l.contains(": rotated;")).unwrap_or_else(|| panic!("{log}"));
    let number_before = |word: &str| -> u64 {
        let head = &summary[..summary.find(word).unwrap_or_else(|| panic!("{word} in {summary}"))];
        head.split_whitespace().last().unwrap().parse().unwrap()
    };
    let written = number_before(" bytes written");
    eprintln!(
        "changed {changed} B, written {written} B, manifest {} B",
        number_before(" bytes, ") // "manifest N bytes, "
    );
    assert!(written * 10 <= changed * 11, "wrote {written} B for {changed} B changed: {summary}");
    assert!(written >= changed, "{summary}");
    assert!(summary.contains(" 990 hard links"), "{summary}");
    // Only the changed files were read: the manifest's hash cache vouched for the rest.
    assert!(summary.contains(" 10 files hashed"), "{summary}");
    assert_same_tree(&src, &versions_dir(p).join("_1"));
}

#[test]
fn a_vanished_or_emptied_source_never_rotates() {
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    let src = p.join("src");
    // No versions yet: a missing SOURCE is bad input.
    let out = versioned(p, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));

    rich_tree(&src);
    ok(&versioned(p, &[]));
    file(&src, b"docs/a.txt", b"second\n", 0o644, (T.0 + 5, 0));
    ok(&versioned(p, &[]));
    let v = versions_dir(p);
    let before = version_stamps(&v);

    // Emptied (as an unmounted mount point looks): exit 3, versions untouched, every pass.
    fs::remove_dir_all(&src).unwrap();
    fs::create_dir(&src).unwrap();
    for _ in 0..2 {
        let out = versioned(p, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains("is empty or missing"), "{stderr}");
        assert_eq!(version_stamps(&v), before);
    }
    // Deleted: the same, since versions of it exist.
    fs::remove_dir(&src).unwrap();
    let out = versioned(p, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(version_stamps(&v), before);
    assert_eq!(fs::read(v.join("_1/docs/a.txt")).unwrap(), b"second\n");
    assert_eq!(fs::read(v.join("_0/docs/a.txt")).unwrap(), b"alpha\n");
}

#[test]
fn a_source_that_is_a_file_is_bad_input_even_when_versions_exist() {
    // Hardening issue, part B: only a missing or empty SOURCE is the rail (exit 3); a path
    // that is a file is a usage error (exit 2), and nothing is touched.
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    rich_tree(&p.join("src"));
    ok(&versioned(p, &[]));
    let v = versions_dir(p);
    let before = version_stamps(&v);
    fs::rename(p.join("src"), p.join("src.moved")).unwrap();
    fs::write(p.join("src"), "a file now").unwrap();
    let out = versioned(p, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a directory"), "{stderr}");
    assert_eq!(version_stamps(&v), before);
}

#[test]
fn in_periodic_mode_a_missing_source_skips_passes_and_the_loop_goes_on() {
    // Hardening issue, part B, periodic mode (user guide "Safety"): a SOURCE missing at
    // start-up while its versions exist, or vanishing between passes, makes each pass refuse
    // to rotate (a logged warning: what exit 3 means with --once); the versions are untouched
    // and the loop goes on, rotating again once SOURCE is back.
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    let src = p.join("src");
    rich_tree(&src);
    ok(&versioned(p, &[]));
    let v = versions_dir(p);
    let before = version_stamps(&v);
    fs::rename(&src, p.join("src.unmounted")).unwrap();
    let mut child = cmd("oneway", p).args(["src", "root", "--versioned", "--interval", "1"]).spawn_guarded();
    let log = || fs::read_to_string(p.join("oneway.log")).unwrap_or_default();
    let refusals = || log().matches("not rotating: ").count();
    assert!(wait_for(Duration::from_secs(20), || refusals() >= 2), "{}", log());
    assert!(log().contains("is empty or missing"), "{}", log());
    assert_eq!(child.try_wait().unwrap(), None, "the loop goes on");
    assert_eq!(version_stamps(&v), before, "versions untouched");
    // Back, with a change: the next pass rotates.
    fs::rename(p.join("src.unmounted"), &src).unwrap();
    file(&src, b"docs/a.txt", b"after the disk came back\n", 0o644, (T.0 + 9, 0));
    assert!(wait_for(Duration::from_secs(20), || v.join("_0").is_dir()), "{}", log());
    // Vanishing between passes: refused again, the loop still going.
    let seen = refusals();
    fs::rename(&src, p.join("src.unmounted")).unwrap();
    assert!(wait_for(Duration::from_secs(20), || refusals() > seen), "{}", log());
    assert_eq!(child.try_wait().unwrap(), None, "the loop goes on");
    assert_eq!(fs::read(v.join("_1/docs/a.txt")).unwrap(), b"after the disk came back\n");
    e2e::signal(child.id(), rustix::process::Signal::TERM);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn a_second_versioned_process_on_the_same_source_is_refused() {
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    file(p, b"src/a", b"1", 0o644, T);
    let first = cmd("oneway", p).args(["src", "root", "--versioned", "--interval", "60"]).spawn_guarded();
    let has_version = || {
        fs::read_dir(p.join("root/__versions__"))
            .is_ok_and(|mut rd| rd.any(|d| d.is_ok_and(|d| d.path().join("manifest.json").exists())))
    };
    assert!(wait_for(Duration::from_secs(20), has_version));
    let second = run({
        let mut c = cmd("oneway", p);
        c.args(["./src/", "root/", "--versioned-backup", "--once", "--log", "second.log"]);
        c
    });
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", first.0.id())), "names the holder: {stderr}");
    assert!(stderr.contains("lock"), "{stderr}");
    drop(first);
    ok(&versioned(p, &[]));
}

#[test]
fn dry_run_says_whether_it_would_rotate_and_changes_nothing() {
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    let src = p.join("src");
    rich_tree(&src);
    let stdout = |out: &Output| String::from_utf8_lossy(&out.stdout).into_owned();

    // Before any version: would rotate, and creates nothing (not even ROOT).
    let out = versioned(p, &["--dry-run"]);
    ok(&out);
    assert!(stdout(&out).contains("would rotate: none -> "), "{}", stdout(&out));
    assert!(!p.join("root").exists());

    ok(&versioned(p, &[]));
    let v = versions_dir(p);
    let before = stamps(&v);
    let out = versioned(p, &["--dry-run"]);
    ok(&out);
    assert!(stdout(&out).contains("would not rotate"), "{}", stdout(&out));
    assert_eq!(stamps(&v), before);

    file(&src, b"run.sh", b"changed", 0o755, T);
    let out = versioned(p, &["--dry-run"]);
    ok(&out);
    let text = stdout(&out);
    assert!(text.contains("would rotate: ") && !text.contains("would rotate: none"), "{text}");
    assert!(text.contains("copy \"run.sh\""), "{text}");
    // Issue 16, point 3: the unchanged files it would hard-link are one line, not one each.
    assert!(!text.contains("hardlink \"docs/a.txt\""), "{text}");
    assert!(text.contains("would hard-link ") && text.contains(" unchanged files from _1"), "{text}");
    assert_eq!(stamps(&v), before, "a dry run writes nothing, not even the lock");
    assert!(temporaries(&v).is_empty());
}

#[test]
fn a_version_that_would_drop_more_than_max_delete_of_the_files_aborts_unless_forced() {
    // The architecture issue, point 1: `--max-delete` applies to a versioned pass too.
    let sb = tempfile::tempdir().unwrap();
    let src = sb.path().join("src");
    for i in 0..20 {
        file(&src, format!("f{i:02}").as_bytes(), b"x", 0o644, T);
    }
    ok(&versioned(sb.path(), &[]));
    let v = versions_dir(sb.path());
    for i in 0..15 {
        fs::remove_file(src.join(format!("f{i:02}"))).unwrap();
    }
    let before = version_stamps(&v);
    let out = versioned(sb.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("would delete 15 of 20 files"), "{stderr}");
    assert_eq!(version_stamps(&v), before, "nothing changed");
    // A share under the limit rotates; `--force` accepts a larger one.
    ok(&versioned(sb.path(), &["--force"]));
    assert_eq!(fs::read_dir(v.join("_1")).unwrap().count(), 5);
    assert_eq!(fs::read_dir(v.join("_0")).unwrap().count(), 20);
}

/// True (with a printed reason) when the binaries under test have no fault points.
fn no_fault_points() -> bool {
    let none = !e2e::has_fault_points();
    if none {
        eprintln!("skipped: the binaries under test are not debug builds (no fault points)");
    }
    none
}

/// A sandbox whose SOURCE (the rich tree, plus `extra`) has a first version, then a new file
/// `docs/new.txt` for the next pass to version: (sandbox, SOURCE, versions directory, SOURCE
/// as the first version holds it).
fn versioned_then_new_file(extra: impl FnOnce(&Path)) -> (tempfile::TempDir, PathBuf, PathBuf, Snapshot) {
    let sb = tempfile::tempdir().unwrap();
    let src = sb.path().join("src");
    rich_tree(&src);
    extra(&src);
    ok(&versioned(sb.path(), &[]));
    let v = versions_dir(sb.path());
    let first = snapshot(&src);
    file(&src, b"docs/new.txt", b"new\n", 0o644, (T.0 + 5, 0));
    (sb, src, v, first)
}

/// Starts `oneway src root --versioned --once --log v.log` with `SYNCCORE_FAULT=fault` and
/// waits until it stopped at the first `stop:` point `fault` names.
fn stopped_pass(p: &Path, fault: &str) -> e2e::Background {
    let mut c = cmd("oneway", p);
    c.args(["src", "root", "--versioned", "--once", "--log", "v.log"]).env("SYNCCORE_FAULT", fault);
    let child = c.spawn_guarded();
    assert!(e2e::wait_stopped(child.id(), Duration::from_secs(30)), "the pass never reached {fault}");
    child
}

/// A fault point where a pass stops, what happens to SOURCE there, and the change itself.
type ChangeAt = (&'static str, &'static str, fn(&Path));

#[test]
fn a_source_that_changes_under_the_pass_is_versioned_once_it_settles() {
    // twoway's versioning children read a directory while twoway's own pass writes into it:
    // a pass that finds a file gone before it hashed it, or rewritten while it copied it,
    // discards what it built and starts again, and the version it rotates in is SOURCE as
    // it settled (never a mixture).
    if no_fault_points() {
        return;
    }
    // Each change hits the file this pass must read (a file `_1` has, unchanged, is linked
    // from `_1` without a read: the version then shows it as the scan saw it, which is a
    // picture of one moment too).
    let changes: [ChangeAt; 4] = [
        ("walk-listed", "a directory renamed between its listing and its reading", |src| {
            fs::rename(src.join("docs"), src.join("papers")).unwrap();
        }),
        ("versioned-scanned", "a new file deleted before it was hashed", |src| {
            fs::remove_file(src.join("docs/new.txt")).unwrap();
            set_mtime(&src.join("docs"), (1_650_000_000, 42));
        }),
        ("versioned-scanned", "a directory renamed before its new file was hashed", |src| {
            fs::rename(src.join("docs"), src.join("papers")).unwrap();
        }),
        ("versioned-hashed", "a new file rewritten before it was copied", |src| {
            file(src, b"docs/new.txt", b"rewritten meanwhile\n", 0o644, (T.0 + 99, 0));
        }),
    ];
    for (point, what, change) in changes {
        let (sb, src, v, first) = versioned_then_new_file(|_| {});
        let p = sb.path();
        let mut child = stopped_pass(p, &format!("stop:{point}"));
        change(&src);
        e2e::signal(child.id(), rustix::process::Signal::CONT);
        let status = child.wait().unwrap();
        let log = fs::read_to_string(p.join("v.log")).unwrap();
        assert_eq!(status.code(), Some(0), "{what}: {log}");
        assert!(log.contains("changed while it was being versioned; starting again"), "{what}: {log}");
        // Settled back to the first version (the new file deleted): nothing to rotate.
        let settled = snapshot(&src);
        assert_eq!(log.contains("rotate \""), settled != first, "{what}: {log}");
        assert_same_tree(&src, &v.join("_1"));
        if settled != first {
            assert_eq!(snapshot(&v.join("_0")), first, "{what}");
        }
        assert!(temporaries(&v).is_empty(), "{what}");
        // And the next pass finds nothing to do.
        let log = ok(&versioned(p, &[]));
        assert!(!log.contains("rotate \""), "{what}: {log}");
    }
}

#[test]
fn an_ignored_file_coming_and_going_during_the_pass_does_not_hold_the_version_back() {
    // An editor's swap file or a database journal in SOURCE is ignored, but each one that
    // comes or goes moves its directory's mtime: the pass must not take that for a change.
    if no_fault_points() {
        return;
    }
    let (sb, src, v, _) = versioned_then_new_file(|src| file(src, b".syncignore", b"*.swp\n", 0o644, T));
    let p = sb.path();
    let mut child = stopped_pass(p, "stop:versioned-hashed");
    file(&src, b"docs/.new.txt.swp", b"swap", 0o644, T);
    e2e::signal(child.id(), rustix::process::Signal::CONT);
    let status = child.wait().unwrap();
    let log = fs::read_to_string(p.join("v.log")).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(!log.contains("starting again"), "{log}");
    assert!(log.contains("rotate \""), "{log}");
    assert_eq!(fs::read(v.join("_1/docs/new.txt")).unwrap(), b"new\n");
    assert!(!v.join("_1/docs/.new.txt.swp").exists());
}

#[test]
fn sigterm_while_waiting_to_start_again_ends_the_pass_at_once_with_the_versions_as_they_were() {
    if no_fault_points() {
        return;
    }
    let (sb, src, v, _) = versioned_then_new_file(|_| {});
    let p = sb.path();
    let slots = snapshot(&v.join("_1"));
    // Stopped after hashing (the file then changes), and again before the wait.
    let mut child = stopped_pass(p, "stop:versioned-hashed,stop:versioned-waiting");
    file(&src, b"docs/new.txt", b"rewritten meanwhile\n", 0o644, (T.0 + 99, 0));
    e2e::signal(child.id(), rustix::process::Signal::CONT);
    let log = || fs::read_to_string(p.join("v.log")).unwrap_or_default();
    assert!(wait_for(Duration::from_secs(30), || log().contains("starting again")), "{}", log());
    assert!(e2e::wait_stopped(child.id(), Duration::from_secs(30)), "the pass never reached its wait");
    // The TERM waits for the CONT; then the wait ends at once, before a second attempt.
    e2e::signal(child.id(), rustix::process::Signal::TERM);
    e2e::signal(child.id(), rustix::process::Signal::CONT);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", log());
    assert!(log().contains("interrupted"), "{}", log());
    assert_eq!(snapshot(&v.join("_1")), slots, "the versions changed");
    assert!(temporaries(&v).is_empty());
}
