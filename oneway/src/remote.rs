//! `oneway` with a remote store on one side (issue 18): `oneway SRC s3://bucket/prefix` or
//! `sftp://host/path` (a mirror, or `--versioned`), and `oneway URL DIR` (a pull: the restore
//! path after a lost disk). Both run the one pipeline: the tree is streamed through
//! `diff::stream` against the remote version's manifest (its entries are a `Source` like any
//! other), the rails check the whole plan, `--dry-run` prints it, and its steps are logged,
//! counted and summed up as a local mirror's are.
//!
//! - **Pull**: the plan is carried out by the one copy engine into the local BACKUP, its copies'
//!   bytes read through [`syncremote::RemoteFiles`], the remote side of synccore's storage
//!   interface (each file downloaded to a temporary, checked, made durable and renamed).
//! - **Push**: an object store has no rename, directories or metadata, so a plan is not carried
//!   out step by step there. The files the plan copies or updates are hashed and uploaded as
//!   content-addressed objects unless present (several at once); every other file keeps the
//!   object the manifest names (an unchanged file is neither read nor sent); then one new
//!   manifest is committed create-only and the head switched conditionally, and what no kept
//!   version references is deleted last (`syncremote::repo`). A pass with nothing to do makes
//!   the head's two requests and the manifest's one.
//!
//! With `--versioned` the store below `URL/__versions__/<name>` keeps `_1` and `_0` as two
//! manifests over shared objects: a new version costs only its changed bytes.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value, json};
use synccore::apply::{ApplyStats, Event};
use synccore::checksum::{Digest, file_checksum_in, reader_checksum};
use synccore::diff::{self, DiffOptions, Source};
use synccore::entry::{Entry, Kind, Mtime, keeps_owners};
use synccore::error::{Error, IoResultExt, Op, Result};
use synccore::fsio::Root;
use synccore::moves::Which;
use synccore::plan::{Action, Step, Steps};
use synccore::relpath::RelPath;
use synccore::scan::{ScanRules, Tree};
use synccore::shutdown::Shutdown;
use synccore::walk::Walker;
use syncremote::{
    GcStats, Keep, Location, ObjectId, Present, Remote, RemoteEntry, RemoteFiles, RequestStats, Slot,
};

use crate::mirror::{self, MirrorOptions, MirrorReport};

/// Uploads in flight at once: requests mostly wait on the network, and the store's own
/// concurrency limit bounds them too.
const UPLOAD_THREADS: usize = 4;

/// A remote BACKUP: where the pass writes (for `--versioned`, already `URL/__versions__/<name>`).
#[derive(Debug, Clone)]
pub struct RemoteBackup {
    pub location: Location,
    /// Keep `_0` beside `_1` (`--versioned`).
    pub versioned: bool,
}

/// A remote SOURCE: a store and which of its versions to bring back.
#[derive(Debug, Clone)]
pub struct RemoteSource {
    pub location: Location,
    pub slot: Slot,
}

/// Parses a remote SOURCE: `URL` (its latest version: a mirror's only one) or
/// `URL/__versions__/<name>/_1` (latest) or `/_0` (previous), the local versions layout's
/// addresses.
pub fn parse_source(url: &str, options: &[(String, String)]) -> Result<RemoteSource> {
    let trimmed = url.trim_end_matches('/');
    let (base, slot) = match trimmed.rsplit_once('/') {
        Some((base, "_1")) if base.contains("/__versions__/") => (base, Slot::Latest),
        Some((base, "_0")) if base.contains("/__versions__/") => (base, Slot::Previous),
        _ => (trimmed, Slot::Latest),
    };
    Ok(RemoteSource { location: Location::parse(base, options)?, slot })
}

