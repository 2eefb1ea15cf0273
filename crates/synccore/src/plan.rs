//! A plan is data: the ordered list of steps that turns a target tree into a copy of a source
//! tree. `--dry-run` prints it, tests assert on it, and `apply` carries it out (STYLE "Shape").
//! [`mirror`] builds the one-way plan by a merge-join of two sorted scans.

use std::collections::HashSet;
use std::fmt;

use crate::entry::{Entry, Kind, Mtime, Owner};
use crate::relpath::RelPath;
use crate::scan::Tree;

/// What the target side looked like when the plan was made, so that `apply` can re-check it
/// just before a destructive step and leave a path that changed meanwhile for the next pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create a directory (its final mode, mtime and owner are set by a later `Meta`).
    Mkdir { mode: u32, owner: Owner },
    /// Copy a file that the target lacks. `size`/`mtime` are the source's as scanned; `owner`
    /// is kept exactly when the pass runs as root, as far as the system allows otherwise.
    Copy { size: u64, mode: u32, mtime: Mtime, owner: Owner },
    /// Replace the target's different file (or other kind) with the source's file.
    Update { size: u64, mode: u32, mtime: Mtime, owner: Owner, was: Option<Stamp> },
    /// Create or replace a symlink, with the source link's mtime and owner.
    Link { target: Box<[u8]>, mtime: Mtime, owner: Owner, was: Option<Stamp> },
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
    HardLink,
}

impl StepKind {
    /// Every kind, in summary order.
    pub const ALL: [StepKind; 10] = [
        StepKind::Copy,
        StepKind::Update,
        StepKind::Delete,
        StepKind::Mkdir,
        StepKind::Rmdir,
        StepKind::Link,
        StepKind::Meta,
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
            StepKind::HardLink => "hardlink",
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// `copy "a/b.txt" (12 B)`: the log and dry-run form; the path is escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} \"{}\"", self.kind().word(), self.path)?;
        match &self.action {
            Action::Copy { size, .. } | Action::Update { size, .. } => write!(f, " ({size} B)"),
            Action::Rename { to, .. } => write!(f, " -> \"{to}\""),
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

    /// Number of steps of one kind.
    pub fn count(&self, kind: StepKind) -> usize {
        self.steps.iter().filter(|s| s.kind() == kind).count()
    }
}

/// Options of a mirror plan.
#[derive(Debug, Clone, Copy, Default)]
pub struct MirrorOptions {
    /// Decide equal-size files by content even when their mtimes are equal (`--checksum`).
    pub checksum: bool,
    /// Compare owners and plan owner changes (run as root, like `rsync -a`; see
    /// [`crate::entry::keeps_owners`]). Without it an owner difference is not a change.
    pub owners: bool,
}

impl MirrorOptions {
    /// The options of a pass run by this process: owners are kept when it runs as root.
    pub fn for_this_process(checksum: bool) -> Self {
        MirrorOptions { checksum, owners: crate::entry::keeps_owners() }
    }
}

/// Plans the steps that make `target` an exact copy of `source` (SPEC section 3 "Mirror").
///
/// `same_content(src, dst)` answers whether two regular files of equal size hold the same
/// bytes; it is asked only where the quick check of SPEC section 2 cannot decide (mtimes
/// differ, or always with `--checksum`). Nothing at or below a path that could not be read on
/// the source side is deleted.
pub fn mirror(
    source: &Tree,
    target: &Tree,
    options: MirrorOptions,
    same_content: &mut dyn FnMut(&Entry, &Entry) -> bool,
) -> Plan {
    let mut deletes = Vec::new();
    // Every source entry yields at most one creation step and each directory one metadata
    // step: one exact allocation holds the whole plan (peak memory, SPEC section 6).
    let dirs = source.entries.iter().filter(|e| e.is_dir()).count();
    let mut creates = Vec::with_capacity(source.entries.len() + dirs);
    let mut touched: HashSet<RelPath> = HashSet::new();
    let mut touch = |path: &RelPath| {
        if let Some(parent) = path.parent() {
            touched.insert(parent);
        }
    };

    for path in &target.leftovers {
        touch(path);
        deletes.push(Step { path: path.clone(), action: Action::Cleanup });
    }

    let (src, dst) = (&source.entries, &target.entries);
    let (mut i, mut j) = (0, 0);
    while i < src.len() || j < dst.len() {
        let order = match (src.get(i), dst.get(j)) {
            (Some(s), Some(d)) => s.path.cmp(&d.path),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, _) => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                let s = &src[i];
                touch(&s.path);
                creates.push(create_step(s));
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                let d = &dst[j];
                if !source.is_protected(&d.path) {
                    touch(&d.path);
                    deletes.push(delete_step(d));
                }
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (s, d) = (&src[i], &dst[j]);
                if let Some(step) = compare(s, d, options, &mut *same_content, &mut deletes) {
                    if !matches!(step.action, Action::Meta { .. }) {
                        touch(&s.path);
                    }
                    creates.push(step);
                }
                i += 1;
                j += 1;
            }
        }
    }

