//! Command-line conventions and output (issue 16): progress on a terminal, -q/-v, dry runs
//! that show changes only and say their totals as "would", `--json` events checked against
//! what was done, help with examples and exit codes, completions and a man page, logs
//! without surprises, recovery that finds its oneway, `twoway --status`, a blocked pair that
//! is loud, and conflict copies named in the summary.

use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{Background, cmd, file, run, snapshot, wait_for};
use serde_json::Value;

use crate::twoway_merge::Pair;

const T: (i64, u32) = (1_700_000_000, 0);
const WAIT: Duration = Duration::from_secs(30);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `oneway` in `sb` with `args`.
fn oneway(sb: &Path, args: &[&str]) -> Output {
    let mut c = cmd("oneway", sb);
    c.args(args);
    run(c)
}

/// Every line of stdout as a JSON event (the test fails on a line that is not one).
fn events(out: &Output) -> Vec<Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn of_kind<'e>(events: &'e [Value], kind: &str) -> Vec<&'e Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

/// `src/` with `n` files of 3 bytes in `d/`.
fn tree(sb: &Path, n: usize) -> PathBuf {
    let src = sb.join("src");
    for i in 0..n {
        file(&src, format!("d/f{i:03}").as_bytes(), b"abc", 0o644, T);
    }
    src
}

// ---- 1. Progress -------------------------------------------------------------------------

/// A pseudo-terminal: the master side to read what the program drew, the slave side to give
/// it as stderr.
fn pty() -> (fs::File, fs::File) {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let size = rustix::termios::Winsize { ws_row: 40, ws_col: 160, ws_xpixel: 0, ws_ypixel: 0 };
    rustix::termios::tcsetwinsize(&master, size).unwrap();
    let slave = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(std::ffi::OsStr::from_bytes(name.as_bytes()))
        .unwrap();
    (fs::File::from(master), slave)
}

/// Collects what is written to the terminal until its last writer closes it.
fn collect(mut master: fs::File) -> Arc<Mutex<Vec<u8>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // EIO once no process holds the slave side: the end.
        while let Ok(n @ 1..) = master.read(&mut buf) {
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    seen
}

#[test]
fn on_a_terminal_a_pass_shows_a_bar_with_totals_and_the_operations_scroll_above_it() {
    if !e2e::has_fault_points() {
        eprintln!("skipped: the binaries are not debug builds (no fault points to hold a pass still)");
        return;
    }
    let sb = tempfile::tempdir().unwrap();
    tree(sb.path(), 20);
    let (master, slave) = pty();
    let mut c = cmd("oneway", sb.path());
    // The pass stops itself before committing its copies: the bar (shown at once here, after
    // a second normally) has been drawn with the plan's totals by then.
    c.args(["src", "dst", "--once"])
        .env("TERM", "xterm")
        .env("SYNCCLI_PROGRESS_AFTER_MS", "0")
        .env("SYNCCORE_FAULT", "stop:before-commit")
        .stdout(Stdio::null())
        .stderr(slave);
    let child = Background(c.spawn().unwrap());
    drop(c);
    let seen = collect(master);
    assert!(e2e::wait_stopped(child.id(), WAIT), "the pass stops before its commit");
    let shown = |needle: &str| text(&seen.lock().unwrap()).contains(needle);
    // Totals: 0 of 20 files, 0 B of 60 B, with the ETA column.
    wait_for(WAIT, || shown("0/20 files") && shown("ETA"));
    e2e::signal(child.id(), rustix::process::Signal::CONT);
    let mut child = child;
    assert!(wait_for(WAIT, || matches!(child.try_wait(), Ok(Some(_)))));
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(wait_for(WAIT, || shown("Total number of operations: 22")));
    let screen = text(&seen.lock().unwrap());
    assert!(
        screen.contains("mirroring: ") && screen.contains("/20 files") && screen.contains("ETA"),
        "{screen}"
    );
    // The bar is redrawn in place (carriage returns or cursor moves), and the operation lines
    // are whole lines written around it.
    assert!(screen.contains('\r') || screen.contains("\x1b["), "{screen:?}");
    assert!(screen.contains("INFO  copy \"d/f019\" (3 B)"), "{screen}");
}