/// The location of SOURCE's versions below a remote versions root: `URL/__versions__/<name>`,
/// `<name>` as locally (base name, `-`, 8 hex digits of the SHA-256 of SOURCE's path).
pub fn versions_location(root: &Location, source: &Path) -> Result<Location> {
    let name = synccore::versions::version_name(source);
    let Some(name) = name.to_str() else {
        return Err(Error::Invalid {
            path: source.to_path_buf(),
            reason: "a remote versions name must be UTF-8: rename SOURCE's last component".into(),
        });
    };
    Ok(root.join(&format!("{}/{name}", synccore::versions::VERSIONS_DIR)))
}

/// What a pass asked of its store, for the log and the `--json` summary.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub url: String,
    pub requests: RequestStats,
    /// Objects uploaded and their bytes (a push).
    pub uploaded: u64,
    pub uploaded_bytes: u64,
    /// A new version was committed (a push).
    pub committed: bool,
    /// What garbage collection deleted.
    pub gc: GcStats,
}

impl Figures {
    fn of(remote: &Remote) -> Figures {
        Figures { url: remote.url().to_owned(), requests: remote.requests(), ..Figures::default() }
    }

    /// Logs the requests (at debug level when the pass made only a no-change pass's few).
    pub fn log(&self, dry_run: bool) {
        let r = &self.requests;
        let line = format!(
            "{}: {} requests (stat {}, read {}, write {}, list {}, delete {}, rename {}), {} objects \
             uploaded ({} bytes), {} objects deleted{}",
            self.url,
            r.total(),
            r.stat,
            r.read,
            r.write,
            r.list,
            r.delete,
            r.rename,
            self.uploaded,
            self.uploaded_bytes,
            self.gc.objects,
            if self.committed {
                ", new version committed"
            } else if dry_run {
                " (dry run)"
            } else {
                ""
            }
        );
        if self.committed || self.uploaded > 0 {
            log::info!("{line}");
        } else {
            log::debug!("{line}");
        }
    }

    /// The `--json` summary's fields.
    pub fn json(&self) -> Map<String, Value> {
        let r = &self.requests;
        let mut m = Map::new();
        m.insert("remote".into(), self.url.clone().into());
        m.insert(
            "requests".into(),
            json!({"total": r.total(), "stat": r.stat, "read": r.read, "write": r.write,
                   "list": r.list, "delete": r.delete, "rename": r.rename}),
        );
        m.insert("uploaded_objects".into(), self.uploaded.into());
        m.insert("uploaded_bytes".into(), self.uploaded_bytes.into());
        m.insert("committed".into(), self.committed.into());
        m.insert("gc_objects".into(), self.gc.objects.into());
        m
    }
}

/// Runs a push and logs it; returns its exit status.
pub fn push_and_log(
    source: &Path,
    backup: &RemoteBackup,
    options: &MirrorOptions,
    shutdown: &Shutdown,
    totals: &mut synccli::passes::Totals,
) -> u8 {
    mirror::log_pass(options, totals, |observe| {
        let remote = Remote::open(&backup.location)?;
        let keep = if backup.versioned { Keep::LatestAndPrevious } else { Keep::Latest };
        push(source, &remote, keep, options, shutdown, observe)
    })
}

/// Runs a pull and logs it; returns its exit status.
pub fn pull_and_log(
    source: &RemoteSource,
    target: &Path,
    options: &MirrorOptions,
    shutdown: &Shutdown,
    totals: &mut synccli::passes::Totals,
) -> u8 {
    mirror::log_pass(options, totals, |observe| {
        let remote = Remote::open(&source.location)?;
        pull(&remote, source.slot, target, options, shutdown, observe)
    })
}

/// A source that keeps every entry it hands out (the new manifest is made of them).
struct Recording<'r> {
    walker: Walker<'r>,
    seen: Vec<Entry>,
}

impl Source for Recording<'_> {
    fn next_entry(&mut self) -> Option<Entry> {
        let e = self.walker.next_entry()?;
        self.seen.push(e.clone());
        Some(e)
    }

    fn notes(&self) -> &Tree {
        self.walker.notes()
    }
}

