//! The remote layout (issue 18; docs/formats.md, "Remote stores") and the operations the
//! pipeline calls on it:
//!
//! ```text
//! <root>/synccore-head.json        the head: the current manifests (_1 latest, _0 previous)
//! <root>/manifests/<gen>-<hex>.jsonl   one manifest per version, written create-only
//! <root>/objects/<aa>/<sha256>     file contents, named by their SHA-256
//! <root>/tmp/.synccore-tmp-*       uploads in progress on stores with rename (SFTP)
//! ```
//!
//! A version is committed in the order that never loses a byte: objects first (an object
//! becomes visible whole: S3's PUT is atomic, SFTP writes a temporary and renames it), then
//! the manifest under a new name, create-only, then the head, switched conditionally on its
//! ETag (S3) or under an exclusive lock by a rename (SFTP), and garbage collection last. A
//! kill or a dropped connection at any point leaves the head and everything it references
//! as they were.
//!
//! Garbage collection never deletes what a concurrent or interrupted writer may still need:
//! it deletes unreferenced objects only when the store dated them before the head this
//! commit replaced, and an upload skips an existing object only when the head read at the
//! start references it or the store dated it no earlier than that head (see [`Present`]).

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use opendal::ErrorKind;
use opendal::options::{ListOptions, ReadOptions, WriteOptions};
use sha2::{Digest, Sha256};
use synccore::error::{IoResultExt, Op};
use synccore::{Error, Result};

use crate::format::{
    HEAD_FORMAT, HeadFile, MANIFEST_FORMAT, ManifestHeader, ManifestReader, ManifestWriter, ObjectId,
    RemoteEntry, manifest_generation, manifest_key,
};
use crate::location::Location;
use crate::store::{Capabilities, Req, RequestStats, Store};

/// The head's key.
pub const HEAD_KEY: &str = "synccore-head.json";
/// The lock that makes the head's switch exclusive on stores without conditional writes.
pub const HEAD_LOCK_KEY: &str = "synccore-head.lock";
/// A head lock older than this was left by a killed writer and is broken (a switch holds it
/// for three requests).
const STALE_LOCK: std::time::Duration = std::time::Duration::from_mins(10);
/// How much of a file is read and handed to the store at once; OpenDAL sends S3 parts of
/// [`PART`] bytes, so an upload holds at most about `PIECE + PART` bytes, whatever the size.
const PIECE: usize = 1 << 20;
const PART: usize = 8 << 20;
/// Prefix of every temporary this crate writes (locally and on the store).
pub const TEMP_PREFIX: &str = ".synccore-tmp-";

/// The head as read at the start of a pass: what it said, and how the store identified and
/// dated it (the ETag for the conditional switch, the time for garbage collection).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    pub file: HeadFile,
    /// `None` when the store has no head yet (nothing was ever committed).
    pub etag: Option<String>,
    /// When the store wrote the head (its clock); `None` before the first commit.
    pub modified: Option<SystemTime>,
    /// Whether a head exists.
    pub exists: bool,
}

impl Head {
    /// The manifest key of a slot, if that version exists.
    pub fn manifest(&self, slot: Slot) -> Option<&str> {
        match slot {
            Slot::Latest => self.file.latest.as_deref(),
            Slot::Previous => self.file.previous.as_deref(),
        }
    }
}

/// Which version: `_1` (latest) or `_0` (previous), as in the local versions layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Latest,
    Previous,
}

/// What a commit keeps: a mirror keeps only the new version; a versioned store keeps the new
/// one as `_1` and the old `_1` as `_0` (SPEC section 3's rotation, without copies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Latest,
    LatestAndPrevious,
}

/// Objects an upload may skip because they are safely present (see the module doc).
#[derive(Debug, Default)]
pub struct Present {
    safe: HashSet<ObjectId>,
    listed: bool,
    since: Option<SystemTime>,
    exists_head: bool,
}

