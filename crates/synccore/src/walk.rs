//! A streaming walk (the scale issue): the entries of a tree one at a time, in the byte order
//! of their whole relative paths (SPEC section 2's order: `a`, `a.txt`, `a/b`), holding in
//! memory only the directories on the way down, never the tree.
//!
//! A depth-first walk with siblings sorted by name would yield `a`, `a/b`, `a.txt`. Here each
//! directory's listing is sorted with its subdirectories' contents keyed as `name/`: a
//! directory's own entry comes at `name`, its contents at `name/`, so a sibling such as
//! `a.txt` (`.` sorts before `/`) comes between them, as in the whole-path order that the
//! directory checksum, the manifests and the bases are written in. Nothing is buffered beyond
//! the listings of the directories on the current path.
//!
//! Each directory is listed as [`crate::scan`] lists it (the same `lstat`s relative to the
//! open directory, the same ignore rules and the same notes); what a full scan collects
//! besides the entries (unreadable paths, errors, special files, leftovers, ignored entries,
//! the rules read) is gathered in [`Walker::notes`]. A subdirectory is opened (never through
//! a symlink) when its own entry is reached, so an entry replaced since its listing is
//! reported as what it is now, exactly as the full scan does.

use std::collections::HashSet;
use std::io;
use std::sync::Arc;

use crate::checksum::Digest;
use crate::entry::Entry;
use crate::error::{Error, IoResultExt, Op, Result};
use crate::fsio::{Dir, Root};
use crate::ignore::Rules;
use crate::relpath::RelPath;
use crate::scan::{Pending, ScanRules, SmallFiles, Tree, entry_at, is_not_a_dir, list};

/// What a walk tells before it lists each directory (watch mode watches it first).
pub type BeforeListing<'r> = Box<dyn FnMut(&[u8]) + Send + 'r>;

/// One item of a directory's sorted listing.
enum Item {
    /// An entry to yield, with its content's digest when the walk read it.
    Entry(Entry, Option<Digest>),
    /// The contents of a subdirectory (opened when its entry was yielded).
    Contents { rel: Vec<u8>, dir: Option<Arc<Dir>> },
}

impl Item {
    /// The sort key within the directory: the whole relative path, followed by `/` for a
    /// subdirectory's contents.
    fn key(&self) -> (&[u8], bool) {
        match self {
            Item::Entry(e, _) => (e.path.as_bytes(), false),
            Item::Contents { rel, .. } => (rel, true),
        }
    }
}

/// Compares two keys as the byte strings `path` (or `path/` with the flag) they stand for,
/// without building them.
fn compare_keys(
    (left, left_slash): (&[u8], bool),
    (right, right_slash): (&[u8], bool),
) -> std::cmp::Ordering {
    let byte = |key: &[u8], slash: bool, at: usize| match key.get(at) {
        Some(&c) => Some(c),
        None => (slash && at == key.len()).then_some(b'/'),
    };
    let common = left.len().min(right.len());
    match left[..common].cmp(&right[..common]) {
        std::cmp::Ordering::Equal => {}
        other => return other,
    }
    let mut at = common;
    loop {
        match (byte(left, left_slash, at), byte(right, right_slash, at)) {
            (Some(x), Some(y)) if x == y => at += 1,
            // A string that ends first sorts first (`None` before `Some`).
            (x, y) => return x.cmp(&y),
        }
    }
}

/// One directory being walked: the directory, its items, sorted, and how far the walk got.
struct Frame {
    dir: Arc<Dir>,
    items: Vec<Item>,
    next: usize,
}

/// Yields the entries of a tree in whole-path byte order (see the module comment).
pub struct Walker<'r> {
    rules: ScanRules<'r>,
    stack: Vec<Frame>,
    /// Everything but the entries: what a full scan would hold besides them.
    notes: Tree,
    /// Subtrees left out (not walked): twoway's renamed directories.
    prune: HashSet<Vec<u8>>,
    before: BeforeListing<'r>,
    /// Bad input met on the way (a `.syncignore` pattern the matcher refuses): the walk ends.
    fatal: Option<Error>,
    /// Regular files up to this size are opened instead of `lstat`ed and hashed (see
    /// [`Walker::reading_small_files`]).
    small_files: Option<u64>,
    /// The digest of the entry yielded last, when the walk read it.
    last_digest: Option<Digest>,
}

