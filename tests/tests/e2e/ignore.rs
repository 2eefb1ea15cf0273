//! Ignore rules (issue 14): `.syncignore` files, `--exclude`, `--exclude-from`, and their
//! meaning for the mirror, the versions and twoway, held against `git check-ignore` itself on
//! generated trees and rules (see `e2e::gitrules`).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use e2e::gitrules::{Case, SYNCIGNORE, tree_paths};
use e2e::{cmd, file, run};

use crate::twoway_merge::Pair;
use synccore::fsio::Root;
use synccore::ignore::Excludes;
use synccore::scan::{self, ScanRules};

/// What the scanner keeps of a case's tree, as paths.
fn scanned(case: &Case, root: &Path) -> BTreeSet<String> {
    case.write(root, SYNCIGNORE, false);
    let mut excludes = Excludes::none();
    excludes.add(Path::new("--exclude"), &case.excludes).unwrap();
    let tree = scan::scan_with(&Root::open(root).unwrap(), ScanRules::Read(&excludes)).unwrap();
    tree.entries.iter().map(|e| String::from_utf8(e.path.as_bytes().to_vec()).unwrap()).collect()
}

#[test]
fn the_scanner_ignores_exactly_what_git_ignores() {
    let mut failures = Vec::new();
    for seed in 0..200 {
        let case = Case::generate(seed);
        let d = tempfile::tempdir().unwrap();
        let ours = scanned(&case, &d.path().join("src"));
        let git = case.git_included(d.path());
        if ours != git {
            let only_ours: Vec<_> = ours.difference(&git).collect();
            let only_git: Vec<_> = git.difference(&ours).collect();
            failures.push(format!(
                "seed {seed}: kept only by us {only_ours:?}, only by git {only_git:?}\n{}",
                case.describe()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases differ:\n{}",
        failures.len(),
        failures.iter().take(5).cloned().collect::<Vec<_>>().join("\n\n")
    );
}

/// Seeds of the end-to-end runs of the real programs (each seed is a few processes).
const SEEDS: std::ops::Range<u64> = 1000..1012;

/// `--exclude=P` for each of a case's excludes.
fn exclude_args(case: &Case) -> Vec<String> {
    case.excludes.iter().map(|e| format!("--exclude={e}")).collect()
}

fn oneway(cwd: &Path, args: &[&str]) -> (i32, String) {
    let out = run({
        let mut c = cmd("oneway", cwd);
        c.args(args).args(["--once", "--log", "oneway.log"]);
        c
    });
    let log = fs::read_to_string(cwd.join("oneway.log")).unwrap_or_default();
    fs::remove_file(cwd.join("oneway.log")).ok();
    (out.status.code().unwrap_or(-1), format!("{}{log}", String::from_utf8_lossy(&out.stderr)))
}

fn check(seed: u64, case: &Case, what: &str, got: &BTreeSet<String>, git: &BTreeSet<String>) {
    assert!(
        got == git,
        "seed {seed}, {what}: only ours {:?}, only git's {:?}\n{}",
        got.difference(git).collect::<Vec<_>>(),
        git.difference(got).collect::<Vec<_>>(),
        case.describe()
    );
}

#[test]
fn a_mirror_copies_exactly_what_git_does_not_ignore() {
    for seed in SEEDS {
        let case = Case::generate(seed);
        let d = tempfile::tempdir().unwrap();
        case.write(&d.path().join("src"), SYNCIGNORE, false);
        let mut args = vec!["src".to_owned(), "dst".to_owned()];
        args.extend(exclude_args(&case));
        let (code, log) = oneway(d.path(), &args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(code, 0, "{log}");
        check(seed, &case, "mirror", &tree_paths(&d.path().join("dst")), &case.git_included(d.path()));
    }
}

/// The `_1` slot of the directory named `base` below a versions root.
fn latest_slot(root: &Path, base: &str) -> PathBuf {
    let names = root.join("__versions__");
    let prefix = format!("{base}-");
    let name = fs::read_dir(&names)
        .unwrap()
        .map(|d| d.unwrap().file_name())
        .find(|n| n.to_string_lossy().starts_with(&prefix))
        .unwrap();
    names.join(name).join("_1")
}

#[test]
fn a_version_holds_exactly_what_git_does_not_ignore() {
    for seed in SEEDS {
        let case = Case::generate(seed);
        let d = tempfile::tempdir().unwrap();
        case.write(&d.path().join("src"), SYNCIGNORE, false);
        let mut args = vec!["src".to_owned(), "root".to_owned(), "--versioned".to_owned()];
        args.extend(exclude_args(&case));
        let (code, log) = oneway(d.path(), &args.iter().map(String::as_str).collect::<Vec<_>>());
        let git = case.git_included(d.path());
        if git.is_empty() {
            continue; // an empty SOURCE keeps no version
        }
        assert_eq!(code, 0, "{log}");
        check(seed, &case, "versioned", &tree_paths(&latest_slot(&d.path().join("root"), "src")), &git);
    }
}

#[test]
fn twoway_and_its_versioning_children_sync_exactly_what_git_does_not_ignore() {
    for seed in SEEDS.take(6) {
        let case = Case::generate(seed);
        let p = Pair::with_recovery();
        case.write(&p.a, SYNCIGNORE, false);
        let before = tree_paths(&p.a);
        let args = exclude_args(&case);
        let (code, _, log) = p.pass(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(code, 0, "{log}");
        let git = case.git_included(p.root());
        check(seed, &case, "twoway B", &tree_paths(&p.b), &git);
        assert_eq!(tree_paths(&p.a), before, "seed {seed}: A keeps its ignored entries");
        if !git.is_empty() {
            // The children got the same excludes: A's version is what B received.
            check(seed, &case, "A's version", &tree_paths(&latest_slot(&p.root().join("home"), "a")), &git);
        }
    }
}

const T: (i64, u32) = (1_700_000_000, 5);

fn put(root: &Path, rel: &str, content: &str) {
    file(root, rel.as_bytes(), content.as_bytes(), 0o644, T);
}

#[test]
fn the_mirror_leaves_ignored_backup_paths_alone_unless_delete_excluded() {
    let d = tempfile::tempdir().unwrap();
    let (src, dst) = (d.path().join("src"), d.path().join("dst"));
    put(&src, ".syncignore", "*.log\nbuild/\n");
    put(&src, "keep.txt", "k");
    put(&src, "gone/plain", "p");
    put(&dst, "old.log", "mine");
    put(&dst, "build/out.o", "o");
    put(&dst, "gone/plain", "p");
    put(&dst, "gone/trace.log", "t");
    assert_eq!(oneway(d.path(), &["src", "dst"]).0, 0);
    fs::remove_dir_all(src.join("gone")).unwrap();
    // SOURCE lost `gone`, whose BACKUP copy holds an ignored file: it stays, without an error.
    let (code, log) = oneway(d.path(), &["src", "dst"]);
    assert_eq!(code, 0, "{log}");
    let expected = [".syncignore", "build", "build/out.o", "gone", "gone/trace.log", "keep.txt", "old.log"];
    assert_eq!(tree_paths(&dst), expected.iter().map(|s| (*s).to_owned()).collect());
    // `--delete-excluded` removes them, as rsync's does.
    let (code, log) = oneway(d.path(), &["src", "dst", "--delete-excluded"]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(tree_paths(&dst), [".syncignore", "keep.txt"].iter().map(|s| (*s).to_owned()).collect());
    let (code, log) = oneway(d.path(), &["src", "root", "--versioned", "--delete-excluded"]);
    assert_eq!(code, 2, "mirror only: {log}");
}

#[test]
fn the_summary_counts_ignored_entries_and_verbose_names_them() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    put(&src, "a.tmp", "x");
    put(&src, "node_modules/m/index.js", "x");
    put(&src, "b.txt", "x");
    let patterns = d.path().join("patterns");
    fs::write(&patterns, "# editor files\n*.tmp\n").unwrap();
    let (code, log) = oneway(
        d.path(),
        &["src", "dst", "--exclude-from", "patterns", "--exclude", "node_modules/", "--verbose"],
    );
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("2 ignored"), "{log}");
    assert!(log.contains("ignored \"a.tmp\"") && log.contains("ignored \"node_modules\""), "{log}");
    assert!(!log.contains("node_modules/m"), "never descended into: {log}");
    assert_eq!(tree_paths(&d.path().join("dst")), ["b.txt".to_owned()].into());
}

#[test]
fn bad_patterns_and_unreadable_pattern_files_are_bad_input_and_change_nothing() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    put(&src, "f", "x");
    for (args, needle) in [
        (vec!["--exclude", "[z-a]"], "\"--exclude\": bad pattern \"[z-a]\""),
        (vec!["--exclude-from", "missing"], "cannot read the patterns file"),
    ] {
        let mut all = vec!["src", "dst"];
        all.extend(args);
        let (code, log) = oneway(d.path(), &all);
        assert_eq!(code, 2, "{log}");
        assert!(log.lines().any(|l| l.contains(needle)), "{log}");
        assert!(!d.path().join("dst").exists(), "nothing created");
    }
    // A bad line in a rules file of the tree: the pass changes nothing.
    put(&src, "sub/.syncignore", "ok\nx\\\n");
    let (code, log) = oneway(d.path(), &["src", "dst"]);
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("sub/.syncignore\": line 2: bad pattern"), "{log}");
    assert!(!d.path().join("dst/f").exists(), "nothing copied");
}

#[test]
fn a_symlinked_syncignore_is_not_read_and_says_so() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    put(&src, "x.log", "x");
    fs::write(d.path().join("outside"), "*.log\n").unwrap();
    std::os::unix::fs::symlink(d.path().join("outside"), src.join(".syncignore")).unwrap();
    let (code, log) = oneway(d.path(), &["src", "dst"]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("\".syncignore\" is not read: it is a symlink"), "{log}");
    assert!(d.path().join("dst/x.log").exists(), "the rules outside were not applied");
}

#[test]
fn an_ignored_directory_is_never_opened() {
    let Some(strace) = e2e::strace() else { return };
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    put(&src, ".syncignore", "node_modules/\n");
    for i in 0..50 {
        put(&src, &format!("node_modules/pkg{i}/index.js"), "x");
    }
    let trace = d.path().join("trace");
    let out = run({
        let mut c = std::process::Command::new(strace);
        c.args(["-f", "-o"]).arg(&trace).args(["-e", "trace=%file,%desc", "--"]);
        c.arg(e2e::bin("oneway")).args(["src", "dst", "--once", "--log", "oneway.log"]).current_dir(d.path());
        c
    });
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let trace = fs::read_to_string(trace).unwrap();
    assert!(!trace.contains("pkg"), "the scanner looked inside node_modules:\n{trace}");
}

#[test]
fn versions_ignore_what_the_rules_ignore() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    put(&src, ".syncignore", "cache/\n");
    put(&src, "doc.txt", "v1");
    put(&src, "cache/blob", "1");
    assert_eq!(oneway(d.path(), &["src", "root", "--versioned"]).0, 0);
    // A change below an ignored directory is no change of the version.
    put(&src, "cache/blob", "2222");
    put(&src, "cache/new", "n");
    let (code, log) = oneway(d.path(), &["src", "root", "--versioned"]);
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("INFO  rotate"), "{log}");
    assert_eq!(
        tree_paths(&latest_slot(&d.path().join("root"), "src")),
        [".syncignore", "doc.txt"].iter().map(|s| (*s).to_owned()).collect()
    );
}

