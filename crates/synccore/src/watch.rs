//! Watch mode (SPEC section 3, the watch issue): the directories of one or more roots watched
//! with the `notify` crate (inotify on Linux), so that a pass runs as soon as a burst of
//! changes has been quiet for the settle time, and rescans only the directories that had
//! events.
//!
//! Each directory of the last scan gets its own watch (never one for an ignored directory, so
//! a busy `target/` costs nothing); a directory created later is watched as soon as its event
//! arrives, before any pass lists it. What the watcher cannot vouch for asks for a full pass
//! instead: a queue overflow, a root deleted, moved or replaced, or an error; when the kernel's
//! watch limit is reached, watching stops and the passes fall back to full ones at the
//! interval. Waiting is one blocking receive on a channel that the notify thread, the timer
//! and the shutdown request all feed: an idle watcher costs nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use crate::error::{Error, Result};
use crate::relpath::RelPath;
use crate::shutdown::Shutdown;

/// The default settle time: a pass starts once a burst of changes was quiet this long.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(200);

/// A burst that goes on is cut after this long, so that a busy tree still syncs.
pub const BURST_CUT: Duration = Duration::from_secs(2);

/// What the watcher saw since the last pass.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Per root (in the order given to [`Watch::start`]): the directories whose entries
    /// changed (a created, removed, renamed or written entry, or one whose metadata changed),
    /// relative to the root; the root itself is the empty path.
    pub dirs: Vec<BTreeSet<RelPath>>,
    /// Per root: directories made or moved in since (a rescan walks them whole, see
    /// [`crate::rescan::rescan`]).
    pub created: Vec<BTreeSet<RelPath>>,
    /// Why only a full pass will do (a queue overflow, a root replaced), if so.
    pub full: Option<String>,
}

impl Changes {
    fn new(roots: usize) -> Self {
        Changes { dirs: vec![BTreeSet::new(); roots], created: vec![BTreeSet::new(); roots], full: None }
    }

    /// True when nothing was seen.
    pub fn is_empty(&self) -> bool {
        self.full.is_none() && self.dirs.iter().all(BTreeSet::is_empty)
    }
}

/// Why [`Watch::wait`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Wake {
    /// A burst of changes settled (or was cut).
    Changes(Changes),
    /// The deadline passed with nothing seen: time for the periodic full pass.
    Timer,
    /// A shutdown was requested.
    Shutdown,
}

enum Msg {
    Event(notify::Result<notify::Event>),
    Shutdown,
}

/// The watches of a set of roots.
pub struct Watch {
    shared: Arc<Shared>,
    rx: Receiver<Msg>,
    /// Paths (and everything below them) whose events never count: our own log file, twoway's
    /// home, when they lie inside a root.
    quiet: Vec<PathBuf>,
    pending: Changes,
    overflow_warned: bool,
    shutdown: Shutdown,
}

/// What the watch and its [`Adder`]s (used by scans on other threads) share.
struct Shared {
    watcher: Mutex<Option<RecommendedWatcher>>,
    roots: Vec<PathBuf>,
    /// Set once watching had to stop (the watch limit): full passes only from then on.
    stopped: Mutex<Option<String>>,
    /// A directory that could not be watched for another reason: the next wait asks for a
    /// full pass.
    failed: Mutex<Option<String>>,
}

/// Adds watches for the directories of one root, before a scan lists them (cloneable, for
/// scans that run on their own threads).
#[derive(Clone)]
pub struct Adder {
    shared: Arc<Shared>,
    root: usize,
}

