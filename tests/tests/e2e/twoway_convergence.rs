//! `twoway` passes that must converge without surprises (the hardening issue): a new inode
//! alone is no edit, the pair is one pair in either argument order, a file being rewritten
//! never produces a torn copy or a spurious conflict, an entry that appears during a pass is
//! left for the next one, deleted directories give no false warnings, and a corrupt base set
//! aside twice in one second does not fail the pass.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2e::{Rng, SpawnGuarded, assert_same_synced, cmd, file, run, set_mtime, wait_for};

use crate::twoway_merge::Pair;

const T: (i64, u32) = (1_700_000_000, 0);

/// `twoway <first> <second> --home home --once --no-recovery` plus `extra`: (code, log).
fn pass_in(p: &Pair, order: [&str; 2], extra: &[&str]) -> (i32, String) {
    let mut c = cmd("twoway", p.root());
    c.args(order).args(["--home", "home", "--once", "--no-recovery", "--log", "conv.log"]).args(extra);
    let out = run(c);
    let log = fs::read_to_string(p.root().join("conv.log")).unwrap_or_default();
    fs::remove_file(p.root().join("conv.log")).ok();
    (out.status.code().unwrap_or(-1), log)
}

fn sync(p: &Pair) -> String {
    let (code, log) = pass_in(p, ["a", "b"], &[]);
    assert_eq!(code, 0, "{log}");
    assert_same_synced(&p.a, &p.b);
    log
}

/// Every name at any depth of `root` that holds `needle`.
fn names_with(root: &Path, needle: &str) -> Vec<String> {
    e2e::snapshot(root)
        .into_keys()
        .map(|k| String::from_utf8_lossy(&k).into_owned())
        .filter(|k| k.contains(needle))
        .collect()
}

/// Replaces a file by a copy of itself (`cp -p f t && mv t f`): same bytes, size and mtime,
/// new inode.
fn new_inode(path: &Path) {
    let temp = path.with_extension("cp-p");
    fs::copy(path, &temp).unwrap();
    let m = fs::metadata(path).unwrap();
    set_mtime(&temp, (m.modified_secs(), m.modified_nanos()));
    fs::rename(&temp, path).unwrap();
}

trait ModifiedParts {
    fn modified_secs(&self) -> i64;
    fn modified_nanos(&self) -> u32;
}

impl ModifiedParts for fs::Metadata {
    fn modified_secs(&self) -> i64 {
        std::os::unix::fs::MetadataExt::mtime(self)
    }
    fn modified_nanos(&self) -> u32 {
        std::os::unix::fs::MetadataExt::mtime_nsec(self) as u32
    }
}

#[test]
fn a_new_inode_with_the_same_bytes_is_not_an_edit() {
    let p = Pair::new();
    file(&p.a, b"deleted-on-a", b"one", 0o644, T);
    file(&p.a, b"edited-on-a", b"two", 0o644, T);
    sync(&p);
    // B's copies get new inodes (a restore from backup, `cp -p` + `mv`); A deletes one file and
    // edits the other.
    new_inode(&p.b.join("deleted-on-a"));
    new_inode(&p.b.join("edited-on-a"));
    fs::remove_file(p.a.join("deleted-on-a")).unwrap();
    file(&p.a, b"edited-on-a", b"TWO!", 0o644, (T.0 + 10, 0));
    let log = sync(&p);
    assert!(!p.b.join("deleted-on-a").exists(), "the deletion propagates: {log}");
    assert_eq!(fs::read(p.b.join("edited-on-a")).unwrap(), b"TWO!", "{log}");
    assert!(names_with(&p.a, "conflict").is_empty() && names_with(&p.b, "conflict").is_empty(), "{log}");
}