fn set(paths: &[&str]) -> BTreeSet<String> {
    paths.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn twoway_a_rule_that_starts_matching_deletes_nothing_and_unignoring_merges_as_a_first_pass() {
    let p = Pair::new();
    put(&p.a, "notes.txt", "n");
    put(&p.a, "data.db", "same");
    put(&p.a, "cache.db", "from a");
    p.sync();
    // B ignores `*.db` from now on; A deletes one, both change the other.
    put(&p.b, ".syncignore", "*.db\n");
    fs::remove_file(p.a.join("data.db")).unwrap();
    file(&p.a, b"cache.db", b"edited on a", 0o644, (T.0 + 10, 0));
    file(&p.b, b"cache.db", b"edited on b!", 0o644, (T.0 + 20, 0));
    let (code, _, log) = p.pass(&[]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        tree_paths(&p.b),
        set(&[".syncignore", "cache.db", "data.db", "notes.txt"]),
        "nothing deleted on B"
    );
    assert_eq!(tree_paths(&p.a), set(&[".syncignore", "cache.db", "notes.txt"]));
    // Un-ignored: merged as on a first pass: a union, and differing content is a conflict.
    fs::write(p.a.join(".syncignore"), "").unwrap();
    fs::write(p.b.join(".syncignore"), "").unwrap();
    let (code, _, log) = p.pass(&[]);
    assert_eq!(code, 0, "{log}");
    let (code, _, log) = p.pass(&[]);
    assert_eq!(code, 0, "{log}");
    e2e::assert_same_synced(&p.a, &p.b);
    let a = tree_paths(&p.a);
    assert!(a.contains("data.db"), "the deletion on A was not applied to B: {a:?}");
    assert!(a.iter().any(|n| n.starts_with("cache.conflict-")), "both versions of cache.db kept: {a:?}");
    assert_eq!(fs::read_to_string(p.a.join("cache.db")).unwrap(), "edited on b!");
}

#[test]
fn twoway_a_deleted_directory_holding_ignored_files_on_the_other_side_stays() {
    let p = Pair::new();
    put(&p.a, ".syncignore", "*.o\n");
    put(&p.a, "src/main.c", "c");
    p.sync();
    put(&p.b, "src/main.o", "object");
    fs::remove_dir_all(p.a.join("src")).unwrap();
    let (code, _, log) = p.pass(&[]);
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("ERROR"), "{log}");
    assert_eq!(tree_paths(&p.b), set(&[".syncignore", "src", "src/main.o"]));
    let (code, _, log) = p.pass(&[]);
    assert_eq!((code, log.contains("ERROR")), (0, false), "{log}");
}