/// The digest of a remote entry: its object's id (no request).
fn object_digest(files: &RemoteFiles<'_>, e: &Entry) -> Option<Digest> {
    files.object(&e.path).map(|id| Digest(id.0))
}

/// A remote version as a tree, for the diff (a remote entry has no inode or device).
fn remote_tree(entries: &[RemoteEntry]) -> Tree {
    Tree { entries: entries.iter().map(RemoteEntry::to_entry).collect(), ..Tree::default() }
}

/// One push pass: SOURCE (`source`, canonical) made the latest version of `remote`.
pub fn push(
    source: &Path,
    remote: &Remote,
    keep: Keep,
    options: &MirrorOptions,
    shutdown: &Shutdown,
    observe: &mut dyn FnMut(Event<'_>),
) -> Result<MirrorReport> {
    let url = PathBuf::from(remote.url());
    let head = remote.head()?;
    let old = remote.read_entries(&head, Slot::Latest)?;
    let old_tree = remote_tree(&old);
    let old_files = RemoteFiles::new(remote, &old);
    let old_has_files = old.iter().any(|e| e.kind != Kind::Dir);
    let root =
        Root::open(source).map_err(|err| synccore::rails::missing_root(err, old_has_files, source, &url))?;
    let mut src =
        Recording { walker: Walker::new(&root, ScanRules::Read(&options.excludes))?, seen: Vec::new() };
    let mut digest = |which: Which, e: &Entry| match which {
        Which::Source => file_checksum_in(&root, &e.path).ok(),
        Which::Target => object_digest(&old_files, e),
    };
    let no_dirs = |_: &RelPath| None;
    let diff_options = DiffOptions::for_this_process(options.checksum);
    let streamed =
        diff::stream(&mut src, &mut diff::Entries::of(&old_tree), &no_dirs, diff_options, &mut digest)?;
    let Recording { walker, seen } = src;
    let mut notes = walker.finish()?;
    let empty = streamed.source_entries == 0 && notes.errors.is_empty();
    // As locally, an empty SOURCE never pushes versions out, even with --force.
    let overridable = keep == Keep::Latest;
    options.rails.check_empty_side(empty, streamed.target_files > 0, overridable, source, &url)?;
    let plan = streamed.plan;
    let summary = plan.summary();
    options.rails.check_deletes(summary.deleted_files as usize, streamed.target_files as usize, &url)?;
    let mut report = MirrorReport {
        rules_not_read: notes.rules.not_read().map(|(p, _)| p).collect(),
        scan_errors: std::mem::take(&mut notes.errors),
        special: notes.special.clone(),
        ignored: notes.ignored.clone(),
        ..MirrorReport::default()
    };
    let mut figures = Figures::default();
    // Nothing to do, or nothing to keep (an empty SOURCE and no backup yet: no version).
    if options.dry_run || (plan.is_empty() && (head.exists || empty)) {
        report.plan = plan;
        report.remote = Some(Figures::of(remote));
        return Ok(report);
    }
    observe(Event::Planned(&summary));
    let mut stats = ApplyStats::default();
    // What the head references needs no upload: `_1`'s objects, and `_0`'s on a versioned
    // store (a content that comes back costs no upload; one request, on a changed pass only).
    let previous = match keep {
        Keep::LatestAndPrevious => remote.read_entries(&head, Slot::Previous)?,
        Keep::Latest => Vec::new(),
    };
    let referenced = old.iter().chain(&previous).filter_map(|e| e.object);
    let mut present = Present::new(&head, referenced);
    drop(previous);
    let outcome = upload(&root, remote, &plan, &mut present, shutdown.flag(), &mut stats, observe)?;
    figures.uploaded = outcome.sent;
    figures.uploaded_bytes = stats.copied_bytes;
    if shutdown.is_requested() {
        // Nothing is committed: the objects sent stay for the next pass (its listing finds
        // them), the head still names the previous version.
        stats.interrupted = true;
        report.stats = stats;
        report.plan = plan;
        report.remote = Some(Figures { uploaded: figures.uploaded, ..Figures::of(remote) });
        return Ok(report);
    }
    let mut new = NewVersion { root: &root, remote, present: &mut present, figures: &mut figures };
    let entries = new.entries(&plan, &seen, &old, &outcome, &notes.unreadable)?;
    let new_head = remote.commit(&head, entries, keep)?;
    figures.committed = true;
    // The steps other than copies took effect with the new manifest.
    plan.each(&mut |step| {
        if !matches!(step.action, Action::Copy { .. } | Action::Update { .. })
            && !outcome.touched.contains(&step.path)
        {
            *stats.done.entry(step.kind()).or_default() += 1;
            observe(Event::Done(step));
        }
        std::ops::ControlFlow::Continue(())
    })
    .map_err(|e| spill_error(&e))?;
    match remote.collect_garbage(&head, &new_head) {
        Ok(gc) => figures.gc = gc,
        // The new version stands; the next pass collects what this one could not.
        Err(err) => log::warn!("{err} (garbage is collected by the next pass)"),
    }
    report.stats = stats;
    report.plan = plan;
    let f = Figures::of(remote);
    report.remote = Some(Figures { requests: f.requests, ..figures.with_url(f.url) });
    Ok(report)
}

/// What the new manifest is made of, and what a file the plan did not copy needs.
struct NewVersion<'a, 'r> {
    root: &'a Root,
    remote: &'r Remote,
    present: &'a mut Present,
    figures: &'a mut Figures,
}

impl NewVersion<'_, '_> {
    /// The new version's entries, sorted: SOURCE's entries as the walk handed them out, each
    /// file with its object (uploaded now, or the manifest's); a file that failed or changed
    /// keeps its previous entry, and what lies below a directory SOURCE could not read stays
    /// as the previous version had it.
    fn entries(
        &mut self,
        plan: &dyn Steps,
        seen: &[Entry],
        old: &[RemoteEntry],
        outcome: &Uploads,
        unreadable: &[RelPath],
    ) -> Result<Vec<RemoteEntry>> {
        let moves = moved(plan)?;
        let keep_owner = keeps_owners();
        let mut entries = Vec::with_capacity(seen.len());
        let old_at = |p: &RelPath| old.binary_search_by(|e| e.path.cmp(p)).ok().map(|i| &old[i]);
        for e in seen {
            if e.kind != Kind::File {
                entries.push(RemoteEntry::from_entry(e, None, keep_owner));
                continue;
            }
            if outcome.failed.contains(&e.path) {
                // Left as the previous version had it (or out of the version, if it was new).
                entries.extend(old_at(&e.path).cloned());
                continue;
            }
            let id = match outcome.ids.get(&e.path) {
                Some(id) => *id,
                // Not copied: the diff found the content equal to the manifest's at this path,
                // or at the path it moved from.
                None => match reused(e, &old_at, &moves) {
                    Some(id) => id,
                    None => upload_late(self.root, self.remote, self.present, e, self.figures)?,
                },
            };
            entries.push(RemoteEntry::from_entry(e, Some(id), keep_owner));
        }
        if !unreadable.is_empty() {
            let kept = seen.iter().map(|e| &e.path).collect::<HashSet<_>>();
            let below = |p: &RelPath| unreadable.iter().any(|u| p == u || p.is_within(u));
            entries.extend(old.iter().filter(|o| below(&o.path) && !kept.contains(&o.path)).cloned());
            entries.sort_by(|a, b| a.path.cmp(&b.path));
        }
        Ok(entries)
    }
}

impl Figures {
    fn with_url(mut self, url: String) -> Figures {
        self.url = url;
        self
    }
}

fn spill_error(e: &std::io::Error) -> Error {
    Error::Invalid { path: PathBuf::from("plan"), reason: format!("cannot read the plan back: {e}") }
}

/// The moves of a plan (`from` -> `to`, a file or a whole directory).
fn moved(plan: &dyn Steps) -> Result<Vec<(RelPath, RelPath)>> {
    let mut moves = Vec::new();
    plan.each(&mut |step| {
        if let Action::Move { to, .. } = &step.action {
            moves.push((step.path.clone(), to.clone()));
        }
        std::ops::ControlFlow::Continue(())
    })
    .map_err(|e| spill_error(&e))?;
    Ok(moves)
}

/// The object of a file the plan does not copy: the manifest's at the same path, or at the
/// path it was moved from (with the same size and mtime: a move keeps them).
fn reused<'o>(
    e: &Entry,
    old_at: &dyn Fn(&RelPath) -> Option<&'o RemoteEntry>,
    moves: &[(RelPath, RelPath)],
) -> Option<ObjectId> {
    if let Some(o) = old_at(&e.path).filter(|o| o.kind == Kind::File) {
        return o.object;
    }
    for (from, to) in moves {
        let old_path = if e.path == *to {
            from.clone()
        } else if e.path.is_within(to) {
            let rest = &e.path.as_bytes()[to.as_bytes().len() + 1..];
            RelPath::from_bytes(&[from.as_bytes(), b"/", rest].concat())
        } else {
            continue;
        };
        if let Some(o) =
            old_at(&old_path).filter(|o| o.kind == Kind::File && o.size == e.size && o.mtime == e.mtime)
        {
            return o.object;
        }
    }
    None
}

