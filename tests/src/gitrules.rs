//! Generated trees and ignore rules, and git as the oracle of what they ignore (issue 14): a
//! seeded generator makes a tree of files and directories with rules files (negations,
//! anchors, `**`, character classes, directory-only rules, escapes, nested files) and a few
//! `--exclude` patterns; [`Case::git_included`] asks `git check-ignore --no-index` about every
//! path of the same tree laid out with `.gitignore` files, and keeps what git would sync: a
//! path not ignored whose parent directories are not ignored either (check-ignore answers
//! for a path inside an ignored directory too, and may re-include it by a negation, which git
//! itself would never see).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::Rng;

/// The rules file of a tree under test, and git's.
pub const SYNCIGNORE: &str = ".syncignore";
const GITIGNORE: &str = ".gitignore";

/// One generated case: directories, files, rules files by directory, excludes.
#[derive(Debug, Clone)]
pub struct Case {
    pub dirs: Vec<String>,
    pub files: Vec<String>,
    /// (directory, the rules file's text); `""` is the root.
    pub rules: Vec<(String, String)>,
    /// `--exclude` patterns: the root file's last lines.
    pub excludes: Vec<String>,
}

const DIR_NAMES: [&str; 4] = ["a", "b", "ab", "node_modules"];
const FILE_NAMES: [&str; 9] = ["x", "y.txt", "a.log", "ab", "#h", "!e", "z.o", "b", "c d"];
const PIECES: [&str; 20] = [
    "a",
    "b",
    "ab",
    "x",
    "y.txt",
    "a.log",
    "z.o",
    "node_modules",
    "*",
    "*.log",
    "*.txt",
    "a*",
    "?",
    "?b",
    "[ab]",
    "[!a]*",
    "[a-c]",
    "\\#h",
    "\\!e",
    "c\\ d",
];

impl Case {
    /// The case of `seed`.
    pub fn generate(seed: u64) -> Case {
        let mut rng = Rng::new(seed);
        let mut dirs = Vec::new();
        let mut files = Vec::new();
        grow(&mut rng, "", 0, &mut dirs, &mut files);
        let mut rules = Vec::new();
        for dir in std::iter::once("").chain(dirs.iter().map(String::as_str)) {
            if dir.is_empty() || rng.below(3) == 0 {
                let n = 1 + rng.below(4);
                let lines: Vec<String> = (0..n).map(|_| pattern(&mut rng)).collect();
                // Some files are written on Windows.
                let eol = if rng.below(5) == 0 { "\r\n" } else { "\n" };
                rules.push((dir.to_owned(), lines.join(eol) + eol));
            }
        }
        let excludes = (0..rng.below(3)).map(|_| pattern(&mut rng)).collect();
        Case { dirs, files, rules, excludes }
    }

    /// Every path of the tree (rules files included), sorted.
    pub fn paths(&self, rules_name: &str) -> BTreeSet<String> {
        let mut all: BTreeSet<String> = self.dirs.iter().chain(&self.files).cloned().collect();
        all.extend(self.rules.iter().map(|(d, _)| join(d, rules_name)));
        all
    }

    /// Lays the tree out below `root` with rules files named `rules_name` (the excludes are
    /// not written: they are given on the command line, or appended for git).
    pub fn write(&self, root: &Path, rules_name: &str, append_excludes: bool) {
        std::fs::create_dir_all(root).unwrap();
        for d in &self.dirs {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in &self.files {
            std::fs::write(root.join(f), format!("content of {f}")).unwrap();
        }
        for (d, text) in &self.rules {
            let mut text = text.clone();
            if d.is_empty() && append_excludes {
                for e in &self.excludes {
                    text.push_str(e);
                    text.push('\n');
                }
            }
            std::fs::write(root.join(join(d, rules_name)), text).unwrap();
        }
    }

    /// What git syncs of this tree: the paths (with `.syncignore` for `.gitignore`) that are
    /// not ignored and lie below no ignored directory.
    pub fn git_included(&self, scratch: &Path) -> BTreeSet<String> {
        let root = scratch.join("git");
        self.write(&root, GITIGNORE, true);
        git(&root, &["init", "-q"], b"");
        let paths = self.paths(GITIGNORE);
        let input: Vec<u8> = paths.iter().flat_map(|p| p.bytes().chain([0])).collect();
        let out = git(&root, &["check-ignore", "--no-index", "--stdin", "-z"], &input);
        let ignored: BTreeSet<String> = out
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8(p.to_vec()).unwrap())
            .collect();
        let mut included = BTreeSet::new();
        for p in &paths {
            let parent_in =
                p.rfind('/').is_none_or(|i| included.contains(&p[..i].replace(GITIGNORE, SYNCIGNORE)));
            if parent_in && !ignored.contains(p) {
                included.insert(p.replace(GITIGNORE, SYNCIGNORE));
            }
        }
        included
    }

    /// The case as a readable text, for a failing assertion.
    pub fn describe(&self) -> String {
        let rules: Vec<String> =
            self.rules.iter().map(|(d, text)| format!("{}: {text:?}\n", join(d, SYNCIGNORE))).collect();
        format!(
            "excludes: {:?}\n{}dirs: {:?}\nfiles: {:?}",
            self.excludes,
            rules.concat(),
            self.dirs,
            self.files
        )
    }
}

/// Every path below `root` (not following symlinks), as strings.
pub fn tree_paths(root: &Path) -> BTreeSet<String> {
    crate::snapshot(root).into_keys().map(|k| String::from_utf8(k).unwrap()).collect()
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_owned() } else { format!("{dir}/{name}") }
}

fn grow(rng: &mut Rng, dir: &str, depth: u32, dirs: &mut Vec<String>, files: &mut Vec<String>) {
    for name in FILE_NAMES {
        if rng.below(3) == 0 {
            files.push(join(dir, name));
        }
    }
    if depth >= 3 {
        return;
    }
    for name in DIR_NAMES {
        let sub = join(dir, name);
        // A name is a file in some directories and a directory in others (for `name/`).
        if rng.below(3) == 0 && !files.contains(&sub) {
            dirs.push(sub.clone());
            grow(rng, &sub, depth + 1, dirs, files);
        }
    }
}

/// One rules line: a few pieces joined by `/`, maybe with `**`, a leading `/` (anchored), a
/// trailing `/` (directories only), a leading `!` (negation), or a comment.
fn pattern(rng: &mut Rng) -> String {
    let n = 1 + rng.below(3) as usize;
    let mut parts: Vec<String> =
        (0..n).map(|_| PIECES[rng.below(PIECES.len() as u64) as usize].to_owned()).collect();
    match rng.below(8) {
        0 => parts.insert(0, "**".into()),
        1 if n > 1 => parts.insert(1, "**".into()),
        2 => parts.push("**".into()),
        _ => {}
    }
    let mut p = parts.join("/");
    if rng.below(4) == 0 {
        p.insert(0, '/');
    }
    if rng.below(4) == 0 && !p.ends_with("**") {
        p.push('/');
    }
    if rng.below(4) == 0 {
        p.insert(0, '!');
    }
    if rng.below(20) == 0 {
        p.insert(0, '#');
    }
    if rng.below(10) == 0 {
        p.push_str("  "); // trailing spaces are not part of a pattern
    }
    p
}

/// Runs git in `dir` with `input` on stdin and no user or system configuration (a global
/// excludes file must not change the answer); returns stdout. check-ignore exits 1 when
/// nothing is ignored.
fn git(dir: &Path, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("git")
        .args(["-c", "core.excludesFile=/dev/null", "-c", "core.ignoreCase=false"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("git is needed by the ignore tests (CI installs it)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
