//! The streaming three-way merge (the scale issue): side A, side B and the base are read
//! together, one path at a time in whole-path byte order, and each path is decided
//! ([`merge::decide`]) and turned into steps as it passes, so a pass holds the directories on
//! the current path and what it changes, never the trees.
//!
//! Each side's plan is a [`Phased`] plan: removals (a directory after its contents), creations
//! (a directory before its contents), directory metadata (after their contents); conflicts'
//! set-asides and renames' moves are a small in-memory plan carried out first. A directory a
//! decision would remove is held open until its contents are decided: when something below it
//! survives (SPEC section 4: changed or new files inside a directory deleted on one side win
//! over the deletion), the directory is kept, and recreated on the other side the moment the
//! first entry below it must be created there.

use std::collections::HashSet;

use synccore::diff::{Source, create_step, delete_step, past_contents};
use synccore::entry::{Entry, Kind};
use synccore::plan::{Action, Phased, Plan, Stamp, Step};
use synccore::relpath::RelPath;
use synccore::spill::Spill;

use crate::base::BaseEntry;
use crate::merge::{
    self, Conflict, Decision, HashFn, MergeOptions, Side, change, compare_sides, conflict_name, meta_step,
    same_content, winner,
};

/// The base as the merge reads it: rows in path order.
pub type BaseRows<'a> = dyn Iterator<Item = (RelPath, BaseEntry)> + 'a;

/// What the merge made and saw.
#[derive(Debug, Default)]
pub struct Merged {
    /// Steps on side A and side B (sources read from the other side).
    pub plans: [Phased; 2],
    /// Steps on each side carried out before the plans: moves, then conflicts' set-asides.
    pub renames: [Plan; 2],
    pub conflicts: Vec<Conflict>,
    /// Files and symlinks on each side (the max-delete rail's whole).
    pub files: [u64; 2],
    /// Entries on each side, and files and symlinks in the base (the empty-side rail).
    pub entries: [u64; 2],
    pub base_files: u64,
    /// True when the base would come out of this pass unchanged were nothing carried out.
    pub base_unchanged: bool,
    /// What renames are found among (collected only when asked).
    pub candidates: Option<Candidates>,
}

/// What the renames of a pass are found among (the renames issue), collected as the merge
/// passes: it grows with what changed, never with the trees.
#[derive(Debug, Default)]
pub struct Candidates {
    /// Per side: the base's paths this side no longer has, with the base's entry and the other
    /// side's entry there.
    pub gone: [Vec<(RelPath, BaseEntry, Option<Entry>)>; 2],
    /// Per side: entries the base does not know (spilled when many).
    pub new: [Spill<Entry>; 2],
    /// Each side's root device.
    pub dev: [u64; 2],
}

/// A directory the merge is inside of.
struct Open {
    path: RelPath,
    sides: [Option<Entry>; 2],
    /// The side on which a decision removes this directory, held until its contents are
    /// decided; `None` when it stays.
    removes: Option<Side>,
    decision: Option<Decision>,
    /// Something below it survives the pass.
    needed: bool,
    /// A creation held until the directory's fate is known (a file replacing it).
    held: Option<Step>,
    /// Directory metadata to set once its contents are in place, per side.
    metas: [Vec<Step>; 2],
}

/// One merge in progress.
pub struct Merger<'o> {
    options: &'o MergeOptions,
    out: Merged,
    open: Vec<Open>,
    taken: HashSet<Vec<u8>>,
    pinned: [HashSet<RelPath>; 2],
    seen_ignored: [usize; 2],
    exists: &'o dyn Fn(Side, &RelPath) -> bool,
    known: &'o dyn Fn(Side, &Entry) -> Option<synccore::checksum::Digest>,
}

impl<'o> Merger<'o> {
    /// A merge with `options`; `exists` says whether a side has something at a path now (for
    /// free conflict names), `known` gives the hashes the pass already took (for the base).
    /// With `collect`, rename candidates are gathered.
    pub fn new(
        options: &'o MergeOptions,
        exists: &'o dyn Fn(Side, &RelPath) -> bool,
        known: &'o dyn Fn(Side, &Entry) -> Option<synccore::checksum::Digest>,
        collect: bool,
    ) -> Self {
        let out = Merged {
            base_unchanged: true,
            candidates: collect.then(Candidates::default),
            ..Merged::default()
        };
        Merger {
            options,
            out,
            open: Vec::new(),
            taken: HashSet::new(),
            pinned: [HashSet::new(), HashSet::new()],
            seen_ignored: [0, 0],
            exists,
            known,
        }
    }

