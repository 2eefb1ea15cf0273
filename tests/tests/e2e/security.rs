//! No operation ever leaves its root (SPEC section 5; the security issue): a directory inside
//! SOURCE, BACKUP, A, B, the home or the versions, swapped for a symlink to a canary directory
//! outside every root while a pass runs, never redirects a write, rename, metadata change or
//! delete into the canary, nor a read out of it into a tree.
//!
//! The attacker is `e2e::race`: a swapper thread that exchanges the victim directory with the
//! symlink in a tight loop (`renameat2(RENAME_EXCHANGE)`), over at least 20 trials per case
//! with varied timing; and deterministic variants that land the swap exactly inside the
//! window, at a fault point of the debug builds or in a system call that strace delays. Each
//! canary is a lookalike of its victim (same names, sizes, modes and mtimes, other bytes), so
//! that no size or mtime check saves a pass that resolves a path by name. After each trial the
//! canary must be unchanged (names, bytes, modes, mtimes, inodes and ctimes: not even a
//! temporary may have come and gone), no tree may hold the canary's bytes, and once the
//! swapper stops a final pass must converge without losing any of the user's data.
//!
//! Assertions hold whether or not a given swap landed inside a pass: a trial only fails when
//! something went through the symlink or was lost. The trials' problems are collected and
//! reported together (how many trials of how many failed, and what the first ones did).

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::race::{Canary, SwapReport, Swapped, Swapper, Trigger, differences};
use e2e::{Node, Rng, Snapshot, SpawnGuarded, cmd, file, run, snapshot, snapshot_synced, temporaries};
use tempfile::TempDir;

const T: (i64, u32) = (1_700_000_000, 0);

/// Trials per race test: the issue asks for at least 20.
const TRIALS: u64 = 20;

/// Files in each victim directory: enough that a pass spends a while inside it.
const FILES: usize = 200;

/// The user the unprivileged variant runs as.
const NOBODY: (u32, u32) = (65534, 65534);

/// One test's sandbox: every root, canary and aside directory lies in it (one file system,
/// so that the swapper's exchanges work), and nothing else.
struct Sandbox {
    sb: TempDir,
    /// Run the binaries as [`NOBODY`].
    unprivileged: bool,
}

/// A finished run of a binary: its exit code (`None` when killed by a signal) and its
/// stderr followed by its log.
struct Outcome {
    code: Option<i32>,
    text: String,
}

impl Outcome {
    /// A problem line unless the run exited with one of `codes`.
    fn unless(&self, codes: &[i32], what: &str) -> Vec<String> {
        if self.code.is_some_and(|c| codes.contains(&c)) {
            return Vec::new();
        }
        let lines: Vec<&str> = self.text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(4)..];
        vec![format!("{what} exited with {:?}: {}", self.code, tail.join(" | "))]
    }
}

/// Exit codes a pass under attack may end with: done, some entries failed (a path that
/// turned into a symlink is reported), bad input, or a safety rail. Never a panic or a signal.
const UNDER_ATTACK: [i32; 4] = [0, 1, 2, 3];

impl Sandbox {
    fn new() -> Self {
        let sb = tempfile::tempdir().unwrap();
        // Traversable by the unprivileged variant's user.
        fs::set_permissions(sb.path(), fs::Permissions::from_mode(0o755)).unwrap();
        Sandbox { sb, unprivileged: false }
    }

    fn path(&self) -> &Path {
        self.sb.path()
    }

    fn join(&self, rel: &str) -> PathBuf {
        self.sb.path().join(rel)
    }

    /// A fresh canary for trial `t`: a lookalike of the paths of `model` that `keep` selects,
    /// owned by the user the binaries run as (so that a write through the symlink could land).
    fn canary(&self, t: u64, model: &Path, keep: impl Fn(&[u8]) -> bool) -> Canary {
        let owner = (self.unprivileged && e2e::is_root()).then_some(NOBODY);
        Canary::lookalike(&self.join(&format!("canary-{t}")), model, keep, owner)
    }

    /// Where trial `t`'s swapper keeps the symlink (and the real directory meanwhile).
    fn aside(&self, t: u64) -> PathBuf {
        self.join(&format!("aside-{t}"))
    }

    /// Removes trial `t`'s canary and aside directories.
    fn clean(&self, t: u64) {
        fs::remove_dir_all(self.join(&format!("canary-{t}"))).ok();
        fs::remove_dir_all(self.aside(t)).ok();
    }

    /// A command for `program` run in the sandbox (as [`NOBODY`] in the unprivileged variant).
    fn command(&self, program: &str) -> Command {
        if self.unprivileged {
            e2e::race::unprivileged(program, self.path()).unwrap()
        } else {
            cmd(program, self.path())
        }
    }

    /// [`Sandbox::command`] with `args`.
    fn args(&self, program: &str, args: &[&str]) -> Command {
        let mut c = self.command(program);
        c.args(args);
        c
    }

    /// Runs `program args --log pass.log` in the sandbox.
    fn run(&self, program: &str, args: &[&str]) -> Outcome {
        self.finish(self.args(program, args))
    }

    /// Runs a prepared command with the log in the sandbox.
    fn finish(&self, mut c: Command) -> Outcome {
        let log = self.join("pass.log");
        c.arg("--log").arg(&log);
        let out = run(c);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            fs::read_to_string(&log).unwrap_or_default()
        );
        fs::remove_file(&log).ok();
        Outcome { code: out.status.code(), text }
    }

    /// `oneway src dst --once`: must succeed and leave `dst` equal to `src`, without
    /// temporaries; the problems otherwise.
    fn mirror_converges(&self) -> Vec<String> {
        let (src, dst) = (self.join("src"), self.join("dst"));
        let mut out = self.run("oneway", &["src", "dst", "--once"]).unless(&[0], "the final pass");
        out.extend(differences(&snapshot(&src), &snapshot(&dst), "SOURCE", "BACKUP"));
        out.extend(temporaries(&dst).iter().map(|t| format!("temporary left in BACKUP: {}", shown(t))));
        out
    }

    /// `twoway a b --once --no-recovery`: must succeed and leave both sides equal, without
    /// temporaries; the problems otherwise.
    fn sides_converge(&self) -> Vec<String> {
        let (a, b) = (self.join("a"), self.join("b"));
        let mut out = self.run("twoway", &TWOWAY).unless(&[0], "the final pass");
        out.extend(differences(&snapshot_synced(&a), &snapshot_synced(&b), "A", "B"));
        for side in [&a, &b] {
            out.extend(
                temporaries(side)
                    .iter()
                    .map(|t| format!("temporary left in {}: {}", side.display(), shown(t))),
            );
        }
        out
    }
}

