//! The hash cache of `oneway --versioned` as a journal beside a small manifest (issue 17 point
//! 3, "a versioned pass writes only what changed"): what a rotation writes, a lost, damaged or
//! half-appended journal, the upgrade from a manifest of format 2 or 1 (which embedded the
//! cache), and `kill -9` at each step of a rotation with the journal checked against `_1`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use synccore::checksum::{Digest, directory_checksum};
use synccore::fsio::Root;
use synccore::versions::hashes;
use synccore::versions::manifest::{FileRecord, Manifest};
use synccore::versions::rotation;

use e2e::{Node, Rng, assert_same_tree, at, cmd, file, snapshot, temporaries};

use crate::oneway_versioned::{ok, rotating_tree, version_stamps, versioned, versions_dir};

const T: i64 = 1_700_000_000;

/// A file's content and mtime (seconds, nanoseconds).
type ContentAndMtime = (Vec<u8>, (i64, i64));

/// Every file below `root` by inode: its size (a file with several names counted once).
fn inode_sizes(root: &Path) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for dent in fs::read_dir(&dir).unwrap() {
            let path = dent.unwrap().path();
            let m = fs::symlink_metadata(&path).unwrap();
            if m.is_dir() {
                stack.push(path);
            } else if m.is_file() {
                out.insert(m.ino(), m.len());
            }
        }
    }
    out
}

/// Bytes written into files below `root` between two [`inode_sizes`]: new files whole,
/// existing ones by what they grew (the measure of the issue and of bench row 9b; the
/// directory entries of the hard-linked tree are not file data).
fn bytes_written(before: &BTreeMap<u64, u64>, after: &BTreeMap<u64, u64>) -> u64 {
    after.iter().map(|(ino, size)| before.get(ino).map_or(*size, |old| size.saturating_sub(*old))).sum()
}

/// `manifest.json` of the versions directory `v`.
fn manifest(v: &Path) -> Manifest {
    Manifest::from_bytes(&fs::read(v.join("manifest.json")).unwrap()).unwrap()
}

/// The journal files in `v`.
fn journals(v: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(v)
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("hashes-"))
        .collect();
    names.sort();
    names
}

/// Asserts that the manifest of `v` describes `_1` (its directory checksum) and that the rows
/// its journal vouches for are exactly `_1`'s regular files, each with its content's SHA-256,
/// size and mtime: no wrong hash can be trusted.
fn cache_describes_latest(v: &Path, context: &str) {
    let m = manifest(v);
    let root = Root::open(v).unwrap();
    let latest = root.open_root(Path::new("_1")).unwrap();
    let record = m.latest.as_ref().unwrap_or_else(|| panic!("{context}: no _1 record"));
    assert_eq!(record.checksum, directory_checksum(&latest).unwrap(), "{context}: the manifest's _1");
    let r = m.hashes.as_ref().unwrap_or_else(|| panic!("{context}: no journal named"));
    let rows: BTreeMap<Vec<u8>, FileRecord> = hashes::load(&root, r)
        .unwrap_or_else(|e| panic!("{context}: {e}"))
        .into_iter()
        .map(|row| (row.path.as_bytes().to_vec(), row))
        .collect();
    let files: BTreeMap<Vec<u8>, ContentAndMtime> = snapshot(&v.join("_1"))
        .into_iter()
        .filter_map(|(rel, node)| match node {
            Node::File { content, mtime, .. } => Some((rel, (content, mtime))),
            _ => None,
        })
        .collect();
    assert_eq!(
        rows.keys().collect::<Vec<_>>(),
        files.keys().collect::<Vec<_>>(),
        "{context}: the journal's paths are _1's files"
    );
    for (rel, (content, mtime)) in &files {
        let row = &rows[rel];
        let what = String::from_utf8_lossy(rel);
        assert_eq!(row.digest, Digest::of_bytes(content), "{context}: {what}: a wrong hash");
        assert_eq!(row.size, content.len() as u64, "{context}: {what}");
        assert_eq!((row.mtime.secs, i64::from(row.mtime.nanos)), *mtime, "{context}: {what}");
    }
}

