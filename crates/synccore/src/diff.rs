//! The diff of two scanned trees (SPEC section 3 "Mirror"): a merge-join of a source and a
//! target tree, sorted by path, into the [`Plan`] that makes the target an exact copy of the
//! source. Content is read only where the quick check of SPEC section 2 cannot decide. The
//! step builders here are shared with twoway's merge, so both programs compare entries by one
//! rule.

use std::collections::{HashMap, HashSet};

use crate::checksum::{Content, Digest};
use crate::entry::{Entry, Kind};
use crate::error::{Error, Op, Result};
use crate::moves::{self, Digests, Move, Which};
use crate::plan::{Action, Phased, Plan, Stamp, Step};
use crate::relpath::RelPath;
use crate::scan::Tree;
use crate::spill::Spill;
use crate::walk::Walker;

/// How two trees are compared.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiffOptions {
    /// Decide equal-size files by content even when their mtimes are equal (`--checksum`).
    pub checksum: bool,
    /// Compare owners and plan owner changes (run as root, like `rsync -a`; see
    /// [`crate::entry::keeps_owners`]). Without it an owner difference is not a change.
    pub owners: bool,
}

impl DiffOptions {
    /// The options of a pass run by this process: owners are kept when it runs as root.
    pub fn for_this_process(checksum: bool) -> Self {
        DiffOptions { checksum, owners: crate::entry::keeps_owners() }
    }
}

/// A tree as the diff reads it: its entries one at a time in whole-path byte order (a
/// [`Walker`] streams them from disk; [`Entries`] reads a tree held in memory), and what was
/// learned about it so far besides them.
pub trait Source {
    /// The next entry, or `None` at the end.
    fn next_entry(&mut self) -> Option<Entry>;

    /// What is known so far besides the entries: paths that could not be read, ignored
    /// entries, leftovers (complete for every directory the source has listed).
    fn notes(&self) -> &Tree;

    /// The content of `e`, when `e` is the entry returned last and the source read it on the
    /// way (a walk that reads small files): the diff then compares the contents of both
    /// sides instead of asking for the bytes again.
    fn content_of(&self, _e: &Entry) -> Option<&Content> {
        None
    }

    /// [`Source::content_of`], taken (a source read ahead of the diff keeps it with `e`).
    fn take_content(&mut self, _e: &Entry) -> Option<Content> {
        None
    }
}

impl Source for Walker<'_> {
    fn next_entry(&mut self) -> Option<Entry> {
        self.next()
    }

    fn notes(&self) -> &Tree {
        Walker::notes(self)
    }
}

/// A tree held in memory, read as a [`Source`].
pub struct Entries<'t> {
    tree: &'t Tree,
    at: usize,
}

impl<'t> Entries<'t> {
    /// Reads `tree` from its first entry.
    pub fn of(tree: &'t Tree) -> Self {
        Entries { tree, at: 0 }
    }
}

impl Source for Entries<'_> {
    fn next_entry(&mut self) -> Option<Entry> {
        let e = self.tree.entries.get(self.at).cloned();
        self.at += 1;
        e
    }

    fn notes(&self) -> &Tree {
        self.tree
    }
}

/// A source with some subtrees taken out (`prune`: their own entries and everything below)
/// and other entries put in (`extra`, sorted): a tree as renames will leave it (twoway's
/// renames issue), read as it streams.
pub struct Relocated<'s> {
    inner: &'s mut dyn Source,
    prune: HashSet<Vec<u8>>,
    extra: std::iter::Peekable<std::vec::IntoIter<Entry>>,
    head: Option<Entry>,
    started: bool,
}

impl<'s> Relocated<'s> {
    /// `inner` without the subtrees at `prune`, with `extra` (sorted by path) in.
    pub fn new(inner: &'s mut dyn Source, prune: &[RelPath], extra: Vec<Entry>) -> Self {
        let prune = prune.iter().map(|p| p.as_bytes().to_vec()).collect();
        Relocated { inner, prune, extra: extra.into_iter().peekable(), head: None, started: false }
    }

    fn pruned(&self, path: &RelPath) -> bool {
        !self.prune.is_empty()
            && std::iter::successors(Some(path.clone()), RelPath::parent)
                .any(|p| self.prune.contains(p.as_bytes()))
    }