#[test]
fn without_a_terminal_there_is_no_bar_only_lines() {
    let sb = tempfile::tempdir().unwrap();
    tree(sb.path(), 3);
    let out = oneway(sb.path(), &["src", "dst", "--once"]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("copy \"d/f002\""), "{stderr}");
    assert!(!stderr.contains("ETA") && !stderr.contains('\r') && !stderr.contains("\x1b["), "{stderr:?}");
}

// ---- 2. Verbosity ------------------------------------------------------------------------

#[test]
fn default_shows_changes_quiet_only_problems_verbose_also_unchanged_checks() {
    let sb = tempfile::tempdir().unwrap();
    let src = tree(sb.path(), 3);
    let normal = oneway(sb.path(), &["src", "dst", "--once"]);
    let stderr = text(&normal.stderr);
    assert!(
        stderr.contains("INFO  copy \"d/f000\" (3 B)") && stderr.contains("Total number of operations: 5")
    );
    file(&src, b"d/new", b"x", 0o644, T);
    let quiet = oneway(sb.path(), &["src", "dst", "--once", "-q"]);
    assert_eq!(quiet.status.code(), Some(0));
    assert_eq!(text(&quiet.stderr), "", "-q: nothing but warnings and errors");
    // The log file still has every operation.
    let log = fs::read_to_string(sb.path().join("oneway.log")).unwrap();
    assert!(log.contains("copy \"d/new\""), "{log}");
    let verbose = oneway(sb.path(), &["src", "dst", "--once", "-v"]);
    let stderr = text(&verbose.stderr);
    assert!(stderr.contains("DEBUG pass 1: nothing to do"), "{stderr}");
}

// ---- 3. Dry runs -------------------------------------------------------------------------

#[test]
fn a_dry_run_prints_its_plan_and_closes_with_the_same_total_said_as_would() {
    let sb = tempfile::tempdir().unwrap();
    tree(sb.path(), 7);
    let out = oneway(sb.path(), &["src", "dst", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0));
    let planned = text(&out.stdout).lines().count();
    assert_eq!(planned, 9, "mkdir, 7 copies, meta: {}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr
            .contains(&format!("Total number of operations: {planned} (would be; dry run, nothing changed)")),
        "{stderr}"
    );
    assert!(!sb.path().join("dst").exists());
}

