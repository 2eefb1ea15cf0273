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

use crate::checksum::{Budget, Content, Current, Kept, Listing, Seen};
use crate::entry::Entry;
use crate::error::{Error, IoResultExt, Op, Result};
use crate::fsio::{Dir, Root};
use crate::ignore::Rules;
use crate::relpath::RelPath;
use crate::scan::{Pending, ScanRules, SmallFiles, Tree, entry_at, is_not_a_dir, list};

/// What a walk tells before it lists each directory (watch mode watches it first).
pub type BeforeListing<'r> = Box<dyn FnMut(&[u8]) + Send + 'r>;

/// One entry of a directory's listing, and what follows it.
struct Listed {
    entry: Entry,
    then: Then,
}

/// What a listed entry brings besides itself. A subdirectory has no content read and a file
/// no contents to walk, so one small field holds either (a listing costs about 100 bytes per
/// entry: the root of a tree of 4,000 directories is listed for the whole walk).
#[derive(Clone, Copy)]
enum Then {
    Nothing,
    /// A subdirectory the listing queued: its contents are walked, from `name/` on.
    Contents,
    /// A small file the walk read: the index of its content in the frame's `read`.
    Read(u32),
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

/// One directory being walked: the directory, its entries sorted by path, how far the walk
/// got, and the subdirectories already yielded whose contents come later (at `name/`, after
/// siblings such as `name.txt`).
struct Frame {
    dir: Arc<Dir>,
    listing: Vec<Listed>,
    next: usize,
    /// The contents of the small files the walk read, and the bytes they point into.
    read: Vec<Kept>,
    bytes: Arc<Listing>,
    /// Opened subdirectories waiting for their turn, sorted by path, the first to come last
    /// (there are rarely more than one: only names that extend a subdirectory's name with a
    /// byte below `/` come between its entry and its contents).
    contents: Vec<(Vec<u8>, Arc<Dir>)>,
}

impl Frame {
    /// True when the first waiting subdirectory's contents come before the next entry.
    fn contents_come_first(&self) -> bool {
        let Some((rel, _)) = self.contents.last() else { return false };
        self.listing.get(self.next).is_none_or(|next| {
            compare_keys((rel, true), (next.entry.path.as_bytes(), false)) == std::cmp::Ordering::Less
        })
    }

    /// Queues the opened contents of the subdirectory `rel`, keeping the order.
    fn wait_for_turn(&mut self, rel: Vec<u8>, dir: Arc<Dir>) {
        let at = self.contents.partition_point(|(other, _)| {
            compare_keys((other, true), (&rel, true)) == std::cmp::Ordering::Greater
        });
        self.contents.insert(at, (rel, dir));
    }
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
    /// Regular files up to this size are opened instead of `lstat`ed and read (see
    /// [`Walker::reading_small_files`]).
    small_files: Option<u64>,
    /// The bytes the listings of small files may still take.
    budget: Arc<Budget>,
    /// The content of the entry yielded last (in the top frame), when the walk read it.
    last_read: Option<Kept>,
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

    /// [`Walker::watched`] that opens each regular file instead of `lstat`ing it and reads
    /// those of at most `up_to` bytes while they are open ([`Walker::last_seen`]: their
    /// bytes while the walk's listings hold less than [`crate::checksum::LISTED_BYTES`], else
    /// their SHA-256): for a pass that reads every file anyway (a `--checksum` mirror), one
    /// open per small file instead of an `lstat` and an open later.
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
            budget: Budget::new(),
            last_read: None,
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

    /// The content of the entry yielded last, when the walk read it (a small regular file of
    /// a walk [`Walker::reading_small_files`]).
    pub fn last_seen(&self) -> Option<Seen<'_>> {
        self.stack.last()?.bytes.seen(self.last_read.as_ref()?)
    }

