//! The real `oneway` binary with a remote store on one side (issue 18), against the servers of
//! `e2e::servers` (moto's S3 emulator, OpenSSH's sftp), started and stopped by each test:
//! local -> remote -> local round trips exact in bytes, modes, nanosecond mtimes, symlinks,
//! empty directories and non-UTF-8 names; a no-change pass costs the head and the manifest
//! (3 requests, checked against the emulator's own log); versions `_1` and `_0` brought back
//! by their addresses; a kill -9 in the middle of an upload, or just before the head switch,
//! leaves the previous version whole and the next pass converges; a store stopped in the
//! middle of a pass is one line naming the URL (never the secret) and exit 1, and the periodic
//! loop retries; bad URLs, options and hosts are one clear line.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use e2e::servers::{MOTO_SECRET, Moto, Sshd};
use e2e::{Background, assert_same_tree, cmd, file, has_fault_points, run, wait_stopped};
use sha2::Digest as _;

use crate::remote::{contents, copy_tree, moto_env, sample, second_version};

/// `oneway ARGS --once` in `cwd` with `env`.
fn oneway(cwd: &Path, env: &[(&str, OsString)], args: &[&str]) -> Command {
    let mut c = cmd("oneway", cwd);
    c.args(args).args(["--once", "--log", "oneway.log"]);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Runs it; fails the test unless it exits 0. Returns the last `--json` summary (if asked).
fn ok(c: Command) -> Output {
    let out = run(c);
    assert!(out.status.success(), "oneway failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    out
}

/// The `--json` summary event of a pass's output.
fn summary(out: &Output) -> serde_json::Value {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "summary")
        .unwrap_or_else(|| panic!("no summary in {}", String::from_utf8_lossy(&out.stdout)))
}

fn error_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(" ERROR "))
        .map(str::to_owned)
        .collect()
}

/// `<base name>-<8 hex of SHA-256 of the canonical path>`: the versions name of SOURCE.
fn version_name(src: &Path) -> String {
    let src = src.canonicalize().unwrap();
    let hash = hex(&sha2::Sha256::digest(src.as_os_str().as_encoded_bytes()));
    format!("{}-{}", src.file_name().unwrap().to_str().unwrap(), &hash[..8])
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// The whole round trip on one store: push, pull into a new directory, a no-change push, a
/// change pushed and pulled into the existing directory (which also loses a stray file).
fn round_trip(t: &Path, env: &[(&str, OsString)], url: &str) {
    let src = t.join("src");
    sample(&src, 3 << 20);
    let first = ok(oneway(t, env, &["src", url, "--json"]));
    assert_eq!(summary(&first)["uploaded_objects"], contents(&src) as u64);
    ok(oneway(t, env, &[url, "back"]));
    assert_same_tree(&src, &t.join("back"));

    let same = ok(oneway(t, env, &["src", url, "--json"]));
    let s = summary(&same);
    assert_eq!((s["requests"]["total"].as_u64(), s["committed"].as_bool()), (Some(3), Some(false)), "{s}");
    // Nothing to bring back either: the same three requests, no download.
    let again = ok(oneway(t, env, &[url, "back", "--json"]));
    assert_eq!(summary(&again)["requests"]["total"], 3);

    second_version(&src, 1 << 20);
    let second = ok(oneway(t, env, &["src", url, "--json"]));
    let s = summary(&second);
    // The changed a.txt and the new big file; run.sh's content is collected.
    assert_eq!((s["uploaded_objects"].as_u64(), s["gc_objects"].as_u64()), (Some(2), Some(1)), "{s}");
    file(&t.join("back"), b"stray", b"not in the backup", 0o644, (1_700_000_000, 0));
    ok(oneway(t, env, &[url, "back"]));
    assert_same_tree(&src, &t.join("back"));

    // A directory renamed: a move in the plan, nothing read or uploaded; the pull renames too.
    std::fs::rename(src.join("docs"), src.join("papers")).unwrap();
    let moved = ok(oneway(t, env, &["src", url, "--json"]));
    let s = summary(&moved);
    assert_eq!((s["uploaded_objects"].as_u64(), s["move"].as_u64()), (Some(0), Some(1)), "{s}");
    let pulled = ok(oneway(t, env, &[url, "back", "--json"]));
    let s = summary(&pulled);
    assert_eq!((s["move"].as_u64(), s["copy"].as_u64()), (Some(1), Some(0)), "{s}");
    assert_same_tree(&src, &t.join("back"));
}

#[test]
fn s3_round_trip_is_exact_and_a_no_change_pass_is_three_requests() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("oneway");
    let env = moto_env(&moto);
    let t = tempfile::tempdir().unwrap();
    round_trip(t.path(), &env, "s3://oneway/laptop/home");
    // The emulator's own count of a no-change pass agrees with ours.
    let before = moto.requests();
    ok(oneway(t.path(), &env, &["src", "s3://oneway/laptop/home"]));
    assert_eq!(moto.requests() - before, 3, "{:?}", &moto.request_lines()[before..]);
}

