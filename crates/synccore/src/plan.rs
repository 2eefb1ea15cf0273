//! A plan is data: the ordered list of steps that turns a target tree into what a pass wants
//! it to be. `--dry-run` prints it, tests assert on it, and `apply` carries it out (STYLE
//! "Shape"). [`crate::diff`] makes the one-way plan; twoway's merge makes one per side.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::entry::{Entry, Mtime, Owner};
use crate::relpath::RelPath;
use crate::spill::Spill;

/// What the target side looked like when the plan was made, so that `apply` can re-check it
/// just before a destructive step and leave a path that changed meanwhile for the next pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub size: u64,
    pub mtime: Mtime,
    pub ino: u64,
}

impl Stamp {
    /// The stamp of a scanned entry.
    pub fn of(entry: &Entry) -> Self {
        Stamp { size: entry.size, mtime: entry.mtime, ino: entry.ino }
    }
}

/// One thing to do at one path of the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Create a directory (its final mode, mtime and owner are set by a later `Meta`).
    Mkdir { mode: u32, owner: Owner },
    /// Copy a file that the target lacks. `size`/`mtime` are the source's as scanned; `owner`
    /// is kept exactly when the pass runs as root, as far as the system allows otherwise.
    Copy { size: u64, mode: u32, mtime: Mtime, owner: Owner },
    /// Replace the target's different file (or other kind) with the source's file.
    Update { size: u64, mode: u32, mtime: Mtime, owner: Owner, was: Option<Stamp> },
    /// Create or replace a symlink, with the source link's mtime and owner.
    Link {
        #[serde(with = "crate::jsonbytes::raw")]
        target: Box<[u8]>,
        mtime: Mtime,
        owner: Owner,
        was: Option<Stamp>,
    },
    /// Set permission bits, mtime and/or owner only; content is already equal.
    Meta { mode: Option<u32>, mtime: Option<Mtime>, owner: Option<Owner>, dir: bool },
    /// Delete a file or symlink.
    Delete { was: Stamp },
    /// Remove a directory (its contents are deleted by earlier steps).
    Rmdir,
    /// Remove a temporary left behind by an interrupted pass.
    Cleanup,
    /// Move an entry aside to a new name in the same tree (a conflict's loser), never
    /// replacing anything there.
    Rename { to: RelPath, was: Stamp },
    /// Move a file or a whole directory to a new path in the same tree, because the source
    /// moved it (the renames issue): no data is copied. Never replaces anything there.
    Move { to: RelPath, was: Stamp },
    /// Hard-link an existing file of the link tree (the previous version slot) at this path:
    /// same content, mode, mtime and owner, no data written (SPEC section 3 "Versioned").
    HardLink { existing: RelPath },
}

/// The kinds of step, for counting and for log lines (SPEC section 3 "one line per operation").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StepKind {
    Mkdir,
    Copy,
    Update,
    Link,
    Meta,
    Delete,
    Rmdir,
    Cleanup,
    Rename,
    Move,
    HardLink,
}

impl StepKind {
    /// Every kind, in summary order.
    pub const ALL: [StepKind; 11] = [
        StepKind::Copy,
        StepKind::Update,
        StepKind::Delete,
        StepKind::Mkdir,
        StepKind::Rmdir,
        StepKind::Link,
        StepKind::Meta,
        StepKind::Move,
        StepKind::Rename,
        StepKind::Cleanup,
        StepKind::HardLink,
    ];

    /// The word used in logs and summaries.
    pub fn word(self) -> &'static str {
        match self {
            StepKind::Mkdir => "mkdir",
            StepKind::Copy => "copy",
            StepKind::Update => "update",
            StepKind::Link => "link",
            StepKind::Meta => "meta",
            StepKind::Delete => "delete",
            StepKind::Rmdir => "rmdir",
            StepKind::Cleanup => "cleanup",
            StepKind::Rename => "rename",
            StepKind::Move => "move",
            StepKind::HardLink => "hardlink",
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub path: RelPath,
    pub action: Action,
}

impl Step {
    /// The step's kind.
    pub fn kind(&self) -> StepKind {
        match self.action {
            Action::Mkdir { .. } => StepKind::Mkdir,
            Action::Copy { .. } => StepKind::Copy,
            Action::Update { .. } => StepKind::Update,
            Action::Link { .. } => StepKind::Link,
            Action::Meta { .. } => StepKind::Meta,
            Action::Delete { .. } => StepKind::Delete,
            Action::Rmdir => StepKind::Rmdir,
            Action::Cleanup => StepKind::Cleanup,
            Action::Rename { .. } => StepKind::Rename,
            Action::Move { .. } => StepKind::Move,
            Action::HardLink { .. } => StepKind::HardLink,
        }
    }

