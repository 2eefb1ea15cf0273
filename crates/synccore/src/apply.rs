//! Carries out a [`Plan`]: the one copy engine. Copies are staged as temporaries in batches,
//! made durable with one `syncfs` per batch, then renamed into place; every directory that
//! changed is fsynced before `apply` returns. A failure at one path is reported through the
//! observer and the rest of the plan goes on (STYLE "Errors").

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};
use crate::fsio::{self, Rename, Root, StageOutcome};
use crate::plan::{Action, Stamp, Step, StepKind, Steps, Summary};
use crate::store::FileSource;

/// Staged copies wait for one durability barrier until there are this many...
const BATCH_FILES: usize = 8192;
/// ...or this many bytes.
const BATCH_BYTES: u64 = 1 << 30;

/// What happened to one step, as told to the observer.
#[derive(Debug)]
pub enum Event<'a> {
    /// The step was carried out.
    Done(&'a Step),
    /// The step failed; the pass goes on.
    Failed(&'a Step, &'a Error),
    /// The step was left for the next pass, for the reason given.
    Skipped(&'a Step, &'static str),
    /// A plan is about to be carried out: sent by the pass before it calls [`apply`] (once
    /// per plan, twoway all of a pass's plans first), so that an observer can show progress
    /// against the whole (issue 16, point 1). `apply` itself never sends it.
    Planned(&'a Summary),
}

/// Counts of what a pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyStats {
    /// Steps done, by kind.
    pub done: std::collections::BTreeMap<StepKind, u64>,
    /// Bytes written into the target by copies and updates.
    pub copied_bytes: u64,
    /// Steps that failed.
    pub failed: u64,
    /// Steps left for the next pass because a path changed under the pass.
    pub skipped: u64,
    /// True when a shutdown request stopped the pass before the plan's end.
    pub interrupted: bool,
    /// True when a copy thread panicked (a bug): the rest of the plan was not carried out and
    /// the caller must end the pass with an error that says so.
    pub panicked: bool,
}

impl ApplyStats {
    /// Total steps done.
    pub fn operations(&self) -> u64 {
        self.done.values().sum()
    }

    /// True when every step of the plan was carried out: none failed, none was left for the
    /// next pass, and nothing stopped the plan early. A copy that feeds a swap (a new version,
    /// a restore, an undo generation) is used only when this holds (the hardening issue,
    /// point 2).
    pub fn is_complete(&self) -> bool {
        self.failed == 0 && self.skipped == 0 && !self.interrupted && !self.panicked
    }

    /// Adds another pass's counts to these.
    pub fn add(&mut self, other: &ApplyStats) {
        for (kind, n) in &other.done {
            *self.done.entry(*kind).or_default() += n;
        }
        self.copied_bytes += other.copied_bytes;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.panicked |= other.panicked;
    }
}

/// The trees a plan is carried out on: copies read `from` (a local tree, or any other
/// [`FileSource`], such as a remote version) and write `to`; hard links point into `links`
/// (the previous version slot, for a versioned build).
#[derive(Debug, Clone, Copy)]
pub struct Trees<'a> {
    pub from: &'a dyn FileSource,
    pub to: &'a Root,
    pub links: Option<&'a Root>,
}

impl<'a> Trees<'a> {
    /// Copies from `from` into `to`, no hard links.
    pub fn new(from: &'a dyn FileSource, to: &'a Root) -> Self {
        Trees { from, to, links: None }
    }
}