    fn advance(&mut self) {
        self.head = loop {
            match self.inner.next_entry() {
                Some(e) if self.pruned(&e.path) => {}
                other => break other,
            }
        };
    }
}

impl Source for Relocated<'_> {
    fn next_entry(&mut self) -> Option<Entry> {
        if !self.started {
            self.started = true;
            self.advance();
        }
        let extra_first = match (&self.head, self.extra.peek()) {
            (None, None) => return None,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(h), Some(x)) => x.path < h.path,
        };
        if extra_first {
            return self.extra.next();
        }
        let out = self.head.take();
        self.advance();
        out
    }

    fn notes(&self) -> &Tree {
        self.inner.notes()
    }
}

/// What a streaming diff made and saw.
#[derive(Debug, Default)]
pub struct Streamed {
    /// The plan, phase by phase (see [`Phased`]).
    pub plan: Phased,
    /// Entries the source has.
    pub source_entries: u64,
    /// Files and symlinks the target has (the max-delete rail's whole).
    pub target_files: u64,
}

/// The steps that make `target` an exact copy of `source` (SPEC section 3 "Mirror"), with
/// every entry that only moved in the source moved in the target too ([`moves`]), made while
/// both trees stream past (the scale issue): memory holds the directories on the current path,
/// the entries the plan deletes (and, while the target has entries, those it creates, spilled
/// when many), never the trees. `target_at` says what the target has at a path (asked only on
/// the way to a candidate move's destination).
///
/// `digest` gives a file's content hash; it is asked only where the quick check of SPEC
/// section 2 cannot decide (mtimes differ, or always with `--checksum`) and where moves tie,
/// and each file at most once. Nothing at or below a path that could not be read on the source
/// side is deleted, nor a directory that holds ignored entries in the target.
pub fn stream(
    source: &mut dyn Source,
    target: &mut dyn Source,
    target_at: &moves::TargetAt<'_>,
    options: DiffOptions,
    digest: &mut Digests<'_>,
) -> Result<Streamed> {
    stream_comparing(source, target, target_at, options, digest, None)
}

/// The content oracle that compares a source file with the target file at the same path
/// directly (the mirror reads both, issue 17): `true` when they hold the same bytes; a
/// failure counts as `false`.
pub type SameContent<'a> = dyn FnMut(&Entry, &Entry) -> bool + 'a;

/// [`stream`], with `same` (when given) deciding whether two files at one path hold the same
/// bytes instead of comparing their digests; `digest` then only pairs moves that tie.
pub fn stream_comparing(
    source: &mut dyn Source,
    target: &mut dyn Source,
    target_at: &moves::TargetAt<'_>,
    options: DiffOptions,
    digest: &mut Digests<'_>,
    same: Option<&mut SameContent<'_>>,
) -> Result<Streamed> {
    let mut memo: HashMap<(Which, RelPath), Option<Digest>> = HashMap::new();
    let mut cached =
        |which: Which, e: &Entry| *memo.entry((which, e.path.clone())).or_insert_with(|| digest(which, e));
    let mut differ = Differ::new(options);
    if let Some(same) = same {
        differ.run(source, target, same)
    } else {
        // Any read failure counts as "different": the copy then reports the real error.
        let mut by_digest = |s: &Entry, d: &Entry| {
            matches!((cached(Which::Source, s), cached(Which::Target, d)), (Some(a), Some(b)) if a == b)
        };
        differ.run(source, target, &mut by_digest)
    }
    .map_err(spill_error)?;
    let Differ { mut plan, deleted, mut created, source_entries, target_files, .. } = differ;
    plan.seal().map_err(spill_error)?;
    created.seal().map_err(spill_error)?;
    let changed =
        moves::Changed { deleted: &deleted, created: &created, target_at, target_dev: target.notes().dev };
    let found = moves::find(&changed, options.owners, options.checksum, &mut cached);
    if !found.is_empty() {
        plan = with_moves(&plan, &found, &deleted).map_err(spill_error)?;
    }
    Ok(Streamed { plan, source_entries, target_files })
}