/// A two-way pass without the recovery system (whose children are not under test here).
const TWOWAY: [&str; 7] = ["a", "b", "--home", "home", "--once", "--no-recovery", "--quiet"];

fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The problems of a race test's trials, reported together at the end: how many trials
/// failed, the kinds of problem over all of them, and each failing trial's first problems.
struct Trials {
    what: &'static str,
    count: u64,
    failing: Vec<String>,
    kinds: std::collections::BTreeMap<&'static str, usize>,
    attacked: u64,
    exchanges: u64,
    /// How the attacked runs exited, for the summary.
    codes: std::collections::BTreeMap<Option<i32>, u64>,
}

/// A problem's kind, for the tally.
fn kind(problem: &str) -> &'static str {
    const KINDS: [(&str, &str); 9] = [
        ("new entry", "entries created in the canary"),
        ("was removed", "canary entries removed"),
        ("was written to", "canary entries written to (ctime moved)"),
        (" changed (", "canary entries changed"),
        ("holds the bytes of canary", "files of a tree holding the canary's bytes"),
        ("only the canary has", "files of a tree named like the canary's own"),
        ("exited with", "runs with an unexpected exit"),
        ("temporary left", "temporaries left after the final pass"),
        ("lost", "user data lost"),
    ];
    KINDS.iter().find(|(needle, _)| problem.contains(needle)).map_or("other problems", |(_, k)| k)
}

impl Trials {
    fn new(what: &'static str) -> Self {
        Trials {
            what,
            count: 0,
            failing: Vec::new(),
            kinds: std::collections::BTreeMap::new(),
            attacked: 0,
            exchanges: 0,
            codes: std::collections::BTreeMap::new(),
        }
    }

    /// Records trial `t`: its problems, what the swapper did, and how the attacked run exited.
    fn record(&mut self, t: u64, problems: &[String], swap: &SwapReport, attacked: &Outcome) {
        self.count += 1;
        self.exchanges += swap.exchanges;
        self.attacked += u64::from(swap.exchanges > 0);
        *self.codes.entry(attacked.code).or_default() += 1;
        if problems.is_empty() {
            return;
        }
        for p in problems {
            *self.kinds.entry(kind(p)).or_default() += 1;
        }
        let first: Vec<&str> = problems.iter().take(3).map(String::as_str).collect();
        self.failing.push(format!("trial {t} ({} problems): {}", problems.len(), first.join("; ")));
    }

    /// Prints what the attack did, and fails with the problems if any.
    fn finish(self) {
        let codes: Vec<String> = self.codes.iter().map(|(c, n)| format!("{n} x {c:?}")).collect();
        eprintln!(
            "{}: {} trials, swapped during {} of them ({} exchanges), exits {}, {} failed",
            self.what,
            self.count,
            self.attacked,
            self.exchanges,
            codes.join(", "),
            self.failing.len()
        );
        // A test whose swapper never ran while a pass did would prove nothing.
        assert!(self.exchanges > 0, "{}: the swapper never ran during a pass", self.what);
        let tally: Vec<String> = self.kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        assert!(
            self.failing.is_empty(),
            "{}: {} of {} trials let a pass leave its root or lose data ({})\n{}",
            self.what,
            self.failing.len(),
            self.count,
            tally.join(", "),
            self.failing.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
        );
    }
}

/// `n` files `<dir>/f000`, `<dir>/f001`, ... of 16 to 200 random bytes, mode 644, mtimes
/// `secs` plus a distinct number of nanoseconds.
fn fill(root: &Path, dir: &str, n: usize, rng: &mut Rng, secs: i64) {
    for i in 0..n {
        let len = 16 + rng.below(185) as usize;
        file(root, format!("{dir}/f{i:03}").as_bytes(), &rng.bytes(len), 0o644, (secs, i as u32));
    }
}

/// Every other `fNNN` name: a canary that holds half of the names a pass writes shows both an
/// overwrite (or a refused one) and a new entry.
fn even(rel: &[u8]) -> bool {
    rel.last().is_some_and(|b| b % 2 == 0)
}

fn all(_: &[u8]) -> bool {
    true
}

/// Files (not directories) directly in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|d| d.file_type().unwrap().is_file())
        .map(|d| d.path())
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// oneway

/// Attacks the mirror's copy writer (a temporary staged in the target's directory, its commit,
/// the directory's metadata set afterwards): `BACKUP/sub` is swapped for a symlink to the canary
/// from the first write of a pass that copies new and changed files into it. The issue's
/// report: files created outside the root in every trial.
#[test]
fn oneway_copies_never_leave_the_backup_while_a_backup_dir_is_swapped() {
    let s = Sandbox::new();
    let (src, dst) = (s.join("src"), s.join("dst"));
    let mut rng = Rng::new(1);
    fill(&src, "sub", FILES, &mut rng, T.0);
    file(&src, b"top.txt", b"outside the victim", 0o644, T);
    assert_eq!(s.mirror_converges(), Vec::<String>::new());
    let sub = dst.join("sub");
    let mut trials = Trials::new("oneway copies into a swapped BACKUP/sub");
    for t in 0..TRIALS {
        // Three files in four are missing from BACKUP/sub (copies); one in ten changed in
        // SOURCE (updates).
        for (i, path) in files_in(&sub).iter().enumerate() {
            if !(i as u64 + t).is_multiple_of(4) {
                fs::remove_file(path).unwrap();
            }
        }
        for i in (t as usize % 10..FILES).step_by(10) {
            file(&src, format!("sub/f{i:03}").as_bytes(), &rng.bytes(64), 0o644, (T.0 + 100 + t as i64, 0));
        }
        let canary = s.canary(t, &src.join("sub"), even);
        let swapper = Swapper::start(&sub, canary.dir(), &s.aside(t), Trigger::FirstChangeIn(sub.clone()), t);
        let pass = s.run("oneway", &["src", "dst", "--once"]);
        let swap = swapper.stop();
        let mut problems = pass.unless(&UNDER_ATTACK, "the pass");
        problems.extend(canary.problems(&[&dst]));
        problems.extend(s.mirror_converges());
        trials.record(t, &problems, &swap, &pass);
        s.clean(t);
    }
    trials.finish();
}

