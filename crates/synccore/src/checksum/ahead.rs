//! Comparing ahead of the diff (issue 17, point 2: `--checksum` at memory speed). With
//! `--checksum` the mirror asks "same bytes?" of every pair of equal-size files. A small file
//! is read by the walk itself, which opens it instead of `lstat`ing it and keeps its bytes (its
//! [`Content`] travels with its entry, [`Source::content_of`], and the diff compares the two
//! sides' bytes, or their SHA-256 where a walk's listings had no room for the bytes); the
//! others would leave every core but the diff's idle if it read them one pair at a time. So
//! the source stream is read a little ahead of the diff ([`AHEAD`] entries), and each of its
//! files that the walk did not read is compared, on helper threads, with the file at the same
//! path in the target (opened there directly: the target's walk has not necessarily reached it
//! yet). When the diff asks about a pair, the answer is usually waiting.
//!
//! An answer is used only for the pair it was made for: the job of the source entry the diff
//! holds, and a target file whose size, mtime and inode are those the diff's target entry
//! has; anything else (a target that changed meanwhile) is compared on the spot. Memory holds
//! at most [`AHEAD`] entries and their answers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, mpsc};

use crate::checksum::{Content, Current};
use crate::diff::{SameContent, Source};
use crate::entry::{Entry, Mtime};
use crate::fsio::Root;
use crate::relpath::RelPath;
use crate::scan::Tree;

use super::same::compare_files;

/// Source entries read ahead of the diff.
const AHEAD: usize = 512;

/// Files handed to a helper at a time: the threads wake each other once per chunk.
const CHUNK: usize = 16;

/// A source file to compare with the target's file at the same path.
struct Job {
    seq: u64,
    path: RelPath,
    size: u64,
}

/// What a helper found for a [`Job`].
enum Answer {
    /// Nothing the diff will ask about: no regular file of that size at the path in the
    /// target, or a failure to open or read either (asked again on the
    /// spot, which reports it).
    Nothing,
    /// The target file's (size, mtime, inode) when compared, and whether the bytes matched.
    Compared { target: (u64, Mtime, u64), same: bool },
}

/// Runs `run` with `source` read ahead, its files compared on helper threads with the files
/// at the same paths in `b` (`a` being the source's root), and with the oracle that answers
/// the diff's "same bytes?" from those comparisons (or on the spot). The helpers stop when
/// `run` returns.
pub fn with_compare_ahead<R>(
    a: &Root,
    b: &Root,
    source: &mut dyn Source,
    run: impl FnOnce(&mut dyn Source, &mut SameContent<'_>) -> R,
) -> R {
    let helpers = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get).clamp(1, 4);
    let (job_tx, job_rx) = mpsc::channel::<Vec<Job>>();
    let (answer_tx, answer_rx) = mpsc::channel::<Vec<(u64, RelPath, Answer)>>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    std::thread::scope(|scope| {
        for _ in 0..helpers {
            let (jobs, answers) = (Arc::clone(&job_rx), answer_tx.clone());
            scope.spawn(move || helper(a, b, &jobs, &answers));
        }
        drop(answer_tx);
        // Dropped when this closure returns (closing the jobs channel), before the scope
        // joins the helpers.
        let shared = std::cell::RefCell::new(Shared {
            jobs: job_tx,
            pending: Vec::with_capacity(CHUNK),
            answers: answer_rx,
            received: HashMap::new(),
            next_seq: 0,
            next_answer: 0,
            current: None,
        });
        let mut ahead = ReadAhead {
            inner: source,
            buffer: VecDeque::with_capacity(AHEAD),
            shared: &shared,
            current: Current::default(),
        };
        let mut same = |s: &Entry, d: &Entry| {
            let answer = shared.borrow_mut().answer_for(s, d);
            answer.unwrap_or_else(|| {
                compare_files(a, s.path.as_path(), b, d.path.as_path(), s.size).unwrap_or(false)
            })
        };
        run(&mut ahead, &mut same)
    })
}

