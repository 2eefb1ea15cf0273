//! `twoway` safety: bad input, rails, locking, corrupt state, crashes (SPEC sections 4 and 5).

use std::fs;
use std::time::Duration;

use e2e::{Node, Rng, SpawnGuarded, cmd, file, run, snapshot, stamps, temporaries, wait_for};

use crate::twoway_merge::Pair;

const T: (i64, u32) = (1_700_000_000, 0);

#[test]
fn bad_inputs_exit_2_and_create_nothing() {
    let p = Pair::new();
    file(&p.a, b"x", b"1", 0o644, T);
    file(p.root(), b"a-file", b"f", 0o644, T);
    let before = snapshot(p.root());
    for args in [
        vec!["a", "missing"],
        vec!["a", "a-file"],
        vec!["a", "a/"],
        vec!["a", "a/sub"],
        vec!["a", "b", "--home", "a/home"],
        vec!["a", "b", "--home", "a-file"],
        vec!["a", "b", "--log=b/twoway.log"],
        vec!["a", "b", "--interval", "0"],
        // Hardening issue, part A: a period that would overflow the loop's deadline.
        vec!["a", "b", "--interval", "18446744073709551615"],
        vec!["a", "b", "--interval", "31536001"],
    ] {
        let mut c = cmd("twoway", p.root());
        c.args(&args).arg("--once");
        let out = run(c);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("twoway: error:") || stderr.starts_with("error:"), "{args:?}: {stderr}");
        assert_eq!(snapshot(p.root()), before, "{args:?} changed the disk");
    }
}

