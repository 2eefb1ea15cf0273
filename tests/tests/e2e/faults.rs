//! Passes under faults injected at exact moments (through the debug builds' fault points,
//! `synccore::fault`): a panic anywhere ends the pass with an error that says so and changes
//! nothing further (the hardening issue, point 12); an entry the user creates at the target
//! between the scan and the commit is left alone for the next pass (point 6).

use std::fs;
use std::path::Path;
use std::time::Duration;

use e2e::{SpawnGuarded, cmd, file, has_fault_points, run, snapshot, stamps, temporaries};

use crate::twoway_merge::Pair;

const T: (i64, u32) = (1_700_000_000, 0);

fn skip_without_fault_points() -> bool {
    if !has_fault_points() {
        eprintln!("skipped: the binaries under test are not debug builds (no fault points)");
        return true;
    }
    false
}

/// Runs `program args` in `cwd` with `SYNCCORE_FAULT=fault`: (code, stderr + log).
fn with_fault(program: &str, cwd: &Path, args: &[&str], fault: &str) -> (i32, String) {
    let mut c = cmd(program, cwd);
    c.args(args).args(["--once", "--log", "fault.log"]).env("SYNCCORE_FAULT", fault);
    let out = run(c);
    let log = fs::read_to_string(cwd.join("fault.log")).unwrap_or_default();
    fs::remove_file(cwd.join("fault.log")).ok();
    (out.status.code().unwrap_or(-1), format!("{}{log}", String::from_utf8_lossy(&out.stderr)))
}

fn tree(src: &Path) {
    for i in 0..20 {
        file(src, format!("d{}/f{i}", i % 3).as_bytes(), format!("content {i}").as_bytes(), 0o644, T);
    }
}

#[test]
fn a_panic_while_scanning_the_target_is_an_error_not_an_empty_backup() {
    if skip_without_fault_points() {
        return;
    }
    let sb = tempfile::tempdir().unwrap();
    tree(&sb.path().join("src"));
    let (code, log) = with_fault("oneway", sb.path(), &["src", "dst"], "none");
    assert_eq!(code, 0, "{log}");
    file(&sb.path().join("dst"), b"stray", b"to be deleted by a good pass", 0o644, T);
    let before = (snapshot(&sb.path().join("dst")), stamps(&sb.path().join("dst")));
    let (code, log) = with_fault("oneway", sb.path(), &["src", "dst"], "scan-target");
    assert_ne!(code, 0, "{log}");
    assert!(log.contains("internal error: scanning the target panicked"), "{log}");
    assert_eq!((snapshot(&sb.path().join("dst")), stamps(&sb.path().join("dst"))), before);
}

#[test]
fn a_panic_in_a_copy_thread_stops_the_pass_with_an_error() {
    if skip_without_fault_points() {
        return;
    }
    let sb = tempfile::tempdir().unwrap();
    tree(&sb.path().join("src"));
    let (code, log) = with_fault("oneway", sb.path(), &["src", "dst"], "stage");
    assert_ne!(code, 0, "{log}");
    assert!(log.contains("internal error: copying panicked"), "{log}");
    let copied = snapshot(&sb.path().join("dst")).keys().filter(|k| k.starts_with(b"d0/f")).count();
    assert_eq!(copied, 0, "nothing is committed after the panic");
    assert!(temporaries(&sb.path().join("dst")).is_empty(), "the staged temporaries are removed");
    // A versioned pass keeps its slots as they were.
    let (code, log) = with_fault("oneway", sb.path(), &["src", "vers", "--versioned"], "stage");
    assert_ne!(code, 0, "{log}");
    assert!(log.contains("internal error"), "{log}");
}

#[test]
fn twoway_reports_a_panic_as_an_internal_error_not_a_signal() {
    if skip_without_fault_points() {
        return;
    }
    let p = Pair::new();
    tree(&p.a);
    for fault in ["scan-b", "stage"] {
        let (code, log) =
            with_fault("twoway", p.root(), &["a", "b", "--home", "home", "--no-recovery"], fault);
        assert_ne!(code, 0, "{fault}: {log}");
        assert!(log.contains("internal error"), "{fault}: {log}");
        assert!(!log.contains("interrupted by a signal"), "{fault}: {log}");
        assert!(
            !p.root().join("home/pairs").exists()
                || fs::read_dir(p.root().join("home/pairs")).unwrap().all(|d| !d
                    .unwrap()
                    .path()
                    .join("state.json")
                    .exists()),
            "{fault}: no base is recorded after a panic"
        );
    }
}

#[test]
fn a_file_created_in_the_backup_during_a_pass_is_left_alone() {
    if skip_without_fault_points() {
        return;
    }
    let sb = tempfile::tempdir().unwrap();
    let (src, dst) = (sb.path().join("src"), sb.path().join("dst"));
    file(&src, b"new.txt", b"from the source", 0o644, T);
    file(&src, b"other.txt", b"o", 0o644, T);
    fs::create_dir(&dst).unwrap();
    let mut c = cmd("oneway", sb.path());
    c.args(["src", "dst", "--once", "--log", "race.log"]).env("SYNCCORE_FAULT", "stop:before-commit");
    let mut child = c.spawn_guarded();
    assert!(e2e::wait_stopped(child.id(), Duration::from_secs(30)), "the pass never reached its commit");
    file(&dst, b"new.txt", b"created meanwhile", 0o644, T);
    e2e::signal(child.id(), rustix::process::Signal::CONT);
    let status = child.wait().unwrap();
    let log = fs::read_to_string(sb.path().join("race.log")).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("new.txt") && log.contains("appeared at the target during the pass"), "{log}");
    assert_eq!(fs::read(dst.join("new.txt")).unwrap(), b"created meanwhile");
    assert_eq!(fs::read(dst.join("other.txt")).unwrap(), b"o");
}
