//! Remote stores (issue 18) against real servers on 127.0.0.1, started and stopped by each
//! test: the S3 emulator (moto) and OpenSSH's sftp. `remote_probe` (tests/src/bin) drives
//! `syncremote` from a process of its own, as `oneway` does: push a tree (upload what is
//! missing, commit a manifest, switch the head, collect garbage) and pull a version back.
//! Checked: byte, mode, mtime and symlink exact round trips; a no-change pass costs the head
//! and the manifest only; of two writers of one head one loses cleanly; a kill -9, a dropped
//! connection or a stopped emulator in the middle of an upload leaves the previous version
//! and everything it references intact, and the next push converges.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use e2e::servers::{MOTO_SECRET, Moto, Sshd};
use e2e::{Node, Rng, assert_same_tree, dir, file, link, set_link_mtime, snapshot, wait_stopped};

/// The probe, with an environment (the AWS variables, or the ssh wrapper's PATH).
fn probe(env: &[(&str, OsString)], args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_remote_probe"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Runs the probe; on success returns its JSON figures.
fn ok(mut c: Command) -> serde_json::Value {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "remote_probe failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub(crate) fn moto_env(moto: &Moto) -> Vec<(&'static str, OsString)> {
    moto.client_env().into_iter().map(|(k, v)| (k, v.into())).collect()
}

/// A tree with every kind the manifest must carry: files (an empty one, one of several
/// pieces), modes, nanosecond mtimes, a non-UTF-8 name, a symlink, empty directories.
pub(crate) fn sample(root: &Path, big: usize) {
    let mut rng = Rng::new(18);
    file(root, b"a.txt", b"hello\n", 0o644, (1_700_000_000, 123_456_789));
    file(root, b"empty", b"", 0o600, (1_600_000_000, 1));
    file(root, b"run.sh", b"#!/bin/sh\necho hi\n", 0o755, (1_700_000_001, 0));
    file(root, b"docs/notes \xff\xfe.bin", &rng.bytes(4096), 0o640, (1_700_000_002, 999_999_999));
    file(root, b"docs/deep/big.dat", &rng.bytes(big), 0o644, (1_700_000_003, 5));
    file(root, b"docs/copy-of-a.txt", b"hello\n", 0o644, (1_700_000_004, 0));
    dir(root, b"empty-dir", 0o700);
    link(root, b"to-a", b"a.txt");
    link(root, b"docs/dangling", b"../nowhere");
    set_link_mtime(&root.join("to-a"), (1_700_000_005, 42));
    for (d, t) in
        [(&b"docs/deep"[..], 1_700_000_010), (b"docs", 1_700_000_011), (b"empty-dir", 1_700_000_012)]
    {
        e2e::set_mtime(&e2e::at(root, d), (t, 7));
    }
}

/// The distinct file contents of a tree: the objects a store of it must hold.
pub(crate) fn contents(root: &Path) -> usize {
    let set: BTreeSet<Vec<u8>> = snapshot(root)
        .into_values()
        .filter_map(|n| if let Node::File { content, .. } = n { Some(content) } else { None })
        .collect();
    set.len()
}

fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// Pulls `url` into a fresh directory and checks it equals `expect` exactly (every entry
/// below the root: content, mode, nanosecond mtime, symlink target).
fn assert_pulls(env: &[(&str, OsString)], url: &str, expect: &Path, scratch: &Path, name: &str) {
    let out = scratch.join(name);
    ok(probe(env, &["pull", url, out.to_str().unwrap()]));
    assert_same_tree(expect, &out);
}

/// `cp -a`.
pub(crate) fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(st.success());
}

/// Starts a push that stops itself after `bytes` bytes of upload; returns it once stopped.
fn stopped_push(env: &[(&str, OsString)], url: &str, src: &Path, bytes: u64) -> std::process::Child {
    let mut c = probe(env, &["push", url, src.to_str().unwrap(), "--stop-after-bytes", &bytes.to_string()]);
    let child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    assert!(
        wait_stopped(child.id(), Duration::from_secs(120)),
        "the push never reached the middle of its upload"
    );
    child
}

fn finish(child: std::process::Child) -> Output {
    e2e::exit_within(child, 180)
}

/// The second version of [`sample`]: a file changed, one added, one removed.
pub(crate) fn second_version(src: &Path, big: usize) {
    let mut rng = Rng::new(99);
    file(src, b"a.txt", b"hello, again\n", 0o644, (1_700_000_100, 1));
    file(src, b"docs/new-big.dat", &rng.bytes(big), 0o644, (1_700_000_101, 2));
    std::fs::remove_file(src.join("run.sh")).unwrap();
}