/// The number in "N files hashed" of a verbose pass's log.
fn files_hashed(log: &str) -> u64 {
    let head = &log[..log.find(" files hashed").unwrap_or_else(|| panic!("no hashed count: {log}"))];
    head.split_whitespace().last().unwrap().parse().unwrap()
}

/// `files` small files (100 to 400 bytes) in 40 directories.
fn small_files(src: &Path, files: u32, rng: &mut Rng) {
    for i in 0..files {
        let len = (rng.below(300) + 100) as usize;
        file(src, format!("d{:02}/f{i:05}", i % 40).as_bytes(), &rng.bytes(len), 0o644, (T, i));
    }
}

#[test]
fn a_rotation_writes_the_changed_files_a_small_manifest_and_journal_lines_only() {
    // Issue 17 point 3: bytes written into files under the versions root (new files whole,
    // appended files by what they grew) <= 1.1 x the changed bytes + 256 per changed file.
    // Before the journal, each rotation rewrote a row per file of the tree in the manifest.
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    let src = p.join("src");
    let mut rng = Rng::new(17);
    small_files(&src, 2_000, &mut rng);
    ok(&versioned(p, &[]));
    let v = versions_dir(p);
    let first = journals(&v);
    assert_eq!(first.len(), 1, "{first:?}");
    for round in 1..=3u32 {
        // 20 files changed, one deleted, one new.
        let (mut changed_bytes, mut changed_files) = (0, 0);
        for i in (0..2_000u32).skip(round as usize).step_by(100) {
            let len = (rng.below(300) + 100) as usize;
            let rel = format!("d{:02}/f{i:05}", i % 40);
            file(&src, rel.as_bytes(), &rng.bytes(len), 0o644, (T + i64::from(round), i));
            (changed_bytes, changed_files) = (changed_bytes + len as u64, changed_files + 1);
        }
        fs::remove_file(src.join(format!("d{:02}/f{:05}", round % 40, round + 1_000))).unwrap();
        let len = 250;
        file(&src, format!("new/n{round}").as_bytes(), &rng.bytes(len), 0o644, (T, round));
        (changed_bytes, changed_files) = (changed_bytes + len as u64, changed_files + 2);

        let before = inode_sizes(p.join("root").as_path());
        let log = ok(&versioned(p, &[]));
        assert!(log.contains("rotate \""), "{log}");
        let written = bytes_written(&before, &inode_sizes(&p.join("root")));
        let budget = changed_bytes * 11 / 10 + 256 * changed_files;
        eprintln!("round {round}: {written} B written for {changed_bytes} B in {changed_files} files");
        assert!(
            written <= budget,
            "round {round}: wrote {written} B under the versions root for {changed_bytes} B in \
             {changed_files} changed files (budget {budget} B): {log}"
        );
        assert!(log.contains("(appended)"), "round {round}: {log}");
        assert!(fs::metadata(v.join("manifest.json")).unwrap().len() < 1024);
        assert_eq!(journals(&v), first, "round {round}: one journal, extended");
        assert_same_tree(&src, &v.join("_1"));
        cache_describes_latest(&v, &format!("round {round}"));
    }
}