/// [`stream`] over two trees held in memory, the plan in memory too.
pub fn plan(source: &Tree, target: &Tree, options: DiffOptions, digest: &mut Digests<'_>) -> Result<Plan> {
    let target_at = |p: &RelPath| target.get(p).map(|e| (e.is_dir(), e.dev));
    let streamed = stream(&mut Entries::of(source), &mut Entries::of(target), &target_at, options, digest)?;
    streamed.plan.to_plan().map_err(spill_error)
}

/// An I/O error of the temporary file a large plan spills to.
fn spill_error(source: std::io::Error) -> Error {
    Error::Io { op: Op::Write, path: std::env::temp_dir(), source }
}

/// A directory the diff is inside of: its entry on each side, and what its steps do to it.
struct Open {
    path: RelPath,
    /// The source's entry, when the source has a directory here.
    src: Option<Entry>,
    /// The target's entry, when the target has a directory here that stays one.
    dst: Option<Entry>,
    /// The plan changes the directory's entries (its mtime must be set again).
    touched: bool,
    /// The target's directory here goes (the source has none, or another kind).
    remove: bool,
}

/// The state of one streaming diff.
struct Differ {
    options: DiffOptions,
    plan: Phased,
    open: Vec<Open>,
    /// Target entries the plan deletes, in path order (move candidates).
    deleted: Vec<Entry>,
    /// Source entries the plan creates (move candidates), kept only while the target has
    /// entries at all.
    created: Spill<Entry>,
    /// Directories of the target that hold ignored entries (never removed).
    pinned: HashSet<RelPath>,
    /// Directories of the target that hold leftover temporaries (cleaned up, so touched).
    cleaned: HashSet<RelPath>,
    seen: (usize, usize),
    source_entries: u64,
    target_files: u64,
}

impl Differ {
    fn new(options: DiffOptions) -> Self {
        Differ {
            options,
            plan: Phased::default(),
            open: Vec::new(),
            deleted: Vec::new(),
            created: Spill::default(),
            pinned: HashSet::new(),
            cleaned: HashSet::new(),
            seen: (0, 0),
            source_entries: 0,
            target_files: 0,
        }
    }

    /// The merge-join of both streams; `same_content` decides equal-size files the quick
    /// check cannot.
    fn run(
        &mut self,
        source: &mut dyn Source,
        target: &mut dyn Source,
        same_content: &mut SameContent<'_>,
    ) -> std::io::Result<()> {
        let (mut s, mut d) = (source.next_entry(), target.next_entry());
        let record_creates = d.is_some();
        loop {
            self.learn(target.notes());
            let order = match (&s, &d) {
                (Some(s), Some(d)) => s.path.cmp(&d.path),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => break,
            };
            let next = if order.is_gt() { d.as_ref() } else { s.as_ref() };
            if let Some(next) = next {
                let path = next.path.clone();
                self.close_outside(&path)?;
            }
            match order {
                std::cmp::Ordering::Less => {
                    let Some(e) = s.take() else { break };
                    self.source_entries += 1;
                    self.create(e, record_creates)?;
                    s = source.next_entry();
                }
                std::cmp::Ordering::Greater => {
                    let Some(e) = d.take() else { break };
                    self.target_files += u64::from(!e.is_dir());
                    if !source.notes().is_protected(&e.path) {
                        self.remove(e)?;
                    }
                    d = target.next_entry();
                }
                std::cmp::Ordering::Equal => {
                    let (Some(a), Some(b)) = (s.take(), d.take()) else { break };
                    self.source_entries += 1;
                    self.target_files += u64::from(!b.is_dir());
                    // Both contents already read on the way: they decide.
                    let ours = source.content_of(&a).and_then(Content::seen);
                    let read = ours.zip(target.content_of(&b).and_then(Content::seen));
                    match read.map(|(x, y)| x.same_as(y)) {
                        Some(same) => self.both(a, b, &mut |_: &Entry, _: &Entry| same),
                        None => self.both(a, b, same_content),
                    }?;
                    (s, d) = (source.next_entry(), target.next_entry());
                }
            }
        }
        self.learn(target.notes());
        self.close_outside(&RelPath::from_bytes(b""))?;
        for path in &target.notes().leftovers {
            self.plan.push_first(Step { path: path.clone(), action: Action::Cleanup });
        }
        Ok(())
    }

