//! Byte strings in JSON: paths are raw bytes, JSON strings are UTF-8. Every file the programs
//! write (the merge state, the versions manifest, `.info.json`) and the `--json` events use
//! this one encoding: a plain string when the bytes are valid UTF-8, else
//! `{"hex": "<bytes as lowercase hex>"}`, so every name round-trips byte-exactly while
//! ordinary names stay readable.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A byte string as stored in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bytes {
    Utf8(String),
    Raw { hex: String },
}

impl Bytes {
    /// Wraps raw bytes.
    pub fn of(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(s) => Bytes::Utf8(s.to_owned()),
            Err(_) => Bytes::Raw { hex: hex::encode(bytes) },
        }
    }

    /// Wraps a path.
    pub fn of_path(path: &Path) -> Self {
        use std::os::unix::ffi::OsStrExt;
        Self::of(path.as_os_str().as_bytes())
    }

    /// The raw bytes, or `None` for malformed hex.
    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Bytes::Utf8(s) => Some(s.into_bytes()),
            Bytes::Raw { hex } => hex::decode(hex).ok(),
        }
    }

    /// The bytes as a path, or `None` for malformed hex.
    pub fn into_path(self) -> Option<PathBuf> {
        use std::os::unix::ffi::OsStringExt;
        self.into_bytes().map(|b| PathBuf::from(std::ffi::OsString::from_vec(b)))
    }
}

/// Serde for raw bytes in this encoding (`#[serde(with = "crate::jsonbytes::raw")]`), for
/// byte-string fields of types that are written to the programs' own files.
pub mod raw {
    use super::Bytes;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        Bytes::of(bytes).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: From<Vec<u8>>>(d: D) -> Result<T, D::Error> {
        let bytes = Bytes::deserialize(d)?;
        bytes
            .into_bytes()
            .map(T::from)
            .ok_or_else(|| serde::de::Error::custom("malformed hex in a byte string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_stays_readable_and_raw_bytes_round_trip() {
        assert_eq!(serde_json::to_string(&Bytes::of(b"plain")).unwrap(), r#""plain""#);
        let raw = Bytes::of(b"a\xff\n");
        assert_eq!(serde_json::to_string(&raw).unwrap(), r#"{"hex":"61ff0a"}"#);
        let back: Bytes = serde_json::from_str(r#"{"hex":"61ff0a"}"#).unwrap();
        assert_eq!(back.into_bytes().unwrap(), b"a\xff\n");
        assert_eq!(Bytes::Raw { hex: "zz".into() }.into_bytes(), None);
    }
}
