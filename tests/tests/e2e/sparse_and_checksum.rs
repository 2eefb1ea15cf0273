//! Issue 17, points 2 and 4, end to end. Holes stay holes: a sparse file copied by the mirror
//! (first copy and update), into a version, by twoway (both ways) and by a restore allocates
//! no more than its source plus 1 MiB, and reads back the same bytes. `--checksum` compares
//! bytes: a file of the same size and mtime but other bytes is updated, one whose mtime alone
//! changed only gets its mtime back, on small files and on files read on two threads.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use e2e::{cmd, file, run, set_mtime};

use crate::twoway_merge::Pair;

const T: (i64, u32) = (1_700_000_000, 0);

/// Length of the mirror's sparse files: large next to their data, small enough to read back
/// quickly.
const LEN: u64 = 256 << 20;

/// Length of the sparse files that twoway and the versions also hash (SHA-256 in a debug
/// build is slow; the holes are what matters).
const SHORT: u64 = 32 << 20;

/// Writes a sparse file of `len` bytes at `rel` holding 64 KiB of data (a pattern of
/// `seed`) at each offset of `data_at`, holes elsewhere; mtime `mtime`.
fn sparse(root: &Path, rel: &str, len: u64, data_at: &[u64], seed: u8, mtime: (i64, u32)) -> PathBuf {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    let f = fs::OpenOptions::new().create(true).truncate(true).write(true).open(&p).unwrap();
    f.set_len(len).unwrap();
    let block: Vec<u8> = (0..64u32 << 10).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
    for &at in data_at {
        f.write_all_at(&block, at).unwrap();
    }
    drop(f);
    set_mtime(&p, mtime);
    p
}

/// Bytes the file system allocated for `path` (`st_blocks` × 512).
fn allocated(path: &Path) -> u64 {
    fs::metadata(path).unwrap().blocks() * 512
}

/// `copy` is a copy of `source` that kept its holes: same length, same bytes, and no more
/// allocated than the source plus 1 MiB (the target).
fn assert_sparse_copy(source: &Path, copy: &Path) {
    let (meta, copied) = (fs::metadata(source).unwrap(), fs::metadata(copy).unwrap());
    assert_eq!(copied.len(), meta.len(), "{}", copy.display());
    assert!(
        allocated(copy) <= allocated(source) + (1 << 20),
        "{} allocates {} B, its source {} B",
        copy.display(),
        allocated(copy),
        allocated(source)
    );
    assert!(allocated(copy) < meta.len() / 8, "{} is not sparse", copy.display());
    let (mut from, mut to) = (fs::File::open(source).unwrap(), fs::File::open(copy).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 8 << 20], vec![0u8; 8 << 20]);
    loop {
        let n = from.read(&mut ba).unwrap();
        to.read_exact(&mut bb[..n]).unwrap();
        assert!(ba[..n] == bb[..n], "{} differs from its source", copy.display());
        if n == 0 {
            break;
        }
    }
}

/// How many `word` operations (`update`, `meta`) a pass's log lines name.
fn ops(log: &str, word: &str) -> usize {
    log.matches(&format!(" {word} \"")).count()
}

fn sandbox() -> (tempfile::TempDir, PathBuf) {
    let sb = tempfile::tempdir().unwrap();
    let src = sb.path().join("src");
    fs::create_dir(&src).unwrap();
    (sb, src)
}

/// `oneway src dst --once` plus `extra`, which must succeed; returns its log.
fn mirror(sb: &Path, extra: &[&str]) -> String {
    let mut c = cmd("oneway", sb);
    c.args(["src", "dst", "--once", "--log", "oneway.log"]).args(extra);
    let out = run(c);
    let log = fs::read_to_string(sb.join("oneway.log")).unwrap_or_default();
    fs::remove_file(sb.join("oneway.log")).ok();
    assert_eq!(out.status.code(), Some(0), "{log}");
    log
}

