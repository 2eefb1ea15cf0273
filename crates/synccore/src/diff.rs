//! The diff of two scanned trees (SPEC section 3 "Mirror"): a merge-join of a source and a
//! target tree, sorted by path, into the [`Plan`] that makes the target an exact copy of the
//! source. Content is read only where the quick check of SPEC section 2 cannot decide. The
//! step builders here are shared with twoway's merge, so both programs compare entries by one
//! rule.

use std::collections::{HashMap, HashSet};

use crate::checksum::Digest;
use crate::entry::{Entry, Kind};
use crate::moves::{self, Digests, Which};
use crate::plan::{Action, Plan, Stamp, Step};
use crate::relpath::RelPath;
use crate::scan::Tree;

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

/// The content oracle that compares a source file with a target file directly (the mirror
/// reads both, issue 17): `true` when they hold the same bytes; a failure counts as `false`.
pub type SameContent<'a> = dyn FnMut(&Entry, &Entry) -> bool + 'a;

/// The steps that make `target` an exact copy of `source` (SPEC section 3 "Mirror"), with
/// every entry that only moved in the source moved in the target too ([`moves`]).
///
/// `digest` gives a file's content hash; it is asked only where the quick check of SPEC
/// section 2 cannot decide (mtimes differ, or always with `--checksum`) and where moves tie,
/// and each file at most once. Nothing at or below a path that could not be read on the source
/// side is deleted.
pub fn plan(source: &Tree, target: &Tree, options: DiffOptions, digest: &mut Digests<'_>) -> Plan {
    plan_comparing(source, target, options, digest, None)
}

/// [`plan`], with `same` (when given) deciding whether two files at one path hold the same
/// bytes instead of comparing their digests; `digest` then only pairs moves that tie.
pub fn plan_comparing(
    source: &Tree,
    target: &Tree,
    options: DiffOptions,
    digest: &mut Digests<'_>,
    mut same: Option<&mut SameContent<'_>>,
) -> Plan {
    let mut memo: HashMap<(Which, RelPath), Option<Digest>> = HashMap::new();
    let mut cached =
        |which: Which, e: &Entry| *memo.entry((which, e.path.clone())).or_insert_with(|| digest(which, e));
    let mut answers = Answers::default();
    let first = {
        let mut equal = oracle(&mut cached, same.as_deref_mut(), &mut answers, None);
        Plan::ordered(steps(source, target, options, &mut equal, &HashSet::new()))
    };
    let found = moves::find(&first, source, target, options.owners, options.checksum, &mut cached);
    if found.is_empty() {
        return first;
    }
    // The plan again, against the target as the moves will leave it; the directories moves
    // leave or enter are touched (their mtimes are set again).
    let relocation = moves::Relocation::new(&found);
    let relocated = relocation.tree(target);
    let touched: HashSet<RelPath> =
        found.iter().flat_map(|m| [m.from.parent(), m.to.parent()]).flatten().collect();
    let mut all = {
        let mut equal = oracle(&mut cached, same, &mut answers, Some(&relocation));
        steps(source, &relocated, options, &mut equal, &touched)
    };
    all.extend(
        found.into_iter().map(|m| Step { path: m.from, action: Action::Move { to: m.to, was: m.was } }),
    );
    Plan::ordered(all)
}

/// "Same content?" for a source and a target file at one path: `same`'s answer (kept in
/// `answers` for the plan after the moves), else equal digests. In the plan against the
/// target as `moved` leaves it, a moved target file is still at its old path on disk.
fn oracle<'a>(
    digest: &'a mut Digests<'_>,
    mut same: Option<&'a mut SameContent<'_>>,
    answers: &'a mut Answers,
    moved: Option<&'a moves::Relocation<'_>>,
) -> impl FnMut(&Entry, &Entry) -> bool + 'a {
    move |s: &Entry, d: &Entry| {
        let was = moved.and_then(|r| r.back(&d.path));
        let on_disk;
        let d = match &was {
            Some(path) => {
                on_disk = Entry { path: path.clone(), ..d.clone() };
                &on_disk
            }
            None => d,
        };
        if let Some(same) = same.as_deref_mut() {
            if moved.is_none() {
                let answer = same(s, d);
                answers.asked.push((std::ptr::from_ref(s), answer));
                return answer;
            }
            return match was {
                None => answers.again(s).unwrap_or_else(|| same(s, d)),
                Some(_) => same(s, d),
            };
        }
        // Any read failure counts as "different": the copy then reports the real error.
        matches!((digest(Which::Source, s), digest(Which::Target, d)), (Some(a), Some(b)) if a == b)
    }
}

/// The first plan's "same content?" answers, for the plan after the moves. That plan asks
/// again, for a file that did not move, about the same source entry of the one source tree
/// (known by its address; never dereferenced) and in the same order, so a cursor finds each
/// answer without a per-file allocation.
#[derive(Default)]
struct Answers {
    asked: Vec<(*const Entry, bool)>,
    next: usize,
}