/// A helper: takes chunks of jobs until the channel closes, and answers each chunk at once.
fn helper(
    a: &Root,
    b: &Root,
    jobs: &Mutex<mpsc::Receiver<Vec<Job>>>,
    answers: &mpsc::Sender<Vec<(u64, RelPath, Answer)>>,
) {
    loop {
        let chunk = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(chunk) = chunk else { return };
        let done = chunk
            .into_iter()
            .map(|job| {
                // A panic in one comparison must not leave the diff waiting for its answer.
                let answer =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| compare_job(a, b, &job)))
                        .unwrap_or(Answer::Nothing);
                (job.seq, job.path, answer)
            })
            .collect();
        if answers.send(done).is_err() {
            return;
        }
    }
}

/// Compares one source file with the target's file at the same path, if there is one of the
/// same size.
fn compare_job(a: &Root, b: &Root, job: &Job) -> Answer {
    let path = job.path.as_path();
    let Ok((target, st)) = b.open_read_stat(path) else { return Answer::Nothing };
    let stamp = (st.st_size as u64, Mtime::of_stat(&st), st.st_ino);
    if stamp.0 != job.size {
        return Answer::Nothing;
    }
    // The source is not asked its size again: its first `job.size` bytes are compared, as
    // the diff would compare them on the spot (one that changed since the walk is the next
    // pass's, as with the quick check), and one that is no longer a file fails to read.
    let Ok(source) = a.parent_of(path).and_then(|(dir, name)| dir.open_read_unchecked(name)) else {
        return Answer::Nothing;
    };
    match super::same::compare_open_files(&source, &target, job.size) {
        Ok(same) => Answer::Compared { target: stamp, same },
        Err(_) => Answer::Nothing,
    }
}

/// What the read-ahead source and the oracle share (both on the diff's thread).
struct Shared {
    jobs: mpsc::Sender<Vec<Job>>,
    /// Jobs not yet handed to a helper (the chunk being filled).
    pending: Vec<Job>,
    answers: mpsc::Receiver<Vec<(u64, RelPath, Answer)>>,
    /// Answers received and not yet looked at, by number.
    received: HashMap<u64, (RelPath, Answer)>,
    /// The number the next job gets.
    next_seq: u64,
    /// The number of the next answer the oracle looks at (every earlier one was looked at
    /// or passed over).
    next_answer: u64,
    /// The job made for the source entry the diff holds (`None`: no job, its content was
    /// read by the walk, or it is not a file).
    current: Option<u64>,
}

impl Shared {
    /// Hands `e` to the helpers; returns its job's number.
    fn dispatch(&mut self, e: &Entry) -> u64 {
        let seq = self.next_seq;
        self.pending.push(Job { seq, path: e.path.clone(), size: e.size });
        self.next_seq += 1;
        if self.pending.len() >= CHUNK {
            self.flush();
        }
        seq
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK));
            // A send fails only when every helper is gone; the oracle then compares on the spot.
            let _ = self.jobs.send(chunk);
        }
    }

    /// The helpers' answer for the pair `s`, `d`; `None` when there is none to trust (the
    /// caller compares on the spot). `s` is the source entry returned last (its job is
    /// `current`); answers are looked at in order, and those passed over (pairs the diff
    /// did not ask about) are dropped.
    fn answer_for(&mut self, s: &Entry, d: &Entry) -> Option<bool> {
        let seq = self.current?;
        if s.path != d.path {
            return None;
        }
        while self.next_answer <= seq {
            let at = self.next_answer;
            if at + self.pending.len() as u64 >= self.next_seq {
                self.flush(); // the job is still in the chunk being filled
            }
            let (path, answer) = self.take(at)?;
            self.next_answer += 1;
            if at == seq {
                return match answer {
                    Answer::Compared { target, same }
                        if path == s.path && target == (d.size, d.mtime, d.ino) =>
                    {
                        Some(same)
                    }
                    _ => None,
                };
            }
        }
        None
    }

    /// Answer `seq`, waiting for it; `None` when the helpers are gone.
    fn take(&mut self, seq: u64) -> Option<(RelPath, Answer)> {
        loop {
            if let Some(found) = self.received.remove(&seq) {
                return Some(found);
            }
            let chunk = self.answers.recv().ok()?;
            self.received.extend(chunk.into_iter().map(|(n, path, answer)| (n, (path, answer))));
        }
    }
}