    /// Bytes this step copies.
    pub fn bytes(&self) -> u64 {
        match self.action {
            Action::Copy { size, .. } | Action::Update { size, .. } => size,
            _ => 0,
        }
    }
}

impl fmt::Display for Step {
    /// `copy "a/b.txt" (12 B)`: the log and dry-run form; the path is escaped. A move reads
    /// `rename "old" -> "new"`, like a conflict's set-aside (both are renames on disk).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = if self.kind() == StepKind::Move { "rename" } else { self.kind().word() };
        write!(f, "{word} \"{}\"", self.path)?;
        match &self.action {
            Action::Copy { size, .. } | Action::Update { size, .. } => write!(f, " ({size} B)"),
            Action::Rename { to, .. } | Action::Move { to, .. } => write!(f, " -> \"{to}\""),
            Action::Link { target, .. } => {
                write!(f, " -> \"{}\"", crate::relpath::escape_bytes(target))
            }
            Action::Meta { mode, mtime, owner, .. } => {
                if let Some(mode) = mode {
                    write!(f, " mode {mode:o}")?;
                }
                if let Some(m) = mtime {
                    write!(f, " mtime {}.{:09}", m.secs, m.nanos)?;
                }
                if let Some(o) = owner {
                    write!(f, " owner {}:{}", o.uid, o.gid)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// An ordered list of steps: deletions (deepest first), then creations and updates (parents
/// first), then directory metadata (deepest first, after their contents stopped changing).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    /// True when the plan does nothing.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Files and symlinks the plan deletes or replaces with another kind (for the max-delete rail).
    pub fn deleted_files(&self) -> usize {
        self.steps.iter().filter(|s| matches!(s.action, Action::Delete { .. })).count()
    }

    /// Bytes the plan copies.
    pub fn bytes(&self) -> u64 {
        self.steps.iter().map(Step::bytes).sum()
    }

    /// Orders `steps` so that each can run when its turn comes: cleanups; the new directories
    /// that moves need (parents first); the moves, in the order given (an outer move before
    /// one inside what it moved); removals, deepest first (after the moves, which may empty a
    /// directory); creations and updates, parents first; directory metadata, deepest first
    /// (after their contents stopped changing).
    pub fn ordered(steps: Vec<Step>) -> Plan {
        // Every directory at or above a move's destination.
        let mut needed: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
        for s in &steps {
            if let Action::Move { to, .. } = &s.action {
                let bytes = to.as_bytes();
                let slashes = bytes.iter().enumerate().filter(|(_, c)| **c == b'/');
                needed.extend(slashes.map(|(i, _)| bytes[..i].to_vec()));
            }
        }
        let phase = |s: &Step| match &s.action {
            Action::Cleanup => 0,
            Action::Mkdir { .. } if needed.contains(s.path.as_bytes()) => 1,
            Action::Move { .. } => 2,
            Action::Delete { .. } | Action::Rmdir => 3,
            Action::Meta { dir: true, .. } => 5,
            _ => 4,
        };
        let mut phased: Vec<(u8, Step)> = steps.into_iter().map(|s| (phase(&s), s)).collect();
        // Stable: moves keep their order; within a phase, paths order the rest.
        phased.sort_by(|(pa, a), (pb, b)| {
            pa.cmp(pb).then_with(|| match pa {
                2 => std::cmp::Ordering::Equal,
                3 | 5 => b.path.cmp(&a.path),
                _ => a.path.cmp(&b.path),
            })
        });
        Plan { steps: phased.into_iter().map(|(_, s)| s).collect() }
    }

    /// Number of steps of one kind.
    pub fn count(&self, kind: StepKind) -> usize {
        self.steps.iter().filter(|s| s.kind() == kind).count()
    }
}

/// What a plan holds, counted as it is built (a plan spilled to a file is never read just to
/// count it): for the rails, the progress bar and a dry run's totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Steps, by kind.
    pub by_kind: std::collections::BTreeMap<StepKind, u64>,
    /// Bytes the copies and updates write.
    pub bytes: u64,
    /// Steps about files and symlinks (not directories' own creation, removal or metadata).
    pub files: u64,
    /// Files and symlinks deleted (the max-delete rail).
    pub deleted_files: u64,
}

impl Summary {
    /// Counts one more step.
    pub fn add(&mut self, step: &Step) {
        *self.by_kind.entry(step.kind()).or_default() += 1;
        self.bytes += step.bytes();
        self.files += u64::from(step.is_about_a_file());
        self.deleted_files += u64::from(matches!(step.action, Action::Delete { .. }));
    }

    /// All steps.
    pub fn steps(&self) -> u64 {
        self.by_kind.values().sum()
    }

    /// Steps of one kind.
    pub fn count(&self, kind: StepKind) -> u64 {
        self.by_kind.get(&kind).copied().unwrap_or(0)
    }
}

impl Step {
    /// True unless the step creates, removes or sets the metadata of a directory.
    pub fn is_about_a_file(&self) -> bool {
        !matches!(self.action, Action::Mkdir { .. } | Action::Rmdir | Action::Meta { dir: true, .. })
    }
}

/// A plan as `apply`, a dry run and the progress bar see it: its steps in order, and its
/// counts. An in-memory [`Plan`] is one; a [`Phased`] plan, which may live in temporary files,
/// is the other.
pub trait Steps {
    /// Calls `f` with each step, in the order they are carried out, until it breaks; `Err`
    /// when a spilled part cannot be read back.
    fn each(&self, f: &mut dyn FnMut(&Step) -> std::ops::ControlFlow<()>) -> std::io::Result<()>;

    /// The plan's counts.
    fn summary(&self) -> Summary;
}

impl Steps for Plan {
    fn each(&self, f: &mut dyn FnMut(&Step) -> std::ops::ControlFlow<()>) -> std::io::Result<()> {
        for step in &self.steps {
            if f(step).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn summary(&self) -> Summary {
        let mut summary = Summary::default();
        self.steps.iter().for_each(|s| summary.add(s));
        summary
    }
}

/// A plan built while a diff or a merge streams through the trees (the scale issue), kept in
/// the order it is carried out, phase by phase, each phase spilling to a temporary file when
/// large: so a pass over millions of entries holds only what it is about to do next.
///
/// The phases: cleanups, the directories that moves need and the moves (small, in memory);
/// removals, each directory after its contents; creations and updates, each directory before
/// its contents; directory metadata, each directory after its contents.
#[derive(Debug, Default)]
pub struct Phased {
    pub first: Vec<Step>,
    pub removals: Spill<Step>,
    pub creations: Spill<Step>,
    pub metas: Spill<Step>,
    summary: Summary,
}

impl Phased {
    /// Adds a step to the first phase.
    pub fn push_first(&mut self, step: Step) {
        self.summary.add(&step);
        self.first.push(step);
    }

    /// Adds a removal (after every removal below it).
    pub fn push_removal(&mut self, step: Step) -> std::io::Result<()> {
        self.summary.add(&step);
        self.removals.push(step)
    }

    /// Adds a creation or update (after its parent's creation).
    pub fn push_creation(&mut self, step: Step) -> std::io::Result<()> {
        self.summary.add(&step);
        self.creations.push(step)
    }

    /// Adds a directory's metadata (after everything below it).
    pub fn push_meta(&mut self, step: Step) -> std::io::Result<()> {
        self.summary.add(&step);
        self.metas.push(step)
    }

    /// Writes out what the spilled phases buffer; call once the plan is complete.
    pub fn seal(&mut self) -> std::io::Result<()> {
        self.removals.seal()?;
        self.creations.seal()?;
        self.metas.seal()
    }

    /// True when the plan does nothing.
    pub fn is_empty(&self) -> bool {
        self.summary.steps() == 0
    }

    /// The whole plan in memory (for tests, dry runs of small plans and plans that are
    /// edited afterwards).
    pub fn to_plan(&self) -> std::io::Result<Plan> {
        let mut steps = Vec::new();
        self.each(&mut |s| {
            steps.push(s.clone());
            std::ops::ControlFlow::Continue(())
        })?;
        Ok(Plan { steps })
    }
}

impl Steps for Phased {
    fn each(&self, f: &mut dyn FnMut(&Step) -> std::ops::ControlFlow<()>) -> std::io::Result<()> {
        for step in &self.first {
            if f(step).is_break() {
                return Ok(());
            }
        }
        for phase in [&self.removals, &self.creations, &self.metas] {
            for step in phase.iter() {
                if f(&step?).is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn summary(&self) -> Summary {
        self.summary.clone()
    }
}