/// Hashes and uploads (unless present) a file whose object could not be told otherwise.
fn upload_late(
    root: &Root,
    remote: &Remote,
    present: &mut Present,
    e: &Entry,
    figures: &mut Figures,
) -> Result<ObjectId> {
    let id: ObjectId = file_checksum_in(root, &e.path)?.into();
    if !remote.is_present(present, &id)? {
        let path = root.path_of(e.path.as_path());
        let file = root.open_read(e.path.as_path())?;
        figures.uploaded_bytes += remote.send_object(&id, file, &path)?;
        figures.uploaded += 1;
        present.insert(id);
    }
    Ok(id)
}

/// What the upload of a plan's copies did.
#[derive(Debug, Default)]
struct Uploads {
    /// The object of each file uploaded (or found present).
    ids: HashMap<RelPath, ObjectId>,
    /// Files that failed or changed during the pass: the previous version's entry stays.
    failed: HashSet<RelPath>,
    /// Paths whose step was already reported.
    touched: HashSet<RelPath>,
    /// Objects sent.
    sent: u64,
}

/// What one upload came to.
enum Sent {
    /// Uploaded (bytes sent; 0 when the object was already present).
    Done(ObjectId, u64),
    /// The file is not what the scan saw: left for the next pass.
    Changed,
}

