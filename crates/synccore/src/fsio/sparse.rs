//! Copying a file's data into a staged temporary, holes kept (issue 17, point 4). A sparse
//! file (a virtual machine image, a database) is copied range by range: `SEEK_DATA` and
//! `SEEK_HOLE` find where its data lies, only those ranges are copied (`copy_file_range`,
//! which stays in the kernel and reflinks where the file system can), and the length is set
//! last, so the copy allocates what the source allocates and a 2 GiB image holding 1 MiB
//! costs 1 MiB to copy. A file whose blocks cover its length has no hole to keep and is
//! copied in one stream, as before. This is the only code that copies file data: every copy
//! of the mirror, a version, twoway and a restore goes through [`super::stage_copy`].

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::Ordering::Relaxed;

use rustix::fs::SeekFrom;
use rustix::io::Errno;

use super::BYTES_WRITTEN;

/// Bytes a single `copy_file_range` call is asked for: a large file shows progress as it goes.
const CALL: u64 = 1 << 26;

/// Buffer of the read/write fallback, where `copy_file_range` is not supported.
const FALLBACK_BUF: usize = 1 << 20;

/// True when the file `meta` describes may have holes: fewer blocks allocated than its
/// length needs. (A file system that reports no blocks at all only costs the cheap walk.)
pub(super) fn may_have_holes(meta: &std::fs::Metadata) -> bool {
    meta.blocks().saturating_mul(512) < meta.len()
}

/// Copies the first `len` bytes of `input` (what it had when opened) into the empty
/// `output`; with `holes`, only its data ranges, the holes left unallocated. Returns how far
/// the copy got: `len` when complete, less when the source ended early (it shrank: the
/// caller drops the copy). A source that changes otherwise is caught by the caller's second
/// `fstat`.
pub(super) fn copy_data(input: &File, output: &File, len: u64, holes: bool) -> io::Result<u64> {
    if !holes {
        return copy_range(input, output, 0, len);
    }
    let mut pos = 0;
    while pos < len {
        let start = match rustix::fs::seek(input, SeekFrom::Data(pos)) {
            Ok(start) => start.min(len),
            // No data after `pos`: the rest is a hole (or the file shrank; see above).
            Err(Errno::NXIO) => len,
            // A file system that cannot tell (none in Linux today: the generic code calls
            // the whole file data): copy the rest whole.
            Err(Errno::INVAL | Errno::OPNOTSUPP) => return Ok(pos + copy_range(input, output, pos, len)?),
            Err(e) => return Err(e.into()),
        };
        BYTES_WRITTEN.fetch_add(start - pos, Relaxed);
        if start >= len {
            break;
        }
        let end = match rustix::fs::seek(input, SeekFrom::Hole(start)) {
            Ok(end) => end.min(len),
            Err(Errno::NXIO) => len,
            Err(e) => return Err(e.into()),
        };
        let copied = copy_range(input, output, start, end)?;
        if copied < end - start {
            return Ok(start + copied);
        }
        pos = end;
    }
    // The trailing hole, and the length a copy of holes alone would lack.
    rustix::fs::ftruncate(output, len)?;
    Ok(len)
}