    /// Takes in what the target's walk learned since last time: directories holding ignored
    /// entries or leftovers.
    fn learn(&mut self, notes: &Tree) {
        let (ignored, leftovers) = self.seen;
        for path in notes.ignored.iter().skip(ignored) {
            let mut parent = path.parent();
            while let Some(p) = parent {
                parent = p.parent();
                if !self.pinned.insert(p) {
                    break;
                }
            }
        }
        self.cleaned.extend(notes.leftovers.iter().skip(leftovers).filter_map(RelPath::parent));
        self.seen = (notes.ignored.len(), notes.leftovers.len());
    }

    /// Marks `path`'s directory as changed (its mtime is set again at the end).
    fn touch(&mut self, path: &RelPath) {
        let Some(parent) = path.parent() else { return };
        if let Some(open) = self.open.iter_mut().rev().find(|o| o.path == parent) {
            open.touched = true;
        }
    }

    /// A source entry the target lacks.
    fn create(&mut self, e: Entry, record: bool) -> std::io::Result<()> {
        self.touch(&e.path);
        self.plan.push_creation(create_step(&e))?;
        if e.is_dir() {
            self.open.push(Open {
                path: e.path.clone(),
                src: Some(e.clone()),
                dst: None,
                touched: false,
                remove: false,
            });
        }
        if record {
            self.created.push(e)?;
        }
        Ok(())
    }

    /// A target entry the source lacks.
    fn remove(&mut self, e: Entry) -> std::io::Result<()> {
        self.touch(&e.path);
        if e.is_dir() {
            self.open.push(Open { path: e.path.clone(), src: None, dst: None, touched: false, remove: true });
        } else {
            self.plan.push_removal(delete_step(&e))?;
        }
        self.deleted.push(e);
        Ok(())
    }

    /// An entry both sides have.
    fn both(
        &mut self,
        s: Entry,
        d: Entry,
        same: &mut dyn FnMut(&Entry, &Entry) -> bool,
    ) -> std::io::Result<()> {
        let mut removals = Vec::new();
        let step = compare(&s, &d, self.options, same, &mut removals);
        let kind_changed = !removals.is_empty();
        if step.as_ref().is_some_and(|st| !matches!(st.action, Action::Meta { .. })) {
            self.touch(&s.path);
        }
        if kind_changed && !d.is_dir() {
            self.plan.push_removal(delete_step(&d))?;
            self.deleted.push(d.clone());
        }
        if let Some(step) = step {
            self.plan.push_creation(step)?;
        }
        match (s.is_dir(), d.is_dir()) {
            (true, true) => {
                self.open.push(Open {
                    path: s.path.clone(),
                    src: Some(s),
                    dst: Some(d),
                    touched: false,
                    remove: false,
                });
            }
            (true, false) => {
                self.open.push(Open {
                    path: s.path.clone(),
                    src: Some(s),
                    dst: None,
                    touched: false,
                    remove: false,
                });
            }
            // The target's directory goes (after its contents); the source's entry was created.
            (false, true) => {
                self.open.push(Open {
                    path: d.path.clone(),
                    src: None,
                    dst: None,
                    touched: false,
                    remove: true,
                });
                self.deleted.push(d);
            }
            (false, false) => {}
        }
        Ok(())
    }

    /// Closes every open directory whose contents the stream has passed (the next path sorts
    /// after all of them: at or after `dir0`, `0` following `/`; a sibling such as `dir.txt`
    /// comes between `dir` and `dir/...`): removes it or sets its metadata, now that
    /// everything below it is planned. An empty `next` is the end of the streams.
    fn close_outside(&mut self, next: &RelPath) -> std::io::Result<()> {
        while let Some(open) = self.open.last() {
            let past = next.as_bytes().is_empty() || past_contents(next.as_bytes(), open.path.as_bytes());
            if !past {
                break;
            }
            let Some(open) = self.open.pop() else { break };
            self.close(open)?;
        }
        Ok(())
    }

    fn close(&mut self, open: Open) -> std::io::Result<()> {
        if open.remove && !self.pinned.contains(&open.path) {
            self.plan.push_removal(Step { path: open.path.clone(), action: Action::Rmdir })?;
        }
        let Some(s) = open.src else { return Ok(()) };
        let touched = open.touched || self.cleaned.contains(&s.path);
        if let Some(step) = dir_meta_step(&s, open.dst.as_ref(), touched, self.options) {
            self.plan.push_meta(step)?;
        }
        Ok(())
    }
}