#[test]
fn s3_round_trip_no_change_pass_and_garbage() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("backups");
    let env = moto_env(&moto);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    sample(&src, 3 << 20);
    let url = "s3://backups/laptop/home";
    let first = ok(probe(&env, &["push", url, src.to_str().unwrap()]));
    assert_eq!(num(&first, "uploaded"), contents(&src) as u64, "{first}");
    assert_pulls(&env, url, &src, t.path(), "pull1");

    // A pass with nothing changed reads the head (2 requests) and the manifest (1): nothing
    // per file, no listing, as the emulator's own log confirms.
    let before = moto.requests();
    let same = ok(probe(&env, &["push", url, src.to_str().unwrap()]));
    assert_eq!((same["changed"].as_bool(), num(&same, "requests")), (Some(false), 3), "{same}");
    assert_eq!(moto.requests() - before, 3, "{:?}", &moto.request_lines()[before..]);

    // A change uploads only what is new; what the old version alone referenced is collected.
    second_version(&src, 1 << 20);
    let before = moto.requests();
    let second = ok(probe(&env, &["push", url, src.to_str().unwrap()]));
    assert_eq!(num(&second, "uploaded"), 2, "{second}");
    // run.sh's content goes; the old a.txt's lives on in docs/copy-of-a.txt.
    assert_eq!(num(&second, "gc_objects"), 1, "{second}");
    assert_eq!(
        num(&second, "requests") as usize,
        moto.requests() - before,
        "{:?}",
        &moto.request_lines()[before..]
    );
    assert_pulls(&env, url, &src, t.path(), "pull2");
    let objects = ok(probe(&env, &["objects", url]));
    assert_eq!(num(&objects, "objects"), contents(&src) as u64);
    let caps = ok(probe(&env, &["caps", url]));
    assert_eq!((caps["can_rename"].as_bool(), caps["write_if_match"].as_bool()), (Some(false), Some(true)));
    assert_eq!(caps["hard_links"].as_bool(), Some(false));
}

#[test]
fn s3_versions_keep_the_previous_one() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("vers");
    let env = moto_env(&moto);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    sample(&src, 1000);
    let url = "s3://vers/__versions__/src-00000000";
    ok(probe(&env, &["push", url, src.to_str().unwrap(), "--versioned"]));
    let v1 = t.path().join("v1");
    copy_tree(&src, &v1);
    second_version(&src, 1000);
    let second = ok(probe(&env, &["push", url, src.to_str().unwrap(), "--versioned"]));
    assert_eq!(num(&second, "gc_objects"), 0, "the previous version keeps its objects: {second}");
    assert_pulls(&env, url, &src, t.path(), "latest");
    let prev = t.path().join("prev");
    ok(probe(&env, &["pull", url, prev.to_str().unwrap(), "--previous"]));
    assert_same_tree(&v1, &prev);
}

#[test]
fn s3_two_writers_of_one_head_one_loses_cleanly() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("race");
    let env = moto_env(&moto);
    // First on an empty store (create-only head), then on an existing head (its ETag).
    for _ in 0..2 {
        let r = ok(probe(&env, &["race", "s3://race/p"]));
        assert_eq!(r["current"], "from-a", "{r}");
        let loser = r["loser"].as_str().unwrap();
        assert!(loser.starts_with("s3://race/p: changed by another writer"), "{loser}");
    }
}

#[test]
fn s3_kill_mid_upload_keeps_the_previous_version() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("kill");
    let env = moto_env(&moto);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    sample(&src, 1000);
    let url = "s3://kill/p";
    ok(probe(&env, &["push", url, src.to_str().unwrap()]));
    let v1 = t.path().join("v1");
    copy_tree(&src, &v1);
    // 20 MiB: OpenDAL sends it as a multipart upload of 8 MiB parts; stop after 10 MiB, so
    // that a part is on the server when the writer dies.
    second_version(&src, 20 << 20);
    let child = stopped_push(&env, url, &src, 10 << 20);
    e2e::signal(child.id(), rustix::process::Signal::KILL);
    let out = finish(child);
    assert!(!out.status.success());
    assert_pulls(&env, url, &v1, t.path(), "after-kill");
    // The next push converges; nothing unreferenced is left once it collected garbage.
    ok(probe(&env, &["push", url, src.to_str().unwrap()]));
    assert_pulls(&env, url, &src, t.path(), "converged");
    let objects = ok(probe(&env, &["objects", url]));
    assert!(num(&objects, "objects") <= contents(&src) as u64 + 1, "{objects}");
}