    /// Merges the two sides against the base, to their ends.
    pub fn run(
        mut self,
        sides: [&mut dyn Source; 2],
        base: &mut BaseRows<'_>,
        hash: &mut HashFn<'_>,
    ) -> std::io::Result<Merged> {
        let [a_side, b_side] = sides;
        let mut heads = [a_side.next_entry(), b_side.next_entry()];
        let mut base_head = base.next();
        if let Some(c) = &mut self.out.candidates {
            c.dev = [a_side.notes().dev, b_side.notes().dev];
        }
        loop {
            self.learn([a_side.notes(), b_side.notes()]);
            let next = [
                heads[0].as_ref().map(|e| &e.path),
                heads[1].as_ref().map(|e| &e.path),
                base_head.as_ref().map(|(p, _)| p),
            ];
            let Some(path) = next.into_iter().flatten().min().cloned() else { break };
            self.close_past(&path)?;
            let take = |head: &mut Option<Entry>| head.take_if(|e| e.path == path);
            let row = [take(&mut heads[0]), take(&mut heads[1])];
            let old = base_head.take_if(|(p, _)| *p == path).map(|(_, e)| e);
            let protected = a_side.notes().is_protected(&path) || b_side.notes().is_protected(&path);
            self.row(&path, row, old.as_ref(), protected, hash)?;
            if heads[0].is_none() {
                heads[0] = a_side.next_entry();
            }
            if heads[1].is_none() {
                heads[1] = b_side.next_entry();
            }
            if base_head.is_none() {
                base_head = base.next();
            }
        }
        self.learn([a_side.notes(), b_side.notes()]);
        self.close_past(&RelPath::from_bytes(b""))?;
        for (side, notes) in [(Side::A, a_side.notes()), (Side::B, b_side.notes())] {
            for path in &notes.leftovers {
                self.out.plans[side.index()].push_first(Step { path: path.clone(), action: Action::Cleanup });
            }
        }
        for plan in &mut self.out.plans {
            plan.seal()?;
        }
        // The rename candidates are read back next: all of them, not what a spilled list
        // had written out so far.
        for new in self.out.candidates.iter_mut().flat_map(|c| &mut c.new) {
            new.seal()?;
        }
        Ok(self.out)
    }

    /// Takes in each side's ignored entries found so far: a directory holding some is never
    /// removed on that side (issue 14).
    fn learn(&mut self, notes: [&synccore::scan::Tree; 2]) {
        for (i, notes) in notes.into_iter().enumerate() {
            for path in notes.ignored.iter().skip(self.seen_ignored[i]) {
                self.pinned[i].extend(std::iter::successors(path.parent(), RelPath::parent));
            }
            self.seen_ignored[i] = notes.ignored.len();
        }
    }

    /// One path: counted, decided, turned into steps.
    fn row(
        &mut self,
        path: &RelPath,
        sides: [Option<Entry>; 2],
        old: Option<&BaseEntry>,
        protected: bool,
        hash: &mut HashFn<'_>,
    ) -> std::io::Result<()> {
        for (i, e) in sides.iter().enumerate() {
            self.out.entries[i] += u64::from(e.is_some());
            self.out.files[i] += u64::from(e.as_ref().is_some_and(|e| !e.is_dir()));
        }
        self.out.base_files += u64::from(old.is_some_and(|b| b.kind != Kind::Dir));
        self.note_base(&sides, old, protected);
        self.collect(path, &sides, old)?;
        let [a, b] = [sides[0].as_ref(), sides[1].as_ref()];
        let decision = (!protected).then(|| {
            let ca = change(Side::A, a, old, self.options.owners, hash);
            let cb = change(Side::B, b, old, self.options.owners, hash);
            let equal = || matches!((a, b), (Some(a), Some(b)) if same_content(a, b, hash));
            merge::decide(ca, cb, equal, || winner(a, b))
        });
        if !matches!(decision, Some(Decision::Forget | Decision::Delete { .. })) {
            for open in self.open.iter_mut().filter(|o| path.is_within(&o.path)) {
                open.needed = true;
            }
        }
        let is_dir = sides.iter().flatten().any(Entry::is_dir);
        let mut open = Open {
            path: path.clone(),
            sides,
            removes: None,
            decision: None,
            needed: false,
            held: None,
            metas: [Vec::new(), Vec::new()],
        };
        if let Some(d) = decision {
            self.steps(&mut open, d, hash)?;
        }
        if is_dir {
            self.open.push(open);
        }
        Ok(())
    }