    /// [`Walker::last_seen`], to send on with the entry: where it is kept, and the listing
    /// that keeps it (its bytes stay there, counted against the walk's budget until the last
    /// content pointing into them is dropped).
    fn last_kept(&self) -> Option<(&Arc<Listing>, Kept)> {
        Some((&self.stack.last()?.bytes, self.last_read.clone()?))
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

    /// Lists `dir` (`rel` below the root) and pushes its sorted entries.
    fn enter(&mut self, dir: Arc<Dir>, rel: &[u8]) -> Result<()> {
        (self.before)(rel);
        let mut listed = Tree { rules: std::mem::take(&mut self.notes.rules), ..Tree::default() };
        let mut pending: Vec<Pending> = Vec::new();
        let mut read: Vec<(usize, Kept)> = Vec::new();
        let room = self.budget.left();
        // Room for a directory of small files from the start (growing it would copy it
        // again and again); given back below to what it took.
        let mut bytes = Vec::with_capacity(if self.small_files.is_some() { room.min(64 << 10) } else { 0 });
        let small =
            self.small_files.map(|up_to| SmallFiles { up_to, room, bytes: &mut bytes, read: &mut read });
        let listing = list(&dir, rel, &mut listed, self.rules, &mut pending, small);
        crate::fault::point("walk-listed");
        self.notes.rules = std::mem::take(&mut listed.rules);
        listing?;
        let mut then = vec![Then::Nothing; listed.entries.len()];
        // `list` queues each subdirectory as it lists its entry: `entry` is that entry's index.
        for p in &pending {
            if let Some(t) = then.get_mut(p.entry) {
                *t = Then::Contents;
            }
        }
        let mut contents = Vec::with_capacity(read.len());
        for (at, content) in read {
            if let (Some(t), Ok(index)) = (then.get_mut(at), u32::try_from(contents.len())) {
                *t = Then::Read(index);
                contents.push(content);
            }
        }
        let mut listing: Vec<Listed> =
            listed.entries.into_iter().zip(then).map(|(entry, then)| Listed { entry, then }).collect();
        listing.sort_unstable_by(|x, y| x.entry.path.as_bytes().cmp(y.entry.path.as_bytes()));
        self.notes.unreadable.append(&mut listed.unreadable);
        self.notes.errors.append(&mut listed.errors);
        self.notes.special.append(&mut listed.special);
        self.notes.leftovers.append(&mut listed.leftovers);
        self.notes.ignored.append(&mut listed.ignored);
        self.notes.vanished += listed.vanished;
        bytes.shrink_to_fit();
        let bytes = self.budget.listing(bytes);
        self.stack.push(Frame { dir, listing, next: 0, read: contents, bytes, contents: Vec::new() });
        Ok(())
    }

    /// The next entry, or `None` at the end; `Err` only for bad input (a refused pattern).
    fn advance(&mut self) -> Result<Option<Entry>> {
        loop {
            let Some(frame) = self.stack.last_mut() else { return Ok(None) };
            if frame.contents_come_first() {
                if let Some((rel, dir)) = frame.contents.pop() {
                    self.enter(dir, &rel)?;
                }
                continue;
            }
            let Some(listed) = frame.listing.get_mut(frame.next) else {
                self.stack.pop();
                continue;
            };
            frame.next += 1;
            if self.prune.contains(listed.entry.path.as_bytes()) {
                continue;
            }
            // Taken, not cloned: the walk never looks back at an entry it passed.
            let mut entry = std::mem::replace(&mut listed.entry, Entry::placeholder());
            let read = match listed.then {
                Then::Read(at) => frame.read.get(at as usize).cloned(),
                Then::Nothing | Then::Contents => None,
            };
            if matches!(listed.then, Then::Contents) && entry.is_dir() && !self.open_contents(&mut entry) {
                continue;
            }
            self.last_read = read;
            return Ok(Some(entry));
        }
    }

    /// Opens the subdirectory `entry` names (never through a symlink) and queues its contents;
    /// false when it is gone since it was listed. An entry replaced by something else since
    /// then is corrected to what it is now.
    fn open_contents(&mut self, entry: &mut Entry) -> bool {
        let Some(frame) = self.stack.last_mut() else { return false };
        let parent = Arc::clone(&frame.dir);
        let name = entry.path.file_name().to_os_string();
        match parent.open_subdir(&name) {
            Ok(dir) => {
                frame.wait_for_turn(entry.path.as_bytes().to_vec(), Arc::new(dir));
                true
            }
            // Removed or renamed since it was listed: gone from this walk, and nothing at or
            // below it is deleted elsewhere on its account before a pass has seen where it
            // went (a directory renamed mid-walk is then a move, not a deletion and a copy).
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.notes.vanished += 1;
                self.notes.unreadable.push(entry.path.clone());
                false
            }
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
    /// The listing the contents of the entries that follow point into.
    Listing(Arc<Listing>),
    Entry(Entry, Option<Kept>),
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
    /// The inode, size and content of the entry read last, when the walk read it, and the
    /// listing the contents of the entries being read point into.
    last: Current,
    listing: Option<Arc<Listing>>,
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
            let mut sent = (0, 0, 0, None);
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                let next = walker.next();
                let notes = &walker.notes;
                let fresh = notes.unreadable[sent.0..].iter().cloned().map(Walked::Unreadable);
                let fresh = fresh.chain(notes.ignored[sent.1..].iter().cloned().map(Walked::Ignored));
                let fresh = fresh.chain(notes.leftovers[sent.2..].iter().cloned().map(Walked::Leftover));
                batch.extend(fresh);
                (sent.0, sent.1, sent.2) =
                    (notes.unreadable.len(), notes.ignored.len(), notes.leftovers.len());
                let Some(entry) = next else { break };
                // The listing goes once, before the first entry whose content it keeps.
                let kept = walker.last_kept().map(|(listing, kept)| {
                    if !sent.3.as_ref().is_some_and(|sent| Arc::ptr_eq(sent, listing)) {
                        sent.3 = Some(Arc::clone(listing));
                        batch.push(Walked::Listing(Arc::clone(listing)));
                    }
                    kept
                });
                batch.push(Walked::Entry(entry, kept));
                if batch.len() >= BATCH
                    && tx.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))).is_err()
                {
                    return;
                }
            }
            batch.push(Walked::End(walker.finish()));
            let _ = tx.send(batch);
        });
        Threaded {
            rx,
            batch: Vec::new().into_iter(),
            notes: Tree { dev, ..Tree::default() },
            end: None,
            thread: Some(thread),
            what,
            last: Current::default(),
            listing: None,
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
                Walked::Listing(listing) => self.listing = Some(listing),
                Walked::Entry(e, kept) => {
                    let content =
                        kept.zip(self.listing.as_ref()).map(|(kept, listing)| Content::new(listing, kept));
                    self.last.set(&e, content);
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

    fn content_of(&self, e: &Entry) -> Option<&Content> {
        self.last.of(e)
    }

    fn take_content(&mut self, e: &Entry) -> Option<Content> {
        self.last.take(e)
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
    use crate::checksum::Digest;
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
            let digest = walker.last_seen().map(Seen::digest);
            seen.push((e, digest));
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
    fn small_files_are_kept_as_bytes_while_the_listings_have_room_then_as_digests() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        // Two directories of 3.2 MB each (one listed after the other is done with) and one of
        // 4.8 MB (more than the listings may hold).
        let per_dir = [("a", 800), ("b", 800), ("c", 1200)];
        for (dir, files) in per_dir {
            fs::create_dir(p.join(dir)).unwrap();
            for i in 0..files {
                fs::write(
                    p.join(dir).join(format!("{i:04}")),
                    &format!("{dir}{i}").repeat(4000).as_bytes()[..4000],
                )
                .unwrap();
            }
        }
        let root = Root::open(p).unwrap();
        let mut walker = Walker::reading_small_files(&root, ScanRules::None, Box::new(|_| {}), 4096).unwrap();
        let mut kept = std::collections::BTreeMap::<String, (usize, usize)>::new();
        while let Some(e) = walker.next() {
            if !e.is_file() {
                continue;
            }
            let seen = walker.last_seen().unwrap();
            assert_eq!(
                seen.digest(),
                Digest::of_bytes(&fs::read(p.join(e.path.as_path())).unwrap()),
                "{}",
                e.path
            );
            let dir = e.path.to_string()[..1].to_string();
            let counts = kept.entry(dir).or_default();
            match seen {
                Seen::Bytes(_) => counts.0 += 1,
                Seen::Digest(_) => counts.1 += 1,
            }
        }
        assert_eq!(kept["a"], (800, 0));
        assert_eq!(kept["b"], (800, 0));
        let (bytes, digests) = kept["c"];
        assert_eq!(bytes + digests, 1200);
        assert!(bytes > 0 && bytes * 4000 <= crate::checksum::LISTED_BYTES, "{bytes} kept as bytes");
        assert!(digests > 0, "the rest as digests");
    }

    /// Names that sort around `/`: `-` and `.` come before it, `0` and `a` after it.
    const NAMES: [&str; 5] = ["a", "a-", "a.", "a0", "-"];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, failure_persistence: None, ..Default::default() })]

        /// Whatever mix of files and directories whose names extend each other, the walk
        /// yields the whole-path byte order, with each file's digest when it reads them.
        #[test]
        fn any_tree_is_walked_in_whole_path_byte_order(
            paths in proptest::collection::vec(
                (proptest::collection::vec(0..NAMES.len(), 1..4), proptest::bool::ANY),
                1..24,
            )
        ) {
            let d = tempfile::tempdir().unwrap();
            let p = d.path();
            for (names, is_dir) in &paths {
                let path: std::path::PathBuf = names.iter().map(|&n| NAMES[n]).collect();
                let _ = if *is_dir {
                    fs::create_dir_all(p.join(&path))
                } else {
                    path.parent().map_or(Ok(()), |up| fs::create_dir_all(p.join(up)))
                        .and_then(|()| fs::write(p.join(&path), path.as_os_str().as_encoded_bytes()))
                };
            }
            let root = Root::open(p).unwrap();
            let mut walker = Walker::reading_small_files(&root, ScanRules::None, Box::new(|_| {}), 4096).unwrap();
            let mut walked = Vec::new();
            while let Some(e) = walker.next() {
                let expected = e.is_file().then(|| Digest::of_bytes(e.path.as_bytes()));
                proptest::prop_assert_eq!(walker.last_seen().map(Seen::digest), expected, "{}", e.path);
                walked.push(e.path.as_bytes().to_vec());
            }
            let scanned: Vec<Vec<u8>> =
                crate::scan::scan(&root).unwrap().entries.iter().map(|e| e.path.as_bytes().to_vec()).collect();
            let mut sorted = scanned.clone();
            sorted.sort();
            proptest::prop_assert_eq!(&walked, &sorted);
            proptest::prop_assert_eq!(walked, scanned);
        }
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