/// True when `path` sorts at or after the end of `dir`'s contents (`dir0`: `0` follows `/`).
pub fn past_contents(path: &[u8], dir: &[u8]) -> bool {
    let common = path.len().min(dir.len());
    match path[..common].cmp(&dir[..common]) {
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Greater => true,
        // `path` starts with `dir`: past only when the byte after it follows `/`.
        std::cmp::Ordering::Equal => path.get(dir.len()).is_some_and(|&b| b > b'/'),
    }
}

/// A source directory's metadata step: all of it for a new directory (`existing` is `None`),
/// else what differs (the mtime also when its entries changed: `touched`). Creating, renaming
/// or deleting an entry changes its directory's mtime, so a directory's is set after its
/// contents are final.
fn dir_meta_step(s: &Entry, existing: Option<&Entry>, touched: bool, options: DiffOptions) -> Option<Step> {
    let is_new = existing.is_none();
    let mode_differs = is_new || existing.is_some_and(|d| d.mode != s.mode);
    let mtime_differs = is_new || touched || existing.is_some_and(|d| d.mtime != s.mtime);
    let owner_differs = options.owners && (is_new || existing.is_some_and(|d| d.owner != s.owner));
    (mode_differs || mtime_differs || owner_differs).then(|| Step {
        path: s.path.clone(),
        action: Action::Meta {
            mode: mode_differs.then_some(s.mode),
            mtime: mtime_differs.then_some(s.mtime),
            owner: owner_differs.then_some(s.owner),
            dir: true,
        },
    })
}

/// The plan with `moves` in it: each moved entry's deletion (with everything below it) and
/// creation (likewise) replaced by one move, carried out first, after the directories its
/// destination needs (taken from the creations). A directory that moved keeps its mode, owner
/// and mtime, so its metadata step (and those of the directories below it) sets only what
/// differs from the moved entry (`deleted`: the target's entries the diff deletes, in path
/// order).
fn with_moves(plan: &Phased, moves: &[Move], deleted: &[Entry]) -> std::io::Result<Phased> {
    let relocation = moves::Relocation::new(moves);
    let mut needed: HashSet<RelPath> = HashSet::new();
    for m in moves {
        needed.extend(std::iter::successors(m.to.parent(), RelPath::parent));
    }
    let mut out = Phased::default();
    let mut pulled = Vec::new();
    for step in &plan.first {
        out.push_first(step.clone());
    }
    for step in plan.creations.iter() {
        let step = step?;
        if relocation.moves_to(&step.path) {
            continue;
        }
        if matches!(step.action, Action::Mkdir { .. }) && needed.contains(&step.path) {
            pulled.push(step);
        } else {
            out.push_creation(step)?;
        }
    }
    for step in pulled {
        out.push_first(step);
    }
    for m in moves {
        out.push_first(Step { path: m.from.clone(), action: Action::Move { to: m.to.clone(), was: m.was } });
    }
    for step in plan.removals.iter() {
        let step = step?;
        if !relocation.moves_from(&step.path) {
            out.push_removal(step)?;
        }
    }
    for step in plan.metas.iter() {
        let step = step?;
        let origin = relocation.back(&step.path).and_then(|old| {
            let at = deleted.binary_search_by(|e| e.path.cmp(&old)).ok()?;
            Some(&deleted[at])
        });
        match origin {
            Some(old) => {
                if let Some(step) = meta_beyond(step, old) {
                    out.push_meta(step)?;
                }
            }
            None => out.push_meta(step)?,
        }
    }
    out.seal()?;
    Ok(out)
}

/// A metadata step for an entry that was moved from `old`: what it sets that `old` does not
/// have already (`None` when nothing is left).
fn meta_beyond(step: Step, old: &Entry) -> Option<Step> {
    let Action::Meta { mode, mtime, owner, dir } = step.action else { return Some(step) };
    let (mode, mtime, owner) = (
        mode.filter(|m| *m != old.mode),
        mtime.filter(|t| *t != old.mtime),
        owner.filter(|o| *o != old.owner),
    );
    (mode.is_some() || mtime.is_some() || owner.is_some())
        .then_some(Step { path: step.path, action: Action::Meta { mode, mtime, owner, dir } })
}