impl<'r> Walker<'r> {
    /// Starts a walk of `root`. Fails only when the root itself cannot be listed (or, bad
    /// input, when its `.syncignore` holds a pattern the matcher refuses).
    pub fn new(root: &Root, rules: ScanRules<'r>) -> Result<Walker<'r>> {
        Self::watched(root, rules, Box::new(|_| {}))
    }

    /// [`Walker::new`], telling `before` each directory's relative path before it is listed
    /// (watch mode watches it first).
    pub fn watched(root: &Root, rules: ScanRules<'r>, before: BeforeListing<'r>) -> Result<Walker<'r>> {
        Self::start(root, rules, before, None)
    }

    /// [`Walker::watched`] that opens each regular file instead of `lstat`ing it and hashes
    /// those of at most `up_to` bytes while they are open ([`Walker::last_digest`]): for a
    /// pass that reads every file anyway (a `--checksum` mirror), one open per small file
    /// instead of an `lstat` and an open later.
    pub fn reading_small_files(
        root: &Root,
        rules: ScanRules<'r>,
        before: BeforeListing<'r>,
        up_to: u64,
    ) -> Result<Walker<'r>> {
        Self::start(root, rules, before, Some(up_to))
    }

    fn start(
        root: &Root,
        rules: ScanRules<'r>,
        before: BeforeListing<'r>,
        small_files: Option<u64>,
    ) -> Result<Walker<'r>> {
        let top = root.top();
        top.entries().at(Op::ReadDir, root.path())?;
        let mut notes = Tree { dev: top.stat_self().at(Op::Stat, root.path())?.st_dev, ..Tree::default() };
        if let ScanRules::Read(excludes) = rules {
            notes.rules = Rules::new(excludes)?;
        }
        let mut walker = Walker {
            rules,
            stack: Vec::new(),
            notes,
            prune: HashSet::new(),
            before,
            fatal: None,
            small_files,
            last_digest: None,
        };
        walker.enter(Arc::clone(top), &[])?;
        Ok(walker)
    }

    /// Leaves out the subtrees at `paths` (their own entries and everything below them).
    #[must_use]
    pub fn pruning(mut self, paths: impl IntoIterator<Item = RelPath>) -> Self {
        self.prune.extend(paths.into_iter().map(|p| p.as_bytes().to_vec()));
        self
    }

    /// The SHA-256 of the content of the entry yielded last, when the walk read it (a small
    /// regular file of a walk [`Walker::reading_small_files`]).
    pub fn last_digest(&self) -> Option<Digest> {
        self.last_digest
    }

    /// What the walk found besides the entries (complete once the walk is over).
    pub fn notes(&self) -> &Tree {
        &self.notes
    }

    /// Ends the walk and returns its notes; `Err` when it stopped on bad input.
    pub fn finish(self) -> Result<Tree> {
        match self.fatal {
            Some(err) => Err(err),
            None => Ok(self.notes),
        }
    }

    /// Lists `dir` (`rel` below the root) and pushes its sorted items.
    fn enter(&mut self, dir: Arc<Dir>, rel: &[u8]) -> Result<()> {
        (self.before)(rel);
        let mut listed = Tree { rules: std::mem::take(&mut self.notes.rules), ..Tree::default() };
        let mut pending: Vec<Pending> = Vec::new();
        let mut digests: Vec<(usize, Digest)> = Vec::new();
        let small = self.small_files.map(|up_to| SmallFiles { up_to, digests: &mut digests });
        let listing = list(&dir, rel, &mut listed, self.rules, &mut pending, small);
        self.notes.rules = std::mem::take(&mut listed.rules);
        listing?;
        // `list` queues each subdirectory as it lists its entry: `entry` is that entry's index.
        let mut is_subdir = vec![false; listed.entries.len()];
        for p in &pending {
            if let Some(flag) = is_subdir.get_mut(p.entry) {
                *flag = true;
            }
        }
        let mut items: Vec<Item> = Vec::with_capacity(listed.entries.len() + pending.len());
        // The digests come in the order of their entries.
        let mut digests = digests.into_iter().peekable();
        for (at, (e, subdir)) in listed.entries.into_iter().zip(is_subdir).enumerate() {
            if subdir {
                items.push(Item::Contents { rel: e.path.as_bytes().to_vec(), dir: None });
            }
            let digest = digests.next_if(|(i, _)| *i == at).map(|(_, d)| d);
            items.push(Item::Entry(e, digest));
        }
        items.sort_unstable_by(|x, y| compare_keys(x.key(), y.key()));
        self.notes.unreadable.append(&mut listed.unreadable);
        self.notes.errors.append(&mut listed.errors);
        self.notes.special.append(&mut listed.special);
        self.notes.leftovers.append(&mut listed.leftovers);
        self.notes.ignored.append(&mut listed.ignored);
        self.stack.push(Frame { dir, items, next: 0 });
        Ok(())
    }

    /// The next entry, or `None` at the end; `Err` only for bad input (a refused pattern).
    fn advance(&mut self) -> Result<Option<Entry>> {
        loop {
            let Some(frame) = self.stack.last_mut() else { return Ok(None) };
            let Some(item) = frame.items.get_mut(frame.next) else {
                self.stack.pop();
                continue;
            };
            frame.next += 1;
            match item {
                Item::Contents { rel, dir } => {
                    let Some(dir) = dir.take() else { continue };
                    let rel = std::mem::take(rel);
                    self.enter(dir, &rel)?;
                }
                Item::Entry(entry, digest) => {
                    if self.prune.contains(entry.path.as_bytes()) {
                        continue;
                    }
                    // Taken, not cloned: the walk never looks back at an item it passed.
                    let mut entry = std::mem::replace(entry, Entry::placeholder());
                    let digest = digest.take();
                    if entry.is_dir() && !self.open_contents(&mut entry) {
                        continue;
                    }
                    self.last_digest = digest;
                    return Ok(Some(entry));
                }
            }
        }
    }

    /// Opens the directory `entry` names (never through a symlink) for its contents item;
    /// false when it is gone since it was listed. An entry replaced by something else since
    /// then is corrected to what it is now.
    fn open_contents(&mut self, entry: &mut Entry) -> bool {
        let Some(frame) = self.stack.last_mut() else { return false };
        let key = (entry.path.as_bytes(), true);
        let Ok(at) = frame.items[frame.next..].binary_search_by(|i| compare_keys(i.key(), key)) else {
            return true;
        };
        let at = frame.next + at;
        let parent = Arc::clone(&frame.dir);
        let name = entry.path.file_name().to_os_string();
        let opened = parent.open_subdir(&name);
        let slot = &mut frame.items[at];
        match opened {
            Ok(dir) => {
                if let Item::Contents { dir: d, .. } = slot {
                    *d = Some(Arc::new(dir));
                }
                true
            }
            // Removed since it was listed: it is simply gone.
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            // Replaced (by a symlink, say) since it was listed: never followed, reported as
            // what it is now.
            Err(e) if is_not_a_dir(&e) => match entry_at(&parent, &name, entry.path.clone()) {
                Ok(Some(now)) if !now.is_dir() => {
                    *entry = now;
                    true
                }
                Ok(None) => {
                    self.notes.special.push(entry.path.clone());
                    false
                }
                _ => {
                    self.notes.unreadable.push(entry.path.clone());
                    self.notes.errors.push(Error::Io {
                        op: Op::ReadDir,
                        path: parent.path_of(&name),
                        source: e,
                    });
                    true
                }
            },
            Err(e) => {
                self.notes.unreadable.push(entry.path.clone());
                self.notes.errors.push(Error::Io { op: Op::ReadDir, path: parent.path_of(&name), source: e });
                true
            }
        }
    }
}