#[test]
fn a_versioned_dry_run_shows_the_changed_file_and_one_line_for_the_unchanged_ones() {
    let sb = tempfile::tempdir().unwrap();
    let src = tree(sb.path(), 50);
    assert_eq!(oneway(sb.path(), &["src", "root", "--versioned", "--once"]).status.code(), Some(0));
    file(&src, b"d/f007", b"changed", 0o644, T);
    let out = oneway(sb.path(), &["src", "root", "--versioned", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(lines[0], "copy \"d/f007\" (7 B)");
    assert_eq!(lines[1], "would hard-link 49 unchanged files from _1");
    assert!(lines[2].starts_with("would rotate: "), "{stdout}");
    assert!(text(&out.stderr).contains("(would be; dry run, nothing changed)"));
    // A real rotation logs the same way, even in verbose mode: no line per hard link.
    let out = oneway(sb.path(), &["src", "root", "--versioned", "--once", "-v"]);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("copy \"d/f007\"") && !stderr.contains("hardlink \""), "{stderr}");
    assert!(stderr.contains(" 49 hard links"), "{stderr}");
}

// ---- 4. --json ---------------------------------------------------------------------------

#[test]
fn json_events_match_the_operations_done_and_encode_raw_names() {
    let sb = tempfile::tempdir().unwrap();
    let src = tree(sb.path(), 3);
    file(&src, b"bad\xffname", b"12345", 0o644, T);
    let out = oneway(sb.path(), &["src", "dst", "--once", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let ev = events(&out);
    // Human lines are on stderr only.
    assert!(text(&out.stderr).contains("Total number of operations: 6"));
    let copy_events: Vec<&Value> = of_kind(&ev, "copy");
    let mut copied: Vec<Vec<u8>> = copy_events
        .iter()
        .map(|e| match &e["path"] {
            Value::String(s) => s.as_bytes().to_vec(),
            Value::Object(o) => hex_decode(o["hex"].as_str().unwrap()),
            other => panic!("{other}"),
        })
        .collect();
    copied.sort();
    let mut on_disk: Vec<Vec<u8>> = snapshot(&sb.path().join("dst"))
        .into_iter()
        .filter_map(|(path, node)| matches!(node, e2e::Node::File { .. }).then_some(path))
        .collect();
    on_disk.sort();
    assert_eq!(copied, on_disk, "one copy event per file copied");
    let raw = copy_events.iter().find(|e| e["path"].is_object()).unwrap();
    assert_eq!(raw["path"]["hex"], "626164ff6e616d65");
    assert_eq!(raw["bytes"], 5);
    let summary = of_kind(&ev, "summary");
    assert_eq!(summary.len(), 1);
    assert_eq!((summary[0]["copy"].as_u64(), summary[0]["operations"].as_u64()), (Some(4), Some(6)));
    assert_eq!(summary[0]["status"], 0);
    assert_eq!(ev.last().unwrap()["event"], "totals");
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn json_dry_runs_plan_with_would_and_print_no_text_and_problems_are_events() {
    let sb = tempfile::tempdir().unwrap();
    let src = tree(sb.path(), 2);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("pipe"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let out = oneway(sb.path(), &["src", "dst", "--dry-run", "--json"]);
    let ev = events(&out);
    assert!(ev.iter().filter(|e| e["event"] == "copy").all(|e| e["would"] == true));
    assert_eq!(of_kind(&ev, "copy").len(), 2);
    let warning = of_kind(&ev, "warning");
    assert!(warning.iter().any(|w| w["path"] == "pipe"), "{warning:?}");
    assert_eq!(of_kind(&ev, "summary")[0]["would"], true);
    // A rail: an error event and a summary that says the pass was aborted, exit 3.
    for i in 0..20 {
        file(&src, format!("many/{i}").as_bytes(), b"x", 0o644, T);
    }
    assert_eq!(oneway(sb.path(), &["src", "dst", "--once"]).status.code(), Some(0));
    fs::remove_dir_all(src.join("many")).unwrap();
    let out = oneway(sb.path(), &["src", "dst", "--once", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let ev = events(&out);
    let error = of_kind(&ev, "error");
    assert!(error.iter().any(|e| e["message"].as_str().unwrap().contains("--force")), "{ev:?}");
    let summary = of_kind(&ev, "summary");
    assert_eq!(summary[0]["status"], 3);
    assert!(summary[0]["aborted"].is_string());
}

#[test]
fn twoway_json_events_carry_their_side_and_conflicts_name_their_copies() {
    let p = Pair::new();
    file(&p.a, b"only-a", b"a", 0o644, T);
    file(&p.a, b"both.txt", b"from a", 0o644, T);
    file(&p.b, b"both.txt", b"from b, newer", 0o644, (T.0 + 10, 0));
    let mut c = cmd("twoway", p.root());
    c.args(["a", "b", "--home", "home", "--once", "--no-recovery", "--json"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(0), "conflicts resolved: exit 0");
    let ev = events(&out);
    let copy = of_kind(&ev, "copy").into_iter().find(|e| e["path"] == "only-a").unwrap().clone();
    assert_eq!(copy["side"], "b", "only-a was copied into B");
    let conflict = of_kind(&ev, "conflict");
    assert_eq!(conflict.len(), 1);
    assert_eq!((&conflict[0]["path"], &conflict[0]["winner"]), (&Value::from("both.txt"), &Value::from("b")));
    let name = conflict[0]["copy"].as_str().unwrap();
    assert!(name.starts_with("both.conflict-") && name.ends_with("-a.txt"), "{name}");
    assert!(p.a.join(name).exists() && p.b.join(name).exists());
    let summary = of_kind(&ev, "summary");
    assert_eq!(summary[0]["conflict_copies"], serde_json::json!([name]));
    // 10: the human summary line names the copy too.
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("1 conflicts (conflict copies: \"{name}\")")), "{stderr}");
}

#[test]
fn twoway_json_dry_run_prints_planned_events_only() {
    let p = Pair::new();
    file(&p.a, b"x", b"1", 0o644, T);
    let mut c = cmd("twoway", p.root());
    c.args(["a", "b", "--home", "home", "--dry-run", "--no-recovery", "--json"]);
    let out = run(c);
    let ev = events(&out);
    let copy = &of_kind(&ev, "copy")[0];
    assert_eq!((copy["side"].as_str(), copy["would"].as_bool()), (Some("b"), Some(true)));
    assert!(text(&out.stderr).contains("Total number of operations: 1 (would be; dry run, nothing changed)"));
    assert!(!p.b.join("x").exists());
}

// ---- 5. Help, version, completions, man ----------------------------------------------------

#[test]
fn help_ends_with_examples_and_exit_codes_and_both_programs_print_their_version() {
    let sb = tempfile::tempdir().unwrap();
    for program in ["oneway", "twoway"] {
        let out = run({
            let mut c = cmd(program, sb.path());
            c.arg("--help");
            c
        });
        assert_eq!(out.status.code(), Some(0));
        let help = text(&out.stdout);
        let examples = help.find("Examples:").unwrap_or_else(|| panic!("{help}"));
        let codes = help.find("Exit codes:").unwrap();
        assert!(examples < codes && help.trim_end().ends_with("nothing was changed"), "{help}");
        assert!(help.contains("  3  aborted by a safety rail"), "{help}");
        for flag in ["-V", "--version"] {
            let out = run({
                let mut c = cmd(program, sb.path());
                c.arg(flag);
                c
            });
            assert_eq!(out.status.code(), Some(0));
            assert_eq!(text(&out.stdout).trim(), format!("{program} {}", env!("CARGO_PKG_VERSION")));
        }
    }
    // twoway's --version VALUE is the restore source: without --restore, a usage error.
    let mut c = cmd("twoway", sb.path());
    c.args(["--version", "previous"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--version previous needs --restore"));
}

#[test]
fn completions_and_man_pages_need_no_arguments() {
    let sb = tempfile::tempdir().unwrap();
    for program in ["oneway", "twoway"] {
        for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
            let mut c = cmd(program, sb.path());
            c.args(["--completions", shell]);
            let out = run(c);
            assert_eq!(out.status.code(), Some(0), "{program} {shell}: {}", text(&out.stderr));
            assert!(text(&out.stdout).contains(program) && text(&out.stdout).contains("dry-run"));
        }
        let mut c = cmd(program, sb.path());
        c.arg("--man");
        let out = run(c);
        assert_eq!(out.status.code(), Some(0));
        let man = text(&out.stdout);
        assert!(man.contains(&format!(".TH {program} 1")) && man.contains("dry\\-run"), "{man}");
        assert!(fs::read_dir(sb.path()).unwrap().next().is_none(), "no log file, nothing written");
    }
}

// ---- 6. Logs -----------------------------------------------------------------------------

#[test]
fn an_unusable_default_log_warns_once_and_nothing_fails_for_it() {
    let sb = tempfile::tempdir().unwrap();
    tree(sb.path(), 2);
    // The default log's name is taken by a directory (a read-only working directory does the
    // same to an unprivileged user; as root every directory is writable).
    fs::create_dir(sb.path().join("oneway.log")).unwrap();
    fs::create_dir(sb.path().join("twoway.log")).unwrap();
    for args in [&["src", "dst", "--once"][..], &["src", "dst2", "--dry-run"]] {
        let out = oneway(sb.path(), args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert_eq!(stderr.matches("cannot create the log file oneway.log").count(), 1, "{stderr}");
        assert!(stderr.contains("logging to the console only"), "{stderr}");
    }
    // twoway: a pass, a dry run and a restore.
    fs::create_dir(sb.path().join("b")).unwrap();
    for args in [
        &["src", "b", "--home", "home", "--once"][..],
        &["src", "b", "--home", "home", "--dry-run"],
        &["src", "--restore", "--home", "home"],
    ] {
        let mut c = cmd("twoway", sb.path());
        c.args(args);
        let out = run(c);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("cannot create the log file twoway.log"));
    }
    // An explicit --log that cannot be opened is bad input.
    let out = oneway(sb.path(), &["src", "dst", "--once", "--log", "oneway.log"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

// ---- 7. Recovery that installs itself ------------------------------------------------------

/// A directory holding a copy of `twoway` alone (no `oneway` beside it).
fn lonely_twoway(sb: &Path) -> PathBuf {
    let dir = sb.join("bin");
    fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("twoway");
    fs::copy(e2e::bin("twoway"), &copy).unwrap();
    copy
}

#[test]
fn twoway_finds_oneway_on_path_and_finds_a_moved_default_again() {
    let p = Pair::with_recovery();
    file(&p.a, b"doc", b"v1", 0o644, T);
    let twoway = lonely_twoway(p.root());
    let oneway_dir = e2e::bin("oneway").parent().unwrap().to_path_buf();
    let run_lonely = |path: &Path| {
        let mut c = Command::new(&twoway);
        c.current_dir(p.root()).args(["a", "b", "--home", "home", "--once"]).env("PATH", path);
        run(c)
    };
    let out = run_lonely(&oneway_dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let home = p.root().join("home");
    let config: Value = serde_json::from_slice(&fs::read(home.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["created_by"], "twoway");
    assert_eq!(config["script"], Value::from(e2e::bin("oneway").to_str().unwrap()));
    assert!(config.get("interval").is_none(), "{config}");
    // The default script moved away: looked up again (here, on PATH), not an error forever.
    let moved = serde_json::json!({"created_by": "twoway", "script": "/nowhere/oneway"});
    fs::write(home.join("config.json"), moved.to_string()).unwrap();
    let out = run_lonely(&oneway_dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no longer exists; using"), "{}", text(&out.stderr));
    // A script the user wrote is theirs: a missing one stays an error.
    fs::write(home.join("config.json"), r#"{"script": "/nowhere/oneway"}"#).unwrap();
    assert_eq!(run_lonely(&oneway_dir).status.code(), Some(2));
}

/// The command line of a process.
fn cmdline(pid: u32) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|&b| b == 0).map(text).collect()
}

#[test]
fn twoways_interval_reaches_the_children_unless_the_config_sets_one() {
    let p = Pair::with_recovery();
    file(&p.a, b"doc", b"v1", 0o644, T);
    let child_interval = |config: Option<&str>| {
        let home = p.root().join("home");
        fs::create_dir_all(&home).unwrap();
        let script = e2e::bin("oneway");
        let json = match config {
            Some(interval) => format!(r#"{{"script": "{}", "interval": {interval}}}"#, script.display()),
            None => format!(r#"{{"created_by": "twoway", "script": "{}"}}"#, script.display()),
        };
        fs::write(home.join("config.json"), json).unwrap();
        let mut c = cmd("twoway", p.root());
        c.args(["a", "b", "--home", "home", "--interval", "7", "--log", "bg.log"]);
        let twoway = Background::spawn(c);
        // A child between fork and exec still shows twoway's own command line: wait until
        // both run the script.
        let script = script.to_string_lossy().into_owned();
        let mut args = Vec::new();
        assert!(wait_for(WAIT, || {
            let children = e2e::children_of(twoway.id());
            let lines: Vec<Vec<String>> = children.iter().map(|&c| cmdline(c)).collect();
            let running = lines.len() == 2 && lines.iter().all(|l| l.first() == Some(&script));
            if running {
                args = lines[0].clone();
            }
            running
        }));
        let at = args.iter().position(|a| a == "--interval").unwrap();
        args[at + 1].clone()
    };
    assert_eq!(child_interval(None), "7");
    assert_eq!(child_interval(Some(r#"["--interval", "300"]"#)), "300");
}

// ---- 8, 9. twoway --status and a blocked pair ------------------------------------------------

fn status(root: &Path, json: bool) -> Output {
    let mut c = cmd("twoway", root);
    c.args(["--status", "--home", "home"]);
    if json {
        c.arg("--json");
    }
    run(c)
}

#[test]
fn status_shows_passes_versions_undo_and_disk_and_changes_nothing() {
    let p = Pair::with_recovery();
    file(&p.a, b"doc", b"v1", 0o644, T);
    assert_eq!(p.pass(&[]).0, 0);
    // A restore keeps an undo generation.
    file(&p.a, b"doc", b"edited", 0o644, (T.0 + 5, 0));
    let mut c = cmd("twoway", p.root());
    c.args(["a", "--restore", "--home", "home", "--log", "restore.log"]);
    assert_eq!(run(c).status.code(), Some(0));
    let home = p.root().join("home");
    let before = snapshot(p.root());
    let out = status(p.root(), true);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(snapshot(p.root()), before, "--status writes nothing, not even a log");
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(s["disk_bytes"].as_u64().unwrap() > 0);
    let pair = &s["pairs"][0];
    assert_eq!(pair["last_pass"]["result"], "ok");
    assert_eq!(pair["last_pass"]["counts"]["copy"], 1);
    assert_eq!(pair["a"], Value::from(p.a.canonicalize().unwrap().to_str().unwrap()));
    let dirs = s["directories"].as_array().unwrap();
    assert_eq!(dirs.len(), 2);
    let a = dirs.iter().find(|d| d["path"] == pair["a"]).unwrap();
    assert_eq!((a["latest"]["files"].as_u64(), a["latest"]["bytes"].as_u64()), (Some(1), Some(2)));
    assert_eq!(a["undo"].as_array().unwrap().len(), 1);
    assert_eq!(a["last_pass"]["program"], "oneway");
    assert!(fs::read_dir(home.join("pairs")).unwrap().count() == 1);
    let human = text(&status(p.root(), false).stdout);
    assert!(
        human.contains("last pass: ")
            && human.contains("latest: taken ")
            && human.contains("undo generations: ")
    );
}

#[test]
fn a_blocked_pair_logs_an_error_every_pass_and_status_says_since_when() {
    let p = Pair::new();
    file(&p.a, b"x", b"1", 0o644, T);
    p.sync();
    fs::remove_file(p.b.join("x")).unwrap();
    fs::remove_file(p.a.join("x")).unwrap();
    file(&p.a, b"y", b"2", 0o644, T);
    // B is empty while the base has files: every pass aborts (exit 3 with --once).
    let mut c = cmd("twoway", p.root());
    c.args(["a", "b", "--home", "home", "--interval", "1", "--no-recovery", "--log", "bg.log"]);
    let twoway = Background::spawn(c);
    let log = || fs::read_to_string(p.root().join("bg.log")).unwrap_or_default();
    let aborted =
        || log().lines().filter(|l| l.contains("ERROR pass aborted:") && l.contains("empty")).count();
    assert!(wait_for(WAIT, || aborted() >= 2), "an ERROR on every pass: {}", log());
    let out = status(p.root(), true);
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pair = &s["pairs"][0];
    assert_eq!(pair["last_pass"]["result"], "blocked");
    assert_eq!(pair["pid"], twoway.id());
    let since = pair["blocked"]["since"].as_str().unwrap().to_owned();
    assert!(pair["blocked"]["reason"].as_str().unwrap().contains("is empty or missing"));
    // Later passes keep the time the block began.
    let passes = aborted();
    assert!(wait_for(WAIT, || aborted() > passes));
    let later: Value = serde_json::from_slice(&status(p.root(), true).stdout).unwrap();
    assert_eq!(later["pairs"][0]["blocked"]["since"], since.as_str());
    let human = text(&status(p.root(), false).stdout);
    assert!(
        human.contains(&format!("BLOCKED since {since}")) && human.contains("running: twoway pid"),
        "{human}"
    );
}
