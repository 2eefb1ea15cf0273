//! Bad input, safety rails, locking and signals for `oneway` (SPEC sections 3 and 5).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::{SpawnGuarded, cmd, exit_within, file, run, snapshot, stamps, wait_for};
use rustix::process::Signal;

const T: (i64, u32) = (1_700_000_000, 0);

/// Entries of the sandbox (excluding `keep` names), to prove nothing was created.
fn listing(sb: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(sb).unwrap().map(|d| d.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn expect_refused(sb: &Path, args: &[&str], code: i32, needle: &str) {
    let before = snapshot(sb);
    let out = run({
        let mut c = cmd("oneway", sb);
        c.args(args).arg("--once");
        c
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "args {args:?}: {stderr}");
    assert!(stderr.contains(needle), "args {args:?}: expected {needle:?} in {stderr:?}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    // Our own errors are one line; clap's usage errors add a usage hint below the error line.
    let usage_error = args.iter().any(|a| a.starts_with("--")) || args.len() < 2;
    assert!(lines.len() == 1 || (usage_error && lines.len() <= 5), "one clear line: {stderr}");
    assert!(lines[0].contains("error"), "{stderr}");
    assert_eq!(snapshot(sb), before, "args {args:?}: nothing may change on disk");
}

#[test]
fn bad_inputs_exit_2_with_one_line_and_change_nothing() {
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    file(p, b"src/f", b"x", 0o644, T);
    file(p, b"a-file", b"x", 0o644, T);
    fs::create_dir(p.join("other")).unwrap();
    std::os::unix::fs::symlink("src", p.join("src-alias")).unwrap();
    expect_refused(p, &["missing", "dst"], 2, "\"missing\": does not exist");
    expect_refused(p, &["a-file", "dst"], 2, "not a directory");
    expect_refused(p, &["src", "a-file"], 2, "not a directory");
    expect_refused(p, &["src", "a-file/below"], 2, "not a directory");
    expect_refused(p, &["src", "src"], 2, "are the same directory");
    expect_refused(p, &["./src/", "src-alias"], 2, "are the same directory");
    expect_refused(p, &["src", "src/backup"], 2, "lies inside");
    expect_refused(p, &["src", "src-alias/deeper/backup"], 2, "lies inside");
    expect_refused(p, &["src", "."], 2, "lies inside");
    expect_refused(p, &["src", "dst", "--interval", "0"], 2, "--interval");
    expect_refused(p, &["src", "dst", "--interval", "soon"], 2, "--interval");
    // Hardening issue, part A: a period that overflows the loop's deadline is refused when
    // the arguments are parsed, naming the allowed range (one year at most).
    expect_refused(p, &["src", "dst", "--interval", "18446744073709551615"], 2, "1..=31536000");
    expect_refused(p, &["src", "dst", "--interval", "31536001"], 2, "1..=31536000");
    expect_refused(p, &["src", "dst", "--interval", "99999999999999999999999"], 2, "1..=31536000");
    expect_refused(p, &["src", "dst", "--max-delete", "101"], 2, "--max-delete");
    expect_refused(p, &["src", "dst", "--log=dst/x.log"], 2, "may not lie inside BACKUP");
    expect_refused(p, &["src"], 2, "BACKUP");
    assert_eq!(listing(p), vec!["a-file", "other", "src", "src-alias"]);
}

#[test]
fn an_interval_that_overflows_a_deadline_is_refused_before_the_first_pass() {
    // Hardening issue, part A: `--interval 18446744073709551615` used to run one pass and
    // then panic (exit 101) computing `now + interval`. It is bad input (SPEC section 5):
    // exit 2, one line naming the allowed range, nothing created.
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    file(p, b"src/a", b"1", 0o644, T);
    for versioned in [false, true] {
        let mut c = cmd("oneway", p);
        c.args(["src", "dst", "--interval", "18446744073709551615", "--log", "periodic.log"]);
        if versioned {
            c.arg("--versioned");
        }
        let child = c.stderr(std::process::Stdio::piped()).spawn().unwrap();
        let out = exit_within(child, 20);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "versioned {versioned}: {stderr}");
        assert!(stderr.contains("--interval") && stderr.contains("1..=31536000"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!p.join("dst").exists() && !p.join("periodic.log").exists(), "nothing may be created");
    }
    // The largest allowed period is accepted.
    let out = run({
        let mut c = cmd("oneway", p);
        c.args(["src", "dst", "--interval", "31536000", "--once"]);
        c
    });
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn empty_source_with_a_full_backup_aborts_with_3() {
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    fs::create_dir(p.join("src")).unwrap();
    file(p, b"dst/precious", b"only copy", 0o644, T);
    let before = stamps(&p.join("dst"));
    let out = run({
        let mut c = cmd("oneway", p);
        c.args(["src", "dst", "--once"]);
        c
    });
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is empty or missing"));
    assert_eq!(stamps(&p.join("dst")), before);
}

#[test]
fn a_missing_source_exits_3_when_the_backup_holds_files_and_2_when_nothing_is_protected() {
    // Hardening issue, part B (SPEC section 5): a SOURCE that is missing at start-up while
    // BACKUP holds files is the empty-source rail (an unmounted disk): exit 3, like a SOURCE
    // that vanishes between passes, and even in periodic mode or with --force (a missing
    // SOURCE is never "really emptied"). With nothing to protect it is a mistyped path: exit 2.
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    file(p, b"dst/precious", b"only copy", 0o644, T);
    fs::create_dir(p.join("empty-dst")).unwrap();
    file(p, b"temp-only/.synccore-tmp-leftover", b"x", 0o644, T);
    file(p, b"a-file", b"x", 0o644, T);
    let before = snapshot(p);
    let oneway = |args: &[&str]| {
        let mut c = cmd("oneway", p);
        c.args(args).stderr(std::process::Stdio::piped());
        exit_within(c.spawn().unwrap(), 20)
    };
    for extra in [&["--once"][..], &["--once", "--dry-run"], &["--once", "--force"], &["--interval", "1"]] {
        let out = oneway(&[&["missing", "dst"][..], extra].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{extra:?}: {stderr}");
        assert!(
            stderr.contains("missing\" is empty or missing while") && stderr.contains("dst\""),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
    }
    for (backup, needle) in [
        ("dst", "not a directory"), // SOURCE is a file: a usage error whatever BACKUP holds
        ("new-dst", "does not exist"),
        ("empty-dst", "does not exist"),
        ("temp-only", "does not exist"), // our leftovers are not the user's files
    ] {
        let source = if backup == "dst" { "a-file" } else { "missing" };
        let out = oneway(&[source, backup, "--once"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{source} {backup}: {stderr}");
        assert!(stderr.contains(needle), "{source} {backup}: {stderr}");
    }
    assert_eq!(snapshot(p), before, "nothing may change on disk");
}

#[test]
fn a_source_that_vanishes_between_passes_aborts_that_pass_and_the_loop_goes_on() {
    // SPEC section 5 and hardening issue, part B, periodic mode: the pass is aborted with the
    // rail's message (what exit 3 means), BACKUP is untouched, and the next passes resume once
    // SOURCE is back.
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    file(p, b"src/a", b"1", 0o644, T);
    let mut child = cmd("oneway", p).args(["src", "dst", "--interval", "1"]).spawn_guarded();
    assert!(wait_for(Duration::from_secs(20), || p.join("dst/a").exists()));
    let backup = stamps(&p.join("dst"));
    fs::rename(p.join("src"), p.join("src.unmounted")).unwrap();
    let log = || fs::read_to_string(p.join("oneway.log")).unwrap_or_default();
    assert!(
        wait_for(Duration::from_secs(20), || log().contains("pass aborted: ")
            && log().contains("is empty or missing")),
        "{}",
        log()
    );
    assert_eq!(child.try_wait().unwrap(), None, "the loop goes on");
    assert_eq!(stamps(&p.join("dst")), backup, "BACKUP untouched while SOURCE is gone");
    fs::rename(p.join("src.unmounted"), p.join("src")).unwrap();
    file(p, b"src/b", b"2", 0o644, T);
    assert!(wait_for(Duration::from_secs(20), || p.join("dst/b").exists()), "{}", log());
    e2e::signal(child.id(), Signal::TERM);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(fs::read(p.join("dst/a")).unwrap(), b"1");
}

#[test]
fn deleting_more_than_max_delete_aborts_unless_forced() {
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    for i in 0..20 {
        file(p, format!("src/f{i:02}").as_bytes(), b"x", 0o644, T);
    }
    let oneway = |extra: &[&str]| {
        let mut c = cmd("oneway", p);
        c.args(["src", "dst", "--once"]).args(extra);
        run(c)
    };
    assert_eq!(oneway(&[]).status.code(), Some(0));
    for i in 0..11 {
        fs::remove_file(p.join(format!("src/f{i:02}"))).unwrap();
    }
    let before = stamps(&p.join("dst"));
    let out = oneway(&[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("would delete 11 of 20 files"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stamps(&p.join("dst")), before);
    // A higher threshold lets it through, and so does --force.
    assert_eq!(oneway(&["--max-delete", "60", "--dry-run"]).status.code(), Some(0));
    assert_eq!(oneway(&["--force"]).status.code(), Some(0));
    assert_eq!(fs::read_dir(p.join("dst")).unwrap().count(), 9);
}

#[test]
fn sigint_in_periodic_mode_stops_cleanly_with_a_summary() {
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    file(p, b"src/a", b"1", 0o644, T);
    let mut child = cmd("oneway", p).args(["src", "dst", "--interval", "1"]).spawn_guarded();
    assert!(wait_for(Duration::from_secs(20), || p.join("dst/a").exists()));
    file(p, b"src/b", b"2", 0o644, T);
    assert!(
        wait_for(Duration::from_secs(20), || p.join("dst/b").exists()),
        "periodic passes pick up changes"
    );
    let sent = Instant::now();
    e2e::signal(child.id(), Signal::INT);
    let status = child.wait().unwrap();
    assert!(sent.elapsed() < Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    let log = fs::read_to_string(p.join("oneway.log")).unwrap();
    assert!(log.contains("Total number of operations: 2"), "{log}");
    assert!(log.contains("summary: "), "{log}");
}

#[test]
fn second_process_on_the_same_backup_is_refused_until_the_first_dies() {
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    file(p, b"src/a", b"1", 0o644, T);
    let mut first = cmd("oneway", p).args(["src", "dst", "--interval", "60"]).spawn_guarded();
    assert!(wait_for(Duration::from_secs(20), || p.join("dst/a").exists()));
    let second = run({
        let mut c = cmd("oneway", p);
        c.args(["./src/", "dst/", "--once", "--log", "second.log"]);
        c
    });
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", first.id())), "names the holder: {stderr}");
    first.kill().unwrap();
    first.wait().unwrap();
    let third = run({
        let mut c = cmd("oneway", p);
        c.args(["src", "dst", "--once"]);
        c
    });
    assert_eq!(third.status.code(), Some(0), "a killed holder never blocks");
}

#[test]
fn deleted_log_file_is_recreated_while_running() {
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    file(p, b"src/a", b"1", 0o644, T);
    let mut child = cmd("oneway", p).args(["src", "dst", "--interval", "1"]).spawn_guarded();
    assert!(wait_for(Duration::from_secs(20), || p.join("dst/a").exists()));
    fs::remove_file(p.join("oneway.log")).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    file(p, b"src/b", b"2", 0o644, T);
    let recreated = wait_for(Duration::from_secs(20), || {
        fs::read_to_string(p.join("oneway.log")).is_ok_and(|l| l.contains("copy \"b\""))
    });
    e2e::signal(child.id(), Signal::TERM);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(recreated);
}

/// Runs `oneway` as an unprivileged user (tests run as root here, and root reads everything).
/// Returns `None`, with the reason printed, where that is not possible.
fn oneway_unprivileged(p: &Path, args: &[&str]) -> Option<std::process::Output> {
    let root = rustix::process::getuid().is_root();
    let mut c = if root {
        if !Path::new("/usr/bin/setpriv").exists() {
            eprintln!("skipped: running as root and setpriv is missing, so no directory can be unreadable");
            return None;
        }
        let mut c = std::process::Command::new("/usr/bin/setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(e2e::bin("oneway"));
        c.current_dir(p);
        c
    } else {
        cmd("oneway", p)
    };
    c.args(args);
    Some(run(c))
}

fn chown_tree(path: &Path) {
    use rustix::fs::{Gid, Uid, chown};
    if !rustix::process::getuid().is_root() {
        return;
    }
    let nobody = (Some(Uid::from_raw(65534)), Some(Gid::from_raw(65534)));
    chown(path, nobody.0, nobody.1).unwrap();
    if fs::symlink_metadata(path).unwrap().is_dir() {
        for d in fs::read_dir(path).unwrap() {
            chown_tree(&d.unwrap().path());
        }
    }
}

#[test]
fn nothing_under_an_unreadable_source_directory_is_deleted() {
    use std::os::unix::fs::PermissionsExt;
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
    file(p, b"src/locked/inner", b"precious", 0o644, T);
    file(p, b"src/open/a", b"a", 0o644, T);
    chown_tree(p);
    let Some(first) = oneway_unprivileged(p, &["src", "dst", "--once"]) else { return };
    assert_eq!(first.status.code(), Some(0), "{}", String::from_utf8_lossy(&first.stderr));
    fs::set_permissions(p.join("src/locked"), fs::Permissions::from_mode(0o000)).unwrap();
    file(p, b"src/open/b", b"b", 0o644, T);
    chown_tree(&p.join("src/open"));
    let second = oneway_unprivileged(p, &["src", "dst", "--once"]).unwrap();
    fs::set_permissions(p.join("src/locked"), fs::Permissions::from_mode(0o755)).unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "some entries failed: {stderr}");
    assert!(stderr.contains("cannot list directory") && stderr.contains("locked"), "{stderr}");
    assert_eq!(fs::read(p.join("dst/locked/inner")).unwrap(), b"precious");
    assert_eq!(fs::read(p.join("dst/open/b")).unwrap(), b"b", "the rest of the pass went on");
}

#[test]
fn a_console_that_went_away_does_not_stop_a_pass() {
    // A closed pipe on stderr (`oneway ... 2>&1 | head -1`, or a supervising twoway that was
    // killed) must not panic the program: the log file still gets every line.
    let sb = tempfile::tempdir().unwrap();
    for i in 0..50 {
        file(&sb.path().join("src"), format!("f{i:02}").as_bytes(), b"x", 0o644, T);
    }
    let mut c = cmd("oneway", sb.path());
    c.args(["src", "dst", "--once", "--log", "pipe.log"]).stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    let log = fs::read_to_string(sb.path().join("pipe.log")).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("Total number of operations: 50"), "{log}");
    assert_eq!(fs::read_dir(sb.path().join("dst")).unwrap().count(), 50);
}
