//! Ignore rules (issue 14; SPEC section 8): `.syncignore` files anywhere in a tree, with
//! exactly gitignore's syntax and semantics, plus the `--exclude`/`--exclude-from` patterns of
//! the command line (and twoway's config), which count as the last lines of the root's
//! `.syncignore`. Patterns are compiled and matched by the `ignore` crate's gitignore matcher
//! (the one ripgrep and fd use); this module only decides which files apply to a path, in
//! git's order: the `.syncignore` of the path's own directory first, then its parents' up to
//! the root; within a file the last matching line wins; a directory that is ignored is never
//! descended into, so nothing below it can be re-included (gitignore(5)).
//!
//! The scanner ([`crate::scan`]) reads the rules files as it walks (through the root's
//! descriptors, never a symlink: the security issue) into a [`Rules`], and consults it before
//! it `lstat`s or opens an entry, so an ignored `node_modules` costs one name in a listing.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use ::ignore::Match;
use ::ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::error::{Error, Result};
use crate::plan::{Action, Plan};
use crate::relpath::RelPath;

/// The name of the rules file in any directory of a tree.
pub const RULES_FILE: &str = ".syncignore";

/// Patterns from outside the tree (`--exclude`, `--exclude-from`, twoway's config
/// `"exclude"`), each checked once, before a pass runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Excludes {
    lines: Vec<String>,
}

impl Excludes {
    /// No patterns.
    pub fn none() -> Excludes {
        Excludes::default()
    }

    /// Adds `lines` (gitignore syntax; blank lines and `#` comments are allowed), checking
    /// each: a pattern the matcher refuses is bad input naming `origin` (the file, or the
    /// flag the pattern came with) and the line.
    pub fn add(&mut self, origin: &Path, lines: &[String]) -> Result<()> {
        for (i, line) in lines.iter().enumerate() {
            let mut check = GitignoreBuilder::new(".");
            if let Err(err) = check.add_line(None, line) {
                let at = if lines.len() > 1 { format!("line {}: ", i + 1) } else { String::new() };
                return Err(Error::Invalid {
                    path: origin.to_path_buf(),
                    reason: format!("{at}bad pattern {line:?}: {}", reason_of(&err)),
                });
            }
        }
        self.lines.extend(lines.iter().cloned());
        Ok(())
    }

    /// Reads an `--exclude-from` file into lines; an unreadable file or one that is not UTF-8
    /// is bad input.
    pub fn read_lines(path: &Path) -> Result<Vec<String>> {
        let invalid = |reason: String| Error::Invalid { path: path.to_path_buf(), reason };
        let (dir, name) = crate::fsio::open_beside(path, false)?;
        let bytes = dir
            .read(name)
            .map_err(|e| invalid(format!("cannot read the patterns file: {}", io_reason(&e))))?
            .ok_or_else(|| invalid("cannot read the patterns file: it does not exist".into()))?;
        split_lines(&bytes).map_err(|(n, why)| invalid(format!("line {n}: {why}")))
    }