#[test]
fn a_lost_or_damaged_journal_is_rebuilt_from_the_latest_version_without_a_rotation() {
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    let src = p.join("src");
    rotating_tree(&src, 1, 1);
    ok(&versioned(p, &[]));
    rotating_tree(&src, 2, 2);
    ok(&versioned(p, &[]));
    let v = versions_dir(p);
    let slots = (snapshot(&v.join("_0")), snapshot(&v.join("_1")));
    let journal = v.join(&manifest(&v).hashes.unwrap().file);
    let text = fs::read(&journal).unwrap();

    for (damage, how) in [
        ("lost", None),
        ("cut short", Some(&text[..text.len() / 2])),
        ("a line spoilt", Some(&b"{\"hashes\":1,\"id\":\"0\"}\n"[..])),
    ] {
        let journal = v.join(&manifest(&v).hashes.unwrap().file);
        match how {
            None => fs::remove_file(&journal).unwrap(),
            Some(bytes) => fs::write(&journal, bytes).unwrap(),
        }
        let log = ok(&versioned(p, &["--verbose"]));
        assert!(!log.contains("rotate \""), "{damage}: {log}");
        assert!(log.contains("rebuilding the hash cache from the latest version"), "{damage}: {log}");
        assert_eq!((snapshot(&v.join("_0")), snapshot(&v.join("_1"))), slots, "{damage}");
        assert_eq!(journals(&v).len(), 1, "{damage}: {:?}", journals(&v));
        cache_describes_latest(&v, damage);
        // The rebuilt cache vouches for SOURCE from now on: nothing is read, nothing written.
        let before = version_stamps(&v);
        let log = ok(&versioned(p, &["--verbose"]));
        assert_eq!(files_hashed(&log), 0, "{damage}: {log}");
        assert_eq!(version_stamps(&v), before, "{damage}");
    }

    // And a rotation after the rebuild links the unchanged files into `_1`, as before: the
    // 133 small files that state 3 leaves as they were (it rewrites every third and the two
    // large ones).
    rotating_tree(&src, 3, 3);
    let log = ok(&versioned(p, &[]));
    assert!(log.contains(" 133 hard links"), "{log}");
    cache_describes_latest(&v, "after the rebuild");
}

#[test]
fn lines_after_the_length_the_manifest_vouches_for_are_never_read_and_the_next_rotation_compacts() {
    // What a rotation killed between appending its lines and writing its manifest leaves.
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    let src = p.join("src");
    rotating_tree(&src, 1, 1);
    ok(&versioned(p, &[]));
    let v = versions_dir(p);
    let old = manifest(&v).hashes.unwrap();
    // Lines that would lie about every file of `_1` (a wrong digest for each), then a torn one.
    let mut lies = Vec::new();
    for mut row in hashes::load(&Root::open(&v).unwrap(), &old).unwrap() {
        row.digest = Digest::of_bytes(b"not this content");
        lies.extend(serde_json::to_vec(&row).unwrap());
        lies.push(b'\n');
    }
    lies.extend(b"[\"d00/f0000\",\"0123");
    let mut f = fs::OpenOptions::new().append(true).open(v.join(&old.file)).unwrap();
    std::io::Write::write_all(&mut f, &lies).unwrap();
    drop(f);

    let before = version_stamps(&v);
    let log = ok(&versioned(p, &["--verbose"]));
    assert_eq!(files_hashed(&log), 0, "the vouched-for rows are used: {log}");
    assert!(!log.contains("rebuilding"), "{log}");
    assert_eq!(version_stamps(&v), before, "nothing written");

    rotating_tree(&src, 2, 2);
    let log = ok(&versioned(p, &[]));
    assert!(log.contains("(written whole)"), "{log}");
    let new = manifest(&v).hashes.unwrap();
    assert_ne!(new.file, old.file);
    assert_eq!(journals(&v), std::slice::from_ref(&new.file), "the old journal is removed");
    cache_describes_latest(&v, "after the compaction");
    // Hard links came from the vouched-for rows, never from the lies.
    assert!(log.contains(" 100 hard links"), "{log}");
}

