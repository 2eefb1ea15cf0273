//! Lists that spill to a temporary file when they grow large (the scale issue): a plan's steps
//! and a pass's lists of changed entries stay in memory while small and move to an unnamed
//! temporary file (`tempfile`: `O_TMPFILE` under `$TMPDIR`, never in the user's directories,
//! gone when dropped or when the process dies) once they pass a limit, so that a pass's memory
//! does not grow with the number of entries it handles.
//!
//! Items are written as JSON Lines (the one serialization the programs use for their own
//! files) and read back in the order they were pushed.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::marker::PhantomData;
use std::os::unix::fs::FileExt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Items kept in memory before a list spills (a few megabytes of steps or entries; at 4,096
/// a pass after moving half of S's directories spent 45 ms more writing and reading its
/// 10,000 created entries back, for 0.3 MiB less at the peak).
pub const DEFAULT_LIMIT: usize = 16_384;

/// In a debug build (the ones the tests run), the variable that sets the limit of every
/// list a pass makes, so that an end-to-end test spills lists of a few entries.
pub const LIMIT_ENV: &str = "SYNCCORE_SPILL_LIMIT";

/// A list that spills to a temporary file past `limit` items.
pub struct Spill<T> {
    memory: Vec<T>,
    file: Option<Spilled>,
    len: usize,
    limit: usize,
}

struct Spilled {
    writer: BufWriter<File>,
    /// The same file, read with positioned reads (which leave the writer's offset alone).
    reader: File,
}

impl Spilled {
    /// `Ok` when everything pushed is in the file (the list was sealed since).
    fn sealed(&self) -> io::Result<()> {
        if self.writer.buffer().is_empty() {
            Ok(())
        } else {
            Err(io::Error::other("a spilled list was read before it was sealed"))
        }
    }
}

impl<T> Default for Spill<T> {
    fn default() -> Self {
        Spill::with_limit(default_limit())
    }
}

/// [`DEFAULT_LIMIT`], or in a debug build the limit [`LIMIT_ENV`] sets.
fn default_limit() -> usize {
    #[cfg(debug_assertions)]
    if let Some(limit) = std::env::var(LIMIT_ENV).ok().and_then(|v| v.parse().ok()) {
        return limit;
    }
    DEFAULT_LIMIT
}

impl<T> std::fmt::Debug for Spill<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spill")
            .field("len", &self.len)
            .field("spilled", &self.file.is_some())
            .finish_non_exhaustive()
    }
}

impl<T> Spill<T> {
    /// An empty list that spills past `limit` items.
    pub fn with_limit(limit: usize) -> Self {
        Spill { memory: Vec::new(), file: None, len: 0, limit }
    }

    /// How many items the list holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when the items live in a temporary file.
    pub fn is_spilled(&self) -> bool {
        self.file.is_some()
    }
}

impl<T: Serialize + DeserializeOwned + Clone> Spill<T> {
    /// Appends an item (to the file once the list spilled).
    pub fn push(&mut self, item: T) -> io::Result<()> {
        self.len += 1;
        if let Some(spilled) = &mut self.file {
            return write_line(&mut spilled.writer, &item);
        }
        self.memory.push(item);
        if self.memory.len() > self.limit {
            let file = tempfile::tempfile()?;
            let reader = file.try_clone()?;
            let mut writer = BufWriter::with_capacity(1 << 16, file);
            for item in self.memory.drain(..) {
                write_line(&mut writer, &item)?;
            }
            self.memory.shrink_to_fit();
            self.file = Some(Spilled { writer, reader });
        }
        Ok(())
    }

