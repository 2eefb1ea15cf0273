//! What a walk learned of a small file's content while it had the file open (a `--checksum`
//! mirror, the scale issue): the bytes themselves, compared byte for byte with the other
//! side's and never hashed. A listing reads the small files of its directory into one buffer
//! (a [`Listing`]), and each content points into it, so a file costs no allocation and no copy
//! of its own on its way to the diff. The listings a walk holds, on its way down and in the
//! contents still on their way to the diff, take at most about [`LISTED_BYTES`]; past it, a
//! file is kept as its SHA-256 (32 bytes), so that memory never grows with a directory of
//! many small files.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use crate::checksum::Digest;
use crate::entry::Entry;

/// Bytes of small files a walk's listings may hold at a time.
pub const LISTED_BYTES: usize = 4 << 20;

/// The bytes a walk's listings may still take (shared by the walk and the contents it sent).
#[derive(Debug)]
pub struct Budget {
    left: AtomicIsize,
}

impl Budget {
    /// A budget of [`LISTED_BYTES`].
    pub fn new() -> Arc<Budget> {
        Arc::new(Budget { left: AtomicIsize::new(LISTED_BYTES as isize) })
    }

    /// The bytes left (none when the listings took more than the budget).
    pub fn left(&self) -> usize {
        usize::try_from(self.left.load(Ordering::Acquire)).unwrap_or(0)
    }

    /// Wraps the bytes a listing read, counting them until the listing is dropped.
    pub fn listing(self: &Arc<Self>, bytes: Vec<u8>) -> Arc<Listing> {
        let charged = bytes.capacity() as isize;
        self.left.fetch_sub(charged, Ordering::AcqRel);
        Arc::new(Listing { bytes, charged, budget: Arc::clone(self) })
    }
}

/// The bytes of the small files of one listing, counted against their walk's [`Budget`] until
/// the last content pointing into them is dropped.
pub struct Listing {
    bytes: Vec<u8>,
    charged: isize,
    budget: Arc<Budget>,
}

impl Drop for Listing {
    fn drop(&mut self) {
        self.budget.left.fetch_add(self.charged, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Listing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Listing({} bytes)", self.bytes.len())
    }
}

impl Listing {
    /// The content `kept` stands for in this listing.
    pub fn seen(&self, kept: &Kept) -> Option<Seen<'_>> {
        kept.seen(&self.bytes)
    }
}

/// A small file's content where a listing or a batch of entries keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kept {
    /// Its bytes: this range of the buffer of the listing (or batch) that holds it.
    Bytes(Range<usize>),
    /// Its SHA-256, when the listings had no room for the bytes.
    Digest(Digest),
}

impl Kept {
    /// The content this stands for, given the buffer it points into.
    pub fn seen<'b>(&self, buffer: &'b [u8]) -> Option<Seen<'b>> {
        match self {
            Kept::Bytes(range) => buffer.get(range.clone()).map(Seen::Bytes),
            Kept::Digest(digest) => Some(Seen::Digest(*digest)),
        }
    }
}

/// A small file's content as the walk read it, borrowed from the walk.
#[derive(Clone, Copy, Debug)]
pub enum Seen<'b> {
    Bytes(&'b [u8]),
    Digest(Digest),
}

impl Seen<'_> {
    /// True when both stand for the same bytes: compared directly when both are bytes, by
    /// digest otherwise.
    pub fn same_as(self, other: Seen<'_>) -> bool {
        match (self, other) {
            (Seen::Bytes(x), Seen::Bytes(y)) => x == y,
            (Seen::Digest(x), Seen::Digest(y)) => x == y,
            (Seen::Bytes(bytes), Seen::Digest(digest)) | (Seen::Digest(digest), Seen::Bytes(bytes)) => {
                Digest::of_bytes(bytes) == digest
            }
        }
    }

    /// The SHA-256 of the content.
    pub fn digest(self) -> Digest {
        match self {
            Seen::Bytes(bytes) => Digest::of_bytes(bytes),
            Seen::Digest(digest) => digest,
        }
    }
}

