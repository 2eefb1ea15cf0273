//! `twoway DIR --restore` end to end (SPEC section 4 "Restore"; hardening issue points 1, 2
//! and 14): every restore keeps what DIR held as a new undo generation
//! `__versions__/<name>/_undo/<stamp>/`, hard-linked against the versions; `--version undo` and
//! `undo:<stamp>` bring one back; a copy that is not complete changes nothing (exit 1); a
//! `kill -9` at any step loses nothing and a retried restore converges; an old single `_undo`
//! slot is migrated, an interrupted rotation repaired; `twoway --version` / `-V` print the
//! version.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{Snapshot, cmd, file, run, set_mtime, snapshot, temporaries, wait_for};

use crate::twoway_merge::Pair;

const T: (i64, u32) = (1_700_000_000, 0);

/// A protected pair whose directory `a` has two versions: `_0` (`v1`) and `_1` (`v2`).
struct Setup {
    p: Pair,
    /// `home/__versions__/<name of a>`.
    va: PathBuf,
    v1: Snapshot,
    v2: Snapshot,
}

impl Setup {
    fn new() -> Self {
        let p = Pair::with_recovery();
        file(&p.a, b"doc.txt", b"version 1", 0o644, T);
        file(&p.a, b"sub/notes", b"notes", 0o600, T);
        file(&p.a, b"empty", b"", 0o644, T);
        // One pass with the recovery system registers both directories in .info.json and
        // versions each once (its children run `oneway DIR home --versioned --once`).
        let (code, _, log) = p.pass(&[]);
        assert_eq!(code, 0, "{log}");
        let v1 = snapshot(&p.a);
        file(&p.a, b"doc.txt", b"version 2", 0o644, (T.0 + 10, 0));
        versioned_pass(&p);
        let va = versions_of(&p.root().join("home"), "a");
        let v2 = snapshot(&p.a);
        assert_eq!(snapshot(&va.join("_1")), v2);
        assert_eq!(snapshot(&va.join("_0")), v1);
        Setup { p, va, v1, v2 }
    }

    fn a(&self) -> &Path {
        &self.p.a
    }

    fn undo(&self) -> PathBuf {
        self.va.join("_undo")
    }

    /// `twoway a --restore --home home` plus `args`: (exit code, stderr, log).
    fn restore(&self, args: &[&str]) -> (i32, String, String) {
        let mut c = cmd("twoway", self.p.root());
        c.args(["a", "--restore", "--home", "home", "--log", "restore.log"]).args(args);
        let out = run(c);
        let log = fs::read_to_string(self.p.root().join("restore.log")).unwrap_or_default();
        fs::remove_file(self.p.root().join("restore.log")).ok();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned(), log)
    }

    /// A restore that must succeed; returns its log.
    fn restore_ok(&self, args: &[&str]) -> String {
        let (code, stderr, log) = self.restore(args);
        assert_eq!(code, 0, "{stderr}\n{log}");
        log
    }

    /// The undo generations' names, oldest first (directories only).
    fn generations(&self) -> Vec<String> {
        let Ok(listing) = fs::read_dir(self.undo()) else { return Vec::new() };
        let mut names: Vec<String> = listing
            .flatten()
            .filter(|d| d.file_type().is_ok_and(|t| t.is_dir()))
            .map(|d| d.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".synccore-tmp-"))
            .collect();
        names.sort_by_key(|n| stamp_order(n));
        names
    }

    fn generation(&self, name: &str) -> Snapshot {
        snapshot(&self.undo().join(name))
    }

    /// True when some undo generation is exactly `tree`.
    fn kept(&self, tree: &Snapshot) -> bool {
        self.generations().iter().any(|g| &self.generation(g) == tree)
    }
}

/// How the log names a generation a restore created (or found identical to what DIR held).
fn created(stamp: &str) -> String {
    format!("undo generation {stamp} (")
}

/// How the log names the generation a restore brought back.
fn restored_from(stamp: &str) -> String {
    format!("from undo generation {stamp} ")
}

