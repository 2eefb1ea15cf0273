//! Watch mode (`--watch`, the watch issue): changes reach the other side without waiting for
//! the interval, only the directories that changed are listed again, nothing is missed (not
//! even a change made while a pass runs), twoway does not react to its own writes, the rails
//! hold, and an idle watcher makes no system calls at all.
//!
//! Every wait here is "retry until it is reached" with a generous bound: no test depends on
//! how fast the machine is.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::{Background, SpawnGuarded, assert_same_tree, cmd, file, run, wait_for};
use tempfile::TempDir;

const T: (i64, u32) = (1_700_000_000, 0);
const LONG: Duration = Duration::from_secs(30);

struct Sandbox {
    sb: TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let sb = tempfile::tempdir().unwrap();
        for d in ["src", "a", "b"] {
            fs::create_dir(sb.path().join(d)).unwrap();
        }
        Sandbox { sb }
    }
    fn at(&self, rel: &str) -> PathBuf {
        self.sb.path().join(rel)
    }
    fn log(&self) -> String {
        fs::read_to_string(self.at("watch.log")).unwrap_or_default()
    }
    /// `oneway src dst --watch` (a full pass every hour: only events cause passes).
    fn oneway(&self, extra: &[&str]) -> Background {
        let mut c = cmd("oneway", self.sb.path());
        c.args(["src", "dst", "--watch", "--interval", "3600", "--log", "watch.log"]).args(extra);
        c.spawn_guarded()
    }
    /// `twoway a b --watch --no-recovery`.
    fn twoway(&self, extra: &[&str]) -> Background {
        let mut c = cmd("twoway", self.sb.path());
        c.args([
            "a",
            "b",
            "--home",
            "home",
            "--watch",
            "--interval",
            "3600",
            "--no-recovery",
            "--log",
            "watch.log",
        ])
        .args(extra);
        c.spawn_guarded()
    }
    /// Waits until the log holds `n` lines of passes that did something.
    fn wait_passes(&self, n: usize) {
        let done = wait_for(LONG, || count_passes(&self.log()) >= n);
        assert!(done, "{n} passes expected:\n{}", self.log());
    }
}

/// Lines of passes that did something ("pass N: K operations, ...").
fn count_passes(log: &str) -> usize {
    log.lines().filter(|l| l.contains(" operations, ") && l.contains("INFO  pass ")).count()
}

fn holds(path: &Path, content: &[u8]) -> bool {
    fs::read(path).is_ok_and(|c| c == content)
}

/// Stops a watcher with SIGTERM and returns its exit code.
fn stop(mut w: Background) -> Option<i32> {
    e2e::signal(w.id(), rustix::process::Signal::TERM);
    let ended = wait_for(LONG, || matches!(w.try_wait(), Ok(Some(_))));
    assert!(ended, "the watcher did not stop on SIGTERM");
    w.wait().unwrap().code()
}