#[test]
fn sftp_round_trip_is_exact() {
    let Some(sshd) = Sshd::start() else { return };
    let env = sshd.client_env();
    let t = tempfile::tempdir().unwrap();
    round_trip(t.path(), &env, &sshd.url("backup"));
    let root = sshd.local_path("backup");
    assert!(root.join("synccore-head.json").is_file());
    assert_eq!(std::fs::read_dir(root.join("tmp")).map_or(0, Iterator::count), 0, "no temporary left");
}

#[test]
fn a_dry_run_push_writes_nothing_and_prints_the_plan() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("dry");
    let env = moto_env(&moto);
    let t = tempfile::tempdir().unwrap();
    sample(&t.path().join("src"), 1000);
    let before = moto.requests();
    let out = ok(oneway(t.path(), &env, &["src", "s3://dry/p", "--dry-run"]));
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(plan.contains("copy \"a.txt\"") && plan.contains("link \"to-a\""), "{plan}");
    let lines = moto.request_lines();
    assert!(lines[before..].iter().all(|l| l.starts_with("GET") || l.starts_with("HEAD")), "{lines:?}");
    // A pull's dry run lists what it would bring back and creates nothing.
    ok(oneway(t.path(), &env, &["src", "s3://dry/p"]));
    let out = ok(oneway(t.path(), &env, &["s3://dry/p", "back", "--dry-run"]));
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(plan.contains("copy \"docs/deep/big.dat\""), "{plan}");
    assert!(!t.path().join("back").exists());
}

#[test]
fn s3_versions_are_brought_back_by_their_address() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("vers");
    let env = moto_env(&moto);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    sample(&src, 1000);
    ok(oneway(t.path(), &env, &["src", "s3://vers/root", "--versioned"]));
    copy_tree(&src, &t.path().join("v1"));
    // Nothing changed: no new version (the previous one is not pushed out).
    let same = ok(oneway(t.path(), &env, &["src", "s3://vers/root", "--versioned", "--json"]));
    assert_eq!(summary(&same)["committed"], false);
    second_version(&src, 1000);
    let second = ok(oneway(t.path(), &env, &["src", "s3://vers/root", "--versioned", "--json"]));
    assert_eq!(summary(&second)["gc_objects"], 0, "the previous version keeps its objects");
    let base = format!("s3://vers/root/__versions__/{}", version_name(&src));
    ok(oneway(t.path(), &env, &[&format!("{base}/_1"), "latest"]));
    assert_same_tree(&src, &t.path().join("latest"));
    ok(oneway(t.path(), &env, &[&format!("{base}/_0"), "previous"]));
    assert_same_tree(&t.path().join("v1"), &t.path().join("previous"));
    // An emptied SOURCE (an unmounted disk) never pushes the versions out, even with --force.
    std::fs::remove_dir_all(&src).unwrap();
    std::fs::create_dir(&src).unwrap();
    let out = run(oneway(t.path(), &env, &["src", "s3://vers/root", "--versioned", "--force"]));
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    ok(oneway(t.path(), &env, &[&format!("{base}/_0"), "previous"]));
    assert_same_tree(&t.path().join("v1"), &t.path().join("previous"));
    // A URL with no backup: clear, exit 2.
    let out = run(oneway(t.path(), &env, &["s3://vers/nothing-here", "x"]));
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(error_lines(&out)[0].contains("no backup here"), "{:?}", error_lines(&out));
}