/// Uploads the objects of the plan's copies and updates, [`UPLOAD_THREADS`] at once, each
/// step's outcome told to `observe` as it comes. A failure of the store ends the pass (one
/// error, naming the URL); a file that cannot be read is a failed step.
fn upload(
    root: &Root,
    remote: &Remote,
    plan: &dyn Steps,
    present: &mut Present,
    shutdown: &AtomicBool,
    stats: &mut ApplyStats,
    observe: &mut dyn FnMut(Event<'_>),
) -> Result<Uploads> {
    let mut copies = Vec::new();
    plan.each(&mut |step| {
        if matches!(step.action, Action::Copy { .. } | Action::Update { .. }) {
            copies.push(step.clone());
        }
        std::ops::ControlFlow::Continue(())
    })
    .map_err(|e| spill_error(&e))?;
    let shared = Mutex::new(std::mem::take(present));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let halt = AtomicBool::new(false);
    let mut out = Uploads::default();
    let mut fatal = None;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<Sent>)>();
        for _ in 0..UPLOAD_THREADS.min(copies.len()) {
            let tx = tx.clone();
            let (copies, next, halt, present) = (&copies, &next, &halt, &shared);
            scope.spawn(move || {
                loop {
                    if halt.load(Ordering::Relaxed) || shutdown.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(step) = copies.get(i) else { break };
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        upload_one(root, remote, present, step)
                    }))
                    .unwrap_or(Err(Error::Panicked { what: "uploading" }));
                    if tx.send((i, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (i, result) in rx {
            let Some(step) = copies.get(i) else { continue };
            out.touched.insert(step.path.clone());
            match result {
                Ok(Sent::Done(id, bytes)) => {
                    out.ids.insert(step.path.clone(), id);
                    if bytes > 0 {
                        out.sent += 1;
                    }
                    stats.copied_bytes += bytes;
                    *stats.done.entry(step.kind()).or_default() += 1;
                    observe(Event::Done(step));
                }
                Ok(Sent::Changed) => {
                    out.failed.insert(step.path.clone());
                    stats.skipped += 1;
                    observe(Event::Skipped(step, "source changed during the pass"));
                }
                Err(err @ (Error::Remote { .. } | Error::RemoteChanged { .. } | Error::Panicked { .. })) => {
                    halt.store(true, Ordering::Relaxed);
                    fatal.get_or_insert(err);
                }
                Err(err) => {
                    out.failed.insert(step.path.clone());
                    stats.failed += 1;
                    observe(Event::Failed(step, &err));
                }
            }
        }
    });
    // Objects uploaded now count as present for the rest of the pass.
    *present = shared.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(err) = fatal {
        return Err(err);
    }
    Ok(out)
}

/// Hashes one file the plan copies (from one open descriptor, checked against what the scan
/// saw) and uploads it unless present.
fn upload_one(root: &Root, remote: &Remote, present: &Mutex<Present>, step: &Step) -> Result<Sent> {
    let (Action::Copy { size, mtime, .. } | Action::Update { size, mtime, .. }) = step.action else {
        return Ok(Sent::Changed);
    };
    let rel = step.path.as_path();
    let path = root.path_of(rel);
    let (file, stat) = match root.open_read_stat(rel) {
        Ok(x) => x,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Sent::Changed),
        Err(e) => return Err(e).at(Op::Read, &path),
    };
    let seen = Mtime { secs: stat.st_mtime, nanos: stat.st_mtime_nsec as u32 };
    if stat.st_size as u64 != size || seen != mtime {
        return Ok(Sent::Changed);
    }
    let id: ObjectId = reader_checksum(&file).at(Op::Read, &path)?.into();
    let is_present = {
        let mut p = present.lock().map_err(|_| Error::Panicked { what: "uploading" })?;
        remote.is_present(&mut p, &id)?
    };
    if is_present {
        return Ok(Sent::Done(id, 0));
    }
    let file = root.open_read(rel)?;
    let sent = match remote.send_object(&id, file, &path) {
        Ok(n) => n,
        // Rewritten since it was hashed: left for the next pass.
        Err(Error::Io { op: Op::Read, .. }) if !root.unchanged_since_scan(rel, size, mtime, stat.st_ino) => {
            return Ok(Sent::Changed);
        }
        Err(e) => return Err(e),
    };
    present.lock().map_err(|_| Error::Panicked { what: "uploading" })?.insert(id);
    Ok(Sent::Done(id, sent))
}