    /// Writes out what is buffered, so that [`Spill::iter`] sees every item.
    pub fn seal(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(spilled) => spilled.writer.flush(),
            None => Ok(()),
        }
    }

    /// The items in the order they were pushed (call [`Spill::seal`] first: a spilled list
    /// read before that yields an error, never a silently shortened list).
    #[allow(clippy::iter_without_into_iter)] // items are read back (or cloned), not borrowed
    pub fn iter(&self) -> Box<dyn Iterator<Item = io::Result<T>> + '_> {
        match &self.file {
            None => Box::new(self.memory.iter().cloned().map(Ok)),
            Some(spilled) => match spilled.sealed() {
                Ok(()) => Box::new(Lines::of(&spilled.reader)),
                Err(e) => Box::new(std::iter::once(Err(e))),
            },
        }
    }
}

impl<T: DeserializeOwned> Spill<T> {
    /// Calls `f` with each item in the order they were pushed (call [`Spill::seal`] first: a
    /// spilled list read before that is an error): those in memory by reference, without the
    /// clone [`Spill::iter`] makes.
    pub fn each(&self, mut f: impl FnMut(&T)) -> io::Result<()> {
        let Some(spilled) = &self.file else {
            self.memory.iter().for_each(f);
            return Ok(());
        };
        spilled.sealed()?;
        for item in Lines::<T>::of(&spilled.reader) {
            f(&item?);
        }
        Ok(())
    }
}

fn write_line<T: Serialize>(writer: &mut BufWriter<File>, item: &T) -> io::Result<()> {
    serde_json::to_writer(&mut *writer, item)?;
    writer.write_all(b"\n")
}

/// Reads a file from a position of its own (`pread`).
struct At<'f> {
    file: &'f File,
    at: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// The items of a spilled list, one JSON line each.
struct Lines<'f, T> {
    reader: BufReader<At<'f>>,
    line: Vec<u8>,
    item: PhantomData<T>,
}

impl<'f, T> Lines<'f, T> {
    /// The items of the spilled list `file`, from its start.
    fn of(file: &'f File) -> Self {
        Lines {
            reader: BufReader::with_capacity(1 << 16, At { file, at: 0 }),
            line: Vec::new(),
            item: PhantomData,
        }
    }
}

impl<T: DeserializeOwned> Iterator for Lines<'_, T> {
    type Item = io::Result<T>;

    fn next(&mut self) -> Option<io::Result<T>> {
        self.line.clear();
        match self.reader.read_until(b'\n', &mut self.line) {
            Ok(0) => None,
            Ok(_) => Some(serde_json::from_slice(&self.line).map_err(io::Error::other)),
            Err(e) => Some(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spilled_list_read_before_it_is_sealed_is_an_error_not_a_shorter_list() {
        let mut list: Spill<u32> = Spill::with_limit(2);
        for i in 0..10 {
            list.push(i).unwrap();
        }
        assert!(list.is_spilled());
        assert!(list.each(|_| {}).is_err());
        assert!(list.iter().any(|item| item.is_err()));
        list.seal().unwrap();
        let mut seen = Vec::new();
        list.each(|i| seen.push(*i)).unwrap();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn items_come_back_in_order_from_memory_and_from_the_file() {
        for limit in [100, 3] {
            let mut list: Spill<(u32, String)> = Spill::with_limit(limit);
            for i in 0..10 {
                list.push((i, format!("item {i}"))).unwrap();
            }
            list.seal().unwrap();
            assert_eq!(list.is_spilled(), limit == 3);
            let back: Vec<(u32, String)> = list.iter().map(Result::unwrap).collect();
            assert_eq!(back.len(), 10);
            assert_eq!(back[7], (7, "item 7".to_string()));
            // Reading twice, and pushing after reading, work.
            assert_eq!(list.iter().count(), 10);
            list.push((10, "item 10".into())).unwrap();
            list.seal().unwrap();
            assert_eq!(list.iter().last().unwrap().unwrap().0, 10);
            // `each` sees the same items, in the same order, from memory or from the file.
            let mut seen = Vec::new();
            list.each(|item| seen.push(item.clone())).unwrap();
            let back: Vec<(u32, String)> = list.iter().map(Result::unwrap).collect();
            assert_eq!(seen, back);
        }
    }
}