/// Attacks the mirror's metadata writer (mode and mtime of files whose content is equal) and its
/// delete: `BACKUP/sub` is swapped from the first delete on, while the pass deletes files that
/// SOURCE lacks and fixes modes and touch-only mtimes. The canary holds every name, so a
/// delete or a `chmod` through the symlink shows. (The issue found deletes safe thanks to the
/// stamp re-check; against a canary that shares the names, the moment between the re-check and
/// the unlink is a window too.)
#[test]
fn oneway_metadata_changes_and_deletes_never_leave_the_backup_while_a_backup_dir_is_swapped() {
    let s = Sandbox::new();
    let (src, dst) = (s.join("src"), s.join("dst"));
    let mut rng = Rng::new(2);
    fill(&src, "sub", FILES, &mut rng, T.0);
    assert_eq!(s.mirror_converges(), Vec::<String>::new());
    let sub = dst.join("sub");
    let mut trials = Trials::new("oneway metadata changes and deletes in a swapped BACKUP/sub");
    for t in 0..TRIALS {
        // Modes (one file in three) and touch-only mtimes (one in four) differ; 30 files that
        // SOURCE lacks are to be deleted (below the max-delete rail).
        for (i, path) in files_in(&sub).iter().enumerate() {
            if (i as u64 + t).is_multiple_of(3) {
                fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
            }
            if (i as u64 + t) % 4 == 1 {
                e2e::set_mtime(path, (T.0 + 5_000 + t as i64, 7));
            }
        }
        for i in 0..30 {
            file(&sub, format!("x{t:02}-{i:02}").as_bytes(), &rng.bytes(40), 0o644, T);
        }
        let canary = s.canary(t, &sub, all);
        let swapper = Swapper::start(&sub, canary.dir(), &s.aside(t), Trigger::FirstChangeIn(sub.clone()), t);
        let pass = s.run("oneway", &["src", "dst", "--once"]);
        let swap = swapper.stop();
        let mut problems = pass.unless(&UNDER_ATTACK, "the pass");
        problems.extend(canary.problems(&[&dst]));
        problems.extend(s.mirror_converges());
        trials.record(t, &problems, &swap, &pass);
        s.clean(t);
    }
    trials.finish();
}

/// Attacks the mirror's readers (the scan, the quick check's hashing, the copy's open of the
/// source): `SOURCE/sub` is swapped for a symlink to a lookalike canary, from the start of the
/// pass (even trials: the scan) or from its first write (odd trials: the copies). A source
/// directory that turned into a symlink is handled as what it now is, never followed: BACKUP
/// never receives the canary's bytes or names, and once the swapper stops BACKUP equals SOURCE.
#[test]
fn oneway_never_reads_through_a_source_dir_swapped_for_a_symlink() {
    let s = Sandbox::new();
    let (src, dst) = (s.join("src"), s.join("dst"));
    let mut rng = Rng::new(3);
    fill(&src, "sub", FILES, &mut rng, T.0);
    assert_eq!(s.mirror_converges(), Vec::<String>::new());
    let (src_sub, dst_sub) = (src.join("sub"), dst.join("sub"));
    let mut trials = Trials::new("oneway reading a swapped SOURCE/sub");
    for t in 0..TRIALS {
        // Every file of SOURCE/sub changes, so the pass reads each one; the canary has the
        // same sizes and mtimes, so nothing but the symlink tells them apart.
        fill(&src, "sub", FILES, &mut rng, T.0 + 100 + t as i64);
        let canary = s.canary(t, &src_sub, all);
        let trigger =
            if t.is_multiple_of(2) { Trigger::Now } else { Trigger::FirstChangeIn(dst_sub.clone()) };
        let swapper = Swapper::start(&src_sub, canary.dir(), &s.aside(t), trigger, t);
        let pass = s.run("oneway", &["src", "dst", "--once"]);
        let swap = swapper.stop();
        let mut problems = pass.unless(&UNDER_ATTACK, "the pass");
        problems.extend(canary.problems(&[&dst, &src]));
        problems.extend(s.mirror_converges());
        trials.record(t, &problems, &swap, &pass);
        s.clean(t);
    }
    trials.finish();
}

/// Attacks the versioned pass's readers (the scan, the directory checksum's hashing, the copies
/// into the new slot): `SOURCE/sub` is swapped, from the start (even trials) or from the first
/// write into the versions (odd trials), while each pass rotates in a new version of a SOURCE
/// whose every file changed. No slot may hold the canary's bytes, and once the swapper stops
/// a pass leaves `_1` equal to SOURCE.
#[test]
fn versioned_rotation_never_reads_through_a_source_dir_swapped_for_a_symlink() {
    let s = Sandbox::new();
    let src = s.join("src");
    let mut rng = Rng::new(4);
    fill(&src, "sub", FILES, &mut rng, T.0);
    let versions = s.join("vers").join("__versions__");
    assert_eq!(versioned_converges(&s), Vec::<String>::new());
    let name = only_entry(&versions);
    let src_sub = src.join("sub");
    let mut trials = Trials::new("versioned rotations reading a swapped SOURCE/sub");
    for t in 0..TRIALS {
        fill(&src, "sub", FILES, &mut rng, T.0 + 100 + t as i64);
        let canary = s.canary(t, &src_sub, all);
        let trigger = if t.is_multiple_of(2) { Trigger::Now } else { Trigger::FirstChangeIn(name.clone()) };
        let swapper = Swapper::start(&src_sub, canary.dir(), &s.aside(t), trigger, t);
        let pass = s.run("oneway", &["src", "vers", "--versioned", "--once"]);
        let swap = swapper.stop();
        let mut problems = pass.unless(&UNDER_ATTACK, "the pass");
        problems.extend(canary.problems(&[&versions, &src]));
        problems.extend(versioned_converges(&s));
        trials.record(t, &problems, &swap, &pass);
        s.clean(t);
    }
    trials.finish();
}

