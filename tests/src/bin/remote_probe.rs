//! `remote_probe`: drives `syncremote` from a process of its own, for the end-to-end tests of
//! issue 18 (a process can be killed mid-upload, and gets the `PATH` of the SFTP tests' `ssh`
//! wrapper): the library's calls in isolation (two writers racing for one head, the stored
//! objects, the capabilities), beside the tests of the real `oneway` in
//! `tests/e2e/remote_oneway.rs`. It composes the API as `oneway` does: read the head and the
//! latest manifest, upload what the manifest lacks, commit, collect garbage.
//!
//! ```text
//! remote_probe push URL DIR [--versioned] [--stop-after-bytes N] [-o key=value]...
//! remote_probe pull URL DIR [--previous] [-o key=value]...
//! remote_probe race URL [-o key=value]...     two writers of one head: one must lose
//! remote_probe objects URL [-o key=value]...  counts the stored objects
//! ```
//! Prints one JSON line of figures on stdout; an error is one line on stderr and its exit code.

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use synccore::entry::{Kind, MODE_MASK, Mtime};
use synccore::relpath::RelPath;
use synccore::{Error, Result};
use syncremote::{Head, Keep, Location, Present, Remote, RemoteEntry, Slot, Uploaded};

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match run(&args) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("remote_probe: {e}");
            std::process::exit(e.exit_code());
        }
    }
}

fn usage(msg: &str) -> Error {
    Error::Invalid { path: PathBuf::from("remote_probe"), reason: msg.to_owned() }
}

struct Args {
    command: String,
    url: String,
    dir: Option<PathBuf>,
    options: Vec<(String, String)>,
    versioned: bool,
    previous: bool,
    stop_after: Option<u64>,
}

fn parse(args: &[OsString]) -> Result<Args> {
    let mut it = args.iter();
    let text = |a: Option<&OsString>| a.and_then(|a| a.to_str()).map(str::to_owned);
    let command = text(it.next()).ok_or_else(|| usage("no command"))?;
    let url = text(it.next()).ok_or_else(|| usage("no URL"))?;
    let mut a = Args {
        command,
        url,
        dir: None,
        options: Vec::new(),
        versioned: false,
        previous: false,
        stop_after: None,
    };
    while let Some(arg) = it.next() {
        match arg.to_str() {
            Some("--versioned") => a.versioned = true,
            Some("--previous") => a.previous = true,
            Some("--stop-after-bytes") => {
                a.stop_after = Some(
                    text(it.next()).and_then(|n| n.parse().ok()).ok_or_else(|| usage("bad byte count"))?,
                );
            }
            Some("-o") => {
                let kv = text(it.next()).ok_or_else(|| usage("-o needs key=value"))?;
                let (k, v) = kv.split_once('=').ok_or_else(|| usage("-o needs key=value"))?;
                a.options.push((k.to_owned(), v.to_owned()));
            }
            _ if a.dir.is_none() => a.dir = Some(PathBuf::from(arg)),
            _ => return Err(usage("unexpected argument")),
        }
    }
    Ok(a)
}

fn run(args: &[OsString]) -> Result<String> {
    let a = parse(args)?;
    let loc = Location::parse(&a.url, &a.options)?;
    let remote = Remote::open(&loc)?;
    let started = Instant::now();
    let mut line = match (a.command.as_str(), &a.dir) {
        ("push", Some(dir)) => push(&remote, dir, a.versioned, a.stop_after)?,
        ("pull", Some(dir)) => pull(&remote, dir, if a.previous { Slot::Previous } else { Slot::Latest })?,
        ("race", None) => race(&loc)?,
        ("objects", None) => format!("\"objects\":{}", remote.objects()?.len()),
        ("caps", None) => {
            let c = remote.capabilities();
            format!(
                "\"can_rename\":{},\"write_if_match\":{},\"write_if_not_exists\":{},\"hard_links\":{}",
                c.rename, c.write_if_match, c.write_if_not_exists, c.hard_links
            )
        }
        _ => return Err(usage("commands: push URL DIR, pull URL DIR, race URL, objects URL")),
    };
    let r = remote.requests();
    line = format!(
        "{{{line},\"requests\":{},\"stat\":{},\"read\":{},\"write\":{},\"list\":{},\"delete\":{},\"rename\":{},\"seconds\":{:.3}}}",
        r.total(),
        r.stat,
        r.read,
        r.write,
        r.list,
        r.delete,
        r.rename,
        started.elapsed().as_secs_f64()
    );
    Ok(line)
}

