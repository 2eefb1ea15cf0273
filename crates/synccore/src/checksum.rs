//! SHA-256 of files and of whole trees (SPEC section 2). The sha2 crate picks the CPU's SHA
//! instructions at run time; a large read buffer keeps the hashing, not the syscalls, the cost.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::entry::{Entry, Kind};
use crate::error::{IoResultExt, Op, Result};
use crate::fsio::Root;
use crate::relpath::RelPath;

mod ahead;
mod content;
mod same;
pub use ahead::with_compare_ahead;
pub use content::{Budget, Content, Current, Kept, LISTED_BYTES, Listing, Seen};
pub use same::same_bytes;

/// Read buffer for hashing: large enough that syscalls are noise next to SHA-256.
const BUF_SIZE: usize = 1 << 20;

/// A SHA-256 digest. Displays and serializes as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The lowercase hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// SHA-256 of a byte string.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

/// The error of parsing a digest from text.
#[derive(Debug, thiserror::Error)]
#[error("not a SHA-256 hex digest")]
pub struct ParseDigestError;

impl FromStr for Digest {
    type Err = ParseDigestError;

    fn from_str(s: &str) -> Result<Self, ParseDigestError> {
        // Lowercase only: the one spelling the programs write.
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ParseDigestError);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseDigestError)?;
        Ok(Digest(out))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// SHA-256 of everything `reader` yields.
pub fn reader_checksum(mut reader: impl Read) -> io::Result<Digest> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Digest(hasher.finalize().into()))
}

/// SHA-256 of a file's bytes.
pub fn file_checksum(path: &Path) -> Result<Digest> {
    let file = File::open(path).at(Op::Read, path)?;
    reader_checksum(file).at(Op::Read, path)
}

/// The directory checksum of SPEC section 2 over already-scanned, path-sorted `entries`:
/// each file contributes its path bytes then its hex digest, each symlink `path->target`, each
/// empty directory `path/`. `file_digest` supplies (or looks up) a file's digest.
pub fn directory_checksum_of(
    entries: &[Entry],
    mut file_digest: impl FnMut(&Entry) -> Result<Digest>,
) -> Result<Digest> {
    debug_assert!(entries.windows(2).all(|w| w[0].path < w[1].path), "entries must be sorted");
    let mut hasher = Sha256::new();
    for (i, entry) in entries.iter().enumerate() {
        let path = entry.path.as_bytes();
        match &entry.kind {
            Kind::File => {
                hasher.update(path);
                hasher.update(file_digest(entry)?.to_hex().as_bytes());
            }
            Kind::Symlink(target) => {
                hasher.update(path);
                hasher.update(b"->");
                hasher.update(target);
            }
            Kind::Dir => {
                // Empty when no later entry lies below it (children sort right after `path/`,
                // but siblings such as `path-x` may come between; scan for the first child).
                let has_child = entries[i + 1..]
                    .iter()
                    .take_while(|e| e.path.as_bytes().starts_with(path))
                    .any(|e| e.path.is_within(&entry.path));
                if !has_child {
                    hasher.update(path);
                    hasher.update(b"/");
                }
            }
        }
    }
    Ok(Digest(hasher.finalize().into()))
}

/// SHA-256 of the file `rel` beneath `root` (reached without following any symlink).
pub fn file_checksum_in(root: &Root, rel: &RelPath) -> Result<Digest> {
    let file = root.open_read(rel.as_path())?;
    reader_checksum(file).at(Op::Read, || root.path_of(rel.as_path()))
}

/// The directory checksum of the tree at `root`, hashing every file.
pub fn directory_checksum(root: &Root) -> Result<Digest> {
    let tree = crate::scan::scan(root)?;
    if let Some(err) = tree.errors.into_iter().next() {
        return Err(err);
    }
    directory_checksum_of(&tree.entries, |e| file_checksum_in(root, &e.path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn known_vectors() {
        assert_eq!(
            Digest::of_bytes(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            Digest::of_bytes(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let big = vec![b'a'; 3 * BUF_SIZE + 17];
        assert_eq!(reader_checksum(&big[..]).unwrap(), Digest::of_bytes(&big));
    }

    #[test]
    fn hex_round_trips() {
        let d = Digest::of_bytes(b"abc");
        assert_eq!(d.to_hex().parse::<Digest>().unwrap(), d);
        assert!("xyz".parse::<Digest>().is_err());
        assert!("G".repeat(64).parse::<Digest>().is_err());
    }

    #[test]
    fn file_checksum_matches_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"abc").unwrap();
        assert_eq!(file_checksum(&p).unwrap(), Digest::of_bytes(b"abc"));
        let err = file_checksum(&dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().starts_with("cannot read"), "{err}");
    }

    fn build(root: &Path, order: &[&str]) {
        for name in order {
            let p = root.join(name);
            if let Some(dir) = name.strip_suffix('/') {
                fs::create_dir_all(root.join(dir)).unwrap();
            } else {
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(&p, name.as_bytes()).unwrap();
            }
        }
    }

    #[test]
    fn directory_checksum_is_independent_of_creation_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let names = ["z/y/x", "a", "a-b", "m/n", "m/o", "empty/", "z/a"];
        build(a.path(), &names);
        let mut rev = names;
        rev.reverse();
        build(b.path(), &rev);
        assert_eq!(
            directory_checksum(&Root::open(a.path()).unwrap()).unwrap(),
            directory_checksum(&Root::open(b.path()).unwrap()).unwrap()
        );
    }

    #[test]
    fn directory_checksum_follows_the_spec_definition() {
        let d = tempfile::tempdir().unwrap();
        build(d.path(), &["b/c", "a", "e/"]);
        std::os::unix::fs::symlink("a", d.path().join("l")).unwrap();
        let mut expected = Vec::new();
        for (path, content) in [("a", "a"), ("b/c", "b/c")] {
            expected.extend_from_slice(path.as_bytes());
            expected.extend_from_slice(Digest::of_bytes(content.as_bytes()).to_hex().as_bytes());
        }
        expected.extend_from_slice(b"e/");
        expected.extend_from_slice(b"l->a");
        assert_eq!(directory_checksum(&Root::open(d.path()).unwrap()).unwrap(), Digest::of_bytes(&expected));
    }

    #[test]
    fn directory_checksum_sees_content_names_and_empty_dirs() {
        let d = tempfile::tempdir().unwrap();
        build(d.path(), &["a/b"]);
        let before = directory_checksum(&Root::open(d.path()).unwrap()).unwrap();
        fs::write(d.path().join("a/b"), "changed").unwrap();
        let changed = directory_checksum(&Root::open(d.path()).unwrap()).unwrap();
        assert_ne!(before, changed);
        fs::create_dir(d.path().join("new")).unwrap();
        assert_ne!(changed, directory_checksum(&Root::open(d.path()).unwrap()).unwrap());
    }
}