/// `20261125T143000Z` < `20261125T143000Z-2` < `20261125T143000Z-10`.
fn stamp_order(name: &str) -> (String, u64) {
    match name.split_once('-') {
        Some((base, n)) => (base.to_owned(), n.parse().unwrap_or(u64::MAX)),
        None => (name.to_owned(), 1),
    }
}

/// `oneway a home --versioned --once`: what the versioning child of `a` does.
fn versioned_pass(p: &Pair) {
    let mut c = cmd("oneway", p.root());
    c.args(["a", "home", "--versioned", "--once", "--log", "oneway.log"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `home/__versions__/<name>` for the directory whose base name is `base`.
fn versions_of(home: &Path, base: &str) -> PathBuf {
    fs::read_dir(home.join("__versions__"))
        .unwrap()
        .flatten()
        .map(|d| d.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("{base}-"))))
        .unwrap()
}

fn ino(path: &Path) -> u64 {
    fs::symlink_metadata(path).unwrap().ino()
}

/// Restored files are fresh copies: no file of DIR shares its inode with anything.
fn assert_fresh_copies(dir: &Path) {
    for rel in snapshot(dir).keys() {
        let m = fs::symlink_metadata(e2e::at(dir, rel)).unwrap();
        if m.is_file() {
            assert_eq!(m.nlink(), 1, "{} is a hard link", String::from_utf8_lossy(rel));
        }
    }
}

/// Our temporaries beside DIR (in the sandbox root) and below the versions.
fn leftovers(s: &Setup) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(s.p.root())
        .unwrap()
        .flatten()
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".synccore-tmp-"))
        .collect();
    out.extend(temporaries(&s.va).iter().map(|t| String::from_utf8_lossy(t).into_owned()));
    out
}

#[test]
fn a_second_restore_keeps_the_first_restores_undo() {
    // The repro: a file never synced, then two restores.
    let s = Setup::new();
    file(s.a(), b"new.txt", b"never synced", 0o644, (T.0 + 20, 0));
    let before = snapshot(s.a());
    let log1 = s.restore_ok(&[]);
    let log2 = s.restore_ok(&[]);
    assert_eq!(snapshot(s.a()), s.v2);
    let gens = s.generations();
    assert!(s.kept(&before), "what DIR held before the first restore is an undo generation: {gens:?}");
    assert_eq!(gens.len(), 2, "{gens:?}");
    assert_eq!(s.generation(&gens[0]), before);
    assert_eq!(s.generation(&gens[1]), s.v2);

    // The log names the generation each restore created and where it restored from.
    assert!(log1.contains(&created(&gens[0])) && log1.contains("from the latest version"), "{log1}");
    assert!(log2.contains(&created(&gens[1])) && !log2.contains(&created(&gens[0])), "{log2}");

    // A generation costs only what differs: files equal to a version are hard links to it.
    let (g0, g1) = (s.undo().join(&gens[0]), s.undo().join(&gens[1]));
    assert_eq!(ino(&g0.join("doc.txt")), ino(&s.va.join("_1/doc.txt")));
    assert_eq!(ino(&g0.join("sub/notes")), ino(&s.va.join("_1/sub/notes")));
    assert_eq!(ino(&g1.join("doc.txt")), ino(&s.va.join("_1/doc.txt")));
    assert_eq!(fs::symlink_metadata(g0.join("new.txt")).unwrap().nlink(), 1, "new content is a copy");
    // ...while restored files are fresh copies that the user may edit.
    assert_fresh_copies(s.a());

    // `undo:<stamp>` picks the older generation: new.txt is back. What DIR held equals the
    // newest generation, so it is not kept twice (and the log says so).
    let log = s.restore_ok(&["--version", &format!("undo:{}", gens[0])]);
    assert_eq!(snapshot(s.a()), before);
    assert_eq!(fs::read(s.a().join("new.txt")).unwrap(), b"never synced");
    assert_eq!(s.generations(), gens, "no duplicate generation");
    assert!(log.contains("not kept twice") && log.contains(&created(&gens[1])), "{log}");
    assert!(log.contains(&restored_from(&gens[0])), "names the source: {log}");
    assert_fresh_copies(s.a());
    assert!(leftovers(&s).is_empty(), "{:?}", leftovers(&s));
}

