//! Root-relative paths as raw bytes. A `RelPath` never goes through a lossy conversion: it is
//! built from the bytes the file system returned and turned back into a `Path` for system calls.
//! Its order is plain byte order of the `/`-separated path, the total order SPEC section 2 uses
//! for the directory checksum and the merge-joins in `plan` and `merge`.

use std::ffi::OsStr;
use std::fmt::{self, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A path relative to a sync root, e.g. `docs/a.txt`. Never empty, never absolute, no `.`/`..`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(Box<[u8]>);

impl RelPath {
    /// Wraps raw bytes. The caller guarantees they form a normal relative path.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        RelPath(bytes.into())
    }

    /// Takes a relative `Path` as produced by `strip_prefix` on a walked entry.
    pub fn from_path(path: &Path) -> Self {
        Self::from_bytes(path.as_os_str().as_bytes())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The path for system calls (join it onto a root).
    pub fn as_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.0))
    }

    /// The parent, or `None` for a top-level entry.
    pub fn parent(&self) -> Option<RelPath> {
        let slash = self.0.iter().rposition(|&b| b == b'/')?;
        Some(RelPath::from_bytes(&self.0[..slash]))
    }

    /// The last component.
    pub fn file_name(&self) -> &OsStr {
        let start = self.0.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
        OsStr::from_bytes(&self.0[start..])
    }

    /// True when `self` is `ancestor` or lies below it (component-wise, so `a-b` is not under `a`).
    pub fn is_within(&self, ancestor: &RelPath) -> bool {
        let (me, anc) = (&self.0, &ancestor.0);
        me.starts_with(anc) && (me.len() == anc.len() || me[anc.len()] == b'/')
    }
}

impl serde::Serialize for RelPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::jsonbytes::raw::serialize(&self.0, s)
    }
}

impl<'de> serde::Deserialize<'de> for RelPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: Vec<u8> = crate::jsonbytes::raw::deserialize(d)?;
        Ok(RelPath(bytes.into()))
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", escape_bytes(&self.0))
    }
}

impl fmt::Display for RelPath {
    /// Prints the path escaped (see [`escape_bytes`]) so any byte sequence is unambiguous.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape_bytes(&self.0))
    }
}

/// Escapes a byte string for a log line: valid UTF-8 prints as itself except control
/// characters, backslash and double quote, which get Rust-style escapes; bytes that are not
/// UTF-8 print as `\xNN`. Distinct inputs always give distinct outputs.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                c if c.is_control() => out.extend(c.escape_default()),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// [`escape_bytes`] for a whole path.
pub fn escape_path(path: &Path) -> String {
    escape_bytes(path.as_os_str().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(s: &[u8]) -> RelPath {
        RelPath::from_bytes(s)
    }

    #[test]
    fn order_is_byte_order() {
        let mut v = vec![rp(b"a/b"), rp(b"a-c"), rp(b"a"), rp(b"B"), rp(b"\xff")];
        v.sort();
        assert_eq!(v, vec![rp(b"B"), rp(b"a"), rp(b"a-c"), rp(b"a/b"), rp(b"\xff")]);
    }

    #[test]
    fn within_is_component_wise() {
        assert!(rp(b"a/b").is_within(&rp(b"a")));
        assert!(rp(b"a").is_within(&rp(b"a")));
        assert!(!rp(b"a-b").is_within(&rp(b"a")));
        assert!(!rp(b"ab").is_within(&rp(b"a")));
    }

    #[test]
    fn parent_and_name() {
        assert_eq!(rp(b"a/b/c").parent(), Some(rp(b"a/b")));
        assert_eq!(rp(b"a").parent(), None);
        assert_eq!(rp(b"a/b/c").file_name(), OsStr::new("c"));
    }

    #[test]
    fn escaping_is_unambiguous() {
        assert_eq!(escape_bytes(b"plain name.txt"), "plain name.txt");
        assert_eq!(escape_bytes(b"new\nline"), "new\\nline");
        assert_eq!(escape_bytes(b"bad\xff"), "bad\\xff");
        // A literal backslash-x sequence differs from the escaped byte.
        assert_eq!(escape_bytes(b"bad\\xff"), "bad\\\\xff");
        assert_eq!(escape_bytes("caf\u{e9}".as_bytes()), "caf\u{e9}");
    }
}