/// The source, read [`AHEAD`] entries ahead of the diff; each file read is handed to the
/// helpers, unless the walk already read its content (which then travels with it).
struct ReadAhead<'s, 'r> {
    inner: &'s mut dyn Source,
    /// Entries read ahead, with their content (when the walk read them) and job number.
    buffer: VecDeque<(Entry, Option<Content>, Option<u64>)>,
    shared: &'r std::cell::RefCell<Shared>,
    /// The inode, size and content of the entry returned last, when the walk read it.
    current: Current,
}

impl Source for ReadAhead<'_, '_> {
    fn next_entry(&mut self) -> Option<Entry> {
        let mut shared = self.shared.borrow_mut();
        while self.buffer.len() < AHEAD {
            let Some(e) = self.inner.next_entry() else {
                shared.flush();
                break;
            };
            let content = self.inner.take_content(&e);
            let job = (e.is_file() && content.is_none()).then(|| shared.dispatch(&e));
            self.buffer.push_back((e, content, job));
        }
        let (e, content, job) = self.buffer.pop_front()?;
        shared.current = job;
        self.current.set(&e, content);
        Some(e)
    }

    /// The source's notes as far as it has been read: ahead of the entry at hand, which
    /// only adds to what the diff knows (paths that could not be read stay protected).
    fn notes(&self) -> &Tree {
        self.inner.notes()
    }

    fn content_of(&self, e: &Entry) -> Option<&Content> {
        self.current.of(e)
    }

    fn take_content(&mut self, e: &Entry) -> Option<Content> {
        self.current.take(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Entries;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn answers_come_from_the_helpers_and_match_the_pair_asked() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut entries = Vec::new();
        for i in 0..2_000u32 {
            let name = format!("f{i:05}");
            let data = format!("content {i}").repeat(1 + (i % 7) as usize);
            fs::write(a.path().join(&name), &data).unwrap();
            let other = if i % 5 == 0 { data.replace("content", "CONTENT") } else { data.clone() };
            if i % 11 != 0 {
                fs::write(b.path().join(&name), &other).unwrap();
            }
            let meta = fs::metadata(a.path().join(&name)).unwrap();
            entries.push(Entry {
                size: meta.len(),
                mtime: Mtime::of(&meta),
                ..Entry::example(&name, crate::entry::Kind::File, 0, 0)
            });
        }
        let tree = Tree { entries, ..Tree::default() };
        let (ra, rb) = (Root::open(a.path()).unwrap(), Root::open(b.path()).unwrap());
        let mut source = Entries::of(&tree);
        let seen = with_compare_ahead(&ra, &rb, &mut source, |ahead, same| {
            let mut seen = Vec::new();
            while let Some(s) = ahead.next_entry() {
                let Ok(meta) = fs::metadata(b.path().join(s.path.as_path())) else { continue };
                let mut d = Entry { size: meta.len(), mtime: Mtime::of(&meta), ino: meta.ino(), ..s.clone() };
                // A target entry that is not the file the helper compared (another inode):
                // its answer is not used, the pair is compared on the spot.
                if s.path.as_bytes().ends_with(b"7") {
                    d.ino += 1;
                }
                // Some pairs are skipped: the diff need not ask about all.
                if s.path.as_bytes().ends_with(b"3") {
                    continue;
                }
                seen.push((s.path.to_string(), same(&s, &d)));
            }
            seen
        });
        assert!(seen.len() > 1_000);
        for (path, same) in seen {
            let i: u32 = path[1..].parse().unwrap();
            assert_eq!(same, !i.is_multiple_of(5), "{path}");
        }
    }
}