/// Attacks the versions' writers and the hard-link reader: the rotation's renames, the new
/// slot built under a temporary name, the manifest, the lock (even trials, `BACKUP/__versions__/
/// <name>` itself swapped, with a canary that looks like it: `_0`, `_1`, `manifest.json`,
/// `lock`), and the hard links into `_1` of the files unchanged since (odd trials, `_1/sub`
/// swapped: a lookalike with equal sizes, modes and mtimes would be linked into the new
/// version). SOURCE changes outside `sub` at each trial, so every pass rotates. (`_1/sub`
/// rather than `_1`: the rotation renames `_1` itself, and an attacker who keeps exchanging
/// whatever holds that name swaps the old and the new slot, which no program can prevent;
/// `_1/sub` reaches the same reader and leaves the convergence check meaningful.)
#[test]
fn versioned_rotation_never_leaves_the_versions_when_they_or_a_slot_dir_are_swapped() {
    let s = Sandbox::new();
    let src = s.join("src");
    let mut rng = Rng::new(5);
    fill(&src, "sub", FILES, &mut rng, T.0);
    let versions = s.join("vers").join("__versions__");
    assert_eq!(versioned_converges(&s), Vec::<String>::new());
    let name = only_entry(&versions);
    let mut trials = Trials::new("versioned rotations with the versions or _1/sub swapped");
    for t in 0..TRIALS {
        file(&src, b"marker", format!("trial {t}").as_bytes(), 0o644, (T.0 + t as i64, 0));
        let source_before = snapshot(&src);
        let victim = if t.is_multiple_of(2) { name.clone() } else { name.join("_1").join("sub") };
        let canary = s.canary(t, &victim, all);
        // From the start (the lock, the repair, the hard links' stat) or from the first write
        // into the versions (the build, the rotation, the manifest).
        let trigger = if t % 4 < 2 { Trigger::Now } else { Trigger::FirstChangeIn(name.clone()) };
        let swapper = Swapper::start(&victim, canary.dir(), &s.aside(t), trigger, t);
        let pass = s.run("oneway", &["src", "vers", "--versioned", "--once"]);
        let swap = swapper.stop();
        let mut problems = pass.unless(&UNDER_ATTACK, "the pass");
        problems.extend(canary.problems(&[&versions]));
        if snapshot(&src) != source_before {
            problems.push("SOURCE changed".into());
        }
        problems.extend(versioned_converges(&s));
        trials.record(t, &problems, &swap, &pass);
        s.clean(t);
    }
    trials.finish();
}

/// The one entry of `dir` (the `<name>` directory below `__versions__`).
fn only_entry(dir: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = fs::read_dir(dir).unwrap().flatten().map(|d| d.path()).collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].clone()
}

/// `oneway src vers --versioned --once`: must succeed and leave `_1` equal to SOURCE (files,
/// links and modes; directory mtimes aside), with no temporary in the versions.
fn versioned_converges(s: &Sandbox) -> Vec<String> {
    let mut out = s.run("oneway", &["src", "vers", "--versioned", "--once"]).unless(&[0], "the final pass");
    let versions = s.join("vers").join("__versions__");
    let Ok(name) = fs::read_dir(&versions).map(|mut d| d.next().unwrap().unwrap().path()) else {
        out.push("no versions".into());
        return out;
    };
    out.extend(differences(
        &snapshot_synced(&s.join("src")),
        &snapshot_synced(&name.join("_1")),
        "SOURCE",
        "_1",
    ));
    out.extend(
        temporaries(&versions).iter().map(|t| format!("temporary left in the versions: {}", shown(t))),
    );
    out
}

// ---------------------------------------------------------------------------------------------
// twoway

/// A synced pair with `FILES` files in `a/sub` and `b/sub`.
fn synced_pair(seed: u64) -> (Sandbox, Rng) {
    let s = Sandbox::new();
    let mut rng = Rng::new(seed);
    fill(&s.join("a"), "sub", FILES, &mut rng, T.0);
    fs::create_dir(s.join("b")).unwrap();
    assert_eq!(s.sides_converge(), Vec::<String>::new());
    (s, rng)
}

/// The victim side (`b` in even trials, `a` in odd ones) and the other side.
fn sides(s: &Sandbox, t: u64) -> (PathBuf, PathBuf) {
    let (a, b) = (s.join("a"), s.join("b"));
    if t.is_multiple_of(2) { (b, a) } else { (a, b) }
}

/// Attacks twoway's copy writer on either side (staging, commit, directory metadata) and its
/// deletes: `sub` of one side (B in even trials, A in odd ones) is swapped from the first write
/// into it, while the other side has new, changed and deleted files for it. The other side is
/// the user's data here: it must come out of the trial unchanged, and the final pass must make
/// the victim side equal to it.
#[test]
fn twoway_copies_never_leave_a_side_while_a_dir_of_that_side_is_swapped() {
    let (s, mut rng) = synced_pair(6);
    let mut trials = Trials::new("twoway copies into a swapped side/sub");
    for t in 0..TRIALS {
        let (victim, other) = sides(&s, t);
        let (sub, other_sub) = (victim.join("sub"), other.join("sub"));
        // The other side: last trial's new files deleted, 60 new ones, 40 changed.
        for path in files_in(&other_sub) {
            if path.file_name().unwrap().as_encoded_bytes().starts_with(b"n") {
                fs::remove_file(path).unwrap();
            }
        }
        for i in 0..60 {
            file(&other_sub, format!("n{t:02}-{i:02}").as_bytes(), &rng.bytes(50), 0o644, T);
        }
        for i in (t as usize % 5..FILES).step_by(5) {
            file(&other_sub, format!("f{i:03}").as_bytes(), &rng.bytes(70), 0o644, (T.0 + 100 + t as i64, 0));
        }
        let wanted = snapshot_synced(&other);
        let canary = s.canary(t, &other_sub, even);
        let swapper = Swapper::start(&sub, canary.dir(), &s.aside(t), Trigger::FirstChangeIn(sub.clone()), t);
        let pass = s.run("twoway", &TWOWAY);
        let swap = swapper.stop();
        let mut problems = pass.unless(&UNDER_ATTACK, "the pass");
        problems.extend(canary.problems(&[&victim, &other]));
        problems.extend(s.sides_converge());
        problems.extend(differences(
            &wanted,
            &snapshot_synced(&other),
            "the user's side",
            "after the passes",
        ));
        trials.record(t, &problems, &swap, &pass);
        s.clean(t);
    }
    trials.finish();
}