/// Rewrites the manifest of `v` in format 2 (or 1) with the hash cache embedded, as the
/// versions before the journal wrote it, from SOURCE's files (all older than 2 s); removes
/// the journal.
fn downgrade_manifest(v: &Path, src: &Path, format: u32) {
    let m = manifest(v);
    // Format 1 wrote names that are not UTF-8 as arrays of bytes, format 2 as {"hex": ...}.
    let path_json = |bytes: &[u8]| match std::str::from_utf8(bytes) {
        Err(_) if format == 1 => serde_json::json!(bytes),
        _ => serde_json::to_value(synccore::jsonbytes::Bytes::of(bytes)).unwrap(),
    };
    let mut rows = Vec::new();
    for (rel, node) in snapshot(src) {
        if let Node::File { content, mtime, .. } = node {
            let ino = fs::symlink_metadata(at(src, &rel)).unwrap().ino();
            let digest = Digest::of_bytes(&content).to_hex();
            rows.push(serde_json::json!([path_json(&rel), digest, content.len(), mtime.0, mtime.1, ino]));
        }
    }
    let mut old = serde_json::json!({
        "format": format,
        "source": src.canonicalize().unwrap().to_str().unwrap(),
        "_1": serde_json::to_value(m.latest.as_ref().unwrap()).unwrap(),
        "files": rows,
    });
    if let Some(previous) = &m.previous {
        old["_0"] = serde_json::to_value(previous).unwrap();
    }
    fs::write(v.join("manifest.json"), serde_json::to_vec(&old).unwrap()).unwrap();
    fs::remove_file(v.join(m.hashes.unwrap().file)).unwrap();
}

#[test]
fn after_an_upgrade_from_a_manifest_with_embedded_rows_nothing_rotates_nor_is_hashed_again() {
    for format in [2, 1] {
        let sb = tempfile::tempdir().unwrap();
        let p = sb.path();
        let src = p.join("src");
        rotating_tree(&src, 1, 1);
        file(&src, b"caf\xe9", b"a name that is not UTF-8", 0o644, (T, 0));
        ok(&versioned(p, &[]));
        rotating_tree(&src, 2, 2);
        ok(&versioned(p, &[]));
        let v = versions_dir(p);
        downgrade_manifest(&v, &src, format);
        assert!(journals(&v).is_empty());

        // The first pass of this version: no rotation, no file read, nothing written.
        let before = version_stamps(&v);
        let log = ok(&versioned(p, &["--verbose"]));
        assert!(!log.contains("rotate \""), "format {format}: {log}");
        assert!(!log.contains("rebuilding"), "format {format}: the old manifest is read: {log}");
        assert_eq!(files_hashed(&log), 0, "format {format}: its rows vouch for SOURCE: {log}");
        assert_eq!(version_stamps(&v), before, "format {format}: nothing written");

        // The next rotation writes format 3 and a journal, hashing only what changed (67
        // small files and the two large ones) and linking the rest (133 and the odd name).
        rotating_tree(&src, 3, 3);
        let log = ok(&versioned(p, &[]));
        assert!(log.contains(" 134 hard links"), "format {format}: {log}");
        assert!(log.contains(" 69 files hashed"), "format {format}: {log}");
        let text = fs::read_to_string(v.join("manifest.json")).unwrap();
        assert!(text.starts_with("{\"format\":3,") && !text.contains("\"files\":["), "{text}");
        assert_eq!(journals(&v).len(), 1);
        cache_describes_latest(&v, &format!("format {format}"));
    }
}

/// `_1`, `_0` and SOURCE states for the crash test: `_1` = state 2 and `_0` = state 1, SOURCE
/// then state 3. With `damaged`, the journal holds lines after its vouched-for length (as a
/// killed rotation leaves it), so the rotation to state 3 writes a new journal whole.
fn crash_setup(p: &Path, damaged: bool) -> (e2e::Snapshot, e2e::Snapshot, e2e::Snapshot) {
    let src = p.join("src");
    for dir in [&src, &p.join("root")] {
        if dir.exists() {
            fs::remove_dir_all(dir).unwrap();
        }
    }
    rotating_tree(&src, 1, 1);
    let state1 = snapshot(&src);
    ok(&versioned(p, &[]));
    rotating_tree(&src, 2, 2);
    let state2 = snapshot(&src);
    ok(&versioned(p, &[]));
    rotating_tree(&src, 3, 3);
    if damaged {
        let v = versions_dir(p);
        let journal = v.join(manifest(&v).hashes.unwrap().file);
        let mut f = fs::OpenOptions::new().append(true).open(journal).unwrap();
        std::io::Write::write_all(&mut f, b"[\"d00/f0000\",\"01").unwrap();
    }
    (state1, state2, snapshot(&src))
}