impl Iterator for Walker<'_> {
    type Item = Entry;

    /// The next entry in whole-path byte order; `None` at the end (or on bad input: see
    /// [`Walker::finish`]).
    fn next(&mut self) -> Option<Entry> {
        if self.fatal.is_some() {
            return None;
        }
        match self.advance() {
            Ok(entry) => entry,
            Err(err) => {
                self.fatal = Some(err);
                self.stack.clear();
                None
            }
        }
    }
}

/// What a walk running on its own thread sends: the notes it made, in order, before each entry
/// they came before (so that the reader knows a path is unreadable before it would wrongly
/// take an entry of the other tree there for deleted), then the end.
enum Walked {
    Entry(Entry, Option<Digest>),
    Unreadable(RelPath),
    Ignored(RelPath),
    Leftover(RelPath),
    End(Result<Tree>),
}

/// A walk running on a thread of its own (both trees of a pass are walked at once): its
/// entries arrive through a bounded channel, so memory stays bounded while the walks run
/// ahead of the diff by at most that many entries.
pub struct Threaded<'s> {
    rx: std::sync::mpsc::Receiver<Vec<Walked>>,
    /// The batch being read.
    batch: std::vec::IntoIter<Walked>,
    notes: Tree,
    end: Option<Result<Tree>>,
    thread: Option<std::thread::ScopedJoinHandle<'s, ()>>,
    /// What the walk is, for the error when its thread panics ("scanning the target").
    what: &'static str,
    /// The inode, size and content digest of the entry read last, when the walk read it.
    last: Option<(u64, u64, Digest)>,
}