/// Attacks twoway's conflict handling inside a swapped directory: the loser's set-aside (a
/// rename beside it, after a stamp re-check), the winner's copy over the freed path and the
/// loser's copy to the winner's side. Thirty files of `sub` change on both sides each trial
/// (A newer for half of them, B for the other half); `sub` of B (even trials) or A (odd ones)
/// is swapped from the first write into it. Nothing is lost: both versions of every
/// conflicting file are on both sides after the final pass.
#[test]
fn twoway_conflict_set_asides_never_leave_a_side_while_a_dir_of_that_side_is_swapped() {
    let (s, _) = synced_pair(7);
    let (a, b) = (s.join("a"), s.join("b"));
    let mut trials = Trials::new("twoway conflicts in a swapped side/sub");
    for t in 0..TRIALS {
        let (victim, _) = sides(&s, t);
        let sub = victim.join("sub");
        let mut versions = Vec::new();
        for k in 0..30u64 {
            let i = (t * 7 + k * 6) % FILES as u64;
            let rel = format!("sub/f{i:03}");
            let (in_a, in_b) = (format!("A {t} {i}").into_bytes(), format!("B {t} {i} (b)").into_bytes());
            let (ta, tb) = if k.is_multiple_of(2) { (20, 10) } else { (10, 20) };
            file(&a, rel.as_bytes(), &in_a, 0o644, (T.0 + 1_000 * (t as i64 + 1) + ta, 0));
            file(&b, rel.as_bytes(), &in_b, 0o644, (T.0 + 1_000 * (t as i64 + 1) + tb, 0));
            versions.extend([in_a, in_b]);
        }
        let canary = s.canary(t, &sub, all);
        let swapper = Swapper::start(&sub, canary.dir(), &s.aside(t), Trigger::FirstChangeIn(sub.clone()), t);
        let pass = s.run("twoway", &TWOWAY);
        let swap = swapper.stop();
        let mut problems = pass.unless(&UNDER_ATTACK, "the pass");
        problems.extend(canary.problems(&[&a, &b]));
        problems.extend(s.sides_converge());
        let kept = contents(&snapshot(&a));
        problems.extend(
            versions
                .iter()
                .filter(|v| !kept.contains(*v))
                .map(|v| format!("lost a conflicting version: {:?}", shown(v))),
        );
        trials.record(t, &problems, &swap, &pass);
        s.clean(t);
    }
    trials.finish();
}

/// Attacks the recovery system's log writer: the children that version each directory log to
/// `home/logs/oneway-<name>.log`, inside the home (their versions root). With `home/logs`
/// replaced by a symlink to a lookalike canary (no race needed: a symlink at rest), no log
/// may be created or appended to outside the home (a writer the list does not name:
/// the log files were opened by path, with `O_NOFOLLOW` on their last component only).
#[test]
fn recovery_logs_never_leave_the_home_when_the_logs_dir_is_a_symlink() {
    let s = Sandbox::new();
    file(&s.join("a"), b"f", b"x", 0o644, T);
    fs::create_dir(s.join("b")).unwrap();
    let with_recovery = ["a", "b", "--home", "home", "--once", "--quiet"];
    assert_eq!(s.run("twoway", &with_recovery).unless(&[0], "the first pass"), Vec::<String>::new());
    let logs = s.join("home").join("logs");
    let canary = s.canary(0, &logs, all);
    fs::remove_dir_all(&logs).unwrap();
    std::os::unix::fs::symlink(canary.dir(), &logs).unwrap();
    file(&s.join("a"), b"g", b"y", 0o644, T);
    let pass = s.run("twoway", &with_recovery);
    let mut problems = pass.unless(&UNDER_ATTACK, "the pass");
    problems.extend(canary.problems(&[&s.join("home")]));
    assert_eq!(problems, Vec::<String>::new());
}

/// Every file's bytes in a snapshot.
fn contents(tree: &Snapshot) -> std::collections::HashSet<Vec<u8>> {
    tree.values()
        .filter_map(|n| match n {
            Node::File { content, .. } => Some(content.clone()),
            _ => None,
        })
        .collect()
}

/// Attacks twoway's writers in its home: the base (`state.json`, written atomically after the
/// data operations, and set aside when unusable) and the pair's lock. `home/pairs/<pair>` is
/// swapped for a lookalike of itself from the start of each pass. After the swapper stops, a
/// pass converges and a further one has nothing to do: the recorded base is the real one.
#[test]
fn twoway_base_and_lock_never_leave_the_home_while_the_pair_dir_is_swapped() {
    let s = Sandbox::new();
    let (a, home) = (s.join("a"), s.join("home"));
    let mut rng = Rng::new(8);
    fill(&a, "sub", 20, &mut rng, T.0);
    fs::create_dir(s.join("b")).unwrap();
    assert_eq!(s.sides_converge(), Vec::<String>::new());
    let pair = only_entry(&home.join("pairs"));
    let mut trials = Trials::new("twoway base and lock with home/pairs/<pair> swapped");
    for t in 0..TRIALS {
        file(&a, format!("new-{t:02}").as_bytes(), &rng.bytes(30), 0o644, T);
        let canary = s.canary(t, &pair, all);
        let swapper = Swapper::start(&pair, canary.dir(), &s.aside(t), Trigger::Now, t);
        let pass = s.run("twoway", &TWOWAY);
        let swap = swapper.stop();
        let mut problems = pass.unless(&UNDER_ATTACK, "the pass");
        problems.extend(canary.problems(&[&home]));
        problems.extend(s.sides_converge());
        let again = s.run("twoway", &TWOWAY);
        if !again.text.contains("Total number of operations: 0") && again.code == Some(0) {
            // `--quiet` keeps the summary out of stderr; the log has it.
            problems.push(format!("a pass after convergence still had work: {}", again.text));
        }
        problems.extend(again.unless(&[0], "the pass after convergence"));
        trials.record(t, &problems, &swap, &pass);
        s.clean(t);
    }
    trials.finish();
}

// ---------------------------------------------------------------------------------------------
// restore

/// A directory `a` protected by the recovery system, with its latest version `_1` equal to it
/// (`v2`) and one restore done (so that `_undo` exists).
struct Protected {
    s: Sandbox,
    /// `home/__versions__/<name of a>`.
    va: PathBuf,
    v2: Snapshot,
}