#[test]
fn undo_brings_back_the_newest_generation_and_keeps_what_it_replaces() {
    let s = Setup::new();
    s.restore_ok(&["--version", "previous"]);
    assert_eq!(snapshot(s.a()), s.v1);
    let gens = s.generations();
    assert_eq!(gens.len(), 1);
    assert_eq!(s.generation(&gens[0]), s.v2);

    let log = s.restore_ok(&["--version", "undo"]);
    assert_eq!(snapshot(s.a()), s.v2, "undo brings back what the restore replaced");
    let now = s.generations();
    assert_eq!(now.len(), 2, "undo keeps what it replaces: {now:?}");
    assert_eq!(now[0], gens[0], "older generations are never touched");
    assert_eq!(s.generation(&now[0]), s.v2);
    assert_eq!(s.generation(&now[1]), s.v1);
    assert!(log.contains(&restored_from(&gens[0])) && log.contains(&created(&now[1])), "{log}");
    // The v1 generation shares its files with `_0`.
    assert_eq!(ino(&s.undo().join(&now[1]).join("doc.txt")), ino(&s.va.join("_0/doc.txt")));

    // Undo again: back to v1, and v2 is kept once more.
    s.restore_ok(&["--version", "undo"]);
    assert_eq!(snapshot(s.a()), s.v1);
    assert_eq!(s.generations().len(), 3);
    assert_fresh_copies(s.a());
}

#[test]
fn a_restore_identical_to_the_newest_generation_is_not_kept_twice() {
    let s = Setup::new();
    s.restore_ok(&[]);
    let gens = s.generations();
    assert_eq!(gens.len(), 1);
    let log = s.restore_ok(&[]);
    assert_eq!(s.generations(), gens);
    assert!(log.contains("not kept twice") && log.contains(&created(&gens[0])), "{log}");
    assert_eq!(snapshot(s.a()), s.v2);
}

#[test]
fn an_empty_or_missing_dir_keeps_no_generation() {
    let s = Setup::new();
    fs::remove_dir_all(s.a()).unwrap();
    fs::create_dir(s.a()).unwrap();
    let log = s.restore_ok(&[]);
    assert_eq!(snapshot(s.a()), s.v2);
    assert!(log.contains("nothing to keep"), "{log}");
    assert!(!s.undo().exists(), "no generation for an empty directory");
    fs::remove_dir_all(s.a()).unwrap();
    let log = s.restore_ok(&["--version", "previous"]);
    assert_eq!(snapshot(s.a()), s.v1);
    assert!(log.contains("nothing to keep"), "{log}");
    assert!(s.generations().is_empty());
}

