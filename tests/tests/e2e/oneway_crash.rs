//! `kill -9` in the middle of a mirror pass (SPEC section 2 "atomic write", user guide
//! "Crashes"): every file under a real name in BACKUP is old or new, never partial, and the next
//! pass converges.
//!
//! Each kill lands at a chosen commit point, the same on every machine: the pass runs under
//! strace, which sends SIGKILL on entering its N-th `renameat2` (a new file committed with
//! `RENAME_NOREPLACE`) or `rename` (an existing file replaced). Killing after a fixed wait
//! missed the pass altogether on a fast machine (hardening issue, part C).

use std::fs;
use std::path::Path;

use e2e::{Node, Rng, assert_same_tree, at, cmd, file, killed, run, run_killed_at, snapshot, temporaries};

const T: i64 = 1_700_000_000;

/// `files` small files in 20 directories and two larger ones, from `seed`.
fn tree(src: &Path, seed: u64, files: u32) {
    let mut rng = Rng::new(seed);
    for i in 0..files {
        let len = (rng.below(16_384) + 1) as usize;
        file(src, format!("d{:02}/f{i:04}", i % 20).as_bytes(), &rng.bytes(len), 0o644, (T, i));
    }
    for i in 0..2u32 {
        file(src, format!("big{i}").as_bytes(), &rng.bytes(1 << 20), 0o644, (T, i));
    }
}

/// Every file under a real name in `dst` equals the file of that name in one of `sources`.
fn no_partial_files(dst: &Path, sources: &[&Path], context: &str) {
    for (rel, node) in snapshot(dst) {
        if let Node::File { content, .. } = node {
            let name = rel.rsplit(|&b| b == b'/').next().unwrap();
            if name.starts_with(b".synccore-tmp-") {
                continue;
            }
            assert!(
                sources.iter().any(|src| fs::read(at(src, &rel)).ok().as_ref() == Some(&content)),
                "{context}: partial or wrong file {}",
                String::from_utf8_lossy(&rel)
            );
        }
    }
}

fn mirror(p: &Path, src: &str) -> std::process::Command {
    let mut c = cmd("oneway", p);
    c.args([src, "dst", "--once"]);
    c
}

/// The pass after a kill: exit 0, no temporaries left, BACKUP equal to SOURCE.
fn converges(p: &Path, context: &str) {
    let out = run(mirror(p, "src"));
    assert_eq!(out.status.code(), Some(0), "{context}: {}", String::from_utf8_lossy(&out.stderr));
    let dst = p.join("dst");
    assert!(temporaries(&dst).is_empty(), "{context}: leftovers {:?}", temporaries(&dst));
    assert_same_tree(&p.join("src"), &dst);
}

#[test]
fn kill_9_at_commit_points_of_a_first_mirror_leaves_no_partial_file_and_the_next_pass_converges() {
    let Some(strace) = e2e::strace() else { return };
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    let (src, dst) = (p.join("src"), p.join("dst"));
    tree(&src, 7, 300);
    // 302 files, each committed by one renameat2: the first, the second, the middle, the last.
    for n in [1, 2, 151, 302] {
        if dst.exists() {
            fs::remove_dir_all(&dst).unwrap();
        }
        let context = format!("killed at renameat2 #{n}");
        let out = run_killed_at(&strace, &mirror(p, "src"), "renameat2", n);
        assert!(killed(&out), "{context}: the pass ended first: {}", String::from_utf8_lossy(&out.stderr));
        no_partial_files(&dst, &[&src], &context);
        converges(p, &context);
    }
}

#[test]
fn kill_9_at_commit_points_of_an_update_pass_leaves_old_or_new_and_the_next_pass_converges() {
    let Some(strace) = e2e::strace() else { return };
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    let (old, src, dst) = (p.join("old"), p.join("src"), p.join("dst"));
    tree(&old, 11, 200);
    tree(&src, 11, 200);
    // SOURCE since: every third file rewritten, every seventh deleted, 20 new files.
    let mut rng = Rng::new(12);
    let mut updates = 0;
    for i in 0..200u32 {
        let rel = format!("d{:02}/f{i:04}", i % 20);
        if i % 7 == 0 {
            fs::remove_file(src.join(&rel)).unwrap();
        } else if i % 3 == 0 {
            file(&src, rel.as_bytes(), &rng.bytes(4096), 0o644, (T + 1, i));
            updates += 1;
        }
    }
    for i in 0..20u32 {
        file(&src, format!("new/n{i:02}").as_bytes(), &rng.bytes(2048), 0o644, (T + 1, i));
    }
    // Every commit is a renameat2 (beneath BACKUP's open directories): the updates first (in
    // path order `d..` sorts before `new/`), then the 20 new files.
    for (syscall, n) in [
        ("renameat2", 1),
        ("renameat2", updates / 2),
        ("renameat2", updates),
        ("renameat2", updates + 1),
        ("renameat2", updates + 20),
    ] {
        if dst.exists() {
            fs::remove_dir_all(&dst).unwrap();
        }
        let setup = run(mirror(p, "old"));
        assert_eq!(setup.status.code(), Some(0), "{}", String::from_utf8_lossy(&setup.stderr));
        let context = format!("killed at {syscall} #{n}");
        let out = run_killed_at(&strace, &mirror(p, "src"), syscall, n);
        assert!(killed(&out), "{context}: the pass ended first: {}", String::from_utf8_lossy(&out.stderr));
        no_partial_files(&dst, &[&old, &src], &context);
        converges(p, &context);
    }
}