#[test]
fn the_pair_is_the_same_in_either_argument_order() {
    let p = Pair::new();
    file(&p.a, b"keep", b"k", 0o644, T);
    file(&p.a, b"gone", b"g", 0o644, T);
    sync(&p);
    // Swapping the arguments finds the same base: a deletion is not undone by a union pass.
    fs::remove_file(p.b.join("gone")).unwrap();
    let (code, log) = pass_in(&p, ["b", "a"], &[]);
    assert_eq!(code, 0, "{log}");
    assert!(!p.a.join("gone").exists(), "a deletion resurrected by the swapped order: {log}");
    assert_eq!(fs::read_dir(p.root().join("home/pairs")).unwrap().count(), 1, "one base for both orders");

    // Conflict suffixes and log prefixes follow the order of the first sync (a is side A).
    file(&p.a, b"keep", b"from a", 0o644, (T.0 + 5, 0));
    file(&p.b, b"keep", b"from b, newer", 0o644, (T.0 + 9, 0));
    let (code, log) = pass_in(&p, ["b", "a"], &[]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(names_with(&p.a, "conflict").len(), 1, "{log}");
    assert!(names_with(&p.a, "conflict")[0].ends_with("-a"), "{:?}", names_with(&p.a, "conflict"));
    let a = fs::canonicalize(&p.a).unwrap();
    assert!(log.contains(&format!("{}\" (A)", a.display())), "{log}");

    // One lock for both orders.
    let mut first = cmd("twoway", p.root())
        .args(["a", "b", "--home", "home", "--no-recovery", "--interval", "60", "--log", "first.log"])
        .spawn_guarded();
    assert!(wait_for(Duration::from_secs(20), || {
        fs::read_to_string(p.root().join("first.log")).is_ok_and(|l| l.contains("syncing"))
    }));
    let (code, log) = pass_in(&p, ["b", "a"], &[]);
    assert_eq!(code, 3, "{log}");
    assert!(log.contains(&format!("pid {}", first.id())), "{log}");
    first.kill().unwrap();
    first.wait().unwrap();
}

#[test]
fn a_base_kept_under_the_old_key_is_found_and_moved() {
    let p = Pair::new();
    file(&p.a, b"x", b"1", 0o644, T);
    file(&p.a, b"y", b"2", 0o644, T);
    // The first sync named b first; an earlier version keyed the pair by that order.
    let (code, log) = pass_in(&p, ["b", "a"], &[]);
    assert_eq!(code, 0, "{log}");
    let pairs = p.root().join("home/pairs");
    let dir = fs::read_dir(&pairs).unwrap().next().unwrap().unwrap().path();
    let legacy = pairs.join(legacy_key(&p.b, &p.a));
    fs::rename(&dir, &legacy).unwrap();
    // After the upgrade, the pass in the other order must not be a union pass.
    fs::remove_file(p.a.join("x")).unwrap();
    let (code, log) = pass_in(&p, ["a", "b"], &[]);
    assert_eq!(code, 0, "{log}");
    assert!(!p.b.join("x").exists(), "the upgrade turned the pass into a union: {log}");
    assert!(!legacy.exists(), "the old base was moved, not copied");
    assert_eq!(fs::read_dir(&pairs).unwrap().count(), 1);
}

/// The pair key of format-1 days: 16 hex digits of SHA-256 of `first \0 second`.
fn legacy_key(first: &Path, second: &Path) -> String {
    use sha2::Digest as _;
    let canon = |p: &Path| fs::canonicalize(p).unwrap();
    let mut bytes = std::os::unix::ffi::OsStrExt::as_bytes(canon(first).as_os_str()).to_vec();
    bytes.push(0);
    bytes.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(canon(second).as_os_str()));
    let hex = sha2::Sha256::digest(&bytes).iter().fold(String::new(), |mut s, b| {
        let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{b:02x}"));
        s
    });
    hex[..16].to_string()
}