impl Present {
    /// The objects the versions read at the start reference: present without a request.
    pub fn new(head: &Head, referenced: impl IntoIterator<Item = ObjectId>) -> Present {
        Present {
            safe: referenced.into_iter().collect(),
            listed: false,
            since: head.modified,
            exists_head: head.exists,
        }
    }

    /// True when `id` need not be uploaded.
    pub fn contains(&self, id: &ObjectId) -> bool {
        self.safe.contains(id)
    }

    /// Records that `id` was uploaded by this pass.
    pub fn insert(&mut self, id: ObjectId) {
        self.safe.insert(id);
    }
}

/// What an upload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uploaded {
    /// The object was already safely present: nothing sent.
    Present,
    /// The object was sent: this many bytes.
    Sent(u64),
}

/// What garbage collection removed and kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcStats {
    pub objects: u64,
    pub bytes: u64,
    pub manifests: u64,
    pub temporaries: u64,
    /// Unreferenced objects kept because they may belong to a writer still at work.
    pub kept_recent: u64,
}

/// A remote store holding versions in the layout above.
#[derive(Debug)]
pub struct Remote {
    store: Store,
}

/// A name no other writer will pick: the pid, the time and a counter, hashed.
fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = format!("{}-{now}-{n}-{:?}", std::process::id(), std::thread::current().id());
    hex::encode(&Sha256::digest(seed.as_bytes())[..8])
}

/// Streams bytes into an OpenDAL writer in pieces (never the whole content in memory),
/// keeping the store's error to report it as such.
struct Sink<'a> {
    rt: &'a tokio::runtime::Runtime,
    writer: opendal::Writer,
    buf: Vec<u8>,
    error: Option<opendal::Error>,
    sent: u64,
}

impl Sink<'_> {
    fn push(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE));
        self.sent += piece.len() as u64;
        // The end-to-end tests stop (or kill) a writer here: more than a part handed to the
        // store, the object not yet complete (docs/formats.md: nothing half-written shows).
        if self.sent > PART as u64 {
            synccore::fault::point("remote-mid-upload");
        }
        self.rt.block_on(self.writer.write(piece)).map_err(|e| {
            let io = std::io::Error::other(e.to_string());
            self.error = Some(e);
            io
        })
    }

    /// Sends the rest and makes the object visible.
    fn close(mut self) -> std::result::Result<opendal::Metadata, opendal::Error> {
        if let Err(io) = self.push() {
            return Err(self
                .error
                .take()
                .unwrap_or_else(|| opendal::Error::new(ErrorKind::Unexpected, io.to_string())));
        }
        let result = self.rt.block_on(self.writer.close());
        if result.is_err() {
            let _ = self.rt.block_on(self.writer.abort());
        }
        result
    }

    /// Gives up: nothing becomes visible (a pending multipart upload is aborted).
    fn abort(mut self) {
        let _ = self.rt.block_on(self.writer.abort());
    }
}

impl Write for Sink<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIECE {
            self.push()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Remote {
    /// Opens the store at `loc` (no request yet).
    pub fn open(loc: &Location) -> Result<Remote> {
        Ok(Remote { store: Store::open(loc)? })
    }

    /// The store's URL, without credentials.
    pub fn url(&self) -> &str {
        self.store.url()
    }

    /// What the store can do.
    pub fn capabilities(&self) -> Capabilities {
        self.store.capabilities()
    }

    /// The requests made so far.
    pub fn requests(&self) -> RequestStats {
        self.store.requests()
    }

    /// Reads the head (two requests: its metadata, then its content on that ETag); an empty
    /// head when nothing was committed yet.
    pub fn head(&self) -> Result<Head> {
        let s = &self.store;
        for _attempt in 0..3 {
            s.count(Req::Stat, 1);
            let meta = match s.blocking.stat(HEAD_KEY) {
                Ok(m) => m,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Head::default()),
                Err(e) => return Err(s.fail("cannot read the head of", &e)),
            };
            let etag = meta.etag().map(str::to_owned);
            let mut opts = ReadOptions::default();
            if s.capabilities().read_if_match {
                opts.if_match.clone_from(&etag);
            }
            s.count(Req::Read, 1);
            let bytes = match s.blocking.read_options(HEAD_KEY, opts) {
                Ok(b) => b.to_vec(),
                // Switched between the two requests: read it again.
                Err(e) if matches!(e.kind(), ErrorKind::ConditionNotMatch | ErrorKind::NotFound) => continue,
                Err(e) => return Err(s.fail("cannot read the head of", &e)),
            };
            let file = HeadFile::parse(&bytes).map_err(|e| s.refuse("cannot use the head of", e.message))?;
            let modified = meta.last_modified().map(SystemTime::from);
            return Ok(Head { file, etag, modified, exists: true });
        }
        Err(Error::RemoteChanged { url: s.url().to_owned() })
    }