/// The step that creates `s` where the target has nothing.
pub fn create_step(s: &Entry) -> Step {
    let action = match &s.kind {
        Kind::Dir => Action::Mkdir { mode: s.mode, owner: s.owner },
        Kind::File => Action::Copy { size: s.size, mode: s.mode, mtime: s.mtime, owner: s.owner },
        Kind::Symlink(t) => Action::Link { target: t.clone(), mtime: s.mtime, owner: s.owner, was: None },
    };
    Step { path: s.path.clone(), action }
}

/// The step that removes `d` (a directory's contents go by their own steps, deepest first).
pub fn delete_step(d: &Entry) -> Step {
    let action = if d.is_dir() { Action::Rmdir } else { Action::Delete { was: Stamp::of(d) } };
    Step { path: d.path.clone(), action }
}

/// Compares a source and a target entry at the same path. Returns the creation-phase step, if
/// any; a kind change also pushes the removal of the old entry onto `deletes`.
pub fn compare(
    s: &Entry,
    d: &Entry,
    options: DiffOptions,
    same_content: &mut dyn FnMut(&Entry, &Entry) -> bool,
    deletes: &mut Vec<Step>,
) -> Option<Step> {
    let update = || Action::Update {
        size: s.size,
        mode: s.mode,
        mtime: s.mtime,
        owner: s.owner,
        was: Some(Stamp::of(d)),
    };
    let relink = |target: &[u8]| Action::Link {
        target: target.into(),
        mtime: s.mtime,
        owner: s.owner,
        was: Some(Stamp::of(d)),
    };
    let action = match (&s.kind, &d.kind) {
        (Kind::Dir, Kind::Dir) => return None, // metadata in the directory phase
        (Kind::File, Kind::File) => {
            let equal = if s.size != d.size {
                false
            } else if s.mtime == d.mtime && !options.checksum {
                true
            } else {
                same_content(s, d)
            };
            if equal { meta_action(s, d, options)? } else { update() }
        }
        (Kind::Symlink(a), Kind::Symlink(b)) if a == b => meta_action(s, d, options)?,
        (Kind::Symlink(a), Kind::Symlink(_) | Kind::File) => relink(a),
        // A file replacing a symlink is renamed over it: one atomic step.
        (Kind::File, Kind::Symlink(_)) => update(),
        // Any change to or from a directory: remove the old entry first, then create.
        _ => {
            deletes.push(delete_step(d));
            return Some(create_step(s));
        }
    };
    Some(Step { path: s.path.clone(), action })
}