impl Adder {
    /// Watches directory `rel` (raw relative path; empty for the root itself).
    pub fn add(&self, rel: &[u8]) {
        let Ok(mut guard) = self.shared.watcher.lock() else { return };
        let Some(watcher) = guard.as_mut() else { return };
        let path = self.shared.roots[self.root].join(RelPath::from_bytes(rel).as_path());
        match watcher.watch(&path, RecursiveMode::NonRecursive) {
            Ok(()) => {}
            Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                drop(guard);
                self.shared.stop_watching();
            }
            // Gone again already: its parent's event covers it.
            Err(e) if matches!(e.kind, notify::ErrorKind::PathNotFound) => {}
            Err(e) => {
                log::debug!("cannot watch \"{}\": {e}", crate::relpath::escape_path(&path));
                if let Ok(mut failed) = self.shared.failed.lock() {
                    failed.get_or_insert_with(|| format!("a directory could not be watched: {e}"));
                }
            }
        }
    }
}

impl Shared {
    /// The inotify watch limit was reached: one warning, then full passes at the interval.
    fn stop_watching(&self) {
        if let Ok(mut watcher) = self.watcher.lock() {
            *watcher = None;
        }
        let Ok(mut stopped) = self.stopped.lock() else { return };
        if stopped.is_none() {
            log::warn!(
                "the inotify watch limit is reached (raise it with `sysctl fs.inotify.max_user_watches=524288`); \
                 watching stops and full passes run at the interval instead"
            );
            *stopped = Some("the inotify watch limit is reached".into());
        }
    }
}

impl Watch {
    /// Starts watching `roots` (canonical paths): the roots themselves at once, their
    /// directories as scans list them ([`Watch::adder`]). Events at or below `quiet` paths
    /// are ignored.
    pub fn start(roots: Vec<PathBuf>, quiet: Vec<PathBuf>, shutdown: &Shutdown) -> Result<Watch> {
        let (tx, rx) = mpsc::channel();
        let events: Sender<Msg> = tx.clone();
        let watcher = notify::recommended_watcher(move |e| {
            let _ = events.send(Msg::Event(e));
        })
        .map_err(|e| Error::Setup { what: "the file system watcher", reason: e.to_string() })?;
        shutdown.on_request(move || {
            let _ = tx.send(Msg::Shutdown);
        });
        let pending = Changes::new(roots.len());
        let shared = Shared {
            watcher: Mutex::new(Some(watcher)),
            roots,
            stopped: Mutex::new(None),
            failed: Mutex::new(None),
        };
        let watch = Watch {
            shared: Arc::new(shared),
            rx,
            quiet,
            pending,
            overflow_warned: false,
            shutdown: shutdown.clone(),
        };
        for i in 0..watch.shared.roots.len() {
            watch.adder(i).add(b"");
        }
        Ok(watch)
    }

    /// The adder of root `root`'s directories.
    pub fn adder(&self, root: usize) -> Adder {
        Adder { shared: Arc::clone(&self.shared), root }
    }

    /// Why watching stopped, if it did (then only full passes run).
    pub fn stopped(&self) -> Option<String> {
        self.shared.stopped.lock().ok().and_then(|s| s.clone())
    }

    /// Watches directory `dir` of root `root` (see [`Adder::add`]).
    pub fn add(&self, root: usize, dir: &RelPath) {
        self.adder(root).add(dir.as_bytes());
    }

    /// Forgets the changes seen so far (a full pass is about to look at everything).
    pub fn clear(&mut self) {
        while let Ok(msg) = self.rx.try_recv() {
            if matches!(msg, Msg::Shutdown) {
                self.shutdown.request();
            }
        }
        self.pending = Changes::new(self.shared.roots.len());
    }