/// Entries a walk may run ahead of its reader.
const AHEAD: usize = 4096;

/// Entries sent at a time: the two threads wake each other once per batch, not once per
/// entry (a futex wake per entry cost a no-change pass of S a third of its time).
const BATCH: usize = 256;

impl<'s> Threaded<'s> {
    /// Runs `walker` on a thread of `scope`; `what` names it in the error a panic becomes,
    /// and is the fault point the thread passes first (see [`crate::fault`]).
    pub fn spawn<'r: 's>(
        scope: &'s std::thread::Scope<'s, '_>,
        mut walker: Walker<'r>,
        (fault, what): (&'static str, &'static str),
    ) -> Threaded<'s> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Walked>>(AHEAD / BATCH);
        let dev = walker.notes.dev;
        let thread = scope.spawn(move || {
            crate::fault::point(fault);
            let mut sent = (0, 0, 0);
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                let next = walker.next();
                let notes = &walker.notes;
                let fresh = notes.unreadable[sent.0..].iter().cloned().map(Walked::Unreadable);
                let fresh = fresh.chain(notes.ignored[sent.1..].iter().cloned().map(Walked::Ignored));
                let fresh = fresh.chain(notes.leftovers[sent.2..].iter().cloned().map(Walked::Leftover));
                batch.extend(fresh);
                sent = (notes.unreadable.len(), notes.ignored.len(), notes.leftovers.len());
                let Some(entry) = next else { break };
                batch.push(Walked::Entry(entry, walker.last_digest()));
                if batch.len() >= BATCH
                    && tx.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))).is_err()
                {
                    return;
                }
            }
            batch.push(Walked::End(walker.finish()));
            let _ = tx.send(batch);
        });
        let batch = Vec::new().into_iter();
        Threaded {
            rx,
            batch,
            notes: Tree { dev, ..Tree::default() },
            end: None,
            thread: Some(thread),
            what,
            last: None,
        }
    }

    /// The walk's complete notes (after the last entry): `Err` when it stopped on bad input,
    /// or when its thread panicked.
    pub fn finish(mut self) -> Result<Tree> {
        while self.end.is_none() && self.receive().is_some() {}
        let panicked = self.thread.take().is_some_and(|t| t.join().is_err());
        match self.end.take() {
            Some(end) if !panicked => end,
            _ => Err(Error::Panicked { what: self.what }),
        }
    }

    fn receive(&mut self) -> Option<Entry> {
        loop {
            let Some(item) = self.batch.next() else {
                self.batch = self.rx.recv().ok()?.into_iter();
                continue;
            };
            match item {
                Walked::Entry(e, digest) => {
                    self.last = digest.map(|d| (e.ino, e.size, d));
                    return Some(e);
                }
                Walked::Unreadable(p) => self.notes.unreadable.push(p),
                Walked::Ignored(p) => self.notes.ignored.push(p),
                Walked::Leftover(p) => self.notes.leftovers.push(p),
                Walked::End(end) => {
                    self.end = Some(end);
                    return None;
                }
            }
        }
    }
}