#[test]
fn undo_at_a_stamp_that_does_not_exist_lists_the_available_ones() {
    let s = Setup::new();
    let (code, stderr, _) = s.restore(&["--version", "undo"]);
    assert_eq!(code, 2, "no generation yet: {stderr}");
    assert!(stderr.contains("_undo") && stderr.contains("no undo generation"), "{stderr}");
    s.restore_ok(&["--version", "previous"]);
    let gens = s.generations();
    let before = snapshot(s.a());
    let (code, stderr, _) = s.restore(&["--version", "undo:20000101T000000Z"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("20000101T000000Z") && stderr.contains(&gens[0]) && stderr.contains("available"),
        "names the missing stamp and lists the available ones: {stderr}"
    );
    // Not a stamp at all: clap's error, listing the valid values.
    let (code, stderr, _) = s.restore(&["--version", "undo:yesterday"]);
    assert_eq!(code, 2, "{stderr}");
    for value in ["latest", "previous", "undo", "undo:<stamp>"] {
        assert!(stderr.contains(value), "{value}: {stderr}");
    }
    assert_eq!(snapshot(s.a()), before, "nothing changed");
    assert_eq!(s.generations(), gens);
}

#[test]
fn an_old_single_undo_slot_is_migrated_not_lost() {
    let s = Setup::new();
    // What the previous version of the program left: `_undo` holding a tree directly, and
    // (from a restore it was killed in) the retired slot `.synccore-tmp-undo-old`.
    let legacy = s.undo();
    file(&legacy, b"old-undo.txt", b"kept by the old program", 0o644, T);
    file(&legacy, b"dir/deep", b"deep", 0o600, T);
    set_mtime(&legacy, (1_704_164_645, 0)); // 2024-01-02T03:04:05Z
    let retired = s.va.join(".synccore-tmp-undo-old");
    file(&retired, b"older.txt", b"from an interrupted old restore", 0o644, T);
    set_mtime(&retired, (1_704_000_000, 0)); // 2023-12-31T05:20:00Z
    let (legacy_tree, retired_tree) = (snapshot(&legacy), snapshot(&retired));
    // A versioning pass (which repairs the versions, removing temporaries) leaves them alone.
    versioned_pass(&s.p);
    assert!(retired.is_dir(), "the versioning pass removed the retired slot");
    assert_eq!(snapshot(&retired), retired_tree);
    let before = snapshot(s.a());

    let log = s.restore_ok(&["--version", "previous"]);
    assert_eq!(snapshot(s.a()), s.v1);
    for stamp in ["20240102T030405Z", "20231231T052000Z"] {
        assert!(s.undo().join(stamp).is_dir(), "{stamp}: {:?}", s.generations());
    }
    assert_eq!(s.generation("20240102T030405Z"), legacy_tree, "{:?}", s.generations());
    assert_eq!(s.generation("20231231T052000Z"), retired_tree, "{:?}", s.generations());
    assert!(s.kept(&before));
    assert_eq!(s.generations().len(), 3, "{:?}", s.generations());
    assert!(log.contains("migrated"), "{log}");
    // The newest generation is the one this restore made: undo brings DIR back.
    s.restore_ok(&["--version", "undo"]);
    assert_eq!(snapshot(s.a()), before);
    assert!(leftovers(&s).is_empty(), "{:?}", leftovers(&s));
}

#[test]
fn a_restore_first_repairs_an_interrupted_rotation() {
    let s = Setup::new();
    // A versioning pass killed between rotation steps 4 and 5: `_1` is missing, the new
    // version waits as `.synccore-tmp-next` and its manifest as `.synccore-tmp-manifest`.
    fs::rename(s.va.join("_1"), s.va.join(".synccore-tmp-next")).unwrap();
    fs::copy(s.va.join("manifest.json"), s.va.join(".synccore-tmp-manifest")).unwrap();
    fs::write(s.a().join("doc.txt"), b"edited after the crash").unwrap();
    let before = snapshot(s.a());
    let log = s.restore_ok(&["--version", "latest"]);
    assert_eq!(snapshot(s.a()), s.v2, "{log}");
    assert_eq!(snapshot(&s.va.join("_1")), s.v2);
    assert_eq!(snapshot(&s.va.join("_0")), s.v1);
    assert!(s.kept(&before));
    assert!(leftovers(&s).is_empty(), "{:?}", leftovers(&s));
}

/// The `strace` to drive races and crashes with, or `None` (with the reason printed) when it
/// is not on PATH or cannot trace here (CI installs it through `.ci/run`).
fn strace() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("strace")).find(|p| p.is_file()));
    let Some(strace) = found else {
        eprintln!("skipping: strace is not on PATH");
        return None;
    };
    let works = Command::new(&strace)
        .args(["-f", "-qq", "-o", "/dev/null", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        eprintln!("skipping: strace cannot trace processes here (ptrace not permitted?)");
        return None;
    }
    Some(strace)
}