/// Copies bytes `start..end` of `input` to the same offsets of `output`; returns how many
/// were copied (fewer when `input` ends first).
fn copy_range(input: &File, output: &File, start: u64, end: u64) -> io::Result<u64> {
    let (mut off_in, mut off_out) = (start, start);
    while off_in < end {
        let want = usize::try_from((end - off_in).min(CALL)).unwrap_or(usize::MAX);
        match rustix::fs::copy_file_range(input, Some(&mut off_in), output, Some(&mut off_out), want) {
            Ok(0) => break,
            Ok(n) => {
                BYTES_WRITTEN.fetch_add(n as u64, Relaxed);
            }
            Err(Errno::XDEV | Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP) if off_in == start => {
                return copy_range_by_reads(input, output, start, end);
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(off_in - start)
}

/// [`copy_range`] by reads and writes, where `copy_file_range` is not supported (across
/// file systems on old kernels, some network file systems).
fn copy_range_by_reads(input: &File, output: &File, start: u64, end: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; usize::try_from(end - start).map_or(FALLBACK_BUF, |n| n.min(FALLBACK_BUF))];
    let mut at = start;
    while at < end {
        let want = usize::try_from(end - at).map_or(buf.len(), |n| n.min(buf.len()));
        let n = match input.read_at(&mut buf[..want], at) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        output.write_all_at(&buf[..n], at)?;
        BYTES_WRITTEN.fetch_add(n as u64, Relaxed);
        at += n as u64;
    }
    Ok(at - start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A file of `len` bytes holding `data` at each of `at` (holes elsewhere).
    fn sparse_file(path: &std::path::Path, len: u64, at: &[u64], data: &[u8]) -> File {
        let f = fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(path).unwrap();
        f.set_len(len).unwrap();
        for &off in at {
            f.write_all_at(data, off).unwrap();
        }
        f.sync_all().unwrap();
        f
    }

    fn allocated(f: &File) -> u64 {
        f.metadata().unwrap().blocks() * 512
    }

    #[test]
    fn holes_stay_holes_and_the_bytes_are_equal() {
        let d = tempfile::tempdir().unwrap();
        let len = 64 << 20;
        let data = vec![0xabu8; 256 << 10];
        // Data at the start, in the middle and up to the end; and a trailing hole.
        for at in [&[0, 32 << 20, len - (256 << 10)][..], &[1 << 20]] {
            let src = sparse_file(&d.path().join("src"), len, at, &data);
            let dst = fs::File::options()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(d.path().join("dst"))
                .unwrap();
            assert!(may_have_holes(&src.metadata().unwrap()));
            assert_eq!(copy_data(&src, &dst, len, true).unwrap(), len);
            assert_eq!(dst.metadata().unwrap().len(), len);
            assert!(
                allocated(&dst) <= allocated(&src) + (1 << 20),
                "{} vs {}",
                allocated(&dst),
                allocated(&src)
            );
            assert_eq!(fs::read(d.path().join("dst")).unwrap(), fs::read(d.path().join("src")).unwrap());
        }
    }

    #[test]
    fn a_file_of_holes_only_and_a_dense_file_are_copied_whole() {
        let d = tempfile::tempdir().unwrap();
        let src = sparse_file(&d.path().join("empty"), 10 << 20, &[], b"");
        let dst = File::create(d.path().join("dst")).unwrap();
        assert_eq!(copy_data(&src, &dst, 10 << 20, true).unwrap(), 10 << 20);
        assert_eq!(dst.metadata().unwrap().len(), 10 << 20);
        assert!(allocated(&dst) <= 1 << 20);
        let dense: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7) as u8).collect();
        fs::write(d.path().join("dense"), &dense).unwrap();
        let src = File::open(d.path().join("dense")).unwrap();
        assert!(!may_have_holes(&src.metadata().unwrap()));
        let dst = File::create(d.path().join("dst2")).unwrap();
        assert_eq!(copy_data(&src, &dst, dense.len() as u64, false).unwrap(), dense.len() as u64);
        assert_eq!(fs::read(d.path().join("dst2")).unwrap(), dense);
    }

    #[test]
    fn a_source_shorter_than_expected_is_reported_short() {
        // The scan saw `len`; the file has less by the time it is read: a short count, which
        // the caller turns into "source changed".
        let d = tempfile::tempdir().unwrap();
        let src = sparse_file(&d.path().join("src"), 4 << 20, &[0, 3 << 20], &[1u8; 4096]);
        for holes in [true, false] {
            let dst = File::create(d.path().join(format!("dst-{holes}"))).unwrap();
            let got = copy_data(&src, &dst, 8 << 20, holes).unwrap();
            // The dense copy stops where the file ends; the walk finds no data past it and
            // sets the length it was asked for. Either way `stage_copy`'s second fstat sees a
            // size that is not the one it copied for, and drops the copy.
            assert_eq!(got, if holes { 8 << 20 } else { 4 << 20 });
        }
    }

    #[test]
    fn the_read_write_fallback_copies_the_same_bytes() {
        let d = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(d.path().join("src"), &data).unwrap();
        let src = File::open(d.path().join("src")).unwrap();
        let dst =
            fs::File::options().create(true).truncate(true).write(true).open(d.path().join("dst")).unwrap();
        assert_eq!(
            copy_range_by_reads(&src, &dst, 1000, data.len() as u64 + 5).unwrap(),
            data.len() as u64 - 1000
        );
        assert_eq!(fs::read(d.path().join("dst")).unwrap()[1000..], data[1000..]);
    }
}