/// One pull pass: version `slot` of `remote` made the content of the local `target`.
pub fn pull(
    remote: &Remote,
    slot: Slot,
    target: &Path,
    options: &MirrorOptions,
    shutdown: &Shutdown,
    observe: &mut dyn FnMut(Event<'_>),
) -> Result<MirrorReport> {
    let url = PathBuf::from(remote.url());
    let head = remote.head()?;
    if !head.exists {
        return Err(Error::Invalid {
            path: url,
            reason: "no backup here (no synccore-head.json): check the URL".into(),
        });
    }
    if head.manifest(slot).is_none() {
        return Err(Error::Invalid { path: url, reason: "this version does not exist yet".into() });
    }
    let entries = remote.read_entries(&head, slot)?;
    let tree = remote_tree(&entries);
    let files = RemoteFiles::new(remote, &entries);
    let mut target_root = mirror::open_if_present(target)?;
    let streamed;
    let mut dst_notes;
    {
        let mut digest = |which: Which, e: &Entry| match which {
            Which::Source => object_digest(&files, e),
            Which::Target => target_root.as_ref().and_then(|t| file_checksum_in(t, &e.path).ok()),
        };
        let target_at = |p: &RelPath| target_root.as_ref()?.dir_and_dev_at(p.as_path());
        let diff_options = DiffOptions::for_this_process(options.checksum);
        let mut src = diff::Entries::of(&tree);
        if let Some(root) = &target_root {
            // BACKUP's own `.syncignore` files and `--exclude` keep what they ignore there out
            // of the pass: a restore never deletes a build cache it did not back up.
            let mut walker = Walker::new(root, ScanRules::Read(&options.excludes))?;
            streamed = diff::stream(&mut src, &mut walker, &target_at, diff_options, &mut digest)?;
            dst_notes = walker.finish()?;
        } else {
            let nothing = Tree::default();
            let mut none = diff::Entries::of(&nothing);
            streamed = diff::stream(&mut src, &mut none, &target_at, diff_options, &mut digest)?;
            dst_notes = Tree::default();
        }
    }
    let mut src_notes = Tree::default();
    let mut report = mirror::carry_out(
        streamed,
        (&mut src_notes, &mut dst_notes),
        (&files, &mut target_root),
        (&url, target),
        options,
        shutdown,
        observe,
    )?;
    report.remote = Some(Figures::of(remote));
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn keys() -> Vec<(String, String)> {
        vec![("access_key_id".into(), "A".into()), ("secret_access_key".into(), "B".into())]
    }

    #[test]
    fn a_remote_source_names_a_version_like_the_local_layout() {
        let s = parse_source("s3://bkt/p/__versions__/Docs-1b9f03c2/_0", &keys()).unwrap();
        assert_eq!((s.location.url(), s.slot), ("s3://bkt/p/__versions__/Docs-1b9f03c2", Slot::Previous));
        let s = parse_source("s3://bkt/p/__versions__/Docs-1b9f03c2/_1/", &keys()).unwrap();
        assert_eq!((s.location.url(), s.slot), ("s3://bkt/p/__versions__/Docs-1b9f03c2", Slot::Latest));
        // `_0` outside a versions layout is an ordinary prefix.
        let s = parse_source("s3://bkt/p/_0", &keys()).unwrap();
        assert_eq!((s.location.url(), s.slot), ("s3://bkt/p/_0", Slot::Latest));
    }

    #[test]
    fn versions_live_below_the_root_like_locally() {
        let root = Location::parse("s3://bkt/p", &keys()).unwrap();
        let l = versions_location(&root, Path::new("/home/ann/Docs")).unwrap();
        let name = synccore::versions::version_name(Path::new("/home/ann/Docs"));
        assert_eq!(l.url(), format!("s3://bkt/p/__versions__/{}", name.to_str().unwrap()));
    }

    #[test]
    fn a_file_not_copied_keeps_its_object_even_when_moved() {
        let id = ObjectId::of(b"x");
        let old = [RemoteEntry {
            path: RelPath::from_bytes(b"a/f"),
            kind: Kind::File,
            size: 1,
            mtime: Mtime { secs: 5, nanos: 0 },
            mode: 0o644,
            owner: None,
            object: Some(id),
        }];
        let old_at = |p: &RelPath| old.iter().find(|e| e.path == *p);
        let mut e = old[0].to_entry();
        e.path = RelPath::from_bytes(b"b/f");
        let moves = vec![(RelPath::from_bytes(b"a"), RelPath::from_bytes(b"b"))];
        assert_eq!(reused(&e, &old_at, &moves), Some(id));
        assert_eq!(reused(&e, &old_at, &[]), None);
        e.mtime = Mtime { secs: 6, nanos: 0 };
        assert_eq!(reused(&e, &old_at, &moves), None, "a moved file that changed is hashed again");
    }
}