impl crate::diff::Source for Threaded<'_> {
    fn next_entry(&mut self) -> Option<Entry> {
        if self.end.is_some() {
            return None;
        }
        self.receive()
    }

    fn notes(&self) -> &Tree {
        &self.notes
    }

    fn digest_of(&self, e: &Entry) -> Option<Digest> {
        self.last.filter(|(ino, size, _)| (*ino, *size) == (e.ino, e.size)).map(|(_, _, d)| d)
    }
}

/// Collects a whole walk into a [`Tree`] (what [`scan::scan_with`] returns).
pub fn collect(mut walker: Walker<'_>) -> Result<Tree> {
    let entries: Vec<Entry> = walker.by_ref().collect();
    let mut tree = walker.finish()?;
    tree.entries = entries;
    tree.ignored.sort_unstable();
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_walk_reading_small_files_gives_their_digests_and_the_same_entries() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::create_dir_all(p.join("a/sub")).unwrap();
        let files: [(&str, usize); 5] =
            [("a.txt", 10), ("a/big", 5000), ("a/small", 4096), ("a/sub/x", 0), ("z", 3)];
        for (f, len) in files {
            fs::write(p.join(f), vec![len as u8; len]).unwrap();
        }
        std::os::unix::fs::symlink("a.txt", p.join("a/link")).unwrap();
        let root = Root::open(p).unwrap();
        let mut walker = Walker::reading_small_files(&root, ScanRules::None, Box::new(|_| {}), 4096).unwrap();
        let mut seen = Vec::new();
        while let Some(e) = walker.next() {
            seen.push((e, walker.last_digest()));
        }
        let plain: Vec<Entry> = Walker::new(&root, ScanRules::None).unwrap().collect();
        assert_eq!(seen.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>(), plain);
        for (e, digest) in &seen {
            let len = files.iter().find(|(f, _)| *f == e.path.to_string()).map(|(_, len)| *len);
            let expected = len.filter(|len| *len <= 4096).map(|len| Digest::of_bytes(&vec![len as u8; len]));
            assert_eq!(*digest, expected, "{}", e.path);
        }
    }

    #[test]
    fn entries_come_in_whole_path_byte_order_as_the_full_scan_has_them() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        for dir in ["a/b", "a-b", "a.d/x", "b/c/d", "z"] {
            fs::create_dir_all(p.join(dir)).unwrap();
        }
        for f in ["a.txt", "a/b/f", "a/f", "a-b/f", "a.d/x/f", "a0", "b/c/d/e", "b/c.txt", "z/z"] {
            fs::write(p.join(f), f).unwrap();
        }
        std::os::unix::fs::symlink("a", p.join("a/l")).unwrap();
        let root = Root::open(p).unwrap();
        let walked: Vec<String> =
            Walker::new(&root, ScanRules::None).unwrap().map(|e| e.path.to_string()).collect();
        let scanned: Vec<String> =
            crate::scan::scan(&root).unwrap().entries.iter().map(|e| e.path.to_string()).collect();
        assert_eq!(walked, scanned);
        let mut sorted = walked.clone();
        sorted.sort_by(|x, y| x.as_bytes().cmp(y.as_bytes()));
        assert_eq!(walked, sorted);
    }

    #[test]
    fn pruned_subtrees_and_ignored_entries_are_left_out() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::create_dir_all(p.join("keep/sub")).unwrap();
        fs::create_dir_all(p.join("skip/sub")).unwrap();
        fs::write(p.join("keep/sub/f"), "f").unwrap();
        fs::write(p.join("skip/sub/f"), "f").unwrap();
        fs::write(p.join(".syncignore"), "*.o\n").unwrap();
        fs::write(p.join("keep/x.o"), "o").unwrap();
        let root = Root::open(p).unwrap();
        let excludes = crate::ignore::Excludes::none();
        let walker =
            Walker::new(&root, ScanRules::Read(&excludes)).unwrap().pruning([RelPath::from_bytes(b"skip")]);
        let tree = collect(walker).unwrap();
        let paths: Vec<String> = tree.entries.iter().map(|e| e.path.to_string()).collect();
        assert_eq!(paths, [".syncignore", "keep", "keep/sub", "keep/sub/f"]);
        assert_eq!(tree.ignored, [RelPath::from_bytes(b"keep/x.o")]);
    }
}