/// Starts `oneway SRC URL --once` stopped at fault point `point`.
fn stopped_at(t: &Path, env: &[(&str, OsString)], url: &str, point: &str) -> std::process::Child {
    let mut c = oneway(t, env, &["src", url]);
    c.env("SYNCCORE_FAULT", format!("stop:{point}")).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    assert!(wait_stopped(child.id(), Duration::from_secs(120)), "oneway never reached {point}");
    child
}

#[test]
fn s3_kill_9_mid_upload_or_before_the_head_switch_keeps_the_previous_version() {
    if !has_fault_points() {
        eprintln!("skipped: the binaries under test are not debug builds (no fault points)");
        return;
    }
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("kill");
    let env = moto_env(&moto);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    sample(&src, 1000);
    let url = "s3://kill/p";
    ok(oneway(t.path(), &env, &["src", url]));
    copy_tree(&src, &t.path().join("v1"));
    // 20 MiB: a multipart upload with a part on the server when oneway dies.
    second_version(&src, 20 << 20);
    for point in ["remote-mid-upload", "remote-before-head"] {
        let child = stopped_at(t.path(), &env, url, point);
        e2e::signal(child.id(), rustix::process::Signal::KILL);
        assert!(!e2e::exit_within(child, 60).status.success());
        let back = t.path().join(format!("after-{point}"));
        ok(oneway(t.path(), &env, &[url, back.to_str().unwrap()]));
        assert_same_tree(&t.path().join("v1"), &back);
    }
    // The next pass converges, and what the killed passes left is collected.
    ok(oneway(t.path(), &env, &["src", url]));
    ok(oneway(t.path(), &env, &[url, "converged"]));
    assert_same_tree(&src, &t.path().join("converged"));
}

#[test]
fn sftp_kill_9_mid_upload_keeps_the_previous_version() {
    if !has_fault_points() {
        eprintln!("skipped: the binaries under test are not debug builds (no fault points)");
        return;
    }
    let Some(sshd) = Sshd::start() else { return };
    let env = sshd.client_env();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    sample(&src, 1000);
    let url = sshd.url("crash");
    ok(oneway(t.path(), &env, &["src", &url]));
    copy_tree(&src, &t.path().join("v1"));
    second_version(&src, 20 << 20);
    let child = stopped_at(t.path(), &env, &url, "remote-mid-upload");
    e2e::signal(child.id(), rustix::process::Signal::KILL);
    assert!(!e2e::exit_within(child, 60).status.success());
    ok(oneway(t.path(), &env, &[&url, "after-kill"]));
    assert_same_tree(&t.path().join("v1"), &t.path().join("after-kill"));
    ok(oneway(t.path(), &env, &["src", &url]));
    ok(oneway(t.path(), &env, &[&url, "converged"]));
    assert_same_tree(&src, &t.path().join("converged"));
}

#[test]
fn s3_emulator_stopped_mid_pass_is_one_line_and_the_loop_retries() {
    if !has_fault_points() {
        eprintln!("skipped: the binaries under test are not debug builds (no fault points)");
        return;
    }
    let Some(mut moto) = Moto::start() else { return };
    moto.create_bucket("gone");
    let env = moto_env(&moto);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    sample(&src, 1000);
    let url = "s3://gone/p";
    ok(oneway(t.path(), &env, &["src", url]));
    second_version(&src, 20 << 20);
    let child = stopped_at(t.path(), &env, url, "remote-mid-upload");
    moto.kill();
    e2e::signal(child.id(), rustix::process::Signal::CONT);
    let out = e2e::exit_within(child, 180);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains(url) && !err.contains(MOTO_SECRET), "{err}");

    // The periodic loop: each pass fails with the same kind of line, until the store is back.
    let mut c = cmd("oneway", t.path());
    c.args(["src", url, "-i", "1", "--log", "loop.log"]);
    for (k, v) in &env {
        c.env(k, v);
    }
    let mut looping = Background::spawn(c);
    let log = || std::fs::read_to_string(t.path().join("loop.log")).unwrap_or_default();
    e2e::servers::eventually("two failed passes", || log().matches("pass aborted").count() >= 2);
    moto.restart();
    moto.create_bucket("gone");
    e2e::servers::eventually("a pass after the store came back", || log().contains("new version committed"));
    e2e::signal(looping.id(), rustix::process::Signal::TERM);
    let status = looping.wait().unwrap();
    assert!(status.success(), "{status}: {}", log());
    assert!(!log().contains(MOTO_SECRET));
}