/// Runs a restore of `a` under strace, stopping it (SIGSTOP) the first time it copies data
/// out of `hot`; once it is stopped, `change` runs; then the restore goes on. Returns the
/// restore's (exit code, log).
fn restore_changing_while_copied(
    strace: &Path,
    s: &Setup,
    hot: &Path,
    change: impl FnOnce(),
) -> (i32, String) {
    let trace = s.p.root().join("trace.txt");
    let mut c = Command::new(strace);
    c.current_dir(s.p.root())
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg("-P")
        .arg(hot)
        .args(["-e", "trace=copy_file_range", "-e", "inject=copy_file_range:signal=SIGSTOP:when=1", "--"])
        .arg(e2e::bin("twoway"))
        .args(["a", "--restore", "--home", "home", "--log", "restore.log"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut tracer = e2e::Background(c.spawn().unwrap());
    // Bounded wait for the stop (no sleep-then-expect): strace reports it in its output.
    let stopped = wait_for(Duration::from_secs(60), || {
        fs::read_to_string(&trace).is_ok_and(|t| t.contains("stopped by"))
    });
    let restoring = e2e::children_of(tracer.id());
    if !stopped || restoring.len() != 1 {
        // A stopped tracee would outlive its killed tracer: kill it first.
        for pid in &restoring {
            e2e::signal(*pid, rustix::process::Signal::KILL);
        }
        panic!("the restore never copied {} with copy_file_range", hot.display());
    }
    change();
    e2e::signal(restoring[0], rustix::process::Signal::CONT);
    let status = tracer.wait().unwrap();
    let log = fs::read_to_string(s.p.root().join("restore.log")).unwrap_or_default();
    fs::remove_file(s.p.root().join("restore.log")).ok();
    fs::remove_file(&trace).ok();
    (status.code().unwrap_or(-1), log)
}

#[test]
fn a_file_that_changes_while_it_is_copied_stops_the_restore_and_changes_nothing() {
    let Some(strace) = strace() else { return };
    // DIR is copied aside into the undo generation: a file of DIR changes meanwhile.
    let s = Setup::new();
    file(s.a(), b"hot", b"being written", 0o644, (T.0 + 30, 0));
    let before = snapshot(s.a());
    let hot = s.a().join("hot");
    let (code, log) = restore_changing_while_copied(&strace, &s, &hot, || {
        file(s.a(), b"hot", b"being written, and more", 0o644, (T.0 + 31, 0));
    });
    assert_eq!(code, 1, "an incomplete copy of DIR must stop the restore: {log}");
    let mut expected = before.clone();
    expected.insert(b"hot".to_vec(), snapshot(s.a())[&b"hot".to_vec()].clone());
    assert_eq!(snapshot(s.a()), expected, "DIR untouched (but for the user's own write)");
    assert!(s.generations().is_empty(), "no generation kept: {:?}", s.generations());
    assert!(leftovers(&s).is_empty(), "{:?}", leftovers(&s));
    // Once DIR holds still, the restore goes through and keeps the user's last write.
    let after_write = snapshot(s.a());
    s.restore_ok(&[]);
    assert_eq!(snapshot(s.a()), s.v2);
    assert!(s.kept(&after_write));

    // The version is copied beside DIR: a file of the version changes meanwhile (the test
    // stands in for a corrupting writer; versions are never written by the programs).
    let s = Setup::new();
    let before = snapshot(s.a());
    let versioned = s.va.join("_1/doc.txt");
    let (code, log) = restore_changing_while_copied(&strace, &s, &versioned, || {
        fs::write(&versioned, b"version 2, changed under the restore").unwrap();
    });
    assert_eq!(code, 1, "an incomplete copy of the version must stop the restore: {log}");
    assert_eq!(snapshot(s.a()), before, "DIR untouched");
    assert!(s.generations().is_empty(), "no generation kept: {:?}", s.generations());
    assert!(leftovers(&s).is_empty(), "{:?}", leftovers(&s));
}

/// Every system call that changes the file-system namespace: a `kill -9` just before any of
/// them is a crash at a distinct step. (`?` lets strace ignore names this architecture lacks.)
const NAMESPACE_CALLS: [&str; 12] = [
    "rename",
    "renameat",
    "renameat2",
    "mkdir",
    "mkdirat",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "unlink",
    "unlinkat",
    "rmdir",
];

#[test]
fn a_restore_killed_at_any_step_loses_nothing_and_a_retry_converges() {
    let Some(strace) = strace() else { return };
    let mut crashes = 0;
    for call in NAMESPACE_CALLS {
        // Kill the restore at the 1st, 2nd, ... such call until it runs to its end unkilled.
        let mut finished = false;
        for n in 1..=400 {
            let s = Setup::new();
            // Something only DIR holds, and an old-style single `_undo` slot to migrate.
            file(s.a(), b"new.txt", b"never synced", 0o644, (T.0 + 20, 0));
            file(&s.undo(), b"old-undo.txt", b"kept by the old program", 0o644, T);
            let (original, legacy) = (snapshot(s.a()), snapshot(&s.undo()));
            let slots = (snapshot(&s.va.join("_0")), snapshot(&s.va.join("_1")));
            let mut c = Command::new(&strace);
            c.current_dir(s.p.root())
                .args(["-f", "-qq", "-o", "/dev/null", "-e", &format!("trace=?{call}")])
                .args(["-e", &format!("inject=?{call}:signal=SIGKILL:when={n}"), "--"])
                .arg(e2e::bin("twoway"))
                .args(["a", "--restore", "--home", "home", "--log", "restore.log"]);
            let out = run(c);
            let killed = out.status.signal() == Some(9);
            if killed {
                crashes += 1;
                // DIR is whole at any moment: what it held, or the version.
                let now = snapshot(s.a());
                assert!(now == original || now == s.v2, "{call} #{n}: DIR is half-restored");
                let (code, stderr, log) = s.restore(&[]);
                assert_eq!(code, 0, "{call} #{n}: the retry fails: {stderr}\n{log}");
            } else {
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{call} #{n}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert_eq!(snapshot(s.a()), s.v2, "{call} #{n}: converged");
            assert!(s.kept(&original), "{call} #{n}: DIR's content is lost: {:?}", s.generations());
            assert!(s.kept(&legacy), "{call} #{n}: the old undo is lost: {:?}", s.generations());
            assert_eq!((snapshot(&s.va.join("_0")), snapshot(&s.va.join("_1"))), slots, "{call} #{n}");
            assert!(leftovers(&s).is_empty(), "{call} #{n}: {:?}", leftovers(&s));
            assert_fresh_copies(s.a());
            if !killed {
                eprintln!("{call}: killed before each of its {} calls", n - 1);
                finished = true;
                break;
            }
        }
        assert!(finished, "{call}: the restore never ran to its end");
    }
    assert!(crashes > 10, "only {crashes} crash points were reached");
}

/// Runs a binary with `args` in `root`.
fn run_with(name: &str, root: &Path, args: &[&str]) -> std::process::Output {
    let mut c = cmd(name, root);
    c.args(args);
    run(c)
}

#[test]
fn twoway_version_prints_the_version_and_version_values_need_restore() {
    let p = Pair::new();
    let oneway = run_with("oneway", p.root(), &["-V"]);
    let expected = String::from_utf8_lossy(&oneway.stdout).replacen("oneway", "twoway", 1);
    assert!(expected.starts_with("twoway "), "{expected}");
    for flag in ["--version", "-V"] {
        let out = run_with("twoway", p.root(), &[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{flag}");
    }
    // Anywhere on a sync's command line, like `oneway -V`.
    let out = run_with("twoway", p.root(), &["a", "b", "--version"]);
    assert_eq!((out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned()), (Some(0), expected));
    for args in [&["a", "b", "--version", "latest"][..], &["a", "--version", "previous"][..]] {
        let out = run_with("twoway", p.root(), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(&format!("--version {} needs --restore", args[args.len() - 1])), "{stderr}");
    }
    // With --restore, a value is required, and a bad one lists the valid values.
    let out = run_with("twoway", p.root(), &["a", "--restore", "--version"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run_with("twoway", p.root(), &["a", "--restore", "--version", "newest"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in ["newest", "latest", "previous", "undo:<stamp>"] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    assert!(fs::read_dir(p.root().join("a")).unwrap().next().is_none(), "nothing was done");
}
