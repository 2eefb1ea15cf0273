//! `twoway` safety: bad input, rails, locking, corrupt state, crashes (SPEC sections 4 and 5).

use std::fs;
use std::time::Duration;

use e2e::{
    Node, Rng, SpawnGuarded, assert_same_synced, cmd, file, run, snapshot, stamps, temporaries, wait_for,
};

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
    let out = crate::oneway_inputs::exit_within(child, 20);
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
    let out = crate::oneway_inputs::exit_within(child, 20);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("is empty or missing") && stderr.lines().count() == 1, "{stderr}");
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

#[test]
fn kill_9_mid_pass_then_a_pass_converges_without_conflicts() {
    let p = Pair::new();
    let mut rng = Rng::new(3);
    for i in 0..3000u32 {
        let len = (rng.below(8192) + 1) as usize;
        let content = rng.bytes(len);
        let side = if i % 3 == 0 { &p.b } else { &p.a };
        file(side, format!("d{:02}/f{i:04}", i % 30).as_bytes(), &content, 0o644, (1_700_000_000, i));
    }
    let sources = (snapshot(&p.a), snapshot(&p.b));
    let mut interrupted = 0;
    for delay_ms in [30u64, 150, 400] {
        let mut child = cmd("twoway", p.root())
            .args(["a", "b", "--home", "home", "--once", "--no-recovery", "--log", "crash.log"])
            .spawn_guarded();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let finished = child.try_wait().unwrap().is_some();
        child.kill().ok();
        child.wait().unwrap();
        interrupted += usize::from(!finished);
        // No partial file under a real name: every file equals one of the originals.
        for side in [&p.a, &p.b] {
            for (rel, node) in snapshot(side) {
                if let Node::File { content, .. } = node
                    && !rel.windows(14).any(|w| w == b".synccore-tmp-")
                {
                    let orig = sources.0.get(&rel).or_else(|| sources.1.get(&rel));
                    assert!(
                        matches!(orig, Some(Node::File { content: c, .. }) if *c == content),
                        "partial {rel:?}"
                    );
                }
            }
        }
    }
    assert!(interrupted > 0, "no kill landed mid-pass");
    let log = p.sync();
    assert!(!log.contains("conflict at"), "an interrupted pass must not cause conflicts: {log}");
    assert!(temporaries(&p.a).is_empty() && temporaries(&p.b).is_empty());
    assert_eq!(snapshot(&p.a).len(), 3030);
    assert_same_synced(&p.a, &p.b);
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