    /// The patterns, in order.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

fn io_reason(e: &Error) -> String {
    match e {
        Error::Io { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// The error text of the matcher, without its own (lossy) copy of the pattern.
fn reason_of(err: &::ignore::Error) -> String {
    match err {
        ::ignore::Error::Glob { err, .. } => err.clone(),
        other => other.to_string(),
    }
}

/// Splits a rules file into lines as git does: on `\n`, a `\r` before it dropped (a file
/// written on Windows), a UTF-8 byte-order mark skipped at the start. Lines must be UTF-8 (the matcher's patterns are strings): `(line number,
/// reason)` otherwise.
fn split_lines(bytes: &[u8]) -> std::result::Result<Vec<String>, (usize, String)> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut lines = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match std::str::from_utf8(line) {
            Ok(text) => lines.push(text.to_owned()),
            Err(_) => return Err((i + 1, "is not valid UTF-8, which patterns must be".into())),
        }
    }
    if lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    Ok(lines)
}

/// What was found at a directory's `.syncignore`: the bytes read, or why it was not read. Two
/// scans that found the same files in the same directories decide every path alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A regular file, read (its bytes).
    Read(Vec<u8>),
    /// A symlink: never followed, so not read (the security rule).
    Symlink,
    /// Not a regular file (a directory, a fifo): not read.
    NotAFile,
}

/// The ignore rules of one tree: the matcher of every directory that has a `.syncignore`
/// (the root's also holds the excludes), keyed by the directory's path bytes (`""` for the
/// root).
#[derive(Debug, Clone, Default)]
pub struct Rules {
    excludes: Excludes,
    matchers: BTreeMap<Vec<u8>, Arc<Gitignore>>,
    found: BTreeMap<Vec<u8>, Found>,
}

impl PartialEq for Rules {
    /// Equal rules: the same excludes and the same `.syncignore` files in the same places.
    fn eq(&self, other: &Rules) -> bool {
        self.excludes == other.excludes && self.found == other.found
    }
}

/// The matchers that apply in one directory, deepest first, each with the length of the
/// prefix (`dir/`) to strip from a path before matching it.
pub type Chain = Vec<(usize, Arc<Gitignore>)>;

impl Rules {
    /// Rules with only `excludes` (as the root's last lines) until files are added.
    pub fn new(excludes: &Excludes) -> Result<Rules> {
        let mut rules = Rules { excludes: excludes.clone(), ..Rules::default() };
        if !excludes.is_empty() {
            let matcher = build(&[], &excludes.lines, Path::new("--exclude"))?;
            rules.matchers.insert(Vec::new(), Arc::new(matcher));
        }
        Ok(rules)
    }

    /// True when nothing can be ignored (no excludes, no rules file): scans then match nothing.
    pub fn is_empty(&self) -> bool {
        self.matchers.is_empty()
    }

    /// Adds the `.syncignore` of the directory `dir` (path bytes below the root, `""` for the
    /// root) as found there; `path` names the file in messages. A line the matcher refuses,
    /// or one that is not UTF-8, is bad input (exit 2, the pass changes nothing).
    pub fn add(&mut self, dir: &[u8], found: Found, path: &Path) -> Result<()> {
        if let Found::Read(bytes) = &found {
            let lines = split_lines(bytes).map_err(|(n, why)| Error::Invalid {
                path: path.to_path_buf(),
                reason: format!("line {n} {why}"),
            })?;
            let excludes: &[String] = if dir.is_empty() { &self.excludes.lines } else { &[] };
            let matcher = build(&lines, excludes, path)?;
            self.matchers.insert(dir.to_vec(), Arc::new(matcher));
        }
        self.found.insert(dir.to_vec(), found);
        Ok(())
    }

    /// The rules files that were found but not read (symlinks, non-files), for warnings.
    pub fn not_read(&self) -> impl Iterator<Item = (RelPath, &Found)> {
        self.found.iter().filter(|(_, f)| !matches!(f, Found::Read(_))).map(|(dir, f)| (file_in(dir), f))
    }

    /// The matchers that apply to the entries of the directory `dir`, deepest first.
    pub fn chain(&self, dir: &[u8]) -> Chain {
        let mut chain = Chain::new();
        if self.matchers.is_empty() {
            return chain;
        }
        let mut at = Some(dir);
        while let Some(d) = at {
            if let Some(m) = self.matchers.get(d) {
                chain.push((if d.is_empty() { 0 } else { d.len() + 1 }, Arc::clone(m)));
            }
            at = if d.is_empty() {
                None
            } else {
                Some(d.iter().rposition(|&b| b == b'/').map_or(&d[..0], |i| &d[..i]))
            };
        }
        chain
    }

    /// True when `rel` (whose parent directories are not ignored) is ignored by these rules.
    pub fn is_ignored(&self, rel: &[u8], is_dir: bool) -> bool {
        let parent = rel.iter().rposition(|&b| b == b'/').map_or(&rel[..0], |i| &rel[..i]);
        decide(&self.chain(parent), rel, is_dir)
    }