/// Applies `plan` so that `trees.to` takes on what `trees.from` has. Stops early (after
/// finishing the step at hand and committing what is staged) when `shutdown` becomes true.
pub fn apply(
    plan: &dyn Steps,
    trees: Trees<'_>,
    shutdown: &AtomicBool,
    observe: &mut dyn FnMut(Event<'_>),
) -> ApplyStats {
    let mut run = Applier {
        trees,
        stats: ApplyStats::default(),
        dirty: BTreeSet::new(),
        pending: Vec::new(),
        pending_bytes: 0,
        shutdown,
    };
    let read = plan.each(&mut |step| {
        if run.stats.panicked {
            return ControlFlow::Break(());
        }
        if shutdown.load(Ordering::Relaxed) {
            run.stats.interrupted = true;
            return ControlFlow::Break(());
        }
        // A directory's metadata is set after everything inside it is in place.
        if matches!(step.action, Action::Meta { dir: true, .. }) {
            run.flush(observe);
        }
        run.step(step, observe);
        if run.pending.len() >= BATCH_FILES || run.pending_bytes >= BATCH_BYTES {
            run.flush(observe);
        }
        ControlFlow::Continue(())
    });
    if let Err(err) = read {
        // The plan's temporary file could not be read back: the rest of it is not done.
        log::error!("cannot read the rest of the plan back from its temporary file: {err}");
        run.stats.failed += 1;
        run.stats.interrupted = true;
    }
    run.flush(observe);
    // Durability of renames and removals: one syncfs when many directories changed (as
    // cheap as one fsync, where hundreds of directory fsyncs cost ~2 ms each), else an fsync
    // per directory. A failure here is reported, not fatal.
    let to = trees.to;
    if run.dirty.len() <= FSYNC_DIRS_MAX || to.sync_fs().is_err() {
        for dir in &run.dirty {
            match to.sync_dir(dir) {
                // A directory the plan removed needs no fsync: its parent, also dirty, has one.
                Err(err) if err.io_kind() == Some(std::io::ErrorKind::NotFound) => {}
                Err(err) => log::warn!("{err}"),
                Ok(()) => {}
            }
        }
    }
    run.stats
}

/// Copies per pipeline stage within a batch (see `Applier::flush`).
const PIPELINE_CHUNK: usize = 1024;

/// Above this many changed directories, one `syncfs` replaces their fsyncs.
const FSYNC_DIRS_MAX: usize = 8;

/// Threads that stage copies at once: the copy itself runs in the kernel, so a few threads
/// keep both cores and the disk busy.
const STAGE_THREADS: usize = 4;

/// Carries out one plan: the steps, the batches of staged copies, and the directories to make
/// durable at the end.
struct Applier<'a> {
    trees: Trees<'a>,
    stats: ApplyStats,
    /// Directories (relative to the target root) whose entries changed: fsynced at the end.
    dirty: BTreeSet<PathBuf>,
    /// Copies and updates waiting to be staged, made durable and committed as one batch.
    pending: Vec<Step>,
    pending_bytes: u64,
    shutdown: &'a AtomicBool,
}