impl Answers {
    /// The answer given about `s` (at or after the cursor); `None` when it was not asked.
    fn again(&mut self, s: &Entry) -> Option<bool> {
        let rest = self.asked.get(self.next..)?;
        let i = rest.iter().position(|&(e, _)| std::ptr::eq(e, s))?;
        self.next += i + 1;
        Some(rest[i].1)
    }
}

/// The steps of a plan without moves (in no particular order: see [`Plan::ordered`]).
/// `extra_touched` are directories whose entries change beyond these steps.
fn steps(
    source: &Tree,
    target: &Tree,
    options: DiffOptions,
    same_content: &mut dyn FnMut(&Entry, &Entry) -> bool,
    extra_touched: &HashSet<RelPath>,
) -> Vec<Step> {
    let mut deletes = Vec::new();
    // Every source entry yields at most one creation step and each directory one metadata
    // step: one exact allocation holds the whole plan (peak memory, SPEC section 6).
    let dirs = source.entries.iter().filter(|e| e.is_dir()).count();
    let mut creates = Vec::with_capacity(source.entries.len() + dirs);
    let mut touched: HashSet<RelPath> = extra_touched.clone();
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
                if let Some(step) = compare(s, d, options, same_content, &mut deletes) {
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

    let dir_metas = dir_meta_steps(source, target, &creates, &touched, options);
    deletes.extend(creates);
    deletes.extend(dir_metas);
    deletes
}

/// Directory metadata, last and deepest first: creating, renaming or deleting an entry changes
/// its parent's mtime, so the parent's is set after its contents are final. `touched` holds
/// the directories whose entries the plan changes.
fn dir_meta_steps(
    source: &Tree,
    target: &Tree,
    creates: &[Step],
    touched: &HashSet<RelPath>,
    options: DiffOptions,
) -> Vec<Step> {
    let new_dirs: HashSet<&RelPath> =
        creates.iter().filter(|s| matches!(s.action, Action::Mkdir { .. })).map(|s| &s.path).collect();
    let mut dir_metas = Vec::new();
    for s in source.entries.iter().rev().filter(|e| e.is_dir()) {
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
    dir_metas
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
        plan(&src, &dst, DiffOptions::default(), &mut |which, e| {
            asked.push(format!("{which:?} {}", e.path));
            Some(Digest::of_bytes(b"same"))
        });
        assert_eq!(asked, vec!["Source b", "Target b"]);
    }

    #[test]
    fn a_same_content_oracle_replaces_digests_and_sees_moved_files_where_they_are() {
        // `a` stays, `m` moves to `n/m`; with --checksum both pairs are compared, `a` once
        // (its answer is kept for the plan after the moves), the moved file at its old path.
        let src = tree(vec![file("a", 3, 1), dir("n", 1), file("n/m", 5, 9)]);
        let dst = Tree { dev: 1, ..tree(vec![file("a", 3, 1), file("m", 5, 9)]) };
        let mut asked = Vec::new();
        let mut same = |s: &Entry, d: &Entry| {
            asked.push(format!("{} ~ {}", s.path, d.path));
            true
        };
        let options = DiffOptions { checksum: true, owners: true };
        let plan = plan_comparing(
            &src,
            &dst,
            options,
            &mut |_, e| Some(Digest::of_bytes(e.path.file_name().as_encoded_bytes())),
            Some(&mut same),
        );
        let lines: Vec<String> =
            plan.steps.iter().map(|s| format!("{} {}", s.kind().word(), s.path)).collect();
        assert_eq!(lines, vec!["mkdir n", "move m", "meta n"]);
        assert_eq!(asked, vec!["a ~ a", "n/m ~ m"]);
        // "Different" makes an update, as a digest mismatch does.
        let plan = plan_comparing(&src, &dst, options, &mut |_, _| None, Some(&mut |_, _| false));
        assert!(plan.steps.iter().any(|s| s.kind().word() == "update" && s.path.to_string() == "a"));
    }

    #[test]
    fn nothing_under_an_unreadable_source_dir_is_deleted() {
        let mut src = tree(vec![dir("d", 7)]);
        src.unreadable.push(RelPath::from_bytes(b"d"));
        let dst = tree(vec![dir("d", 7), file("d/f", 1, 1), file("other", 1, 1)]);
        let plan = plan(&src, &dst, DiffOptions::default(), &mut |_, _| None);
        let lines: Vec<String> =
            plan.steps.iter().map(|s| format!("{} {}", s.kind().word(), s.path)).collect();
        assert_eq!(lines, vec!["delete other"]);
    }

    #[test]
    fn leftover_temporaries_are_cleaned_and_counted_apart() {
        let mut dst = tree(vec![]);
        dst.leftovers.push(RelPath::from_bytes(b".synccore-tmp-1-1"));
        let plan = plan(&tree(vec![]), &dst, DiffOptions::default(), &mut |_, _| None);
        assert_eq!(plan.count(StepKind::Cleanup), 1);
        assert_eq!(plan.deleted_files(), 0);
    }
}