#[test]
fn refused_credentials_are_one_line_naming_the_url_and_nothing_changes() {
    let Some(moto) = Moto::start_refusing_credentials() else { return };
    moto.create_bucket("locked");
    let env = moto_env(&moto);
    let t = tempfile::tempdir().unwrap();
    sample(&t.path().join("src"), 10);
    let url = "s3://locked/p";
    for args in [&["src", url][..], &[url, "back"][..]] {
        let out = run(oneway(t.path(), &env, args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        let errors = error_lines(&out);
        assert_eq!(errors.len(), 1, "{args:?}: {err}");
        assert!(errors[0].contains(url) && errors[0].contains("access denied"), "{err}");
        assert!(!err.contains(MOTO_SECRET), "{err}");
    }
    assert!(!t.path().join("back").exists(), "a refused pull creates nothing");
    let log = std::fs::read_to_string(t.path().join("oneway.log")).unwrap();
    assert!(!log.contains(MOTO_SECRET));
}

#[test]
fn bad_urls_options_and_hosts_are_one_clear_line() {
    let t = tempfile::tempdir().unwrap();
    sample(&t.path().join("src"), 10);
    let keys: Vec<(&str, OsString)> = vec![
        ("AWS_ACCESS_KEY_ID", "AKIAE2E".into()),
        ("AWS_SECRET_ACCESS_KEY", MOTO_SECRET.into()),
        // Nothing listens on port 9 of this machine.
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9".into()),
    ];
    let cases: &[(&[&str], i32, &str)] = &[
        (&["src", "s3://Bad_Bucket/p"], 2, "not a valid bucket name"),
        (&["src", "s3://bkt/p", "--remote-option", "colour=red"], 2, "unknown remote option \"colour\""),
        (&["src", "s3://bkt/p", "--remote-option", "secret_access_key"], 2, "KEY=VALUE"),
        (&["s3://bkt/a", "s3://bkt/b"], 2, "both remote"),
        (&["src", "dst", "--remote-option", "region=x"], 2, "needs a remote SOURCE or BACKUP"),
        (&["src", "sftp://ann:hunter2@host/x"], 2, "passwords in sftp URLs are not supported"),
        (&["s3://bkt/p", "dst", "--versioned"], 2, "--versioned needs a local SOURCE"),
        (&["src", "s3://bkt/p"], 1, "cannot read the head of s3://bkt/p"),
    ];
    for (args, code, says) in cases {
        let out = run(oneway(t.path(), &keys, args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains(MOTO_SECRET) && !err.contains("hunter2"), "{args:?}: {err}");
        let problems = err.lines().filter(|l| l.contains("ERROR") || l.contains("error:")).count();
        assert_eq!(problems, 1, "{args:?}: {err}");
    }
}

#[test]
fn sftp_unreachable_host_is_one_line_naming_the_url() {
    let Some(sshd) = Sshd::start() else { return };
    let env = sshd.client_env();
    let t = tempfile::tempdir().unwrap();
    sample(&t.path().join("src"), 10);
    // A port nothing listens on.
    let url = sshd.url("x").replace(&format!(":{}/", sshd.port()), ":9/");
    let out = run(oneway(t.path(), &env, &["src", &url]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let errors = error_lines(&out);
    assert!(errors.len() == 1 && errors[0].contains(&url), "{err}");
}

#[test]
fn a_pull_leaves_what_the_local_directory_ignores_alone() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("ign");
    let env = moto_env(&moto);
    let t = tempfile::tempdir().unwrap();
    sample(&t.path().join("src"), 100);
    ok(oneway(t.path(), &env, &["src", "s3://ign/p"]));
    let back = t.path().join("back");
    file(&back, b".syncignore", b"cache/\n", 0o644, (1_700_000_000, 0));
    file(&back, b"cache/big.o", b"a build product nobody backed up", 0o644, (1_700_000_000, 0));
    file(&back, b"stray", b"not in the backup: deleted", 0o644, (1_700_000_000, 0));
    ok(oneway(t.path(), &env, &["s3://ign/p", "back"]));
    assert!(back.join("cache/big.o").is_file());
    assert!(!back.join("stray").exists());
    assert_eq!(std::fs::read(back.join("a.txt")).unwrap(), b"hello\n");
}

#[test]
fn a_restore_killed_before_its_renames_leaves_no_partial_file_and_converges() {
    if !has_fault_points() {
        eprintln!("skipped: the binaries under test are not debug builds (no fault points)");
        return;
    }
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("restore");
    let env = moto_env(&moto);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    sample(&src, 3 << 20);
    ok(oneway(t.path(), &env, &["src", "s3://restore/p"]));
    // Downloaded into temporaries and made durable, stopped before they are renamed into place.
    let mut c = oneway(t.path(), &env, &["s3://restore/p", "back"]);
    c.env("SYNCCORE_FAULT", "stop:before-commit").stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    assert!(wait_stopped(child.id(), Duration::from_secs(120)), "the pull never reached its commit");
    e2e::signal(child.id(), rustix::process::Signal::KILL);
    assert!(!e2e::exit_within(child, 60).status.success());
    // No file of the backup is there half-written: each is absent or whole.
    let want = e2e::snapshot(&src);
    for (path, node) in e2e::snapshot(&t.path().join("back")) {
        if let e2e::Node::File { .. } = node
            && !path.starts_with(b".synccore-tmp-")
            && !path.windows(15).any(|w| w == b"/.synccore-tmp-")
        {
            assert_eq!(Some(&node), want.get(&path), "{}", String::from_utf8_lossy(&path));
        }
    }
    ok(oneway(t.path(), &env, &["s3://restore/p", "back"]));
    assert_same_tree(&src, &t.path().join("back"));
    assert!(e2e::temporaries(&t.path().join("back")).is_empty());
}

#[test]
fn the_max_delete_rail_guards_a_remote_backup_and_a_restore() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("rails");
    let env = moto_env(&moto);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    for i in 0..20 {
        file(&src, format!("f{i:02}").as_bytes(), format!("file {i}").as_bytes(), 0o644, (1_700_000_000, 0));
    }
    ok(oneway(t.path(), &env, &["src", "s3://rails/p"]));
    ok(oneway(t.path(), &env, &["s3://rails/p", "back"]));
    for i in 0..15 {
        std::fs::remove_file(src.join(format!("f{i:02}"))).unwrap();
    }
    let out = run(oneway(t.path(), &env, &["src", "s3://rails/p"]));
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    // Nothing was committed: the backup still has all 20, and a restore brings them back.
    for i in 0..15 {
        file(&t.path().join("back"), format!("extra{i:02}").as_bytes(), b"x", 0o644, (1_700_000_000, 0));
    }
    ok(oneway(t.path(), &env, &["s3://rails/p", "restored"]));
    assert_eq!(std::fs::read_dir(t.path().join("restored")).unwrap().count(), 20);
    // A restore that would delete more than --max-delete of the directory's files is refused.
    let out = run(oneway(t.path(), &env, &["s3://rails/p", "back", "--max-delete", "10"]));
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    ok(oneway(t.path(), &env, &["src", "s3://rails/p", "--force"]));
    ok(oneway(t.path(), &env, &["s3://rails/p", "restored", "--force"]));
    assert_same_tree(&src, &t.path().join("restored"));
}