    /// Whether the base changes at this path were nothing carried out (see [`next_row`]).
    fn note_base(&mut self, sides: &[Option<Entry>; 2], old: Option<&BaseEntry>, protected: bool) {
        if !self.out.base_unchanged {
            return;
        }
        let known = |side: Side, e: &Entry| (self.known)(side, e);
        let next = if protected {
            old.cloned()
        } else {
            next_row([sides[0].as_ref(), sides[1].as_ref()], old, self.options.owners, &known)
        };
        if next.as_ref() != old {
            self.out.base_unchanged = false;
        }
    }

    /// Gathers what renames are found among: what each side lost and what is new on it.
    fn collect(
        &mut self,
        path: &RelPath,
        sides: &[Option<Entry>; 2],
        old: Option<&BaseEntry>,
    ) -> std::io::Result<()> {
        let Some(c) = &mut self.out.candidates else { return Ok(()) };
        for i in 0..2 {
            let (mine, theirs) = (&sides[i], &sides[1 - i]);
            match (mine, old) {
                (None, Some(b)) => c.gone[i].push((path.clone(), b.clone(), theirs.clone())),
                (Some(e), None) => c.new[i].push(e.clone())?,
                _ => {}
            }
        }
        Ok(())
    }
}

impl Merger<'_> {
    /// The steps of one decided path.
    fn steps(&mut self, open: &mut Open, d: Decision, hash: &mut HashFn<'_>) -> std::io::Result<()> {
        match d {
            Decision::Keep => self.sync_meta(open),
            Decision::Forget => Ok(()),
            Decision::Copy { to } => self.copy(open, to, hash),
            Decision::Delete { on } => match &open.sides[on.index()] {
                Some(e) if e.is_dir() => {
                    (open.removes, open.decision) = (Some(on), Some(d));
                    Ok(())
                }
                Some(e) => self.out.plans[on.index()].push_removal(delete_step(e)),
                None => Ok(()),
            },
            Decision::Conflict { winner } => self.conflict(open, winner),
        }
    }

    /// Equal content on both sides: the newer metadata goes to the other side (a directory's
    /// once its contents are in place).
    fn sync_meta(&mut self, open: &mut Open) -> std::io::Result<()> {
        let [Some(a), Some(b)] = &open.sides else { return Ok(()) };
        if a.kind != b.kind {
            return Ok(());
        }
        let (from, to) = if b.mtime > a.mtime { (b, Side::A) } else { (a, Side::B) };
        let target = if to == Side::A { a } else { b };
        match meta_step(from, target, self.options) {
            Some(step) if from.is_dir() => open.metas[to.index()].push(step),
            Some(step) => self.out.plans[to.index()].push_creation(step)?,
            None => {}
        }
        Ok(())
    }

    /// Makes side `to` hold what the other side has at this path.
    fn copy(&mut self, open: &mut Open, to: Side, hash: &mut HashFn<'_>) -> std::io::Result<()> {
        let Some(from) = open.sides[to.other().index()].clone() else { return Ok(()) };
        let Some(old) = open.sides[to.index()].clone() else {
            if from.is_dir() {
                open.metas[to.index()].push(self.final_mode(&from));
            }
            return self.create(to, create_step(&from));
        };
        if from.is_dir() && old.is_dir() {
            open.metas[to.index()].extend(meta_step(&from, &old, self.options));
            return Ok(());
        }
        let (step, removals) = compare_sides(&from, &old, to, self.options, hash);
        if old.is_dir() {
            // A file replaces the directory: held until its contents are decided.
            (open.removes, open.decision, open.held) = (Some(to), Some(Decision::Copy { to }), step);
            return Ok(());
        }
        for removal in removals {
            self.out.plans[to.index()].push_removal(removal)?;
        }
        if from.is_dir() {
            open.metas[to.index()].push(self.final_mode(&from));
        }
        match step {
            Some(step) => self.create(to, step),
            None => Ok(()),
        }
    }

    /// Both sides changed a path differently: the loser is set aside on its side and copied
    /// to the winner's, and the winner takes the path on the loser's side.
    fn conflict(&mut self, open: &mut Open, winner: Side) -> std::io::Result<()> {
        let loser = winner.other();
        let (Some(w), Some(l)) = (open.sides[winner.index()].clone(), open.sides[loser.index()].clone())
        else {
            return Ok(());
        };
        let aside = self.aside_name(&l.path, loser);
        self.out.renames[loser.index()].steps.push(Step {
            path: l.path.clone(),
            action: Action::Rename { to: aside.clone(), was: Stamp::of(&l) },
        });
        let mut moved = l;
        moved.path = aside.clone();
        self.create(winner, create_step(&moved))?;
        if w.is_dir() {
            open.metas[loser.index()].push(self.final_mode(&w));
        }
        self.create(loser, create_step(&w))?;
        self.out.conflicts.push(Conflict { path: open.path.clone(), winner, copy: aside });
        Ok(())
    }

    /// A free conflict name beside `path` for `side`'s version.
    fn aside_name(&mut self, path: &RelPath, side: Side) -> RelPath {
        let exists = self.exists;
        conflict_name(
            path,
            &self.options.stamp,
            side,
            &|p| exists(Side::A, p) || exists(Side::B, p),
            &mut self.taken,
        )
    }

    /// The metadata step that gives a directory made on the other side its final mode (and
    /// owner), once its contents are in place.
    fn final_mode(&self, from: &Entry) -> Step {
        let owner = self.options.owners.then_some(from.owner);
        Step {
            path: from.path.clone(),
            action: Action::Meta { mode: Some(from.mode), mtime: None, owner, dir: true },
        }
    }

    /// Adds a creation on `side`, first keeping (and making on `side`) every directory above
    /// it that a held decision would have removed: something below it survives.
    fn create(&mut self, side: Side, step: Step) -> std::io::Result<()> {
        let blocking: Vec<usize> = (0..self.open.len())
            .filter(|&i| {
                let o = &self.open[i];
                o.removes == Some(side.other()) && step.path != o.path && step.path.is_within(&o.path)
            })
            .collect();
        for i in blocking {
            let mut open = std::mem::replace(&mut self.open[i], placeholder());
            self.keep(&mut open)?;
            self.open[i] = open;
        }
        self.out.plans[side.index()].push_creation(step)
    }

    /// Keeps a directory a held decision would have removed (SPEC section 4): a directory
    /// deleted on one side is made again there; one replaced by a file on the other side wins
    /// over the file, which is kept as a conflict copy.
    fn keep(&mut self, open: &mut Open) -> std::io::Result<()> {
        let Some(x) = open.removes.take() else { return Ok(()) };
        let y = x.other();
        let Some(dir) = open.sides[x.index()].clone() else { return Ok(()) };
        open.metas[y.index()].push(self.final_mode(&dir));
        if let Some(Decision::Copy { .. }) = open.decision {
            // The file that would have replaced the directory is set aside on its side.
            open.held = None;
            if let Some(file) = open.sides[y.index()].clone() {
                let aside = self.aside_name(&file.path, y);
                self.out.renames[y.index()].steps.push(Step {
                    path: file.path.clone(),
                    action: Action::Rename { to: aside.clone(), was: Stamp::of(&file) },
                });
                let mut moved = file;
                moved.path = aside.clone();
                self.create(x, create_step(&moved))?;
                self.out.conflicts.push(Conflict { path: open.path.clone(), winner: x, copy: aside });
            }
        }
        open.decision = Some(Decision::Copy { to: y });
        self.create(y, create_step(&dir))
    }

    /// Closes every open directory whose contents the merge has passed (see
    /// [`past_contents`]); an empty `next` is the end.
    fn close_past(&mut self, next: &RelPath) -> std::io::Result<()> {
        while let Some(open) = self.open.last() {
            if !(next.as_bytes().is_empty() || past_contents(next.as_bytes(), open.path.as_bytes())) {
                break;
            }
            let Some(mut open) = self.open.pop() else { break };
            if open.removes.is_some() && open.needed {
                self.keep(&mut open)?;
            }
            if let Some(side) = open.removes {
                if !self.pinned[side.index()].contains(&open.path) {
                    self.out.plans[side.index()]
                        .push_removal(Step { path: open.path.clone(), action: Action::Rmdir })?;
                }
                if let Some(held) = open.held.take() {
                    self.out.plans[side.index()].push_creation(held)?;
                }
            }
            for (i, metas) in open.metas.into_iter().enumerate() {
                for step in metas {
                    self.out.plans[i].push_meta(step)?;
                }
            }
        }
        Ok(())
    }
}