#[test]
fn the_mirror_keeps_holes_on_copy_and_update() {
    let (sb, src) = sandbox();
    let image = sparse(&src, "vm/disk.img", LEN, &[0, 100 << 20, LEN - (64 << 10)], 1, T);
    // A file that ends in a hole, and one of holes only.
    let tail = sparse(&src, "tail-hole", LEN, &[4 << 20], 2, T);
    let empty = sparse(&src, "holes-only", LEN, &[], 3, T);
    mirror(sb.path(), &[]);
    let dst = sb.path().join("dst");
    assert_sparse_copy(&image, &dst.join("vm/disk.img"));
    assert_sparse_copy(&tail, &dst.join("tail-hole"));
    assert_sparse_copy(&empty, &dst.join("holes-only"));

    // An update (new data elsewhere, new mtime) is a fresh sparse copy too.
    sparse(&src, "vm/disk.img", LEN, &[0, 200 << 20], 4, (T.0 + 60, 0));
    let log = mirror(sb.path(), &[]);
    assert_eq!(ops(&log, "update"), 1, "{log}");
    assert_sparse_copy(&image, &dst.join("vm/disk.img"));
}

#[test]
fn a_version_keeps_holes() {
    let (sb, src) = sandbox();
    let image = sparse(&src, "db/data.bin", SHORT, &[1 << 20, 16 << 20], 5, T);
    let versioned = |sb: &Path| {
        let mut c = cmd("oneway", sb);
        c.args(["src", "root", "--versioned", "--once", "--log", "oneway.log"]);
        let out = run(c);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    };
    versioned(sb.path());
    let versions: Vec<PathBuf> =
        fs::read_dir(sb.path().join("root/__versions__")).unwrap().map(|d| d.unwrap().path()).collect();
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert_sparse_copy(&image, &versions[0].join("_1/db/data.bin"));
    // The next version's changed file is a fresh copy that keeps its holes too.
    sparse(&src, "db/data.bin", SHORT, &[1 << 20, 17 << 20], 6, (T.0 + 60, 0));
    versioned(sb.path());
    assert_sparse_copy(&image, &versions[0].join("_1/db/data.bin"));
    assert!(allocated(&versions[0].join("_0/db/data.bin")) < SHORT / 8);
}

#[test]
fn twoway_keeps_holes_both_ways() {
    let p = Pair::new();
    let on_a = sparse(&p.a, "images/a.img", SHORT, &[1 << 20], 7, T);
    let on_b = sparse(&p.b, "images/b.img", SHORT, &[SHORT / 2], 8, T);
    p.sync();
    assert_sparse_copy(&on_a, &p.b.join("images/a.img"));
    assert_sparse_copy(&on_b, &p.a.join("images/b.img"));
    // An edit on B travels back to A sparse.
    let edited = sparse(&p.b, "images/a.img", SHORT, &[1 << 20, 20 << 20], 9, (T.0 + 60, 0));
    p.sync();
    assert_sparse_copy(&edited, &p.a.join("images/a.img"));
}