    /// Waits until a burst of changes has been quiet for `settle` (cut after [`BURST_CUT`]),
    /// until `deadline`, or until a shutdown is requested. Changes seen during a pass are
    /// kept and returned by the next wait at once (after its settle).
    pub fn wait(&mut self, settle: Duration, deadline: Instant) -> Wake {
        if self.shutdown.is_requested() {
            return Wake::Shutdown;
        }
        if let Some(reason) = self.shared.failed.lock().ok().and_then(|mut f| f.take()) {
            self.pending.full.get_or_insert(reason);
        }
        // Drain what arrived during the pass.
        while let Ok(msg) = self.rx.try_recv() {
            if self.note(msg) {
                return Wake::Shutdown;
            }
        }
        if self.pending.is_empty() {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.rx.recv_timeout(left) {
                    Ok(msg) => {
                        if self.note(msg) {
                            return Wake::Shutdown;
                        }
                        if !self.pending.is_empty() {
                            break;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => return Wake::Timer,
                    Err(RecvTimeoutError::Disconnected) => return self.wait_without_events(deadline),
                }
            }
        }
        if self.settle(settle) {
            return Wake::Shutdown;
        }
        let roots = self.shared.roots.len();
        Wake::Changes(std::mem::replace(&mut self.pending, Changes::new(roots)))
    }

    /// Waits for the burst to be quiet for `settle`, at most [`BURST_CUT`]; true on shutdown.
    fn settle(&mut self, settle: Duration) -> bool {
        let started = Instant::now();
        let mut quiet_from = started;
        loop {
            let until = (quiet_from + settle).min(started + BURST_CUT);
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || self.pending.full.is_some() {
                return false;
            }
            match self.rx.recv_timeout(left) {
                Ok(msg) => {
                    let before = self.pending.clone();
                    if self.note(msg) {
                        return true;
                    }
                    if self.pending != before {
                        quiet_from = Instant::now();
                    }
                }
                Err(RecvTimeoutError::Timeout) => return false,
                Err(RecvTimeoutError::Disconnected) => return self.shutdown.is_requested(),
            }
        }
    }

    /// With no watcher left: sleep until the deadline or the shutdown.
    fn wait_without_events(&self, deadline: Instant) -> Wake {
        if self.shutdown.sleep(deadline.saturating_duration_since(Instant::now())) {
            Wake::Shutdown
        } else {
            Wake::Timer
        }
    }

    /// Records one message; true when it is the shutdown.
    fn note(&mut self, msg: Msg) -> bool {
        let event = match msg {
            Msg::Shutdown => return true,
            Msg::Event(Err(e)) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                self.shared.stop_watching();
                return false;
            }
            Msg::Event(Err(e)) => {
                self.pending.full.get_or_insert_with(|| format!("the watcher reported an error: {e}"));
                return false;
            }
            Msg::Event(Ok(event)) => event,
        };
        if event.need_rescan() {
            if !self.overflow_warned {
                self.overflow_warned = true;
                log::warn!(
                    "the inotify event queue overflowed, so changes may have been missed: running a full pass \
                     (raise the queue with `sysctl fs.inotify.max_queued_events=65536`)"
                );
            }
            self.pending.full.get_or_insert_with(|| "the event queue overflowed".into());
            return false;
        }
        if !counts(event.kind) {
            return false;
        }
        let new_dir = matches!(event.kind, EventKind::Create(notify::event::CreateKind::Folder))
            || matches!(event.kind, EventKind::Modify(ModifyKind::Name(_)));
        for path in &event.paths {
            self.note_path(path, event.kind, new_dir);
        }
        false
    }

    /// Records an event at `path`: its directory changed; a new directory is watched at once.
    fn note_path(&mut self, path: &Path, kind: EventKind, maybe_new_dir: bool) {
        if self.quiet.iter().any(|q| path.starts_with(q)) {
            return;
        }
        // The innermost root holding the path (roots may nest, as a home inside a side).
        let roots = &self.shared.roots;
        let Some((i, rel)) = roots
            .iter()
            .enumerate()
            .filter_map(|(i, r)| path.strip_prefix(r).ok().map(|rel| (i, rel)))
            .max_by_key(|(i, _)| roots[*i].as_os_str().len())
        else {
            return;
        };
        let rel = RelPath::from_path(rel);
        if rel.as_bytes().is_empty() {
            match kind {
                EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_)) => {
                    self.pending.full.get_or_insert_with(|| {
                        format!("\"{}\" was removed or moved", crate::relpath::escape_path(path))
                    });
                }
                _ => {
                    self.pending.dirs[i].insert(rel);
                }
            }
            return;
        }
        if maybe_new_dir && std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            self.add(i, &rel);
            self.pending.created[i].insert(rel.clone());
        }
        self.pending.dirs[i].insert(rel.parent().unwrap_or_else(|| RelPath::from_bytes(b"")));
    }
}