    // Directory metadata last and deepest first: creating, renaming or deleting an entry
    // changes its parent's mtime, so the parent's is set after its contents are final.
    let new_dirs: HashSet<&RelPath> =
        creates.iter().filter(|s| matches!(s.action, Action::Mkdir { .. })).map(|s| &s.path).collect();
    let mut dir_metas = Vec::new();
    for s in src.iter().rev().filter(|e| e.is_dir()) {
        let existing = target.get(&s.path).filter(|d| d.is_dir());
        let is_new = new_dirs.contains(&s.path);
        let mode_differs = is_new || existing.is_some_and(|d| d.mode != s.mode);
        let mtime_differs =
            is_new || touched.contains(&s.path) || existing.is_some_and(|d| d.mtime != s.mtime);
        let owner_differs = options.owners && (is_new || existing.is_some_and(|d| d.owner != s.owner));
        if (is_new || existing.is_some()) && (mode_differs || mtime_differs || owner_differs) {
            dir_metas.push(Step {
                path: s.path.clone(),
                action: Action::Meta {
                    mode: mode_differs.then_some(s.mode),
                    mtime: mtime_differs.then_some(s.mtime),
                    owner: owner_differs.then_some(s.owner),
                    dir: true,
                },
            });
        }
    }

    deletes.sort_by(|a, b| b.path.cmp(&a.path));
    let mut steps = creates;
    steps.splice(0..0, deletes);
    steps.extend(dir_metas);
    Plan { steps }
}

/// The step that creates `s` where the target has nothing.
pub(crate) fn create_step(s: &Entry) -> Step {
    let action = match &s.kind {
        Kind::Dir => Action::Mkdir { mode: s.mode, owner: s.owner },
        Kind::File => Action::Copy { size: s.size, mode: s.mode, mtime: s.mtime, owner: s.owner },
        Kind::Symlink(t) => Action::Link { target: t.clone(), mtime: s.mtime, owner: s.owner, was: None },
    };
    Step { path: s.path.clone(), action }
}

/// The step that removes `d` (a directory's contents go by their own steps, deepest first).
pub(crate) fn delete_step(d: &Entry) -> Step {
    let action = if d.is_dir() { Action::Rmdir } else { Action::Delete { was: Stamp::of(d) } };
    Step { path: d.path.clone(), action }
}

/// Compares a source and a target entry at the same path. Returns the creation-phase step, if
/// any; a kind change also pushes the removal of the old entry onto `deletes`.
pub(crate) fn compare(
    s: &Entry,
    d: &Entry,
    options: MirrorOptions,
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
pub(crate) fn meta_action(s: &Entry, d: &Entry, options: MirrorOptions) -> Option<Action> {
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

    fn e(path: &str, kind: Kind, size: u64, mtime: i64, mode: u32) -> Entry {
        Entry {
            path: RelPath::from_bytes(path.as_bytes()),
            kind,
            size,
            mtime: Mtime { secs: mtime, nanos: 0 },
            mode,
            ino: 1,
            owner: Owner::default(),
        }
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
        let mut asked = 0;
        let plan = mirror(&tree(src), &tree(dst), MirrorOptions { checksum, owners: true }, &mut |_, _| {
            asked += 1;
            equal
        });
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
                "stray dir tree, deepest first",
                vec![],
                vec![dir("d", 7), dir("d/e", 7), file("d/e/f", 1, 1), file("d/g", 1, 1)],
                false,
                false,
                vec!["delete d/g", "delete d/e/f", "rmdir d/e", "rmdir d"],
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
    fn content_is_asked_only_when_the_quick_check_cannot_decide() {
        let mut asked = Vec::new();
        let src = tree(vec![file("a", 3, 1), file("b", 3, 2), file("c", 4, 1)]);
        let dst = tree(vec![file("a", 3, 1), file("b", 3, 1), file("c", 3, 1)]);
        mirror(&src, &dst, MirrorOptions::default(), &mut |s, _| {
            asked.push(s.path.to_string());
            true
        });
        assert_eq!(asked, vec!["b"]);
    }

    #[test]
    fn nothing_under_an_unreadable_source_dir_is_deleted() {
        let mut src = tree(vec![dir("d", 7)]);
        src.unreadable.push(RelPath::from_bytes(b"d"));
        let dst = tree(vec![dir("d", 7), file("d/f", 1, 1), file("other", 1, 1)]);
        let plan = mirror(&src, &dst, MirrorOptions::default(), &mut |_, _| true);
        let lines: Vec<String> =
            plan.steps.iter().map(|s| format!("{} {}", s.kind().word(), s.path)).collect();
        assert_eq!(lines, vec!["delete other"]);
    }

    #[test]
    fn leftover_temporaries_are_cleaned_and_counted_apart() {
        let mut dst = tree(vec![]);
        dst.leftovers.push(RelPath::from_bytes(b".synccore-tmp-1-1"));
        let plan = mirror(&tree(vec![]), &dst, MirrorOptions::default(), &mut |_, _| true);
        assert_eq!(plan.count(StepKind::Cleanup), 1);
        assert_eq!(plan.deleted_files(), 0);
    }
}