#[test]
fn s3_emulator_stopped_mid_upload_is_one_clear_line() {
    let Some(mut moto) = Moto::start() else { return };
    moto.create_bucket("gone");
    let env = moto_env(&moto);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    sample(&src, 1000);
    let url = "s3://gone/p";
    ok(probe(&env, &["push", url, src.to_str().unwrap()]));
    second_version(&src, 20 << 20);
    let child = stopped_push(&env, url, &src, 10 << 20);
    moto.kill();
    e2e::signal(child.id(), rustix::process::Signal::CONT);
    let out = finish(child);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.contains("stopping mid-upload")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("s3://gone/p") && !err.contains(MOTO_SECRET), "{err}");
    // A store that cannot be reached at all: the same kind of line, at the first request.
    let out = probe(&env, &["push", url, src.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot read the head of s3://gone/p") && !err.contains(MOTO_SECRET), "{err}");
}

fn sshd_env(sshd: &Sshd) -> Vec<(&'static str, OsString)> {
    sshd.client_env()
}

#[test]
fn sftp_round_trip_no_change_pass_and_garbage() {
    let Some(sshd) = Sshd::start() else { return };
    let env = sshd_env(&sshd);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    sample(&src, 3 << 20);
    let url = sshd.url("backup");
    let first = ok(probe(&env, &["push", &url, src.to_str().unwrap()]));
    assert_eq!(num(&first, "uploaded"), contents(&src) as u64, "{first}");
    assert_pulls(&env, &url, &src, t.path(), "pull1");
    let same = ok(probe(&env, &["push", &url, src.to_str().unwrap()]));
    assert_eq!((same["changed"].as_bool(), num(&same, "requests")), (Some(false), 3), "{same}");
    second_version(&src, 1 << 20);
    let second = ok(probe(&env, &["push", &url, src.to_str().unwrap()]));
    assert_eq!((num(&second, "uploaded"), num(&second, "gc_objects")), (2, 1), "{second}");
    assert_pulls(&env, &url, &src, t.path(), "pull2");
    // On the server: the layout, and no temporary or lock left behind.
    let root = sshd.local_path("backup");
    assert!(root.join("synccore-head.json").is_file());
    assert!(!root.join("synccore-head.lock").exists());
    let temps = std::fs::read_dir(root.join("tmp")).map_or(0, Iterator::count);
    assert_eq!(temps, 0);
    let caps = ok(probe(&env, &["caps", &url]));
    assert_eq!((caps["can_rename"].as_bool(), caps["write_if_match"].as_bool()), (Some(true), Some(false)));
}

#[test]
fn sftp_two_writers_of_one_head_one_loses_cleanly() {
    let Some(sshd) = Sshd::start() else { return };
    let env = sshd_env(&sshd);
    let url = sshd.url("race");
    for _ in 0..2 {
        let r = ok(probe(&env, &["race", &url]));
        assert_eq!(r["current"], "from-a", "{r}");
        assert!(r["loser"].as_str().unwrap().contains("changed by another writer"), "{r}");
    }
}

#[test]
fn sftp_kill_or_dropped_connection_mid_upload_keeps_the_previous_version() {
    let Some(sshd) = Sshd::start() else { return };
    let env = sshd_env(&sshd);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    sample(&src, 1000);
    let url = sshd.url("crash");
    ok(probe(&env, &["push", &url, src.to_str().unwrap()]));
    let v1 = t.path().join("v1");
    copy_tree(&src, &v1);
    // 20 MiB, stopped after 10: OpenDAL has written a first 8 MiB chunk to the temporary.
    second_version(&src, 20 << 20);

    // kill -9 in the middle of an upload: half a temporary on the server, nothing else.
    let child = stopped_push(&env, &url, &src, 10 << 20);
    e2e::signal(child.id(), rustix::process::Signal::KILL);
    assert!(!finish(child).status.success());
    assert_pulls(&env, &url, &v1, t.path(), "after-kill");

    // The connection dropped in the middle of an upload: the push fails with one line naming
    // the URL (exit 1), and the previous version is still the current one, whole.
    let child = stopped_push(&env, &url, &src, 10 << 20);
    assert!(sshd.drop_client_connections() > 0);
    e2e::signal(child.id(), rustix::process::Signal::CONT);
    let out = finish(child);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.contains("stopping mid-upload")).collect();
    assert!(lines.len() == 1 && lines[0].contains(&format!("cannot upload to {url}")), "{err}");
    assert_pulls(&env, &url, &v1, t.path(), "after-drop");
    // The next push converges.
    ok(probe(&env, &["push", &url, src.to_str().unwrap()]));
    assert_pulls(&env, &url, &src, t.path(), "converged");
}