#[test]
fn a_restore_keeps_holes() {
    let p = Pair::with_recovery();
    let image = sparse(&p.a, "disk.img", SHORT, &[0, 24 << 20], 10, T);
    file(&p.a, b"notes.txt", b"notes", 0o644, T);
    // The pass registers both directories and versions each (its children).
    let (code, _, log) = p.pass(&[]);
    assert_eq!(code, 0, "{log}");
    let kept = fs::read(&image).unwrap();
    fs::remove_file(&image).unwrap();
    let mut c = cmd("twoway", p.root());
    c.args(["a", "--restore", "--home", "home", "--log", "restore.log"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read(&image).unwrap(), kept);
    assert!(allocated(&image) <= (128 << 10) + (1 << 20), "{} B allocated", allocated(&image));
    assert!(allocated(&p.b.join("disk.img")) < SHORT / 8, "the pass copied to B sparse");
}

#[test]
fn checksum_updates_a_file_whose_bytes_changed_under_the_same_size_and_mtime() {
    let (sb, src) = sandbox();
    let big: Vec<u8> = (0..9_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    file(&src, b"small.txt", b"hello world", 0o644, T);
    file(&src, b"big.bin", &big, 0o644, T);
    file(&src, b"same.txt", b"unchanged", 0o644, T);
    mirror(sb.path(), &[]);
    let dst = sb.path().join("dst");
    // Same size, same mtime, other bytes: in the first block of the small file and in the
    // last block of the large one (read on two threads).
    let mut other = big.clone();
    *other.last_mut().unwrap() ^= 0x55;
    file(&dst, b"small.txt", b"HELLO world", 0o644, T);
    file(&dst, b"big.bin", &other, 0o644, T);

    // The quick check cannot see it...
    let log = mirror(sb.path(), &[]);
    assert_eq!(ops(&log, "update"), 0, "{log}");
    assert_eq!(fs::read(dst.join("small.txt")).unwrap(), b"HELLO world");
    // ...--checksum does, and updates exactly those two.
    let log = mirror(sb.path(), &["--checksum"]);
    assert_eq!(ops(&log, "update"), 2, "{log}");
    assert!(!log.contains("same.txt"), "{log}");
    assert_eq!(fs::read(dst.join("small.txt")).unwrap(), b"hello world");
    assert!(fs::read(dst.join("big.bin")).unwrap() == big);
    // Nothing left to do.
    let log = mirror(sb.path(), &["--checksum"]);
    assert_eq!((ops(&log, "update"), ops(&log, "meta")), (0, 0), "{log}");
}

#[test]
fn checksum_finds_every_same_stamp_edit_among_many_small_files_in_nested_directories() {
    // Small files are read by the walks themselves (their bytes travel with the entries),
    // larger ones by helper threads: the edits must be found whichever way, whatever the
    // order of files and subdirectories in a listing, and at the sizes around the limit.
    let (sb, src) = sandbox();
    let content = |i: usize| -> Vec<u8> {
        let len = [0, 1, 100, 4095, 4096, 4097, 70_000][i % 7];
        (0..len).map(|j| (j as u32).wrapping_mul(31).wrapping_add(i as u32) as u8).collect()
    };
    let path = |i: usize| format!("d{}/{}f{i:03}.bin", i % 4, if i.is_multiple_of(3) { "sub/" } else { "" });
    for i in 0..120 {
        file(&src, path(i).as_bytes(), &content(i), 0o644, T);
    }
    mirror(sb.path(), &[]);
    let dst = sb.path().join("dst");
    let mut edited = Vec::new();
    for i in (0..120usize).filter(|i| i.is_multiple_of(5) && !content(*i).is_empty()) {
        let mut other = content(i);
        *other.last_mut().unwrap() ^= 0x20;
        file(&dst, path(i).as_bytes(), &other, 0o644, T);
        edited.push(path(i));
    }
    let log = mirror(sb.path(), &["--checksum"]);
    assert_eq!(ops(&log, "update"), edited.len(), "{log}");
    for p in &edited {
        assert!(log.contains(&format!(" update \"{p}\"")), "{p}: {log}");
    }
    for i in 0..120 {
        assert_eq!(fs::read(dst.join(path(i))).unwrap(), content(i), "{}", path(i));
    }
    let log = mirror(sb.path(), &["--checksum"]);
    assert_eq!((ops(&log, "update"), ops(&log, "meta")), (0, 0), "{log}");
}

#[test]
fn checksum_finds_same_stamp_edits_in_a_directory_of_more_small_files_than_a_walk_keeps() {
    // 1,300 files of 4,000 bytes in one directory (5.2 MB): the walks keep the bytes of the
    // first ones (up to 4 MiB in flight) and only the digests of the rest. Edits on both
    // sides of that line must be found; the others are left alone.
    let (sb, src) = sandbox();
    let content =
        |i: usize| -> Vec<u8> { (0..4000u32).map(|j| (j ^ i as u32).wrapping_mul(7) as u8).collect() };
    for i in 0..1300 {
        file(&src, format!("many/f{i:04}").as_bytes(), &content(i), 0o644, T);
    }
    mirror(sb.path(), &[]);
    let dst = sb.path().join("dst");
    let edited: Vec<usize> = vec![0, 1, 500, 1000, 1040, 1100, 1200, 1299];
    for &i in &edited {
        let mut other = content(i);
        other[i % 4000] ^= 0x01;
        file(&dst, format!("many/f{i:04}").as_bytes(), &other, 0o644, T);
    }
    let log = mirror(sb.path(), &["--checksum"]);
    assert_eq!(ops(&log, "update"), edited.len(), "{log}");
    for i in edited {
        assert!(log.contains(&format!(" update \"many/f{i:04}\"")), "{i}: {log}");
    }
    for i in 0..1300 {
        assert_eq!(fs::read(dst.join(format!("many/f{i:04}"))).unwrap(), content(i), "{i}");
    }
    let log = mirror(sb.path(), &["--checksum"]);
    assert_eq!((ops(&log, "update"), ops(&log, "meta")), (0, 0), "{log}");
}

#[test]
fn equal_bytes_under_a_new_mtime_only_get_the_mtime() {
    let (sb, src) = sandbox();
    let big: Vec<u8> = (0..6_000_000u32).map(|i| (i.wrapping_mul(40_503) >> 7) as u8).collect();
    file(&src, b"a.txt", b"same bytes", 0o644, T);
    file(&src, b"big.bin", &big, 0o644, T);
    mirror(sb.path(), &[]);
    let dst = sb.path().join("dst");
    let inode = fs::metadata(dst.join("big.bin")).unwrap().ino();
    for extra in [&[][..], &["--checksum"]] {
        set_mtime(&src.join("a.txt"), (T.0 + 5, 0));
        set_mtime(&src.join("big.bin"), (T.0 + 5, 0));
        let log = mirror(sb.path(), extra);
        assert_eq!((ops(&log, "update"), ops(&log, "meta")), (0, 2), "{extra:?}: {log}");
        assert_eq!(fs::metadata(dst.join("a.txt")).unwrap().mtime(), T.0 + 5);
        assert_eq!(fs::metadata(dst.join("big.bin")).unwrap().ino(), inode, "not copied again");
        set_mtime(&src.join("a.txt"), T);
        set_mtime(&src.join("big.bin"), T);
        mirror(sb.path(), &[]);
    }
}

/// Access time of `path`, to the nanosecond.
fn atime(path: &Path) -> (i64, i64) {
    let m = fs::metadata(path).unwrap();
    (m.atime(), m.atime_nsec())
}

/// Gives `path` an access time older than its mtime: the kernel's `relatime` rule then
/// updates it on the next read, unless the reader opened it with `O_NOATIME`.
fn set_old_atime(path: &Path) {
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    fs::File::open(path).unwrap().set_times(fs::FileTimes::new().set_accessed(old)).unwrap();
}

#[test]
fn reading_files_leaves_their_access_times_alone() {
    // A backup reads every byte, and a mail reader takes "read after written" for "seen":
    // no pass may change an access time, whether it copies, compares (small files read by
    // the walk, large ones by the helpers, both sides) or hashes (twoway).
    let (sb, src) = sandbox();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i >> 3) as u8).collect();
    let names: [(&str, &[u8]); 3] = [("mbox", b"From a\n"), ("d/big.bin", &big), ("d/small", b"x")];
    let files = |root: &Path| -> Vec<PathBuf> {
        names
            .iter()
            .map(|(name, bytes)| {
                if !root.join(name).exists() {
                    file(root, name.as_bytes(), bytes, 0o644, T);
                }
                set_old_atime(&root.join(name));
                root.join(name)
            })
            .collect()
    };
    let atimes = |files: &[PathBuf]| files.iter().map(|f| atime(f)).collect::<Vec<_>>();
    let dst = sb.path().join("dst");
    let sources = files(&src);
    let before = atimes(&sources);
    mirror(sb.path(), &[]);
    assert_eq!(atimes(&sources), before, "the first pass's copies changed the source's access times");
    let copies = files(&dst);
    let copies_before = atimes(&copies);
    let log = mirror(sb.path(), &["--checksum"]);
    assert_eq!((ops(&log, "update"), ops(&log, "meta")), (0, 0), "{log}");
    assert_eq!(atimes(&sources), before, "--checksum changed the source's access times");
    assert_eq!(atimes(&copies), copies_before, "--checksum changed the mirror's access times");

    let p = Pair::new();
    let sides = files(&p.a);
    let before = atimes(&sides);
    let (code, _, log) = p.pass(&[]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(atimes(&sides), before, "twoway's first pass changed A's access times");
    for (name, bytes) in names {
        assert_eq!(fs::read(p.b.join(name)).unwrap(), bytes, "{name}");
    }
}