/// An empty open directory, left in the stack while the real one is worked on.
fn placeholder() -> Open {
    Open {
        path: RelPath::from_bytes(b""),
        sides: [None, None],
        removes: None,
        decision: None,
        needed: false,
        held: None,
        metas: [Vec::new(), Vec::new()],
    }
}

/// What the base holds for a path after a pass that leaves both sides as they are: the
/// entry both sides agree on (with each side's inode and device, and the content hash where
/// known); nothing when neither side has it; else the old row (a failed or skipped step: the
/// next pass decides it again).
pub fn next_row(
    sides: [Option<&Entry>; 2],
    old: Option<&BaseEntry>,
    owners: bool,
    known: &dyn Fn(Side, &Entry) -> Option<synccore::checksum::Digest>,
) -> Option<BaseEntry> {
    let agreed = match sides {
        [Some(a), Some(b)] if owners && a.owner != b.owner => false,
        [Some(a), Some(b)] => match (&a.kind, &b.kind) {
            (Kind::Dir, Kind::Dir) => true,
            (Kind::Symlink(x), Kind::Symlink(y)) => x == y,
            (Kind::File, Kind::File) => a.size == b.size && a.mtime == b.mtime && a.mode == b.mode,
            _ => false,
        },
        _ => false,
    };
    let [Some(a), Some(b)] = sides else {
        // Gone from both sides (deleted, or ignored by a rule on either side): nothing to
        // remember; gone from one side only (a step that failed): decided again next time.
        return if sides.iter().all(Option::is_none) { None } else { old.cloned() };
    };
    if !agreed {
        return old.cloned();
    }
    let hash = if a.is_file() {
        known(Side::A, a)
            .or_else(|| known(Side::B, b))
            .or_else(|| old.filter(|o| o.size == a.size && o.mtime == a.mtime).and_then(|o| o.hash))
    } else {
        None
    };
    Some(BaseEntry {
        kind: a.kind.clone(),
        size: a.size,
        mtime: a.mtime,
        mode: a.mode,
        owner: owners.then_some(a.owner),
        hash,
        ino: [a.ino, b.ino],
        dev: [a.dev, b.dev],
    })
}