fn pass(p: &Path) -> std::process::Command {
    let mut c = cmd("oneway", p);
    c.args(["src", "root", "--versioned", "--once"]);
    c
}

#[test]
fn kill_9_at_each_step_of_a_rotation_leaves_a_journal_that_describes_whichever_slot_is_latest() {
    // The rotation appends the new `_1`'s lines to the journal (one fdatasync) or writes a
    // new journal whole (a renameat2 before the pending manifest's), then swaps (the pending
    // manifest, `_0` dropped, `_1` to `_0`, the new tree to `_1`, the manifest: five
    // renameat2) and, after a compaction, removes the old journal (the pass's last unlinkat).
    // After a kill at each of those steps, the repair (the library's, as the next pass or a
    // restore runs it) leaves a manifest and journal that describe `_1`, whichever state it
    // holds; the next pass converges and the one after reads and writes nothing.
    let Some(strace) = e2e::strace() else { return };
    let sb = tempfile::tempdir().unwrap();
    let p = sb.path();
    for damaged in [false, true] {
        crash_setup(p, damaged);
        let renames = e2e::count_calls(&strace, &pass(p), "renameat2");
        crash_setup(p, damaged);
        let unlinks = e2e::count_calls(&strace, &pass(p), "unlinkat");
        // The pending manifest's rename and the four after it.
        let pending = renames - 4;
        let mut steps: Vec<(&str, u32)> = (pending..=renames).map(|n| ("renameat2", n)).collect();
        if damaged {
            // The new journal's rename, and the old journal's removal after the commit.
            steps.extend([("renameat2", pending - 1), ("unlinkat", unlinks)]);
        } else {
            steps.push(("fdatasync", 1));
        }
        for (syscall, n) in steps {
            let context =
                format!("{} journal, killed at {syscall} #{n}", if damaged { "damaged" } else { "intact" });
            let (_, state2, state3) = crash_setup(p, damaged);
            let v = versions_dir(p);
            let out = e2e::run_killed_at(&strace, &pass(p), syscall, n);
            assert!(e2e::killed(&out), "{context}: not killed: {}", String::from_utf8_lossy(&out.stderr));
            // What any reader gets after the repair: `_1` is one of the two states, and the
            // manifest and the journal describe it.
            rotation::repair(&Root::open(&v).unwrap()).unwrap();
            let latest = snapshot(&v.join("_1"));
            assert!(latest == state2 || latest == state3, "{context}: _1 is neither state");
            cache_describes_latest(&v, &format!("{context}, repaired"));

            let log = ok(&versioned(p, &[]));
            assert_eq!(snapshot(&v.join("_1")), state3, "{context}: {log}");
            assert_eq!(snapshot(&v.join("_0")), state2, "{context}: {log}");
            assert!(temporaries(&v).is_empty(), "{context}: leftovers {:?}", temporaries(&v));
            assert_eq!(journals(&v).len(), 1, "{context}: {:?}", journals(&v));
            cache_describes_latest(&v, &context);
            let before = version_stamps(&v);
            let log = ok(&versioned(p, &["--verbose"]));
            assert!(!log.contains("rotate \""), "{context}: {log}");
            assert_eq!(files_hashed(&log), 0, "{context}: {log}");
            assert_eq!(version_stamps(&v), before, "{context}");
        }
    }
}