#[test]
fn oneway_mirrors_each_change_as_it_happens_and_stops_on_sigterm() {
    let s = Sandbox::new();
    file(&s.at("src"), b"d/first.txt", b"first", 0o644, T);
    let w = s.oneway(&[]);
    assert!(wait_for(LONG, || holds(&s.at("dst/d/first.txt"), b"first")), "{}", s.log());

    // A new file, a new directory tree, an edit, a rename and a delete, each its own burst.
    fs::write(s.at("src/d/second.txt"), b"second").unwrap();
    assert!(wait_for(LONG, || holds(&s.at("dst/d/second.txt"), b"second")), "{}", s.log());
    fs::create_dir_all(s.at("src/new/deeper")).unwrap();
    fs::write(s.at("src/new/deeper/x"), b"x").unwrap();
    assert!(wait_for(LONG, || holds(&s.at("dst/new/deeper/x"), b"x")), "{}", s.log());
    fs::write(s.at("src/d/first.txt"), b"first, edited").unwrap();
    fs::rename(s.at("src/new"), s.at("src/renamed")).unwrap();
    fs::remove_file(s.at("src/d/second.txt")).unwrap();
    let converged = || s.at("dst/renamed/deeper/x").exists() && !s.at("dst/d/second.txt").exists();
    assert!(
        wait_for(LONG, || converged() && holds(&s.at("dst/d/first.txt"), b"first, edited")),
        "{}",
        s.log()
    );
    assert!(s.log().contains(r#"rename "new" -> "renamed""#), "{}", s.log());
    // Something written into a directory made after the watch began is seen too.
    fs::write(s.at("src/renamed/deeper/y"), b"y").unwrap();
    assert!(wait_for(LONG, || holds(&s.at("dst/renamed/deeper/y"), b"y")), "{}", s.log());

    assert_eq!(stop(w), Some(0));
    assert_same_tree(&s.at("src"), &s.at("dst"));
    let log = s.log();
    assert!(log.contains("stopping on signal") && log.contains("Total number of operations"), "{log}");
}

#[test]
fn a_change_made_while_a_pass_runs_gets_its_own_pass() {
    if !e2e::has_fault_points() {
        return;
    }
    let s = Sandbox::new();
    file(&s.at("src"), b"d/first.txt", b"first", 0o644, T);
    let mut c = cmd("oneway", s.sb.path());
    c.args(["src", "dst", "--watch", "--interval", "3600", "--log", "watch.log"])
        .env("SYNCCORE_FAULT", "stop:before-commit");
    let w = c.spawn_guarded();
    // The first pass stops before it commits its copy; a file is written meanwhile.
    assert!(e2e::wait_stopped(w.id(), LONG), "the pass never reached its commit");
    fs::write(s.at("src/d/during.txt"), b"during").unwrap();
    e2e::signal(w.id(), rustix::process::Signal::CONT);
    assert!(wait_for(LONG, || holds(&s.at("dst/d/during.txt"), b"during")), "{}", s.log());
    assert_eq!(stop(w), Some(0));
}

#[test]
fn twoway_syncs_both_ways_and_does_not_react_to_its_own_writes() {
    let s = Sandbox::new();
    file(&s.at("a"), b"d/x", b"from a", 0o644, T);
    let w = s.twoway(&[]);
    assert!(wait_for(LONG, || holds(&s.at("b/d/x"), b"from a")), "{}", s.log());
    s.wait_passes(1);
    let state = fs::read_dir(s.at("home/pairs")).unwrap().next().unwrap().unwrap().path();
    let full_base = fs::read(state.join("state.json")).unwrap();

    fs::write(s.at("b/d/y"), b"from b").unwrap();
    assert!(wait_for(LONG, || holds(&s.at("a/d/y"), b"from b")), "{}", s.log());
    fs::rename(s.at("a/d"), s.at("a/e")).unwrap();
    assert!(wait_for(LONG, || holds(&s.at("b/e/y"), b"from b") && !s.at("b/d").exists()), "{}", s.log());
    s.wait_passes(3);
    // Our own writes woke the watcher, but the passes they caused wrote nothing: after a
    // quiet while, still exactly one pass per change.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(count_passes(&s.log()), 3, "{}", s.log());
    // The base grew by a journal; state.json was not rewritten per change.
    assert_eq!(fs::read(state.join("state.json")).unwrap(), full_base);
    assert!(fs::metadata(state.join("state.delta")).is_ok_and(|m| m.len() > 0));

    assert_eq!(stop(w), Some(0));
    e2e::assert_same_synced(&s.at("a"), &s.at("b"));
    // A later pass (not watching) agrees: the journal holds the base.
    let mut c = cmd("twoway", s.sb.path());
    c.args(["a", "b", "--home", "home", "--once", "--no-recovery", "--log", "once.log"]);
    assert!(run(c).status.success());
    let once = fs::read_to_string(s.at("once.log")).unwrap();
    assert!(!once.contains("conflict") || once.contains(" 0 conflicts"), "{once}");
    assert!(!once.contains("INFO  A: ") && !once.contains("INFO  B: "), "nothing to do: {once}");
}

#[test]
fn the_max_delete_rail_counts_the_whole_tree_in_a_watch_pass() {
    let s = Sandbox::new();
    for i in 0..20 {
        file(&s.at("src"), format!("d{}/f{i:02}", i % 2).as_bytes(), b"x", 0o644, T);
    }
    let w = s.oneway(&["--max-delete", "30"]);
    assert!(wait_for(LONG, || s.at("dst/d1/f19").exists()), "{}", s.log());
    // 4 files of d0: 40 % of the directory the pass lists again, 20 % of the tree: allowed.
    for i in [0, 2, 4, 6] {
        fs::remove_file(s.at(&format!("src/d0/f{i:02}"))).unwrap();
    }
    assert!(wait_for(LONG, || !s.at("dst/d0/f06").exists()), "{}", s.log());
    // The rest of d0 and most of d1: 11 of 16 files, the rail stops the pass.
    fs::remove_dir_all(s.at("src/d0")).unwrap();
    for i in [1, 3, 5, 7, 9] {
        fs::remove_file(s.at(&format!("src/d1/f{i:02}"))).unwrap();
    }
    assert!(wait_for(LONG, || s.log().contains("would delete 11 of 16 files")), "{}", s.log());
    assert!(s.at("dst/d0/f08").exists() && s.at("dst/d1/f01").exists(), "nothing was deleted");
    assert_eq!(stop(w), Some(0));
}

#[test]
fn a_replaced_source_is_seen_by_a_full_pass_and_the_empty_side_rail() {
    let s = Sandbox::new();
    file(&s.at("src"), b"keep.txt", b"keep", 0o644, T);
    let w = s.oneway(&[]);
    assert!(wait_for(LONG, || s.at("dst/keep.txt").exists()), "{}", s.log());
    // SOURCE is moved away and an empty directory takes its place (an unmounted disk).
    fs::rename(s.at("src"), s.at("src-away")).unwrap();
    fs::create_dir(s.at("src")).unwrap();
    assert!(wait_for(LONG, || s.log().contains("a full pass follows")), "{}", s.log());
    assert!(wait_for(LONG, || s.log().to_lowercase().contains("empty")), "{}", s.log());
    assert!(s.at("dst/keep.txt").exists(), "the backup is untouched");
    assert_eq!(stop(w), Some(0));
}

#[test]
fn ignored_paths_are_not_watched_and_a_new_rule_applies_at_once() {
    let s = Sandbox::new();
    fs::write(s.at("src/.syncignore"), b"build/\n").unwrap();
    file(&s.at("src"), b"build/out.o", b"o", 0o644, T);
    file(&s.at("src"), b"main.c", b"c", 0o644, T);
    let w = s.oneway(&[]);
    assert!(wait_for(LONG, || s.at("dst/main.c").exists()), "{}", s.log());
    fs::write(s.at("src/build/more.o"), b"o").unwrap();
    fs::write(s.at("src/main.h"), b"h").unwrap();
    assert!(wait_for(LONG, || s.at("dst/main.h").exists()), "{}", s.log());
    assert!(!s.at("dst/build").exists());
    // A rule added while watching applies to the next change.
    fs::write(s.at("src/.syncignore"), b"build/\n*.tmp\n").unwrap();
    fs::write(s.at("src/scratch.tmp"), b"t").unwrap();
    fs::write(s.at("src/after.c"), b"a").unwrap();
    assert!(wait_for(LONG, || s.at("dst/after.c").exists()), "{}", s.log());
    assert!(!s.at("dst/scratch.tmp").exists(), "{}", s.log());
    assert_eq!(stop(w), Some(0));
}

#[test]
fn an_idle_watcher_makes_no_system_calls() {
    // No polling loop anywhere: while nothing changes (and no full pass is due), not one
    // thread of the watcher wakes up.
    let Some(strace) = e2e::strace() else { return };
    let s = Sandbox::new();
    file(&s.at("src"), b"d/x", b"x", 0o644, T);
    file(&s.at("a"), b"d/x", b"x", 0o644, T);
    for (name, w) in [("oneway", s.oneway(&[])), ("twoway", s.twoway(&[]))] {
        let synced = |s: &Sandbox| s.at("dst/d/x").exists() && (name == "oneway" || s.at("b/d/x").exists());
        assert!(wait_for(LONG, || synced(&s)), "{}", s.log());
        std::thread::sleep(Duration::from_millis(500));
        let trace = s.at(&format!("{name}.trace"));
        let mut c = std::process::Command::new(&strace);
        c.args(["-f", "-qq", "-o"]).arg(&trace).args(["-p", &w.id().to_string()]);
        let mut tracer = c.spawn_guarded();
        std::thread::sleep(Duration::from_secs(3));
        e2e::signal(tracer.id(), rustix::process::Signal::INT);
        let _ = tracer.wait();
        let calls: Vec<String> = fs::read_to_string(&trace)
            .unwrap_or_default()
            .lines()
            // Attaching makes each blocked thread enter its call again (an `<unfinished ...>`
            // line) and detaching leaves it blocked there: a wake-up is a call that returned.
            .filter(|l| (l.contains(" = ") || l.contains("resumed>")) && !l.contains("<detached"))
            .map(String::from)
            .collect();
        assert!(calls.is_empty(), "{name} woke up while idle: {calls:#?}");
        assert_eq!(stop(w), Some(0));
    }
}

#[test]
fn watch_is_refused_with_versions_once_and_dry_run() {
    let s = Sandbox::new();
    for args in [
        &["src", "root", "--versioned", "--watch"][..],
        &["src", "dst", "--watch", "--once"],
        &["src", "dst", "--watch", "--dry-run"],
        &["src", "dst", "--settle", "100"],
    ] {
        let mut c = cmd("oneway", s.sb.path());
        c.args(args);
        let out = run(c);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(!s.at("root").exists() && !s.at("dst").exists());
    }
}