/// Events that can change what a scan sees (opening or reading a file cannot).
fn counts(kind: EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Of the paths we write ourselves (a log file, twoway's home), those inside `roots`: their
/// events must not wake the watcher, or every pass would cause the next.
pub fn quiet_paths(ours: &[&Path], roots: &[PathBuf]) -> Vec<PathBuf> {
    ours.iter().filter(|p| roots.iter().any(|r| p.starts_with(r))).map(|p| p.to_path_buf()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn rel(s: &str) -> RelPath {
        RelPath::from_bytes(s.as_bytes())
    }

    /// Waits for the changes a burst makes (retrying until they arrive: events are asynchronous).
    fn changes(w: &mut Watch) -> Changes {
        let deadline = Instant::now() + Duration::from_secs(10);
        match w.wait(Duration::from_millis(50), deadline) {
            Wake::Changes(c) => c,
            other => panic!("no changes: {other:?}"),
        }
    }

    #[test]
    fn changes_name_their_directories_and_new_directories_are_watched() {
        let d = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(d.path()).unwrap();
        fs::create_dir_all(root.join("a/b")).unwrap();
        let shutdown = Shutdown::new();
        let mut w = Watch::start(vec![root.clone()], vec![], &shutdown).unwrap();
        w.add(0, &rel("a"));
        w.add(0, &rel("a/b"));

        fs::write(root.join("a/b/f"), b"x").unwrap();
        fs::write(root.join("top"), b"x").unwrap();
        let c = changes(&mut w);
        assert!(c.dirs[0].contains(&rel("a/b")) && c.dirs[0].contains(&rel("")), "{c:?}");

        // A new directory is watched as soon as it is seen: a file made in it later is seen.
        fs::create_dir(root.join("new")).unwrap();
        assert!(changes(&mut w).dirs[0].contains(&rel("")));
        fs::write(root.join("new/f"), b"x").unwrap();
        assert_eq!(changes(&mut w).dirs[0], BTreeSet::from([rel("new")]));

        // Reading a file is no change: the deadline passes.
        let _ = fs::read(root.join("top")).unwrap();
        assert_eq!(
            w.wait(Duration::from_millis(20), Instant::now() + Duration::from_millis(300)),
            Wake::Timer
        );
    }

    #[test]
    fn a_removed_root_asks_for_a_full_pass_and_a_shutdown_ends_the_wait() {
        let d = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(d.path()).unwrap().join("side");
        fs::create_dir(&root).unwrap();
        let shutdown = Shutdown::new();
        let mut w = Watch::start(vec![root.clone()], vec![], &shutdown).unwrap();
        fs::rename(&root, d.path().join("elsewhere")).unwrap();
        assert!(changes(&mut w).full.is_some());

        let waker = {
            let shutdown = shutdown.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                shutdown.request();
            })
        };
        let started = Instant::now();
        assert_eq!(
            w.wait(Duration::from_millis(20), Instant::now() + Duration::from_secs(60)),
            Wake::Shutdown
        );
        assert!(started.elapsed() < Duration::from_secs(30));
        waker.join().unwrap();
    }

    #[test]
    fn quiet_paths_do_not_wake_it() {
        let d = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(d.path()).unwrap();
        fs::create_dir(root.join("home")).unwrap();
        let shutdown = Shutdown::new();
        let quiet = quiet_paths(&[&root.join("home"), Path::new("/elsewhere")], std::slice::from_ref(&root));
        let mut w = Watch::start(vec![root.clone()], quiet, &shutdown).unwrap();
        w.add(0, &rel("home"));
        fs::write(root.join("home/state"), b"x").unwrap();
        assert_eq!(
            w.wait(Duration::from_millis(20), Instant::now() + Duration::from_millis(300)),
            Wake::Timer
        );
    }
}