#[test]
fn a_file_rewritten_during_passes_is_never_copied_torn() {
    const SIZE: usize = 8 << 20;
    let p = Pair::new();
    file(&p.a, b"busy.bin", &vec![b'0'; SIZE], 0o644, T);
    // A writer rewrites the file again and again, 64 KiB at a time, with the same size, and
    // puts the mtime back after every write: size and mtime never move, only the ctime shows
    // a write during a copy. No copy may be installed while it writes (it would be a mix of
    // two rewrites that no later pass could tell from a real edit).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (path, stop) = (p.a.join("busy.bin"), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut rng = Rng::new(7);
            let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
            let mtime = std::time::UNIX_EPOCH + Duration::from_secs((T.0 + 100) as u64);
            while !stop.load(Ordering::Relaxed) {
                let block = vec![b'a' + (rng.below(26) as u8); 65536];
                for chunk in 0..(SIZE / 65536) {
                    std::os::unix::fs::FileExt::write_all_at(&f, &block, (chunk * 65536) as u64).unwrap();
                    f.set_times(fs::FileTimes::new().set_modified(mtime)).unwrap();
                    // Mostly at rest with the old mtime, so that a scan and a copy see it.
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };
    // First passes into an empty B: each would copy the file.
    for _ in 0..5 {
        let (code, log) = pass_in(&p, ["a", "b"], &[]);
        assert_eq!(code, 0, "{log}");
        if let Ok(copy) = fs::read(p.b.join("busy.bin")) {
            assert!(copy.iter().all(|&b| b == copy[0]), "a torn copy was installed on B: {log}");
        }
        fs::remove_dir_all(p.root().join("home")).unwrap();
        fs::remove_file(p.b.join("busy.bin")).ok();
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    sync(&p);
    sync(&p);
    assert!(names_with(&p.a, "conflict").is_empty() && names_with(&p.b, "conflict").is_empty());
}

#[test]
fn an_entry_that_appears_on_the_target_during_a_pass_is_left_for_the_next_pass() {
    if !e2e::has_fault_points() {
        eprintln!("skipped: the binaries under test are not debug builds (no fault points)");
        return;
    }
    let p = Pair::new();
    file(&p.a, b"new.txt", b"from a", 0o644, T);
    file(&p.a, b"other.txt", b"o", 0o644, T);
    let mut c = cmd("twoway", p.root());
    c.args(["a", "b", "--home", "home", "--once", "--no-recovery", "--log", "conv.log"])
        .env("SYNCCORE_FAULT", "stop:before-commit");
    let mut child = c.spawn_guarded();
    assert!(e2e::wait_stopped(child.id(), Duration::from_secs(30)), "the pass never reached its commit");
    // The user creates the same name on B between the scan and the commit.
    file(&p.b, b"new.txt", b"the user's own", 0o644, (T.0 + 1, 0));
    e2e::signal(child.id(), rustix::process::Signal::CONT);
    let status = child.wait().unwrap();
    let log = fs::read_to_string(p.root().join("conv.log")).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("appeared at the target during the pass"), "{log}");
    assert_eq!(fs::read(p.b.join("new.txt")).unwrap(), b"the user's own");
    assert_eq!(fs::read(p.b.join("other.txt")).unwrap(), b"o");
    // The next pass sees two creations with different content: a conflict keeping both.
    fs::remove_file(p.root().join("conv.log")).ok();
    sync(&p);
    assert_eq!(names_with(&p.a, "new.conflict-").len(), 1);
}

#[test]
fn deleting_a_directory_tree_gives_no_false_warnings() {
    let p = Pair::new();
    // Few enough directories that each is fsynced on its own (not one syncfs for all).
    file(&p.a, b"d/e/f/g.txt", b"x", 0o644, T);
    file(&p.a, b"stay.txt", b"s", 0o644, T);
    sync(&p);
    fs::remove_dir_all(p.b.join("d")).unwrap();
    let (code, log) = pass_in(&p, ["a", "b"], &["--force"]);
    assert_eq!(code, 0, "{log}");
    assert!(!p.a.join("d").exists());
    assert!(!log.contains("WARN") && !log.contains("ERROR"), "{log}");
}

#[test]
fn a_corrupt_base_set_aside_twice_in_one_second_does_not_fail_the_pass() {
    let p = Pair::new();
    file(&p.a, b"x", b"1", 0o644, T);
    sync(&p);
    let pairs = p.root().join("home/pairs");
    let dir = fs::read_dir(&pairs).unwrap().next().unwrap().unwrap().path();
    for round in 0..5 {
        fs::write(dir.join("state.json"), b"{garbage").unwrap();
        let (code, log) = pass_in(&p, ["a", "b"], &[]);
        assert_eq!(code, 0, "round {round}: {log}");
    }
    let kept = fs::read_dir(&dir)
        .unwrap()
        .filter(|d| d.as_ref().unwrap().file_name().to_string_lossy().contains("unusable"))
        .count();
    assert_eq!(kept, 5, "every unusable base is kept");
}