/// A small file's content travelling with its entry to the diff: where its listing keeps it.
#[derive(Clone, Debug)]
pub struct Content {
    listing: Arc<Listing>,
    kept: Kept,
}

impl Content {
    /// `kept`, in `listing`.
    pub fn new(listing: &Arc<Listing>, kept: Kept) -> Content {
        Content { listing: Arc::clone(listing), kept }
    }

    /// The content, borrowed; `None` when it points outside its listing (the diff then
    /// compares the files by reading them).
    pub fn seen(&self) -> Option<Seen<'_>> {
        self.listing.seen(&self.kept)
    }
}

/// The content of the entry a source returned last, told by its inode and size so that it is
/// only ever used for that entry (what [`crate::diff::Source::content_of`] answers).
#[derive(Debug, Default)]
pub struct Current(Option<(u64, u64, Content)>);

impl Current {
    /// Holds `content` (when the walk read one) for `e`, dropping the one held before.
    pub fn set(&mut self, e: &Entry, content: Option<Content>) {
        self.0 = content.map(|c| (e.ino, e.size, c));
    }

    /// The content held, when it is `e`'s.
    pub fn of(&self, e: &Entry) -> Option<&Content> {
        let (ino, size, content) = self.0.as_ref()?;
        ((*ino, *size) == (e.ino, e.size)).then_some(content)
    }

    /// [`Current::of`], taken.
    pub fn take(&mut self, e: &Entry) -> Option<Content> {
        self.of(e)?;
        self.0.take().map(|(_, _, content)| content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_compare_by_bytes_or_by_digest_alike() {
        fn seen(content: &Content) -> Seen<'_> {
            content.seen().unwrap()
        }

        let listing = Budget::new().listing(b"same bytes|same bytez".to_vec());
        let forms = |range: Range<usize>| {
            let digest = Digest::of_bytes(&b"same bytes|same bytez"[range.clone()]);
            [Content::new(&listing, Kept::Bytes(range)), Content::new(&listing, Kept::Digest(digest))]
        };
        for x in forms(0..10) {
            for y in forms(0..10) {
                assert!(seen(&x).same_as(seen(&y)), "{x:?} {y:?}");
            }
            for y in forms(11..21) {
                assert!(!seen(&x).same_as(seen(&y)), "{x:?} {y:?}");
            }
            assert_eq!(seen(&x).digest(), Digest::of_bytes(b"same bytes"));
        }
    }

    #[test]
    fn a_range_outside_its_listing_is_not_a_content() {
        let listing = Budget::new().listing(b"abc".to_vec());
        assert!(Content::new(&listing, Kept::Bytes(2..9)).seen().is_none());
        assert!(Content::new(&listing, Kept::Bytes(0..3)).seen().is_some());
    }

    #[test]
    fn the_current_content_answers_only_for_its_own_entry() {
        let listing = Budget::new().listing(b"abc".to_vec());
        let file = Entry::example("f", crate::entry::Kind::File, 3, 1);
        let replaced = Entry { ino: 2, ..file.clone() };
        let mut current = Current::default();
        current.set(&file, Some(Content::new(&listing, Kept::Bytes(0..3))));
        assert!(current.of(&replaced).is_none() && current.take(&replaced).is_none());
        assert!(current.of(&file).is_some());
        assert!(current.take(&file).is_some());
        assert!(current.of(&file).is_none(), "taken");
    }

    #[test]
    fn listings_are_counted_until_their_last_content_is_dropped() {
        let budget = Budget::new();
        let mut bytes = Vec::with_capacity(1000);
        bytes.extend_from_slice(b"abc");
        let listing = budget.listing(bytes);
        assert_eq!(budget.left(), LISTED_BYTES - 1000);
        let content = Content::new(&listing, Kept::Bytes(0..3));
        drop(listing);
        assert_eq!(budget.left(), LISTED_BYTES - 1000, "a content still points into it");
        drop(content);
        assert_eq!(budget.left(), LISTED_BYTES);
        let too_much = budget.listing(vec![0; LISTED_BYTES + 1]);
        assert_eq!(budget.left(), 0);
        drop(too_much);
        assert_eq!(budget.left(), LISTED_BYTES);
    }
}