impl Applier<'_> {
    fn step(&mut self, step: &Step, observe: &mut dyn FnMut(Event<'_>)) {
        let to = self.trees.to;
        let rel = step.path.as_path();
        let result = match &step.action {
            Action::Copy { size, .. } | Action::Update { size, .. } => {
                self.pending_bytes += size;
                self.pending.push(step.clone());
                return;
            }
            Action::Mkdir { mode, .. } => to.create_dir(rel, *mode),
            Action::Link { target: link_target, mtime, owner, was } => {
                if !is_as_planned(to, rel, *was) {
                    return self.skip(step, "target changed during the pass", observe);
                }
                to.place_symlink(rel, link_target, *mtime, *owner, was.is_some())
            }
            Action::Meta { mode, mtime, owner, .. } => to.set_meta(rel, *mode, *mtime, *owner),
            Action::Delete { was } => {
                if !is_as_planned(to, rel, Some(*was)) {
                    return self.skip(step, "target changed during the pass", observe);
                }
                to.remove_file(rel)
            }
            Action::Rmdir => to.remove_dir(rel),
            Action::Cleanup => to.remove_tree(rel),
            Action::Rename { to: new, was } | Action::Move { to: new, was } => {
                if !is_as_planned(to, rel, Some(*was)) {
                    return self.skip(step, "target changed during the pass", observe);
                }
                let renamed = to.rename(rel, new.as_path(), Rename::NoReplace);
                if renamed.is_ok()
                    && let Some(parent) = new.parent()
                {
                    self.dirty.insert(parent.as_path().to_path_buf());
                }
                renamed
            }
            Action::HardLink { existing } => match self.trees.links {
                Some(links) => to.hard_link(rel, links, existing.as_path()),
                None => {
                    Err(Error::Invalid { path: to.path_of(rel), reason: "no tree to hard-link from".into() })
                }
            },
        };
        self.finish(step, result, observe);
    }

    /// Makes the staged batch durable and renames each file into place.
    fn flush(&mut self, observe: &mut dyn FnMut(Event<'_>)) {
        if self.pending.is_empty() {
            return;
        }
        let steps = std::mem::take(&mut self.pending);
        let (trees, shutdown) = (self.trees, self.shutdown);
        // A pipeline of three: while one chunk's syncfs waits for the disk, the next chunk is
        // staged (on its own threads) and the chunk before is committed (here).
        std::thread::scope(|scope| {
            let mut chunks = steps.chunks(PIPELINE_CHUNK);
            let mut staging =
                chunks.next().map(|chunk| (chunk, scope.spawn(move || stage_all(chunk, trees, shutdown))));
            let mut previous = None;
            while let Some((chunk, handle)) = staging.take() {
                let Some(staged) = handle.join().ok().flatten() else {
                    // A copy thread panicked: nothing more is committed (the staged
                    // temporaries go; a later pass would remove any that stayed).
                    self.stats.panicked = true;
                    if let Some((_, staged, _)) = previous.take() {
                        discard(staged);
                    }
                    break;
                };
                let durable = scope.spawn(move || trees.to.sync_fs().is_ok());
                staging = chunks
                    .next()
                    .map(|chunk| (chunk, scope.spawn(move || stage_all(chunk, trees, shutdown))));
                if let Some((chunk, staged, durable)) = previous.replace((chunk, staged, durable)) {
                    self.commit(chunk, staged, durable.join().unwrap_or(false), observe);
                }
            }
            if let Some((chunk, staged, durable)) = previous {
                self.commit(chunk, staged, durable.join().unwrap_or(false), observe);
            }
        });
        self.pending_bytes = 0;
    }

    /// Renames a staged chunk into place once a syncfs covered it (when `batch_durable` is
    /// false, each file is fsynced on its own first).
    fn commit(
        &mut self,
        steps: &[Step],
        staged: Vec<Option<Result<StageOutcome>>>,
        batch_durable: bool,
        observe: &mut dyn FnMut(Event<'_>),
    ) {
        crate::fault::point("before-commit");
        let to = self.trees.to;
        for (step, outcome) in steps.iter().zip(staged) {
            let rel = step.path.as_path();
            let staged = match outcome {
                None => {
                    self.stats.interrupted = true;
                    continue;
                }
                Some(Ok(StageOutcome::Staged(staged))) => staged,
                Some(Ok(StageOutcome::SourceChanged)) => {
                    self.skip(step, "source changed during the pass", observe);
                    continue;
                }
                Some(Ok(StageOutcome::TargetChanged)) => {
                    self.skip(step, "target changed during the pass", observe);
                    continue;
                }
                Some(Err(err)) => {
                    self.finish(step, Err(err), observe);
                    continue;
                }
            };
            let was = match step.action {
                Action::Update { was, .. } => was,
                _ => None,
            };
            // An update replaces only the file it was planned against; a new file never
            // replaces one that appeared meanwhile (a no-replace rename refuses atomically).
            if was.is_some() && !is_as_planned(to, rel, was) {
                staged.discard();
                self.skip(step, "target changed during the pass", observe);
                continue;
            }
            let how = if was.is_none() { Rename::NoReplace } else { Rename::Replace };
            let result = if batch_durable { Ok(()) } else { staged.sync() }
                .and_then(|()| staged.commit(step.path.file_name(), how));
            if result.is_err() {
                staged.discard();
            } else {
                self.stats.copied_bytes += staged.bytes;
            }
            self.finish(step, result, observe);
        }
    }

    fn finish(&mut self, step: &Step, result: Result<()>, observe: &mut dyn FnMut(Event<'_>)) {
        match result {
            Ok(()) => {
                *self.stats.done.entry(step.kind()).or_default() += 1;
                if !matches!(step.action, Action::Meta { .. }) {
                    let parent = step.path.parent().map_or_else(PathBuf::new, |p| p.as_path().to_path_buf());
                    self.dirty.insert(parent);
                }
                observe(Event::Done(step));
            }
            // Something the user created at the target between the scan and this step: it is
            // theirs, and the next pass decides what to do with it (the hardening issue, 6).
            Err(err) if err.io_kind() == Some(std::io::ErrorKind::AlreadyExists) => {
                self.skip(step, "an entry appeared at the target during the pass", observe);
            }
            // A directory on the way was replaced (by a symlink, which is never followed, or a
            // file) or removed since the scan (the security issue).
            Err(err) if err.io_error().is_some_and(crate::scan::is_not_a_dir) => {
                self.skip(step, "a directory on its path was replaced during the pass", observe);
            }
            Err(err) => {
                self.stats.failed += 1;
                observe(Event::Failed(step, &err));
            }
        }
    }

    fn skip(&mut self, step: &Step, why: &'static str, observe: &mut dyn FnMut(Event<'_>)) {
        self.stats.skipped += 1;
        observe(Event::Skipped(step, why));
    }
}

/// Removes the temporaries of a staged chunk that will not be committed.
fn discard(staged: Vec<Option<Result<StageOutcome>>>) {
    for outcome in staged.into_iter().flatten() {
        if let Ok(StageOutcome::Staged(s)) = outcome {
            s.discard();
        }
    }
}

/// Stages every copy of a batch on a few threads; results come back in the steps' order.
/// `None` marks a copy not started because a shutdown was requested. The whole result is
/// `None` when a copy thread panicked (what the others staged is discarded).
fn stage_all(
    steps: &[Step],
    trees: Trees<'_>,
    shutdown: &AtomicBool,
) -> Option<Vec<Option<Result<StageOutcome>>>> {
    let stage = |step: &Step| {
        if shutdown.load(Ordering::Relaxed) {
            return None;
        }
        crate::fault::point("stage");
        let (Action::Copy { size, mode, mtime, owner } | Action::Update { size, mode, mtime, owner, .. }) =
            step.action
        else {
            return None;
        };
        let attrs = fsio::CopyAttrs { mode, owner };
        Some(trees.from.stage_file(trees.to, step.path.as_path(), attrs, (size, mtime)))
    };
    let threads = STAGE_THREADS.min(steps.len());
    if threads <= 1 {
        let all = || steps.iter().map(&stage).collect::<Vec<_>>();
        return std::panic::catch_unwind(std::panic::AssertUnwindSafe(all)).ok();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, Option<Result<StageOutcome>>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(step) = steps.get(i) else { break };
                        done.push((i, stage(step)));
                    }
                    done
                })
            })
            .collect();
        let mut all = Vec::with_capacity(steps.len());
        let mut panicked = false;
        for worker in workers {
            match worker.join() {
                Ok(done) => all.extend(done),
                Err(_) => panicked = true,
            }
        }
        if panicked {
            discard(all.into_iter().map(|(_, r)| r).collect());
            return None;
        }
        Some(all)
    })?;
    results.sort_by_key(|(i, _)| *i);
    let mut out: Vec<Option<Result<StageOutcome>>> = (0..steps.len()).map(|_| None).collect();
    for (i, r) in results {
        out[i] = r;
    }
    Some(out)
}