impl Protected {
    fn new() -> Self {
        let s = Sandbox::new();
        let mut rng = Rng::new(9);
        fill(&s.join("a"), "sub", 100, &mut rng, T.0);
        file(&s.join("a"), b"doc.txt", b"version 2", 0o644, T);
        fs::create_dir(s.join("b")).unwrap();
        // One pass with the recovery system registers both directories in .info.json; a
        // versioning pass (what the recovery's child of `a` does) makes sure `_1` is `a`.
        let pass = s.run("twoway", &["a", "b", "--home", "home", "--once"]);
        assert_eq!(pass.unless(&[0], "the first pass"), Vec::<String>::new());
        let pass = s.run("oneway", &["a", "home", "--versioned", "--once"]);
        assert_eq!(pass.unless(&[0], "the versioning pass"), Vec::<String>::new());
        let versions = s.join("home").join("__versions__");
        let va = fs::read_dir(&versions)
            .unwrap()
            .flatten()
            .map(|d| d.path())
            .find(|p| p.file_name().unwrap().as_encoded_bytes().starts_with(b"a-"))
            .unwrap();
        let v2 = snapshot(&s.join("a"));
        assert_eq!(snapshot(&va.join("_1")), v2);
        file(&s.join("a"), b"before-the-first-restore", b"x", 0o644, T);
        let p = Protected { s, va, v2 };
        assert_eq!(p.restore().unless(&[0], "the first restore"), Vec::<String>::new());
        p
    }

    fn restore(&self) -> Outcome {
        self.s.run("twoway", &["a", "--restore", "--home", "home"])
    }

    /// The undo generations (directories of `_undo` not named like our temporaries), oldest
    /// first: `<stamp>` < `<stamp>-2` < `<stamp>-10`.
    fn generations(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(self.va.join("_undo"))
            .map(|d| d.flatten().map(|d| d.path()).collect())
            .unwrap_or_default();
        v.retain(|p| p.is_dir() && !p.file_name().unwrap().as_encoded_bytes().starts_with(b".synccore-tmp-"));
        v.sort_by_key(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            match name.split_once('-') {
                Some((stamp, n)) => (stamp.to_owned(), n.parse().unwrap_or(u64::MAX)),
                None => (name, 1),
            }
        });
        v
    }
}

/// Attacks the restore's writers and readers: the copy of the version built beside DIR, the
/// undo generation that keeps what DIR held (built in `_undo` under a temporary name, then
/// renamed, its files hard-linked to identical ones of the newest generation or the slots),
/// the exchange with DIR, and the removal of DIR's old content. One directory is swapped from
/// the start of each restore, in turn: `DIR/sub` (read into the undo generation),
/// `__versions__/<name>/_undo` (where the generation is written; its canary holds a lookalike
/// generation and a temporary-named bait), `_1/sub` (read into DIR), and the newest undo
/// generation (linked into the new one). A restore either succeeds, making DIR the version and
/// keeping what DIR held outside the victim, or changes nothing; once the swapper stops, a
/// restore converges.
#[test]
fn restore_never_leaves_dir_or_the_versions_while_a_dir_is_swapped() {
    let p = Protected::new();
    let (s, a, home) = (&p.s, p.s.join("a"), p.s.join("home"));
    let mut rng = Rng::new(10);
    let mut trials = Trials::new("restore with DIR/sub, _undo, _1/sub or the newest generation swapped");
    for t in 0..24 {
        // A restore made while `_1/sub` was a symlink may have copied it as one (never what it
        // pointed to): start from the version.
        if !a.join("sub").is_dir() || a.join("sub").is_symlink() {
            assert_eq!(p.restore().unless(&[0], "a restore between trials"), Vec::<String>::new());
        }
        // DIR differs from the version outside the victim (a marker that must be kept) and
        // inside it.
        let marker = format!("kept by trial {t}").into_bytes();
        file(&a, format!("trial-{t:02}").as_bytes(), &marker, 0o644, T);
        file(&a, b"sub/f000", &rng.bytes(40), 0o644, (T.0 + t as i64, 0));
        let before = snapshot(&a);
        let generations = p.generations();
        let (victim, canary) = match t % 4 {
            0 => (a.join("sub"), s.canary(t, &a.join("sub"), all)),
            1 => {
                // A lookalike of one generation is enough to catch a write or a listing.
                let oldest = generations[0].file_name().unwrap().as_encoded_bytes().to_vec();
                let undo = p.va.join("_undo");
                let canary = s.canary(t, &undo, |rel: &[u8]| rel.starts_with(&oldest));
                (undo, canary)
            }
            2 => (p.va.join("_1").join("sub"), s.canary(t, &p.va.join("_1").join("sub"), all)),
            _ => {
                let newest = generations.last().unwrap().clone();
                let canary = s.canary(t, &newest, all);
                (newest, canary)
            }
        };
        let swapper = Swapper::start(&victim, canary.dir(), &s.aside(t), Trigger::Now, t);
        let restore = p.restore();
        let swap = swapper.stop();
        let mut problems = restore.unless(&UNDER_ATTACK, "the restore");
        problems.extend(canary.problems(&[&a, &home]));
        let now = snapshot(&a);
        if restore.code == Some(0) {
            // DIR is the version (a `sub` that was a symlink when the version was copied may
            // be one in DIR too; never a file that is not the version's).
            for (rel, node) in &now {
                if matches!(node, Node::File { .. }) && p.v2.get(rel) != Some(node) {
                    problems.push(format!("DIR holds {} that is not the version's", shown(rel)));
                }
            }
            if t % 4 != 2 && now != p.v2 {
                problems.push("DIR is not the version".into());
            }
            let kept = p
                .generations()
                .iter()
                .any(|g| fs::read(g.join(format!("trial-{t:02}"))).ok() == Some(marker.clone()));
            if !kept {
                problems.push("what DIR held is not kept as an undo generation".into());
            }
        } else if now != before && now != p.v2 {
            // A restore that fails before its exchange changes nothing; one that fails after
            // it (keeping a late change of DIR's old content) leaves the version.
            let mut diff = differences(&before, &now, "DIR before", "DIR after");
            diff.truncate(3);
            problems.push(format!(
                "a restore that failed ({}) left DIR neither as it was nor the version ({}; real sub put back: {})",
                restore.text.lines().last().unwrap_or_default(),
                diff.join(", "),
                swap.put_back
            ));
        }
        trials.record(t, &problems, &swap, &restore);
        s.clean(t);
    }
    let last = p.restore();
    let mut problems = last.unless(&[0], "the final restore");
    problems.extend(differences(&p.v2, &snapshot(&a), "the version", "DIR"));
    assert_eq!(problems, Vec::<String>::new(), "after the trials");
    trials.finish();
}