    /// For paths sorted by bytes (each with whether it is a directory), which are ignored by
    /// these rules: directly, or because a directory above them is.
    pub fn ignored_mask<'p>(&self, paths: impl Iterator<Item = (&'p RelPath, bool)>) -> Vec<bool> {
        let mut ignored_dirs: HashSet<RelPath> = HashSet::new();
        let mut mask = Vec::new();
        for (path, is_dir) in paths {
            let below = path.parent().is_some_and(|p| ignored_dirs.contains(&p));
            let ignored = below || (!self.is_empty() && self.is_ignored(path.as_bytes(), is_dir));
            if ignored && is_dir {
                ignored_dirs.insert(path.clone());
            }
            mask.push(ignored);
        }
        mask
    }
}

/// The path of the rules file in the directory `dir`.
fn file_in(dir: &[u8]) -> RelPath {
    let mut bytes = dir.to_vec();
    if !bytes.is_empty() {
        bytes.push(b'/');
    }
    bytes.extend_from_slice(RULES_FILE.as_bytes());
    RelPath::from_bytes(&bytes)
}

/// One directory's matcher: the file's lines, then (for the root) the excludes.
fn build(lines: &[String], excludes: &[String], path: &Path) -> Result<Gitignore> {
    let mut builder = GitignoreBuilder::new(".");
    for (i, line) in lines.iter().enumerate() {
        builder.add_line(None, line).map_err(|err| Error::Invalid {
            path: path.to_path_buf(),
            reason: format!("line {}: bad pattern {line:?}: {}", i + 1, reason_of(&err)),
        })?;
    }
    for line in excludes {
        builder.add_line(None, line).map_err(|err| Error::Invalid {
            path: "--exclude".into(),
            reason: format!("bad pattern {line:?}: {}", reason_of(&err)),
        })?;
    }
    builder.build().map_err(|err| Error::Invalid { path: path.to_path_buf(), reason: reason_of(&err) })
}

/// The decision of gitignore(5) for `rel` from the matchers of its directory and above
/// (`chain`, deepest first): the deepest file with a matching line decides, by its last
/// matching line; `!` re-includes.
pub fn decide(chain: &Chain, rel: &[u8], is_dir: bool) -> bool {
    for (strip, matcher) in chain {
        let below = Path::new(OsStr::from_bytes(&rel[*strip..]));
        match matcher.matched(below, is_dir) {
            Match::Ignore(_) => return true,
            Match::Whitelist(_) => return false,
            Match::None => {}
        }
    }
    false
}