/// True when `rel` is as the plan saw it: absent when `was` is `None`, else unchanged.
fn is_as_planned(root: &Root, rel: &Path, was: Option<Stamp>) -> bool {
    match was {
        None => root.is_absent(rel),
        Some(s) => root.unchanged_since_scan(rel, s.size, s.mtime, s.ino),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Entry, Mtime};
    use crate::plan::Plan;
    use crate::relpath::RelPath;
    use std::fs;

    /// The entry `name` in the directory `dir`, as a scan sees it.
    fn entry(dir: &Path, name: &str) -> Entry {
        let root = Root::open(dir).unwrap();
        crate::scan::entry_of(&root, &RelPath::from_bytes(name.as_bytes())).unwrap().unwrap()
    }

    fn scan_stamp(path: &Path) -> Stamp {
        let (dir, name) = (path.parent().unwrap(), path.file_name().unwrap().to_str().unwrap());
        Stamp::of(&entry(dir, name))
    }

    /// Applies `plan` from the tree at `from` into the tree at `to`.
    fn run(
        plan: &Plan,
        from: &Path,
        to: &Path,
        stop: bool,
        observe: &mut dyn FnMut(Event<'_>),
    ) -> ApplyStats {
        let (from, to) = (Root::open(from).unwrap(), Root::open(to).unwrap());
        apply(plan, Trees::new(&from, &to), &AtomicBool::new(stop), observe)
    }

    #[test]
    fn a_target_changed_after_planning_is_left_for_the_next_pass() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::write(from.path().join("x"), b"new").unwrap();
        fs::write(to.path().join("x"), b"old").unwrap();
        fs::write(to.path().join("gone"), b"old").unwrap();
        let src = entry(from.path(), "x");
        let plan = Plan {
            steps: vec![
                Step {
                    path: RelPath::from_bytes(b"gone"),
                    action: Action::Delete { was: scan_stamp(&to.path().join("gone")) },
                },
                Step {
                    path: RelPath::from_bytes(b"x"),
                    action: Action::Update {
                        size: 3,
                        mode: 0o644,
                        mtime: src.mtime,
                        owner: src.owner,
                        was: Some(scan_stamp(&to.path().join("x"))),
                    },
                },
            ],
        };
        // The user edits both targets after the plan was made.
        fs::write(to.path().join("x"), b"user's edit").unwrap();
        fs::write(to.path().join("gone"), b"user's edit too").unwrap();
        let mut skipped = Vec::new();
        let stats = run(&plan, from.path(), to.path(), false, &mut |e| {
            if let Event::Skipped(s, _) = e {
                skipped.push(s.path.to_string());
            }
        });
        assert_eq!(skipped, vec!["gone", "x"]);
        assert_eq!(stats.skipped, 2);
        assert_eq!(fs::read(to.path().join("x")).unwrap(), b"user's edit");
        assert_eq!(fs::read(to.path().join("gone")).unwrap(), b"user's edit too");
        assert_eq!(fs::read_dir(to.path()).unwrap().count(), 2, "no temporary left");
    }

    #[test]
    fn a_new_file_never_replaces_one_that_appeared_meanwhile() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::write(from.path().join("x"), b"ours").unwrap();
        let src = entry(from.path(), "x");
        let plan = Plan {
            steps: vec![Step {
                path: RelPath::from_bytes(b"x"),
                action: Action::Copy { size: 4, mode: 0o644, mtime: src.mtime, owner: src.owner },
            }],
        };
        fs::write(to.path().join("x"), b"theirs").unwrap();
        let stats = run(&plan, from.path(), to.path(), false, &mut |_| {});
        assert_eq!(stats.operations(), 0);
        assert_eq!(fs::read(to.path().join("x")).unwrap(), b"theirs");
    }

    #[test]
    fn one_failure_does_not_stop_the_pass_and_shutdown_stops_it() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::write(from.path().join("b"), b"b").unwrap();
        let b = entry(from.path(), "b");
        let copy = |name: &[u8], e: &Entry| Step {
            path: RelPath::from_bytes(name),
            action: Action::Copy { size: e.size, mode: 0o644, mtime: e.mtime, owner: e.owner },
        };
        // A source that vanished since the scan, or whose directory became a file, is left for
        // the next pass; a step the file system refuses (a name too long) is a failure.
        let too_long = Step {
            path: RelPath::from_bytes(&[b'x'; 300]),
            action: Action::Mkdir { mode: 0o755, owner: b.owner },
        };
        let missing = Entry { size: 1, mtime: Mtime { secs: 1, nanos: 0 }, ..b.clone() };
        let plan = Plan {
            steps: vec![too_long, copy(b"a-missing", &missing), copy(b"b", &b), copy(b"no-dir/c", &b)],
        };
        fs::write(from.path().join("no-dir"), b"").unwrap();
        let stats = run(&plan, from.path(), to.path(), false, &mut |_| {});
        assert_eq!((stats.skipped, stats.failed, stats.operations()), (2, 1, 1));
        assert!(to.path().join("b").exists());
        let stopped = run(&plan, from.path(), tempfile::tempdir().unwrap().path(), true, &mut |_| {});
        assert!(stopped.interrupted);
        assert_eq!(stopped.operations(), 0);
    }
}