#[test]
fn an_interval_that_overflows_a_deadline_is_refused_before_the_first_pass() {
    // Hardening issue, part A: the periodic loop used to run one pass and then panic
    // (exit 101) computing `now + interval`. Now: exit 2 naming the range, nothing synced.
    let p = Pair::new();
    file(&p.a, b"x", b"1", 0o644, T);
    let child = cmd("twoway", p.root())
        .args(["a", "b", "--home", "home", "--no-recovery", "--interval", "18446744073709551615"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = e2e::exit_within(child, 20);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--interval") && stderr.contains("1..=31536000"), "{stderr}");
    assert!(!p.b.join("x").exists() && !p.root().join("home").exists(), "nothing may be synced");
}

#[test]
fn a_config_interval_out_of_range_is_refused_and_starts_nothing() {
    // Hardening issue, part A, for config.json's "interval" (SPEC section 4 "Recovery": a bad
    // config is a clear error, nothing started): the children would have taken the value.
    let p = Pair::with_recovery();
    file(&p.a, b"x", b"1", 0o644, T);
    let home = p.root().join("home");
    fs::create_dir_all(&home).unwrap();
    let oneway = e2e::bin("oneway");
    for (interval, needle) in [
        (r#"["--interval", "18446744073709551615"]"#, "1..=31536000"),
        (r#"["--interval", "31536001"]"#, "1..=31536000"),
        (r#"["--interval", "0"]"#, "1..=31536000"),
        (r#"["--interval", "soon"]"#, "1..=31536000"),
        (r#"["--interval"]"#, "\"interval\" must be"),
        (r#"["--checksum"]"#, "\"interval\" must be"),
    ] {
        let json = format!(r#"{{"script": "{}", "interval": {interval}}}"#, oneway.display());
        fs::write(home.join("config.json"), json).unwrap();
        let (code, _, log) = p.pass(&[]);
        assert_eq!(code, 2, "{interval}: {log}");
        assert!(log.contains(needle) && log.contains("config.json"), "{interval}: {log}");
        assert!(
            !home.join("__versions__").exists() && !p.b.join("x").exists(),
            "{interval}: nothing may start: {log}"
        );
    }
    // The largest allowed period, and the other accepted spellings, start normally.
    for interval in [r#"["--interval", "31536000"]"#, r#"["-i", "5"]"#, r#"["--interval=5"]"#, "[]"] {
        let json = format!(r#"{{"script": "{}", "interval": {interval}}}"#, oneway.display());
        fs::write(home.join("config.json"), json).unwrap();
        let (code, _, log) = p.pass(&[]);
        assert_eq!(code, 0, "{interval}: {log}");
    }
}

#[test]
fn an_emptied_side_aborts_with_3_and_changes_nothing() {
    let p = Pair::new();
    file(&p.a, b"x", b"1", 0o644, T);
    p.sync();
    fs::remove_file(p.b.join("x")).unwrap();
    let state = || {
        fs::read_dir(p.root().join("home/pairs"))
            .unwrap()
            .map(|d| fs::read(d.unwrap().path().join("state.json")).unwrap())
            .collect::<Vec<_>>()
    };
    let before = (snapshot(&p.a), snapshot(&p.b), stamps(&p.a), state());
    let (code, _, log) = p.pass(&[]);
    assert_eq!(code, 3, "{log}");
    assert!(log.contains("is empty or missing"), "{log}");
    assert_eq!((snapshot(&p.a), snapshot(&p.b), stamps(&p.a), state()), before);
    // A side that vanished altogether (an unmounted disk) aborts the same way, while a
    // directory that was never synced is plain bad input.
    fs::remove_dir(&p.b).unwrap();
    assert_eq!(p.pass(&[]).0, 3);
    assert!(p.a.join("x").exists());
    let mut c = cmd("twoway", p.root());
    c.args(["a", "never-synced", "--home", "home", "--once"]);
    assert_eq!(run(c).status.code(), Some(2));
}

#[test]
fn a_side_that_is_a_file_is_bad_input_even_after_a_sync() {
    // Hardening issue, part B: only a missing or empty directory of a synced pair is the
    // rail (exit 3); a path that is a file is a usage error (exit 2), and nothing changes.
    let p = Pair::new();
    file(&p.a, b"x", b"1", 0o644, T);
    p.sync();
    fs::rename(&p.b, p.root().join("b.moved")).unwrap();
    fs::write(&p.b, "a file now").unwrap();
    let before = snapshot(p.root());
    let mut c = cmd("twoway", p.root());
    c.args(["a", "b", "--home", "home", "--once", "--no-recovery"]);
    let out = run(c);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a directory"), "{stderr}");
    assert_eq!(snapshot(p.root()), before);
}

#[test]
fn a_side_that_vanishes_between_passes_aborts_that_pass_and_the_loop_goes_on() {
    // SPEC section 5 and hardening issue, part B, periodic mode: the pass is aborted with the
    // rail's message (what exit 3 means), A is untouched, and syncing resumes once B is back.
    let p = Pair::new();
    file(&p.a, b"x", b"1", 0o644, T);
    let mut child = cmd("twoway", p.root())
        .args(["a", "b", "--home", "home", "--interval", "1", "--no-recovery", "--log", "periodic.log"])
        .spawn_guarded();
    assert!(wait_for(Duration::from_secs(20), || p.b.join("x").exists()));
    let a_before = stamps(&p.a);
    fs::rename(&p.b, p.root().join("b.unmounted")).unwrap();
    let log = || fs::read_to_string(p.root().join("periodic.log")).unwrap_or_default();
    assert!(
        wait_for(Duration::from_secs(20), || log().contains("pass aborted: ")
            && log().contains("is empty or missing")),
        "{}",
        log()
    );
    assert_eq!(child.try_wait().unwrap(), None, "the loop goes on");
    assert_eq!(stamps(&p.a), a_before, "A untouched while B is gone");
    fs::rename(p.root().join("b.unmounted"), &p.b).unwrap();
    file(&p.b, b"y", b"2", 0o644, T);
    assert!(wait_for(Duration::from_secs(20), || p.a.join("y").exists()), "{}", log());
    e2e::signal(child.id(), rustix::process::Signal::TERM);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(p.a.join("x").exists() && p.b.join("x").exists());
    // Already missing at start-up (the pair has a base): refused at once with exit 3, in
    // periodic mode too, and nothing changes.
    fs::rename(&p.b, p.root().join("b.unmounted")).unwrap();
    let before = snapshot(p.root());
    let child = cmd("twoway", p.root())
        .args(["a", "b", "--home", "home", "--interval", "1", "--no-recovery", "--log", "periodic.log"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = e2e::exit_within(child, 20);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("is empty or missing") && stderr.lines().count() == 1, "{stderr}");
    // Named in the other order it is the same pair (SPEC section 5), with the same base.
    let mut c = cmd("twoway", p.root());
    c.args(["b", "a", "--home", "home", "--once", "--no-recovery", "--log", "periodic.log"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(snapshot(p.root()), before);
}

#[test]
fn deleting_more_than_max_delete_aborts_unless_forced() {
    let p = Pair::new();
    for i in 0..20 {
        file(&p.a, format!("f{i:02}").as_bytes(), b"x", 0o644, T);
    }
    p.sync();
    for i in 0..15 {
        fs::remove_file(p.a.join(format!("f{i:02}"))).unwrap();
    }
    let (code, _, log) = p.pass(&[]);
    assert_eq!(code, 3, "{log}");
    assert!(log.contains("would delete 15 of 20 files"), "{log}");
    assert_eq!(fs::read_dir(&p.b).unwrap().count(), 20);
    assert_eq!(p.pass(&["--force"]).0, 0);
    assert_eq!(fs::read_dir(&p.b).unwrap().count(), 5);
}

#[test]
fn a_second_twoway_on_the_same_pair_is_refused_until_the_first_is_killed() {
    let p = Pair::new();
    file(&p.a, b"x", b"1", 0o644, T);
    let mut first = cmd("twoway", p.root())
        .args(["a", "b", "--home", "home", "--interval", "60", "--no-recovery", "--log", "first.log"])
        .spawn_guarded();
    assert!(wait_for(Duration::from_secs(20), || p.b.join("x").exists()));
    let (code, _, log) = p.pass(&[]);
    assert_eq!(code, 3, "{log}");
    assert!(log.contains(&format!("pid {}", first.id())), "{log}");
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(p.pass(&[]).0, 0);
}

#[test]
fn a_corrupt_base_is_reported_kept_and_treated_as_no_base() {
    let p = Pair::new();
    file(&p.a, b"x", b"1", 0o644, T);
    p.sync();
    let pairs = p.root().join("home/pairs");
    let dir = fs::read_dir(&pairs).unwrap().next().unwrap().unwrap().path();
    fs::write(dir.join("state.json"), b"{garbage").unwrap();
    // Without a base, a deletion on A must not propagate (union semantics).
    fs::remove_file(p.a.join("x")).unwrap();
    file(&p.a, b"y", b"2", 0o644, T);
    let (code, _, log) = p.pass(&[]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("corrupt merge state") && log.contains("state.json"), "{log}");
    assert!(p.b.join("x").exists() && p.a.join("x").exists(), "restored, not deleted");
    let kept = fs::read_dir(&dir)
        .unwrap()
        .filter(|d| d.as_ref().unwrap().file_name().to_string_lossy().contains("unusable"))
        .count();
    assert_eq!(kept, 1, "the unusable base is kept aside");
}

/// What each path may hold during a crash test: every content ever written there.
type Written = std::collections::BTreeMap<Vec<u8>, Vec<Vec<u8>>>;

/// Files in a crash test's pair: one third start on B, the rest on A.
const CRASH_FILES: u32 = 300;

/// [`CRASH_FILES`] files in 30 directories, one third on B and the rest on A; returns what
/// was written.
fn crash_pair(p: &Pair) -> Written {
    let mut written = Written::new();
    let mut rng = Rng::new(3);
    for i in 0..CRASH_FILES {
        let len = (rng.below(8192) + 1) as usize;
        let content = rng.bytes(len);
        let rel = format!("d{:02}/f{i:04}", i % 30).into_bytes();
        file(if i % 3 == 0 { &p.b } else { &p.a }, &rel, &content, 0o644, (1_700_000_000, i));
        written.entry(rel).or_default().push(content);
    }
    written
}

/// Every file under a real name on either side holds something written at that path.
fn no_partial_files(p: &Pair, written: &Written, context: &str) {
    for side in [&p.a, &p.b] {
        for (rel, node) in snapshot(side) {
            if let Node::File { content, .. } = node
                && !rel.windows(14).any(|w| w == b".synccore-tmp-")
            {
                assert!(
                    written.get(&rel).is_some_and(|w| w.contains(&content)),
                    "{context}: partial or wrong {}",
                    String::from_utf8_lossy(&rel)
                );
            }
        }
    }
}

/// Runs a pass of the pair under strace, killed on entering its `n`-th `syscall`.
fn pass_killed_at(p: &Pair, strace: &std::path::Path, syscall: &str, n: u32) -> bool {
    let mut c = cmd("twoway", p.root());
    c.args(["a", "b", "--home", "home", "--once", "--no-recovery", "--log", "crash.log"]);
    e2e::killed(&e2e::run_killed_at(strace, &c, syscall, n))
}

fn reset(p: &Pair) {
    for dir in [&p.a, &p.b, &p.root().join("home")] {
        if dir.exists() {
            fs::remove_dir_all(dir).unwrap();
        }
    }
    fs::create_dir(&p.a).unwrap();
    fs::create_dir(&p.b).unwrap();
}

#[test]
fn kill_9_at_commit_points_of_a_first_pass_then_a_pass_converges_without_conflicts() {
    // SPEC section 4: after an interrupted pass the next one records already-equal files
    // without conflicts. Each kill lands at a chosen commit point, the same on every machine
    // (strace sends SIGKILL on entering the N-th call; sleeping 30/150/400 ms first missed
    // the pass on a fast machine, hardening issue part C). A first pass commits each new file
    // with renameat2: B takes A's 200 files, then A takes B's 100; then the base is committed
    // (renameat2 #301).
    let Some(strace) = e2e::strace() else { return };
    let p = Pair::new();
    for (syscall, n) in [
        ("renameat2", 1),
        ("renameat2", 2),
        ("renameat2", 200),
        ("renameat2", 201),
        ("renameat2", 300),
        ("renameat2", 301),
    ] {
        let context = format!("killed at {syscall} #{n}");
        reset(&p);
        let written = crash_pair(&p);
        assert!(pass_killed_at(&p, &strace, syscall, n), "{context}: the pass ended first");
        no_partial_files(&p, &written, &context);
        let log = p.sync();
        assert!(
            !log.contains("conflict at"),
            "{context}: an interrupted pass must not cause conflicts: {log}"
        );
        assert!(temporaries(&p.a).is_empty() && temporaries(&p.b).is_empty(), "{context}");
        // Nothing lost: every file, with its content, on both sides.
        for (rel, contents) in &written {
            assert_eq!(&fs::read(e2e::at(&p.a, rel)).unwrap(), &contents[0], "{context}");
        }
        assert_eq!(snapshot(&p.a).len(), CRASH_FILES as usize + 30, "{context}");
    }
}

#[test]
fn kill_9_at_commit_points_of_a_pass_with_a_base_then_a_pass_converges_without_conflicts() {
    // As above, for a pass that merges edits on both sides against a base: every commit is a
    // renameat2 (B takes A's edits first, then A takes B's edits and B's 10 new files), the
    // base comes last.
    let Some(strace) = e2e::strace() else { return };
    let p = Pair::new();
    let (a_edits, b_edits) = (
        (0..CRASH_FILES).filter(|i| i % 5 == 0).count() as u32,
        (0..CRASH_FILES).filter(|i| i % 7 == 0 && i % 5 != 0).count() as u32,
    );
    for n in [1, a_edits, a_edits + 1, a_edits + b_edits, a_edits + b_edits + 1, a_edits + b_edits + 11] {
        let context = format!("killed at renameat2 #{n}");
        reset(&p);
        let mut written = crash_pair(&p);
        p.sync();
        // A rewrites every 5th file and deletes every 11th, B rewrites every 7th and adds 10.
        let mut rng = Rng::new(u64::from(n));
        let mut expect = std::collections::BTreeMap::new();
        for i in 0..CRASH_FILES {
            let rel = format!("d{:02}/f{i:04}", i % 30).into_bytes();
            let edit = |side: &std::path::Path, written: &mut Written, rng: &mut Rng| {
                let bytes = rng.bytes(1000 + i as usize);
                file(side, &rel, &bytes, 0o644, (1_700_000_100, i));
                written.get_mut(&rel).unwrap().push(bytes.clone());
                bytes
            };
            if i % 5 == 0 {
                expect.insert(rel.clone(), Some(edit(&p.a, &mut written, &mut rng)));
            } else if i % 7 == 0 {
                expect.insert(rel.clone(), Some(edit(&p.b, &mut written, &mut rng)));
            } else if i % 11 == 0 {
                fs::remove_file(e2e::at(&p.a, &rel)).unwrap();
                expect.insert(rel, None);
            }
        }
        for i in 0..10u32 {
            let rel = format!("new/n{i}").into_bytes();
            let bytes = rng.bytes(500);
            file(&p.b, &rel, &bytes, 0o644, (1_700_000_100, i));
            written.insert(rel.clone(), vec![bytes.clone()]);
            expect.insert(rel, Some(bytes));
        }
        assert!(pass_killed_at(&p, &strace, "renameat2", n), "{context}: the pass ended first");
        no_partial_files(&p, &written, &context);
        let log = p.sync();
        assert!(
            !log.contains("conflict at"),
            "{context}: an interrupted pass must not cause conflicts: {log}"
        );
        assert!(temporaries(&p.a).is_empty() && temporaries(&p.b).is_empty(), "{context}");
        // Nothing lost: every edit is on both sides, every deletion propagated.
        for (rel, content) in &expect {
            assert_eq!(fs::read(e2e::at(&p.a, rel)).ok().as_ref(), content.as_ref(), "{context}: {rel:?}");
        }
    }
}

#[test]
fn sigterm_in_periodic_mode_stops_cleanly_with_a_summary() {
    let p = Pair::new();
    file(&p.a, b"x", b"1", 0o644, T);
    let mut child = cmd("twoway", p.root())
        .args(["a", "b", "--home", "home", "--interval", "1", "--no-recovery", "--log", "periodic.log"])
        .spawn_guarded();
    assert!(wait_for(Duration::from_secs(20), || p.b.join("x").exists()));
    file(&p.b, b"y", b"2", 0o644, T);
    assert!(wait_for(Duration::from_secs(20), || p.a.join("y").exists()), "later passes pick up B's changes");
    e2e::signal(child.id(), rustix::process::Signal::TERM);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let log = fs::read_to_string(p.root().join("periodic.log")).unwrap();
    assert!(log.contains("Total number of operations: 2"), "{log}");
}