#[test]
fn twoway_reads_the_configs_excludes_and_passes_them_to_its_children() {
    let p = Pair::with_recovery();
    let home = p.root().join("home");
    fs::create_dir(&home).unwrap();
    let oneway = e2e::bin("oneway");
    let config =
        format!("{{\"script\": {:?}, \"interval\": [], \"exclude\": [\"*.iso\"]}}", oneway.to_str().unwrap());
    fs::write(home.join("config.json"), config).unwrap();
    put(&p.a, "disk.iso", "big");
    put(&p.a, "vm/other.vdi", "big");
    put(&p.a, "doc.txt", "d");
    let (code, _, log) = p.pass(&["--exclude", "*.vdi"]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(tree_paths(&p.b), set(&["doc.txt", "vm"]));
    assert_eq!(tree_paths(&latest_slot(&home, "a")), set(&["doc.txt", "vm"]));
    // A wrong type is bad input.
    fs::write(home.join("config.json"), "{\"script\": \"x\", \"interval\": [], \"exclude\": \"*.iso\"}")
        .unwrap();
    let (code, _, _) = p.pass(&["--no-recovery"]);
    assert_eq!(code, 2);
}

/// `twoway a --restore --home home` plus `args`: (exit code, log).
fn restore(p: &Pair, args: &[&str]) -> (i32, String) {
    let mut c = cmd("twoway", p.root());
    c.args(["a", "--restore", "--home", "home", "--log", "restore.log"]).args(args);
    let out = run(c);
    let log = fs::read_to_string(p.root().join("restore.log")).unwrap_or_default();
    (out.status.code().unwrap_or(-1), format!("{}{log}", String::from_utf8_lossy(&out.stderr)))
}

fn ino(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::symlink_metadata(path).unwrap().ino()
}

#[test]
fn a_restore_leaves_dirs_ignored_entries_where_they_are() {
    let p = Pair::with_recovery();
    put(&p.a, ".syncignore", "node_modules/\n");
    put(&p.a, "doc.txt", "version 1");
    put(&p.a, "pkg/lib.rs", "lib");
    let (code, _, log) = p.pass(&["--exclude", "*.swp"]);
    assert_eq!(code, 0, "{log}");
    // DIR then changes, and gains ignored entries (by its .syncignore, by --exclude), one of
    // them in a directory the version does not have.
    put(&p.a, "doc.txt", "version 2, to be undone");
    put(&p.a, "node_modules/m/index.js", "module");
    put(&p.a, "pkg/node_modules/n/x.js", "module 2");
    put(&p.a, "new/node_modules/y.js", "module 3");
    put(&p.a, ".doc.txt.swp", "swap");
    let before = ino(&p.a.join("node_modules/m/index.js"));
    let (code, log) = restore(&p, &["--exclude", "*.swp"]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(fs::read_to_string(p.a.join("doc.txt")).unwrap(), "version 1");
    let expected = [
        ".doc.txt.swp",
        ".syncignore",
        "doc.txt",
        "new",
        "new/node_modules",
        "new/node_modules/y.js",
        "node_modules",
        "node_modules/m",
        "node_modules/m/index.js",
        "pkg",
        "pkg/lib.rs",
        "pkg/node_modules",
        "pkg/node_modules/n",
        "pkg/node_modules/n/x.js",
    ];
    assert_eq!(tree_paths(&p.a), set(&expected));
    assert_eq!(ino(&p.a.join("node_modules/m/index.js")), before, "the very file, not a copy");
    assert_eq!(fs::read_to_string(p.a.join("pkg/node_modules/n/x.js")).unwrap(), "module 2");
    // The undo generation keeps what DIR held apart from its ignored entries.
    let undo = latest_slot(&p.root().join("home"), "a").with_file_name("_undo");
    let generation = fs::read_dir(&undo).unwrap().next().unwrap().unwrap().path();
    let kept = tree_paths(&generation);
    assert!(kept.contains("doc.txt") && kept.contains("new"), "{kept:?}");
    assert!(!kept.iter().any(|k| k.contains("node_modules") || k.contains("swp")), "{kept:?}");
}
