//! "Do these two files hold the same bytes?" answered by reading both, with no hash at all
//! (issue 17, point 2): the mirror's `--checksum` and its quick check's "equal size, different
//! mtime" ask only this, so comparing costs what reading costs. Both files are read through
//! their roots' descriptors (never by path), in large blocks, and the comparison stops at the
//! first block that differs. A large file is read on two threads, one per file; a small one
//! on the caller's, where a thread would cost more than the read. No `mmap`: it needs
//! `unsafe`, and a file that shrinks under a mapping kills the process with SIGBUS. A file
//! that shrinks while it is read is simply "different".

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc;

use crate::error::{IoResultExt, Op, Result};
use crate::fsio::Root;

/// Bytes read per call: large enough that system calls are noise next to the copying.
const BLOCK: usize = 1 << 20;

/// From this size on the two files are read on two threads. Below it one thread reads both:
/// starting a thread (tens of microseconds) costs more than reading a few blocks from the
/// page cache.
const TWO_THREADS_FROM: u64 = 4 << 20;

/// Blocks of the second file in flight between its reader and the comparing thread.
const IN_FLIGHT: usize = 2;

/// True when the regular files `a_rel` beneath `a` and `b_rel` beneath `b` hold the same
/// bytes: equal sizes, then equal content, read block by block until the first difference.
/// A file that shrinks while it is read counts as different (the copy that follows checks it
/// again); an error names the file it happened on.
pub fn same_bytes(a: &Root, a_rel: &Path, b: &Root, b_rel: &Path) -> Result<bool> {
    let (fa, fb) = (a.open_read(a_rel)?, b.open_read(b_rel)?);
    let len = fa.metadata().at(Op::Stat, || a.path_of(a_rel))?.len();
    if fb.metadata().at(Op::Stat, || b.path_of(b_rel))?.len() != len {
        return Ok(false);
    }
    compare_open(&fa, a, a_rel, &fb, b, b_rel, len)
}

/// [`same_bytes`] for two files a scan saw with the same size `len`: the first `len` bytes
/// are compared without asking the sizes again (a file that shrank since reads short and is
/// different; one that grew is for the next pass, as with the quick check).
pub(super) fn compare_files(a: &Root, a_rel: &Path, b: &Root, b_rel: &Path, len: u64) -> Result<bool> {
    let (fa, fb) = (a.open_read(a_rel)?, b.open_read(b_rel)?);
    compare_open(&fa, a, a_rel, &fb, b, b_rel, len)
}

/// [`same_open`] with errors that name their file.
fn compare_open(
    fa: &File,
    a: &Root,
    a_rel: &Path,
    fb: &File,
    b: &Root,
    b_rel: &Path,
    len: u64,
) -> Result<bool> {
    match same_open(fa, fb, len) {
        Ok(same) => Ok(same),
        Err((Which::A, e)) => Err(e).at(Op::Read, || a.path_of(a_rel)),
        Err((Which::B, e)) => Err(e).at(Op::Read, || b.path_of(b_rel)),
    }
}

/// Compares the first `len` bytes of two files opened for it (from their current offsets).
pub(super) fn compare_open_files(a: &File, b: &File, len: u64) -> io::Result<bool> {
    same_open(a, b, len).map_err(|(_, e)| e)
}

/// Which of the two files a read error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    A,
    B,
}

/// Compares the first `len` bytes of two open files (both read from their current offset).
fn same_open(a: &File, b: &File, len: u64) -> std::result::Result<bool, (Which, io::Error)> {
    if len < TWO_THREADS_FROM { same_on_one_thread(a, b, len) } else { same_on_two_threads(a, b, len) }
}

thread_local! {
    /// One pair of blocks per comparing thread, allocated once: a fresh megabyte per file
    /// would cost page faults on every call.
    static BLOCKS: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

fn same_on_one_thread(a: &File, b: &File, len: u64) -> std::result::Result<bool, (Which, io::Error)> {
    BLOCKS.with_borrow_mut(|(ba, bb)| {
        let size = block_for(len);
        for buf in [&mut *ba, &mut *bb] {
            if buf.len() < size {
                buf.resize(size, 0);
            }
        }
        let mut left = len;
        while left > 0 {
            let n = block_for(left);
            let got_a = read_full(a, &mut ba[..n]).map_err(|e| (Which::A, e))?;
            let got_b = read_full(b, &mut bb[..n]).map_err(|e| (Which::B, e))?;
            if got_a != n || got_b != n || ba[..n] != bb[..n] {
                return Ok(false);
            }
            left -= n as u64;
        }
        Ok(true)
    })
}

/// The size of the next block when `left` bytes remain.
fn block_for(left: u64) -> usize {
    usize::try_from(left).map_or(BLOCK, |l| l.min(BLOCK))
}

/// `b` is read by a second thread that hands its blocks over a bounded channel (and gets
/// them back to refill), while this thread reads `a` and compares. Dropping the channels at
/// the first difference stops the reader after at most the block it is reading.
fn same_on_two_threads(a: &File, b: &File, len: u64) -> std::result::Result<bool, (Which, io::Error)> {
    let (full_tx, full_rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(IN_FLIGHT);
    let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut left = len;
            let mut spare = 0;
            while left > 0 {
                let n = block_for(left);
                // Blocks come back once compared; at most IN_FLIGHT + 1 are ever made: with
                // the channel full and one block being compared, the reader waits for one.
                let mut buf = match free_rx.try_recv() {
                    Ok(buf) => buf,
                    Err(_) if spare <= IN_FLIGHT => {
                        spare += 1;
                        Vec::with_capacity(BLOCK)
                    }
                    Err(_) => match free_rx.recv() {
                        Ok(buf) => buf,
                        Err(_) => return, // the comparison ended
                    },
                };
                buf.resize(n, 0);
                let read = read_full(b, &mut buf).map(|got| {
                    buf.truncate(got);
                    buf
                });
                let short = read.as_ref().map_or(true, |buf| buf.len() != n);
                if full_tx.send(read).is_err() || short {
                    return;
                }
                left -= n as u64;
            }
        });
        // The receiving ends move into `compare_blocks` and are dropped when it returns, which
        // unblocks a reader still waiting to send before the scope joins it.
        compare_blocks(a, len, full_rx, free_tx)
    })
}

