//! `kill -9` in the middle of a large pass (engineering rules: every change is atomic, and the
//! next run converges).

use std::fs;
use std::path::Path;
use std::time::Duration;

use e2e::{Node, Rng, SpawnGuarded, assert_same_tree, at, cmd, file, run, snapshot, temporaries, wait_for};

fn large_tree(src: &Path) {
    let mut rng = Rng::new(7);
    for i in 0..1500u32 {
        let len = (rng.below(16_384) + 1) as usize;
        let rel = format!("d{:02}/f{i:04}", i % 40);
        file(src, rel.as_bytes(), &rng.bytes(len), 0o644, (1_700_000_000, i));
    }
    for i in 0..6u32 {
        file(src, format!("big{i}").as_bytes(), &rng.bytes(6 << 20), 0o644, (1_700_000_000, i));
    }
}

/// Every file under a real name in `dst` equals the source file of that name.
fn no_partial_files(src: &Path, dst: &Path) {
    for (rel, node) in snapshot(dst) {
        if let Node::File { content, .. } = node {
            let name = rel.rsplit(|&b| b == b'/').next().unwrap();
            if name.starts_with(b".synccore-tmp-") {
                continue;
            }
            assert_eq!(
                fs::read(at(src, &rel)).ok(),
                Some(content),
                "partial or wrong file {}",
                String::from_utf8_lossy(&rel)
            );
        }
    }
}

#[test]
fn kill_9_mid_pass_leaves_no_partial_file_and_the_next_pass_converges() {
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    let (src, dst) = (p.join("src"), p.join("dst"));
    large_tree(&src);
    // Kill at several points of the pass: early, middle, late.
    let mut interrupted = 0;
    for threshold in [5usize, 300, 900] {
        let mut child = cmd("oneway", p).args(["src", "dst", "--once"]).spawn_guarded();
        wait_for(Duration::from_secs(60), || {
            snapshot_count(&dst) >= threshold || child.try_wait().ok().flatten().is_some()
        });
        let finished = child.try_wait().unwrap().is_some();
        child.kill().ok();
        child.wait().unwrap();
        if !finished {
            interrupted += 1;
        }
        if dst.exists() {
            no_partial_files(&src, &dst);
        }
    }
    assert!(interrupted > 0, "no kill landed mid-pass; the test proved nothing");
    let out = run({
        let mut c = cmd("oneway", p);
        c.args(["src", "dst", "--once", "--force"]);
        c
    });
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(temporaries(&dst).is_empty(), "leftovers cleaned: {:?}", temporaries(&dst));
    assert_same_tree(&src, &dst);
    // And an uninterrupted pass into a fresh backup gives the same tree.
    let out = run({
        let mut c = cmd("oneway", p);
        c.args(["src", "fresh", "--once"]);
        c
    });
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(snapshot(&dst), snapshot(&p.join("fresh")));
}

fn snapshot_count(dst: &Path) -> usize {
    fs::read_dir(dst).map_or(0, |rd| {
        rd.filter_map(Result::ok).map(|d| fs::read_dir(d.path()).map_or(1, Iterator::count)).sum()
    })
}