// ---------------------------------------------------------------------------------------------
// an ordinary user

/// Attacks the mirror's copy and metadata writers as run by an ordinary user, where the rules
/// differ from root's: permission checks apply, owners are not kept (so the copy and metadata
/// code take their unprivileged paths), and the symlink belongs to another user (the attacker,
/// root here). The trees and the canary belong to the user running the pass (65534), so that a
/// write through the symlink would be allowed by permissions and only the engine stops it.
#[test]
fn unprivileged_copies_and_metadata_changes_never_leave_the_backup_while_a_backup_dir_is_swapped() {
    let mut s = Sandbox::new();
    s.unprivileged = true;
    if e2e::race::unprivileged("oneway", s.path()).is_none() {
        return;
    }
    let (src, dst) = (s.join("src"), s.join("dst"));
    let mut rng = Rng::new(11);
    fill(&src, "sub", FILES, &mut rng, T.0);
    if e2e::is_root() {
        e2e::race::chown_tree(s.path(), NOBODY.0, NOBODY.1);
    }
    assert_eq!(s.mirror_converges(), Vec::<String>::new());
    let sub = dst.join("sub");
    let mut trials = Trials::new("unprivileged oneway copies and metadata in a swapped BACKUP/sub");
    for t in 0..TRIALS {
        for (i, path) in files_in(&sub).iter().enumerate() {
            match (i as u64 + t) % 4 {
                0 => fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap(),
                1 => e2e::set_mtime(path, (T.0 + 5_000 + t as i64, 0)),
                _ => fs::remove_file(path).unwrap(),
            }
        }
        let canary = s.canary(t, &src.join("sub"), even);
        let swapper = Swapper::start(&sub, canary.dir(), &s.aside(t), Trigger::FirstChangeIn(sub.clone()), t);
        let pass = s.run("oneway", &["src", "dst", "--once"]);
        let swap = swapper.stop();
        let mut problems = pass.unless(&UNDER_ATTACK, "the pass");
        problems.extend(canary.problems(&[&dst]));
        problems.extend(s.mirror_converges());
        trials.record(t, &problems, &swap, &pass);
        s.clean(t);
    }
    trials.finish();
}

// ---------------------------------------------------------------------------------------------
// deterministic: the swap lands inside the window

/// Collects the problems of the cases of a deterministic test, so that one failing case does
/// not hide what the others do; fails with all of them at the end.
#[derive(Default)]
struct Cases(Vec<String>);

impl Cases {
    fn check(&mut self, case: &str, problems: &[String]) {
        if !problems.is_empty() {
            let first: Vec<&str> = problems.iter().take(6).map(String::as_str).collect();
            self.0.push(format!("{case} ({} problems): {}", problems.len(), first.join("; ")));
        }
    }

    fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} cases let a pass leave its root:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

fn fault_points() -> bool {
    if e2e::has_fault_points() {
        return true;
    }
    // Straight to the file descriptor: the harness captures `eprintln!` of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "skipped: the binaries under test are not debug builds (no fault points)"
    );
    false
}

/// Runs `c` (logging to the sandbox) with `SYNCCORE_FAULT=stop:<point>`; once it stopped
/// there, swaps `victim` for the symlink to `canary` and lets it go on. Returns the outcome
/// and whether the real directory could be put back after the pass.
fn swapped_at_fault_point(
    s: &Sandbox,
    mut c: Command,
    point: &str,
    victim: &Path,
    canary: &Canary,
) -> (Outcome, bool) {
    let log = s.join("pass.log");
    c.arg("--log").arg(&log).env("SYNCCORE_FAULT", format!("stop:{point}"));
    let mut child = c.spawn_guarded();
    assert!(
        e2e::wait_stopped(child.id(), Duration::from_secs(60)),
        "the pass never reached the fault point {point}"
    );
    let swapped = Swapped::swap(victim, canary.dir(), &s.aside(0));
    e2e::signal(child.id(), rustix::process::Signal::CONT);
    let status = child.wait().unwrap();
    let back = swapped.put_back();
    let text = fs::read_to_string(&log).unwrap_or_default();
    fs::remove_file(&log).ok();
    (Outcome { code: status.code(), text }, back)
}

/// Attacks the mirror's copy writer at its two windows, deterministically: stopped at the
/// fault point `stage` (before the first temporary is created in `BACKUP/sub`) or
/// `before-commit` (the temporaries staged, right before they are renamed into place), the
/// pass finds `BACKUP/sub` swapped for the symlink when it goes on, and until it ends.
#[test]
fn oneway_copies_with_the_backup_dir_swapped_at_a_fault_point_never_leave_the_backup() {
    if !fault_points() {
        return;
    }
    let mut cases = Cases::default();
    for point in ["stage", "before-commit"] {
        let s = Sandbox::new();
        let (src, dst) = (s.join("src"), s.join("dst"));
        fs::create_dir_all(src.join("sub")).unwrap();
        assert_eq!(s.mirror_converges(), Vec::<String>::new());
        fill(&src, "sub", 50, &mut Rng::new(12), T.0);
        let canary = s.canary(0, &src.join("sub"), even);
        let c = s.args("oneway", &["src", "dst", "--once"]);
        let (pass, back) = swapped_at_fault_point(&s, c, point, &dst.join("sub"), &canary);
        let mut problems = pass.unless(&UNDER_ATTACK, "the pass");
        if !back {
            problems.push("the real BACKUP/sub could not be put back".into());
        }
        problems.extend(canary.problems(&[&dst]));
        problems.extend(s.mirror_converges());
        cases.check(&format!("BACKUP/sub swapped at {point}"), &problems);
    }
    cases.finish();
}