/// Attaches an operation and a path to an I/O error.
fn io(op: synccore::error::Op, p: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::Io { op, path: p.to_path_buf(), source: e }
}

/// The local tree as manifest entries (sorted by path bytes), each file hashed.
fn local_entries(root: &Path) -> Result<Vec<(RemoteEntry, PathBuf)>> {
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(RemoteEntry, PathBuf)>) -> Result<()> {
    for dent in fs::read_dir(dir).map_err(io(synccore::error::Op::ReadDir, dir))? {
        let p = dent.map_err(io(synccore::error::Op::ReadDir, dir))?.path();
        let m = fs::symlink_metadata(&p).map_err(io(synccore::error::Op::Stat, &p))?;
        let rel = RelPath::from_path(p.strip_prefix(root).unwrap_or(&p));
        let (kind, object, size) = if m.file_type().is_symlink() {
            let t = fs::read_link(&p).map_err(io(synccore::error::Op::ReadLink, &p))?;
            let t = t.into_os_string().into_vec();
            let len = t.len() as u64;
            (Kind::Symlink(t.into()), None, len)
        } else if m.is_dir() {
            walk(root, &p, out)?;
            (Kind::Dir, None, 0)
        } else if m.is_file() {
            (Kind::File, Some(synccore::checksum::file_checksum(&p)?.into()), m.len())
        } else {
            continue;
        };
        let entry = RemoteEntry {
            path: rel,
            kind,
            size,
            mtime: Mtime { secs: m.mtime(), nanos: m.mtime_nsec() as u32 },
            mode: m.mode() & MODE_MASK,
            owner: None,
            object,
        };
        out.push((entry, p));
    }
    Ok(())
}

/// Bytes the uploads may still read before this process stops itself (`--stop-after-bytes`);
/// `u64::MAX` for never.
static STOP_AFTER: AtomicU64 = AtomicU64::new(u64::MAX);

/// Stops this process (SIGSTOP) once `--stop-after-bytes` bytes have been read for uploads:
/// a test then kills it, or breaks the store or the connection, in the middle of an upload.
struct StopAfter<R> {
    inner: R,
}

impl<R: Read> Read for StopAfter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let left = STOP_AFTER.load(Ordering::Relaxed);
        if left != u64::MAX {
            let next = left.saturating_sub(n as u64);
            STOP_AFTER.store(if next == 0 { u64::MAX } else { next }, Ordering::Relaxed);
            if next == 0 {
                eprintln!("remote_probe: stopping mid-upload");
                let me = rustix::process::getpid();
                let _ = rustix::process::kill_process(me, rustix::process::Signal::STOP);
            }
        }
        Ok(n)
    }
}

fn push(remote: &Remote, dir: &Path, versioned: bool, stop_after: Option<u64>) -> Result<String> {
    let local = local_entries(dir)?;
    let head = remote.head()?;
    let latest = remote.read_entries(&head, Slot::Latest)?;
    let new: Vec<RemoteEntry> = local.iter().map(|(e, _)| e.clone()).collect();
    if head.exists && latest == new {
        return Ok("\"changed\":false,\"uploaded\":0,\"skipped\":0,\"bytes\":0".to_owned());
    }
    let mut referenced: Vec<_> = latest.iter().filter_map(|e| e.object).collect();
    if versioned {
        referenced.extend(remote.read_entries(&head, Slot::Previous)?.iter().filter_map(|e| e.object));
    }
    let mut present = Present::new(&head, referenced);
    let (mut uploaded, mut skipped, mut bytes) = (0u64, 0u64, 0u64);
    if let Some(n) = stop_after {
        STOP_AFTER.store(n.max(1), Ordering::Relaxed);
    }
    for (e, path) in &local {
        let Some(id) = e.object else { continue };
        let file = fs::File::open(path).map_err(|err| Error::Io {
            op: synccore::error::Op::Read,
            path: path.clone(),
            source: err,
        })?;
        let reader = StopAfter { inner: file };
        match remote.upload_reader(&mut present, &id, reader, path)? {
            Uploaded::Present => skipped += 1,
            Uploaded::Sent(n) => {
                uploaded += 1;
                bytes += n;
            }
        }
    }
    let keep = if versioned { Keep::LatestAndPrevious } else { Keep::Latest };
    let now = remote.commit(&head, new, keep)?;
    let gc = remote.collect_garbage(&head, &now)?;
    Ok(format!(
        "\"changed\":true,\"uploaded\":{uploaded},\"skipped\":{skipped},\"bytes\":{bytes},\"generation\":{},\
         \"gc_objects\":{},\"gc_manifests\":{},\"gc_temporaries\":{},\"gc_kept_recent\":{}",
        now.file.generation, gc.objects, gc.manifests, gc.temporaries, gc.kept_recent
    ))
}