    /// Streams the entries of a version, sorted by raw path bytes like `scan::Tree`; the
    /// last item is an error if the manifest turns out truncated or altered (use none of it
    /// then). An empty iterator for a version that does not exist.
    pub fn entries(&self, head: &Head, slot: Slot) -> Result<Entries<'_>> {
        let Some(key) = head.manifest(slot) else { return Ok(Entries { inner: None, remote: self }) };
        let s = &self.store;
        s.count(Req::Read, 1);
        let reader = s
            .blocking
            .reader(key)
            .and_then(|r| r.into_std_read(..))
            .map_err(|e| s.fail("cannot read a manifest of", &e))?;
        let reader =
            ManifestReader::new(BufReader::with_capacity(PIECE, Box::new(reader) as Box<dyn Read + Send>))
                .map_err(|e| self.format_error(&e))?;
        Ok(Entries { inner: Some(reader), remote: self })
    }

    /// All entries of a version.
    pub fn read_entries(&self, head: &Head, slot: Slot) -> Result<Vec<RemoteEntry>> {
        self.entries(head, slot)?.collect()
    }

    fn format_error(&self, e: &crate::format::FormatError) -> Error {
        let op = if e.io { "cannot read a manifest of" } else { "corrupt manifest in" };
        self.store.refuse(op, e.message.clone())
    }

    /// Lists the objects (one listing: a request per 1,000 objects on S3): ids, sizes and
    /// the store's dates.
    pub fn objects(&self) -> Result<Vec<(ObjectId, u64, Option<SystemTime>)>> {
        Ok(self
            .list("objects/")?
            .into_iter()
            .filter_map(|(key, size, date)| ObjectId::from_key(&key).map(|id| (id, size, date)))
            .collect())
    }

    fn list(&self, dir: &str) -> Result<Vec<(String, u64, Option<SystemTime>)>> {
        let s = &self.store;
        s.count(Req::List, 1);
        let opts = ListOptions { recursive: true, ..ListOptions::default() };
        let listed = match s.blocking.list_options(dir, opts) {
            Ok(l) => l,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(s.fail("cannot list", &e)),
        };
        let mut out = Vec::new();
        for entry in listed {
            let meta = entry.metadata();
            if meta.is_dir() {
                continue;
            }
            let date = meta.last_modified().map(SystemTime::from);
            out.push((entry.path().trim_start_matches('/').to_owned(), meta.content_length(), date));
        }
        Ok(out)
    }

    /// Uploads `path`'s content as object `id` unless `present` holds it. The file is
    /// streamed (never held whole) and hashed on the way: a file that no longer matches `id`
    /// (changed since it was hashed) is not uploaded, and nothing becomes visible.
    pub fn upload_file(&self, present: &mut Present, id: &ObjectId, path: &Path) -> Result<Uploaded> {
        if self.skip(present, id)? {
            return Ok(Uploaded::Present);
        }
        let file = File::open(path).at(Op::Read, path)?;
        self.send(present, id, file, path)
    }

    /// [`Remote::upload_file`] from any reader (`what` names it in errors).
    pub fn upload_reader(
        &self,
        present: &mut Present,
        id: &ObjectId,
        input: impl Read,
        what: &Path,
    ) -> Result<Uploaded> {
        if self.skip(present, id)? {
            return Ok(Uploaded::Present);
        }
        self.send(present, id, input, what)
    }

    /// True when object `id` need not be uploaded (it is safely present, see [`Present`]),
    /// listing the objects once, on the first miss. With [`Remote::send_object`], what
    /// uploads on several threads use (the caller holds `present` behind a lock only here).
    pub fn is_present(&self, present: &mut Present, id: &ObjectId) -> Result<bool> {
        self.skip(present, id)
    }

    /// Uploads `input`'s content as object `id`, whether or not it is present (ask
    /// [`Remote::is_present`] first; then [`Present::insert`] it). The
    /// content is streamed and hashed on the way: content that does not match `id` is not
    /// uploaded, and nothing becomes visible. Returns the bytes sent.
    pub fn send_object(&self, id: &ObjectId, input: impl Read, what: &Path) -> Result<u64> {
        let mut scratch = Present::default();
        match self.send(&mut scratch, id, input, what)? {
            Uploaded::Sent(n) => Ok(n),
            Uploaded::Present => Ok(0),
        }
    }

    /// True when `id` is safely present, listing the objects once (on the first miss).
    fn skip(&self, present: &mut Present, id: &ObjectId) -> Result<bool> {
        if present.contains(id) {
            return Ok(true);
        }
        if !present.listed {
            present.listed = true;
            for (oid, _, date) in self.objects()? {
                // Dated no earlier than the head (or no head yet): no garbage collection that
                // can run beside this pass deletes it.
                let young =
                    !present.exists_head || matches!((date, present.since), (Some(d), Some(s)) if d >= s);
                if young {
                    present.safe.insert(oid);
                }
            }
        }
        Ok(present.contains(id))
    }

    fn send(
        &self,
        present: &mut Present,
        id: &ObjectId,
        mut input: impl Read,
        what: &Path,
    ) -> Result<Uploaded> {
        let key = id.key();
        let (target, temp) = self.write_target(&key);
        let mut sink = self.writer(&target, false)?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; PIECE];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    sink.abort();
                    return Err(Error::Io { op: Op::Read, path: what.to_path_buf(), source: e });
                }
            };
            hash.update(&buf[..n]);
            if sink.write_all(&buf[..n]).is_err() {
                let e = sink.error.take();
                sink.abort();
                return Err(self.write_failed(e));
            }
        }
        let sent = sink.sent + sink.buf.len() as u64;
        if ObjectId(hash.finalize().into()) != *id {
            sink.abort();
            let e = std::io::Error::other("changed while it was uploaded (left for the next pass)");
            return Err(Error::Io { op: Op::Read, path: what.to_path_buf(), source: e });
        }
        sink.close().map_err(|e| self.write_failed(Some(e)))?;
        if let Some(temp) = temp {
            self.rename(&temp, &key)?;
        }
        present.safe.insert(*id);
        Ok(Uploaded::Sent(sent))
    }

    fn write_failed(&self, e: Option<opendal::Error>) -> Error {
        match e {
            Some(e) => self.store.fail("cannot upload to", &e),
            None => self.store.refuse("cannot upload to", "the upload failed"),
        }
    }

    /// Where to write `key`: directly on a store without rename (each write is atomic there),
    /// else a temporary to rename (an SFTP write is visible while it runs).
    fn write_target(&self, key: &str) -> (String, Option<String>) {
        if self.capabilities().rename {
            let temp = format!("tmp/{TEMP_PREFIX}{}", unique());
            (temp.clone(), Some(temp))
        } else {
            (key.to_owned(), None)
        }
    }

    fn writer(&self, key: &str, create_only: bool) -> Result<Sink<'_>> {
        let s = &self.store;
        s.count(Req::Write, 1);
        let opts = WriteOptions { chunk: Some(PART), if_not_exists: create_only, ..WriteOptions::default() };
        let writer =
            s.rt.block_on(s.op.writer_options(key, opts)).map_err(|e| s.fail("cannot upload to", &e))?;
        Ok(Sink { rt: s.rt, writer, buf: Vec::with_capacity(PIECE), error: None, sent: 0 })
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let s = &self.store;
        s.count(Req::Rename, 1);
        s.blocking.rename(from, to).map_err(|e| s.fail("cannot rename on", &e))
    }

    /// Streams object `id` into `out`, checking its SHA-256; returns the bytes written. A
    /// corrupt object is an error (and `out` must then be discarded).
    pub fn download(&self, id: &ObjectId, out: &mut dyn Write, what: &Path) -> Result<u64> {
        let s = &self.store;
        s.count(Req::Read, 1);
        let mut input = s
            .blocking
            .reader(&id.key())
            .and_then(|r| r.into_std_read(..))
            .map_err(|e| s.fail("cannot download from", &e))?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; PIECE];
        let mut total = 0u64;
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(s.refuse("cannot download from", e.to_string())),
            };
            hash.update(&buf[..n]);
            out.write_all(&buf[..n]).at(Op::Write, what)?;
            total += n as u64;
        }
        if ObjectId(hash.finalize().into()) != *id {
            return Err(s.refuse(
                "corrupt object in",
                format!("{} does not hold the content it is named by", id.key()),
            ));
        }
        Ok(total)
    }

    /// Downloads object `id` into a new temporary file in `dir` (`.synccore-tmp-remote-…`),
    /// made durable, and returns its path; the caller sets its metadata and renames it into
    /// place. Nothing is left behind on failure.
    pub fn download_to_temp(&self, id: &ObjectId, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(format!("{TEMP_PREFIX}remote-{}-{}", std::process::id(), unique()));
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).open(&path).at(Op::Create, &path)?;
        let done = self.download(id, &mut file, &path).and_then(|_| file.sync_all().at(Op::Sync, &path));
        if let Err(e) = done {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(path)
    }

    /// Commits a new version made of `entries` (sorted by path bytes, files' objects already
    /// uploaded) on top of `base`, the head this pass read: writes its manifest, then switches
    /// the head, only if no other writer switched it since (else
    /// [`Error::RemoteChanged`], and nothing of this pass is current). Returns the new head.
    pub fn commit(
        &self,
        base: &Head,
        entries: impl IntoIterator<Item = RemoteEntry>,
        keep: Keep,
    ) -> Result<Head> {
        let generation = base.file.generation + 1;
        let key = manifest_key(generation, &unique());
        self.write_manifest(&key, generation, entries)?;
        // The manifest is stored, the head still names the previous version.
        synccore::fault::point("remote-before-head");
        let previous = match keep {
            Keep::Latest => None,
            Keep::LatestAndPrevious => base.file.latest.clone(),
        };
        let file = HeadFile { format: HEAD_FORMAT, generation, latest: Some(key), previous };
        self.switch_head(base, &file)
    }

    fn write_manifest(
        &self,
        key: &str,
        generation: u64,
        entries: impl IntoIterator<Item = RemoteEntry>,
    ) -> Result<()> {
        let caps = self.capabilities();
        let (target, temp) = self.write_target(key);
        // Create-only where the store can say so (a new name: it never exists unless a
        // writer reused it, which must not pass silently).
        let sink = self.writer(&target, temp.is_none() && caps.write_if_not_exists)?;
        let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let header = ManifestHeader { format: MANIFEST_FORMAT, generation, created };
        let failed = |sink: Option<Sink<'_>>, e: std::io::Error| -> Error {
            let store_error = sink.and_then(|mut s| {
                let e = s.error.take();
                s.abort();
                e
            });
            match store_error {
                Some(se) => self.store.fail("cannot upload a manifest to", &se),
                None => self.store.refuse("cannot write a manifest for", e.to_string()),
            }
        };
        let mut w = match ManifestWriter::new(sink, &header) {
            Ok(w) => w,
            Err(e) => return Err(failed(None, e)),
        };
        for e in entries {
            if let Err(err) = w.push(&e) {
                return Err(failed(Some(w.into_inner()), err));
            }
        }
        let (sink, _end) = w.finish().map_err(|e| failed(None, e))?;
        sink.close().map_err(|e| self.store.fail("cannot upload a manifest to", &e))?;
        if let Some(temp) = temp {
            self.rename(&temp, key)?;
        }
        Ok(())
    }

    fn switch_head(&self, base: &Head, file: &HeadFile) -> Result<Head> {
        let s = &self.store;
        let bytes =
            serde_json::to_vec(file).map_err(|e| s.refuse("cannot write the head of", e.to_string()))?;
        let caps = self.capabilities();
        if caps.write_if_match && caps.write_if_not_exists {
            let mut opts = WriteOptions::default();
            match &base.etag {
                Some(etag) if base.exists => opts.if_match = Some(etag.clone()),
                _ => opts.if_not_exists = true,
            }
            s.count(Req::Write, 1);
            return match s.blocking.write_options(HEAD_KEY, bytes, opts) {
                Ok(meta) => Ok(Head {
                    file: file.clone(),
                    etag: meta.etag().map(str::to_owned),
                    modified: None,
                    exists: true,
                }),
                Err(e) if e.kind() == ErrorKind::ConditionNotMatch => self.lost_or_won(file),
                Err(e) => Err(s.fail("cannot switch the head of", &e)),
            };
        }
        if caps.rename && caps.write_if_not_exists {
            return self.switch_head_locked(base, file, bytes);
        }
        Err(s.refuse("cannot commit to", "the store offers neither conditional writes nor rename"))
    }

    /// After a refused conditional switch: a retried request whose first attempt went
    /// through is refused too; the head then names our manifest, and the commit stands.
    fn lost_or_won(&self, file: &HeadFile) -> Result<Head> {
        let now = self.head()?;
        if now.file == *file {
            return Ok(now);
        }
        Err(Error::RemoteChanged { url: self.url().to_owned() })
    }

    /// The switch on a store without conditional writes (SFTP): take the head lock
    /// (create-only), check that the head is still the one this pass read, rename a
    /// temporary over it, drop the lock.
    fn switch_head_locked(&self, base: &Head, file: &HeadFile, bytes: Vec<u8>) -> Result<Head> {
        let s = &self.store;
        let temp = format!("tmp/{TEMP_PREFIX}head-{}", unique());
        s.count(Req::Write, 1);
        s.blocking.write(&temp, bytes).map_err(|e| s.fail("cannot write the head of", &e))?;
        if let Err(e) = self.lock_head() {
            s.count(Req::Delete, 1);
            let _ = s.blocking.delete(&temp);
            return Err(e);
        }
        let result = self.head().and_then(|now| {
            if now.exists != base.exists || now.file != base.file {
                return Err(Error::RemoteChanged { url: self.url().to_owned() });
            }
            self.rename(&temp, HEAD_KEY)
        });
        if result.is_err() {
            s.count(Req::Delete, 1);
            let _ = s.blocking.delete(&temp);
        }
        // Best effort: a lock left by a failure here is broken by the next writer once stale.
        s.count(Req::Delete, 1);
        let _ = s.blocking.delete(HEAD_LOCK_KEY);
        result?;
        Ok(Head { file: file.clone(), etag: None, modified: None, exists: true })
    }

    fn lock_head(&self) -> Result<()> {
        let s = &self.store;
        let me = format!("{}\n", lock_owner());
        for _attempt in 0..2 {
            s.count(Req::Write, 1);
            let opts = WriteOptions { if_not_exists: true, ..WriteOptions::default() };
            match s.blocking.write_options(HEAD_LOCK_KEY, me.clone().into_bytes(), opts) {
                Ok(_) => return Ok(()),
                Err(e) if matches!(e.kind(), ErrorKind::ConditionNotMatch | ErrorKind::AlreadyExists) => {
                    s.count(Req::Stat, 1);
                    let stale =
                        s.blocking.stat(HEAD_LOCK_KEY).ok().and_then(|m| m.last_modified()).is_some_and(
                            |t| {
                                SystemTime::now()
                                    .duration_since(SystemTime::from(t))
                                    .is_ok_and(|age| age > STALE_LOCK)
                            },
                        );
                    if !stale {
                        return Err(Error::RemoteChanged { url: self.url().to_owned() });
                    }
                    log::warn!(
                        "{}: breaking a stale head lock (a writer was killed while switching)",
                        self.url()
                    );
                    s.count(Req::Delete, 1);
                    s.blocking
                        .delete(HEAD_LOCK_KEY)
                        .map_err(|e| s.fail("cannot break the head lock of", &e))?;
                }
                Err(e) => return Err(s.fail("cannot lock the head of", &e)),
            }
        }
        Err(Error::RemoteChanged { url: self.url().to_owned() })
    }

    /// Deletes what no kept version needs, after a commit: the objects of the versions the
    /// commit retired that the kept versions do not reference, other unreferenced objects
    /// and temporaries dated before `replaced` (the head the commit replaced) was written,
    /// and manifests of generations up to the current one that the head does not name.
    pub fn collect_garbage(&self, replaced: &Head, current: &Head) -> Result<GcStats> {
        let mut stats = GcStats::default();
        let mut referenced = HashSet::new();
        for slot in [Slot::Latest, Slot::Previous] {
            for e in self.entries(current, slot)? {
                referenced.extend(e?.object);
            }
        }
        let kept: Vec<&str> =
            [Slot::Latest, Slot::Previous].into_iter().filter_map(|s| current.manifest(s)).collect();
        // Objects of retired versions: committed before, so no writer that can still commit
        // (one that read the current head) skips them without uploading them again.
        let mut retired = HashSet::new();
        for slot in [Slot::Latest, Slot::Previous] {
            if replaced.manifest(slot).is_some_and(|key| !kept.contains(&key)) {
                for e in self.entries(replaced, slot)? {
                    retired.extend(e?.object.filter(|id| !referenced.contains(id)));
                }
            }
        }
        let cutoff = replaced.modified.filter(|_| replaced.exists);
        let older = |date: Option<SystemTime>| matches!((date, cutoff), (Some(d), Some(c)) if d < c);
        let mut doomed = Vec::new();
        for (key, size, date) in self.list("objects/")? {
            let Some(id) = ObjectId::from_key(&key) else { continue };
            if referenced.contains(&id) {
                continue;
            }
            if retired.contains(&id) || older(date) {
                stats.objects += 1;
                stats.bytes += size;
                doomed.push(key);
            } else {
                stats.kept_recent += 1;
            }
        }
        for (key, _, _) in self.list("manifests/")? {
            let old = manifest_generation(&key).is_some_and(|g| g <= current.file.generation);
            if old && !kept.contains(&key.as_str()) {
                stats.manifests += 1;
                doomed.push(key);
            }
        }
        if self.capabilities().rename {
            for (key, _, date) in self.list("tmp/")? {
                if older(date) {
                    stats.temporaries += 1;
                    doomed.push(key);
                }
            }
        }
        self.delete(doomed)?;
        Ok(stats)
    }

    fn delete(&self, keys: Vec<String>) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let s = &self.store;
        // S3 deletes up to 1,000 keys per request.
        s.count(Req::Delete, keys.len().div_ceil(1000) as u64);
        s.blocking.delete_iter(keys).map_err(|e| s.fail("cannot delete garbage in", &e))
    }
}

/// Who holds a head lock: host and pid.
fn lock_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{} {}", host.trim(), std::process::id())
}

/// The entries of a version, streamed from the store.
pub struct Entries<'a> {
    inner: Option<ManifestReader<BufReader<Box<dyn Read + Send>>>>,
    remote: &'a Remote,
}

impl Iterator for Entries<'_> {
    type Item = Result<RemoteEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.inner.as_mut()?.next()?;
        Some(item.map_err(|e| self.remote.format_error(&e)))
    }
}