/// Attacks twoway's copy writer at the same two fault points, on either side: the side that
/// receives 40 new files (B, then A) has its `sub` swapped while the pass is stopped.
#[test]
fn twoway_copies_with_a_side_dir_swapped_at_a_fault_point_never_leave_the_side() {
    if !fault_points() {
        return;
    }
    let mut cases = Cases::default();
    for point in ["stage", "before-commit"] {
        for t in 0..2 {
            let s = Sandbox::new();
            file(&s.join("a"), b"sub/keep", b"in both", 0o644, T);
            fs::create_dir(s.join("b")).unwrap();
            assert_eq!(s.sides_converge(), Vec::<String>::new());
            let (victim, other) = sides(&s, t);
            fill(&other, "sub", 40, &mut Rng::new(13), T.0);
            let wanted = snapshot_synced(&other);
            let canary = s.canary(0, &other.join("sub"), even);
            let c = s.args("twoway", &TWOWAY);
            let (pass, back) = swapped_at_fault_point(&s, c, point, &victim.join("sub"), &canary);
            let mut problems = pass.unless(&UNDER_ATTACK, "the pass");
            if !back {
                problems.push("the real directory could not be put back".into());
            }
            problems.extend(canary.problems(&[&victim, &other]));
            problems.extend(s.sides_converge());
            problems.extend(differences(
                &wanted,
                &snapshot_synced(&other),
                "the user's side",
                "after the passes",
            ));
            let side = if t == 0 { "b/sub" } else { "a/sub" };
            cases.check(&format!("{side} swapped at {point}"), &problems);
        }
    }
    cases.finish();
}

/// Runs `program args` (one of `s`'s commands) under strace with each thread's first call of
/// `calls` delayed, swaps `victim` for the symlink to `canary` while the call waits, and puts
/// it back after the pass. Returns the problems: the pass's exit, the canary and its bytes in
/// `trees`, and a window that was missed.
fn swapped_in_delayed_call(
    s: &Sandbox,
    strace: &Path,
    mut c: Command,
    calls: &[&str],
    victim: &Path,
    canary: &Canary,
    trees: &[&Path],
) -> Vec<String> {
    let log = s.join("pass.log");
    c.arg("--log").arg(&log);
    let mut swapped = None;
    let (out, landed) = e2e::race::with_delayed_call(strace, &c, calls, || {
        swapped = Some(Swapped::swap(victim, canary.dir(), &s.aside(0)));
    });
    let back = swapped.is_some_and(Swapped::put_back);
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stderr), fs::read_to_string(&log).unwrap_or_default());
    fs::remove_file(&log).ok();
    let mut problems = Outcome { code: out.status.code(), text }.unless(&UNDER_ATTACK, "the pass");
    if !landed {
        problems.push(format!("the pass never waited in {calls:?}: the swap missed the window"));
    }
    if !back {
        problems.push("the real directory could not be put back".into());
    }
    problems.extend(canary.problems(trees));
    problems
}

/// Attacks the commit step itself, as the issue asks, with the window widened by strace: the
/// first `renameat2` of the pass (the first staged copy renamed into place) waits 0.6 s before
/// the kernel resolves its paths, and `BACKUP/sub` (oneway) or `b/sub` (twoway) is swapped for
/// the symlink meanwhile. The rest of the pass (commits, directory metadata) meets the symlink
/// too.
#[test]
fn copies_committed_while_strace_holds_the_commit_never_leave_the_root() {
    let Some(strace) = e2e::strace() else { return };
    let s = Sandbox::new();
    let (src, dst) = (s.join("src"), s.join("dst"));
    fs::create_dir_all(src.join("sub")).unwrap();
    assert_eq!(s.mirror_converges(), Vec::<String>::new());
    fill(&src, "sub", 40, &mut Rng::new(14), T.0);
    let canary = s.canary(0, &src.join("sub"), even);
    let mut cases = Cases::default();
    let mut problems = swapped_in_delayed_call(
        &s,
        &strace,
        s.args("oneway", &["src", "dst", "--once"]),
        &["renameat2"],
        &dst.join("sub"),
        &canary,
        &[&dst],
    );
    problems.extend(s.mirror_converges());
    cases.check("oneway, BACKUP/sub swapped in the first commit", &problems);

    let s = Sandbox::new();
    file(&s.join("a"), b"sub/keep", b"in both", 0o644, T);
    fs::create_dir(s.join("b")).unwrap();
    assert_eq!(s.sides_converge(), Vec::<String>::new());
    fill(&s.join("a"), "sub", 40, &mut Rng::new(15), T.0);
    let canary = s.canary(0, &s.join("a").join("sub"), even);
    let (a, b) = (s.join("a"), s.join("b"));
    let mut problems = swapped_in_delayed_call(
        &s,
        &strace,
        s.args("twoway", &TWOWAY),
        &["renameat2"],
        &b.join("sub"),
        &canary,
        &[&a, &b],
    );
    problems.extend(s.sides_converge());
    cases.check("twoway, b/sub swapped in the first commit", &problems);
    cases.finish();
}

/// Attacks the delete and the metadata writer where no fault point fits, with strace: the
/// first delete (`unlink`/`unlinkat`, after its stamp re-check passed) or the first mtime
/// change (`utimensat`, after the mode was set) of the pass waits 0.6 s, and `BACKUP/sub` is
/// swapped for a lookalike canary meanwhile. The re-check before a delete must not be a window:
/// the delete removes the file it checked, or nothing.
#[test]
fn deletes_and_metadata_changes_held_by_strace_never_leave_the_backup() {
    let Some(strace) = e2e::strace() else { return };
    let mut cases = Cases::default();
    for calls in [&["unlink", "unlinkat"][..], &["utimensat"][..]] {
        let s = Sandbox::new();
        let (src, dst) = (s.join("src"), s.join("dst"));
        fill(&src, "sub", 40, &mut Rng::new(16), T.0);
        assert_eq!(s.mirror_converges(), Vec::<String>::new());
        let sub = dst.join("sub");
        for (i, path) in files_in(&sub).iter().enumerate() {
            if i % 2 == 0 {
                fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
            }
            e2e::set_mtime(path, (T.0 + 500, 0));
        }
        for i in 0..10 {
            file(&sub, format!("x{i}").as_bytes(), b"only in BACKUP", 0o644, T);
        }
        let canary = s.canary(0, &sub, all);
        let mut problems = swapped_in_delayed_call(
            &s,
            &strace,
            s.args("oneway", &["src", "dst", "--once"]),
            calls,
            &sub,
            &canary,
            &[&dst],
        );
        problems.extend(s.mirror_converges());
        cases.check(&format!("BACKUP/sub swapped in the first {}", calls.join("/")), &problems);
    }
    cases.finish();
}