/// Recreates a version in `dir` exactly: contents, modes, mtimes, symlinks, empty dirs.
fn pull(remote: &Remote, dir: &Path, slot: Slot) -> Result<String> {
    let head = remote.head()?;
    let entries = remote.read_entries(&head, slot)?;
    fs::create_dir_all(dir).map_err(io(synccore::error::Op::CreateDir, dir))?;
    let mut bytes = 0u64;
    let mut dirs = Vec::new();
    for e in &entries {
        let p = dir.join(std::ffi::OsStr::from_bytes(e.path.as_bytes()));
        match &e.kind {
            Kind::Dir => {
                fs::create_dir_all(&p).map_err(io(synccore::error::Op::CreateDir, &p))?;
                dirs.push((p, e.mode, e.mtime));
            }
            Kind::Symlink(t) => {
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(t), &p)
                    .map_err(io(synccore::error::Op::Symlink, &p))?;
                let omit = rustix::fs::Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT };
                let times =
                    rustix::fs::Timestamps { last_access: omit, last_modification: e.mtime.to_timespec() };
                rustix::fs::utimensat(rustix::fs::CWD, &p, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|err| Error::Io {
                        op: synccore::error::Op::SetMeta,
                        path: p.clone(),
                        source: err.into(),
                    })?;
            }
            Kind::File => {
                let Some(id) = e.object else { continue };
                let parent = p.parent().unwrap_or(dir);
                let temp = remote.download_to_temp(&id, parent)?;
                fs::set_permissions(&temp, fs::Permissions::from_mode(e.mode))
                    .map_err(io(synccore::error::Op::SetMeta, &temp))?;
                let f = fs::File::options()
                    .write(true)
                    .open(&temp)
                    .map_err(io(synccore::error::Op::SetMeta, &temp))?;
                f.set_modified(e.mtime.to_system_time()).map_err(io(synccore::error::Op::SetMeta, &temp))?;
                fs::rename(&temp, &p).map_err(io(synccore::error::Op::Rename, &temp))?;
                bytes += e.size;
            }
        }
    }
    for (p, mode, mtime) in dirs.iter().rev() {
        fs::set_permissions(p, fs::Permissions::from_mode(*mode))
            .map_err(io(synccore::error::Op::SetMeta, p))?;
        let f = fs::File::open(p).map_err(io(synccore::error::Op::SetMeta, p))?;
        f.set_modified(mtime.to_system_time()).map_err(io(synccore::error::Op::SetMeta, p))?;
    }
    Ok(format!("\"entries\":{},\"bytes\":{bytes},\"generation\":{}", entries.len(), head.file.generation))
}

/// Two writers read one head; writer a commits, then writer b: b must lose cleanly.
fn race(loc: &Location) -> Result<String> {
    let (a, b) = (Remote::open(loc)?, Remote::open(loc)?);
    let (ha, hb): (Head, Head) = (a.head()?, b.head()?);
    let entry = |name: &str| RemoteEntry {
        path: RelPath::from_bytes(name.as_bytes()),
        kind: Kind::Dir,
        size: 0,
        mtime: Mtime { secs: 1_700_000_000, nanos: 0 },
        mode: 0o755,
        owner: None,
        object: None,
    };
    a.commit(&ha, [entry("from-a")], Keep::Latest)?;
    let lost = match b.commit(&hb, [entry("from-b")], Keep::Latest) {
        Err(e @ Error::RemoteChanged { .. }) => e.to_string(),
        Err(e) => return Err(e),
        Ok(_) => "b won too".to_owned(),
    };
    let now = a.head()?;
    let names: Vec<String> = a
        .read_entries(&now, Slot::Latest)?
        .iter()
        .map(|e| String::from_utf8_lossy(e.path.as_bytes()).into_owned())
        .collect();
    Ok(format!("\"current\":{:?},\"loser\":{:?}", names.join(","), lost))
}