/// Removes from `plan` the removal of every directory that still holds ignored entries
/// (`ignored`, on the side the plan changes): such a directory stays, with those entries,
/// without an error (issue 14), since an ignored path is never deleted.
pub fn keep_dirs_of_ignored(plan: &mut Plan, ignored: &[RelPath]) {
    if ignored.is_empty() {
        return;
    }
    let mut pinned: HashSet<RelPath> = HashSet::new();
    for path in ignored {
        let mut parent = path.parent();
        while let Some(p) = parent {
            parent = p.parent();
            if !pinned.insert(p) {
                break;
            }
        }
    }
    plan.steps.retain(|s| !(matches!(s.action, Action::Rmdir) && pinned.contains(&s.path)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(files: &[(&str, &str)], excludes: &[&str]) -> Rules {
        let mut ex = Excludes::none();
        ex.add(Path::new("--exclude"), &excludes.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
            .unwrap();
        let mut r = Rules::new(&ex).unwrap();
        for (dir, text) in files {
            r.add(dir.as_bytes(), Found::Read(text.as_bytes().to_vec()), Path::new("x")).unwrap();
        }
        r
    }

    fn ignored(r: &Rules, paths: &[(&str, bool)]) -> Vec<String> {
        let rels: Vec<RelPath> = paths.iter().map(|(p, _)| RelPath::from_bytes(p.as_bytes())).collect();
        let mask = r.ignored_mask(rels.iter().zip(paths.iter().map(|(_, d)| *d)));
        rels.iter().zip(mask).filter(|(_, m)| *m).map(|(p, _)| p.to_string()).collect()
    }

    #[test]
    fn deeper_files_override_and_the_last_line_wins() {
        let r = rules(&[("", "*.log\nbuild/\n"), ("sub", "!keep.log\n")], &[]);
        let paths = [
            ("a.log", false),
            ("build", true),
            ("build/x", false),
            ("sub", true),
            ("sub/keep.log", false),
            ("sub/x.log", false),
        ];
        assert_eq!(ignored(&r, &paths), ["a.log", "build", "build/x", "sub/x.log"]);
    }

    #[test]
    fn anchors_are_relative_to_the_files_directory() {
        let r = rules(&[("d", "/x\n")], &[]);
        assert!(r.is_ignored(b"d/x", false));
        assert!(!r.is_ignored(b"d/e/x", false));
        assert!(!r.is_ignored(b"x", false));
    }

    #[test]
    fn excludes_are_the_roots_last_lines() {
        // The root file re-includes, the exclude comes after it and wins; a nested file wins
        // over both.
        let r = rules(&[("", "!*.tmp\n"), ("n", "!*.tmp\n")], &["*.tmp"]);
        assert!(r.is_ignored(b"a.tmp", false));
        assert!(!r.is_ignored(b"n/a.tmp", false));
        // Excludes alone, without any file.
        assert!(rules(&[], &["/x/"]).is_ignored(b"x", true));
        assert!(!rules(&[], &["/x/"]).is_ignored(b"x", false));
    }

    #[test]
    fn bad_input_names_the_file_and_line() {
        let mut r = Rules::new(&Excludes::none()).unwrap();
        let err =
            r.add(b"d", Found::Read(b"ok\n[z-a]\n".to_vec()), Path::new("/t/d/.syncignore")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("/t/d/.syncignore\": line 2: bad pattern \"[z-a]\""), "{err}");
        let err = r.add(b"", Found::Read(b"\xff\n".to_vec()), Path::new("/t/.syncignore")).unwrap_err();
        assert!(err.to_string().contains("line 1 is not valid UTF-8"), "{err}");
        let mut ex = Excludes::none();
        let err = ex.add(Path::new("--exclude"), &["a{".to_owned()]).unwrap_err();
        assert!(err.to_string().starts_with("\"--exclude\": bad pattern \"a{\""), "{err}");
    }

    #[test]
    fn lines_split_like_git() {
        assert_eq!(split_lines(b"\xef\xbb\xbfa\n\nb").unwrap(), ["a", "", "b"]);
        assert_eq!(split_lines(b"a\n").unwrap(), ["a"]);
        assert_eq!(split_lines(b"a\r\nb\r\n").unwrap(), ["a", "b"]);
        assert!(split_lines(b"").unwrap().is_empty());
    }

    #[test]
    fn equal_rules_are_the_same_files_in_the_same_places() {
        let a = rules(&[("d", "x\n")], &[]);
        assert_eq!(a, rules(&[("d", "x\n")], &[]));
        assert_ne!(a, rules(&[("e", "x\n")], &[]));
        assert_ne!(a, rules(&[("d", "x\n")], &["y"]));
    }

    #[test]
    fn directories_holding_ignored_entries_are_not_removed() {
        let step = |p: &str, action| crate::plan::Step { path: RelPath::from_bytes(p.as_bytes()), action };
        let mut plan = Plan {
            steps: vec![step("d/e", Action::Rmdir), step("d", Action::Rmdir), step("f", Action::Rmdir)],
        };
        keep_dirs_of_ignored(&mut plan, &[RelPath::from_bytes(b"d/e/x.log")]);
        let left: Vec<String> = plan.steps.iter().map(|s| s.path.to_string()).collect();
        assert_eq!(left, ["f"]);
    }
}