/// The comparing side of [`same_on_two_threads`]: reads `a` block by block and compares each
/// with the block of `b` that arrives on `full`, handing the latter back on `free`. Both are
/// taken by value on purpose: dropping them on return is what stops the reader.
#[allow(clippy::needless_pass_by_value)]
fn compare_blocks(
    a: &File,
    len: u64,
    full: mpsc::Receiver<io::Result<Vec<u8>>>,
    free: mpsc::Sender<Vec<u8>>,
) -> std::result::Result<bool, (Which, io::Error)> {
    let mut mine = vec![0u8; block_for(len)];
    let mut left = len;
    while left > 0 {
        let n = block_for(left);
        let got = read_full(a, &mut mine[..n]).map_err(|e| (Which::A, e))?;
        let theirs = match full.recv() {
            Ok(read) => read.map_err(|e| (Which::B, e))?,
            // The reader stopped early: only after sending a short block or an error.
            Err(_) => return Ok(false),
        };
        if got != n || theirs.len() != n || mine[..n] != theirs[..] {
            return Ok(false);
        }
        let _ = free.send(theirs);
        left -= n as u64;
    }
    Ok(true)
}

/// Reads until `buf` is full or the file ends; returns how many bytes were read.
fn read_full(mut file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Deterministic, incompressible-looking bytes.
    fn bytes(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32).map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8).collect()
    }

    fn pair(a: &[u8], b: &[u8]) -> (tempfile::TempDir, Root) {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("a"), a).unwrap();
        fs::write(d.path().join("b"), b).unwrap();
        let root = Root::open(d.path()).unwrap();
        (d, root)
    }

    fn same(a: &[u8], b: &[u8]) -> bool {
        let (_d, root) = pair(a, b);
        same_bytes(&root, Path::new("a"), &root, Path::new("b")).unwrap()
    }

    #[test]
    fn equal_files_are_the_same_on_one_and_two_threads() {
        for len in [0, 1, BLOCK - 1, BLOCK, 3 * BLOCK + 5, TWO_THREADS_FROM as usize, 6 * BLOCK + 17] {
            let data = bytes(len, 1);
            assert!(same(&data, &data), "len {len}");
        }
    }

    #[test]
    fn a_difference_in_the_first_or_the_last_block_is_found() {
        for len in [10, 3 * BLOCK + 5, 6 * BLOCK + 17] {
            let data = bytes(len, 2);
            for at in [0, len / 2, len - 1] {
                let mut other = data.clone();
                other[at] ^= 0x40;
                assert!(!same(&data, &other), "len {len}, byte {at}");
                assert!(!same(&other, &data), "len {len}, byte {at}, swapped");
            }
        }
    }

    #[test]
    fn different_sizes_are_different_without_reading() {
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }

    #[test]
    fn a_file_that_shrinks_while_it_is_read_is_different() {
        // The size is taken, then the file shrinks before (or while) its blocks are read: a
        // short read, on either side and either path, answers "different" (no panic).
        for len in [3 * BLOCK + 5, 6 * BLOCK + 17] {
            let data = bytes(len, 3);
            for (shrink, cut) in
                [(Which::A, len / 2), (Which::B, len / 2), (Which::B, 0), (Which::A, len - 1)]
            {
                let (d, _root) = pair(&data, &data);
                let (fa, fb) =
                    (File::open(d.path().join("a")).unwrap(), File::open(d.path().join("b")).unwrap());
                let victim = if shrink == Which::A { &fa } else { &fb };
                fs::OpenOptions::new()
                    .write(true)
                    .open(d.path().join(if shrink == Which::A { "a" } else { "b" }))
                    .unwrap()
                    .set_len(cut as u64)
                    .unwrap();
                assert_eq!(victim.metadata().unwrap().len(), cut as u64);
                assert!(!same_open(&fa, &fb, len as u64).unwrap(), "len {len}, {shrink:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn a_missing_file_is_an_error_that_names_it() {
        let (d, root) = pair(b"x", b"x");
        let err = same_bytes(&root, Path::new("a"), &root, Path::new("gone")).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("gone"), "{message}");
        assert!(d.path().join("a").exists());
    }
}