/// The metadata step that gives the target `d` the source's mode (files only: a symlink has
/// none of its own), mtime and (with `options.owners`) owner; `None` when they already agree.
pub fn meta_action(s: &Entry, d: &Entry, options: DiffOptions) -> Option<Action> {
    let mode = (s.is_file() && s.mode != d.mode).then_some(s.mode);
    let mtime = (s.mtime != d.mtime).then_some(s.mtime);
    let owner = (options.owners && s.owner != d.owner).then_some(s.owner);
    (mode.is_some() || mtime.is_some() || owner.is_some()).then_some(Action::Meta {
        mode,
        mtime,
        owner,
        dir: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Mtime, Owner};
    use crate::plan::StepKind;

    fn e(path: &str, kind: Kind, size: u64, mtime: i64, mode: u32) -> Entry {
        Entry { mode, ..Entry::example(path, kind, size, mtime) }
    }
    fn file(path: &str, size: u64, mtime: i64) -> Entry {
        e(path, Kind::File, size, mtime, 0o644)
    }
    fn dir(path: &str, mtime: i64) -> Entry {
        e(path, Kind::Dir, 0, mtime, 0o755)
    }
    fn link(path: &str, target: &str) -> Entry {
        e(path, Kind::Symlink(target.as_bytes().into()), target.len() as u64, 5, 0o777)
    }
    fn tree(mut entries: Vec<Entry>) -> Tree {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Tree { entries, ..Tree::default() }
    }
    /// The plan as `kind path` lines: the table's expected column.
    fn plan_of(src: Vec<Entry>, dst: Vec<Entry>, checksum: bool, equal: bool) -> Vec<String> {
        // Equal content: one digest for both sides; different: one per side.
        let plan = plan(&tree(src), &tree(dst), DiffOptions { checksum, owners: true }, &mut |which, _| {
            Some(Digest::of_bytes(if equal || which == Which::Source { b"s" } else { b"t" }))
        })
        .unwrap();
        plan.steps.iter().map(|s| format!("{} {}", s.kind().word(), s.path)).collect()
    }

    /// name, source, target, `--checksum`, what the content oracle answers, expected steps.
    type Case = (&'static str, Vec<Entry>, Vec<Entry>, bool, bool, Vec<&'static str>);

    #[test]
    #[allow(clippy::too_many_lines)] // a table, one row per case
    fn decision_table() {
        let cases: Vec<Case> = vec![
            ("identical", vec![file("a", 3, 1)], vec![file("a", 3, 1)], false, false, vec![]),
            ("new file", vec![file("a", 3, 1)], vec![], false, false, vec!["copy a"]),
            ("stray file", vec![], vec![file("a", 3, 1)], false, false, vec!["delete a"]),
            ("size differs", vec![file("a", 4, 1)], vec![file("a", 3, 1)], false, true, vec!["update a"]),
            (
                "touched, same bytes",
                vec![file("a", 3, 2)],
                vec![file("a", 3, 1)],
                false,
                true,
                vec!["meta a"],
            ),
            (
                "touched, new bytes",
                vec![file("a", 3, 2)],
                vec![file("a", 3, 1)],
                false,
                false,
                vec!["update a"],
            ),
            (
                "same stamp, edited, no --checksum",
                vec![file("a", 3, 1)],
                vec![file("a", 3, 1)],
                false,
                false,
                vec![],
            ),
            (
                "same stamp, edited, --checksum",
                vec![file("a", 3, 1)],
                vec![file("a", 3, 1)],
                true,
                false,
                vec!["update a"],
            ),
            (
                "mode only",
                vec![e("a", Kind::File, 3, 1, 0o755)],
                vec![file("a", 3, 1)],
                false,
                true,
                vec!["meta a"],
            ),
            ("new symlink", vec![link("l", "t")], vec![], false, false, vec!["link l"]),
            ("symlink retargeted", vec![link("l", "u")], vec![link("l", "t")], false, false, vec!["link l"]),
            ("symlink same", vec![link("l", "t")], vec![link("l", "t")], false, false, vec![]),
            (
                "symlink touched (its own mtime)",
                vec![Entry { mtime: Mtime { secs: 9, nanos: 0 }, ..link("l", "t") }],
                vec![link("l", "t")],
                false,
                false,
                vec!["meta l"],
            ),
            (
                "owner only",
                vec![Entry { owner: Owner { uid: 7, gid: 8 }, ..file("a", 3, 1) }],
                vec![file("a", 3, 1)],
                false,
                false,
                vec!["meta a"],
            ),
            (
                "file becomes symlink",
                vec![link("l", "t")],
                vec![file("l", 1, 1)],
                false,
                false,
                vec!["link l"],
            ),
            (
                "symlink becomes file",
                vec![file("l", 1, 1)],
                vec![link("l", "t")],
                false,
                false,
                vec!["update l"],
            ),
            (
                "new dir with file",
                vec![dir("d", 7), file("d/f", 1, 1)],
                vec![],
                false,
                false,
                vec!["mkdir d", "copy d/f", "meta d"],
            ),
            (
                "stray dir tree, each directory after its contents",
                vec![],
                vec![dir("d", 7), dir("d/e", 7), file("d/e/f", 1, 1), file("d/g", 1, 1)],
                false,
                false,
                vec!["delete d/e/f", "rmdir d/e", "delete d/g", "rmdir d"],
            ),
            (
                "file becomes dir",
                vec![dir("x", 7), file("x/f", 1, 1)],
                vec![file("x", 1, 1)],
                false,
                false,
                vec!["delete x", "mkdir x", "copy x/f", "meta x"],
            ),
            (
                "dir becomes file",
                vec![file("x", 1, 1)],
                vec![dir("x", 7), file("x/f", 1, 1)],
                false,
                false,
                vec!["delete x/f", "rmdir x", "copy x"],
            ),
            ("dir mtime differs", vec![dir("d", 8)], vec![dir("d", 7)], false, false, vec!["meta d"]),
            (
                "change inside dir restores its mtime",
                vec![dir("d", 7), file("d/f", 2, 1)],
                vec![dir("d", 7), file("d/f", 1, 1)],
                false,
                false,
                vec!["update d/f", "meta d"],
            ),
        ];
        for (name, src, dst, checksum, equal, expected) in cases {
            assert_eq!(plan_of(src, dst, checksum, equal), expected, "case: {name}");
        }
    }

    #[test]
    fn a_directory_closes_after_its_contents_not_before_its_siblings() {
        let target =
            vec![dir("old", 7), file("old-link", 1, 1), dir("old/deep", 7), file("old/deep/er", 1, 1)];
        assert_eq!(
            plan_of(vec![], target, false, false),
            vec!["delete old-link", "delete old/deep/er", "rmdir old/deep", "rmdir old"]
        );
        assert!(!past_contents(b"old-link", b"old") && !past_contents(b"old/x", b"old"));
        assert!(
            past_contents(b"old0", b"old") && past_contents(b"p", b"old") && !past_contents(b"ol", b"old")
        );
    }

    #[test]
    fn content_is_asked_only_when_the_quick_check_cannot_decide() {
        let mut asked = Vec::new();
        let src = tree(vec![file("a", 3, 1), file("b", 3, 2), file("c", 4, 1)]);
        let dst = tree(vec![file("a", 3, 1), file("b", 3, 1), file("c", 3, 1)]);
        plan(&src, &dst, DiffOptions::default(), &mut |which, e| {
            asked.push(format!("{which:?} {}", e.path));
            Some(Digest::of_bytes(b"same"))
        })
        .unwrap();
        assert_eq!(asked, vec!["Source b", "Target b"]);
    }

    #[test]
    fn a_same_content_oracle_replaces_the_digests() {
        // With --checksum every equal-size pair is asked, once, of the oracle; the digests
        // are not asked at all; "different" is an update, "same" with another mtime a meta.
        let src = tree(vec![file("a", 3, 1), file("b", 3, 2), file("c", 4, 1), file("d", 3, 1)]);
        let dst = tree(vec![file("a", 3, 1), file("b", 3, 1), file("c", 3, 1), file("d", 3, 1)]);
        let mut asked = Vec::new();
        let mut same = |s: &Entry, d: &Entry| {
            asked.push(format!("{} ~ {}", s.path, d.path));
            s.path.to_string() != "d"
        };
        let streamed = stream_comparing(
            &mut Entries::of(&src),
            &mut Entries::of(&dst),
            &|_| None,
            DiffOptions { checksum: true, owners: true },
            &mut |_, e| panic!("no digest needed for {}", e.path),
            Some(&mut same),
        )
        .unwrap();
        assert_eq!(asked, vec!["a ~ a", "b ~ b", "d ~ d"]);
        let lines: Vec<String> = streamed
            .plan
            .to_plan()
            .unwrap()
            .steps
            .iter()
            .map(|s| format!("{} {}", s.kind().word(), s.path))
            .collect();
        assert_eq!(lines, vec!["meta b", "update c", "update d"]);
    }

    #[test]
    fn nothing_under_an_unreadable_source_dir_is_deleted() {
        let mut src = tree(vec![dir("d", 7)]);
        src.unreadable.push(RelPath::from_bytes(b"d"));
        let dst = tree(vec![dir("d", 7), file("d/f", 1, 1), file("other", 1, 1)]);
        let plan = plan(&src, &dst, DiffOptions::default(), &mut |_, _| None).unwrap();
        let lines: Vec<String> =
            plan.steps.iter().map(|s| format!("{} {}", s.kind().word(), s.path)).collect();
        assert_eq!(lines, vec!["delete other"]);
    }

    #[test]
    fn leftover_temporaries_are_cleaned_and_counted_apart() {
        let mut dst = tree(vec![]);
        dst.leftovers.push(RelPath::from_bytes(b".synccore-tmp-1-1"));
        let plan = plan(&tree(vec![]), &dst, DiffOptions::default(), &mut |_, _| None).unwrap();
        assert_eq!(plan.count(StepKind::Cleanup), 1);
        assert_eq!(plan.deleted_files(), 0);
    }
}