/// The base after a pass, row by row, from fresh walks of both sides and the old base (the
/// rows of [`next_row`], in path order): written out as it is read.
pub struct NextBase<'a> {
    sides: [&'a mut dyn Source; 2],
    old: &'a mut BaseRows<'a>,
    heads: [Option<Entry>; 2],
    old_head: Option<(RelPath, BaseEntry)>,
    owners: bool,
    known: &'a dyn Fn(Side, &Entry) -> Option<synccore::checksum::Digest>,
}

impl<'a> NextBase<'a> {
    pub fn new(
        sides: [&'a mut dyn Source; 2],
        old: &'a mut BaseRows<'a>,
        owners: bool,
        known: &'a dyn Fn(Side, &Entry) -> Option<synccore::checksum::Digest>,
    ) -> Self {
        let [a, b] = sides;
        let heads = [a.next_entry(), b.next_entry()];
        let old_head = old.next();
        NextBase { sides: [a, b], old, heads, old_head, owners, known }
    }
}

impl Iterator for NextBase<'_> {
    type Item = (RelPath, BaseEntry);

    fn next(&mut self) -> Option<(RelPath, BaseEntry)> {
        loop {
            let next = [
                self.heads[0].as_ref().map(|e| &e.path),
                self.heads[1].as_ref().map(|e| &e.path),
                self.old_head.as_ref().map(|(p, _)| p),
            ];
            let path = next.into_iter().flatten().min().cloned()?;
            let take = |head: &mut Option<Entry>| head.take_if(|e| e.path == path);
            let sides = [take(&mut self.heads[0]), take(&mut self.heads[1])];
            let old = self.old_head.take_if(|(p, _)| *p == path).map(|(_, e)| e);
            let protected = self.sides.iter().any(|s| s.notes().is_protected(&path));
            let row = if protected {
                old.clone()
            } else {
                next_row([sides[0].as_ref(), sides[1].as_ref()], old.as_ref(), self.owners, self.known)
            };
            for i in 0..2 {
                if self.heads[i].is_none() {
                    self.heads[i] = self.sides[i].next_entry();
                }
            }
            if self.old_head.is_none() {
                self.old_head = self.old.next();
            }
            if let Some(entry) = row {
                return Some((path, entry));
            }
        }
    }
}
