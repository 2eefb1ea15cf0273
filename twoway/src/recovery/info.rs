//! `.info.json` (SPEC section 4 "Recovery"): the register of protected directories, which
//! `twoway --restore` looks a directory up in, even after it was deleted. Merged, never
//! clobbered, written atomically through its directory's descriptor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use synccore::error::{Error, Result};
use synccore::fsio;
use synccore::jsonbytes::Bytes;

/// What `.info.json` records about one protected directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    /// The `<name>` of its versions.
    pub name: std::ffi::OsString,
    /// `<home>/__versions__/<name>`.
    pub versions: PathBuf,
    /// The directory it is synced with.
    pub partner: PathBuf,
    /// RFC 3339 times.
    pub first_seen: String,
    pub last_seen: String,
}

/// `.info.json`: protected directories by canonical absolute path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info {
    pub dirs: BTreeMap<PathBuf, Protected>,
}

#[derive(Debug, Serialize, Deserialize)]
struct InfoFile {
    format: u32,
    directories: Vec<InfoRow>,
}

#[derive(Debug, Serialize, Deserialize)]
struct InfoRow {
    path: Bytes,
    name: Bytes,
    versions: Bytes,
    partner: Bytes,
    first_seen: String,
    last_seen: String,
}

/// Reads `.info.json`; a missing file is an empty register. A corrupt one is an error naming
/// the file: it is never silently replaced.
pub fn load_info(path: &Path) -> Result<Info> {
    let text = match fsio::open_beside(path, false) {
        Ok((dir, name)) => match dir.read(name)? {
            Some(text) => text,
            None => return Ok(Info::default()),
        },
        Err(Error::Missing { .. }) => return Ok(Info::default()),
        Err(err) => return Err(err),
    };
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_path_buf(),
        reason: format!("{reason}; fix or move the file (it is never overwritten while unreadable)"),
    };
    let file: InfoFile =
        serde_json::from_slice(&text).map_err(|e| corrupt(format!("corrupt register: {e}")))?;
    if file.format != 1 {
        return Err(corrupt(format!("register format {} is not 1", file.format)));
    }
    let mut dirs = BTreeMap::new();
    for row in file.directories {
        let bad = || corrupt("corrupt register: bad hex in a path".into());
        let name = std::ffi::OsString::from(row.name.into_path().ok_or_else(bad)?);
        let entry = Protected {
            name,
            versions: row.versions.into_path().ok_or_else(bad)?,
            partner: row.partner.into_path().ok_or_else(bad)?,
            first_seen: row.first_seen,
            last_seen: row.last_seen,
        };
        dirs.insert(row.path.into_path().ok_or_else(bad)?, entry);
    }
    Ok(Info { dirs })
}

/// A directory to register as protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProtected {
    /// The directory (canonical).
    pub dir: PathBuf,
    /// The `<name>` of its versions.
    pub name: std::ffi::OsString,
    /// `<home>/__versions__/<name>`.
    pub versions: PathBuf,
    /// The directory it is synced with.
    pub partner: PathBuf,
}

/// Records `dirs` in `.info.json`, merged with what the file already holds (other pairs,
/// first-seen times), written atomically. Holds a lock beside the file so that two `twoway`
/// processes never lose each other's entries.
pub fn record(path: &Path, dirs: &[NewProtected]) -> Result<Info> {
    let _lock = synccore::lock::acquire_blocking(&path.with_file_name(".info.lock"))?;
    let mut info = load_info(path)?;
    let now = chrono::Utc::now().to_rfc3339();
    for new in dirs {
        let first_seen = info.dirs.get(&new.dir).map_or_else(|| now.clone(), |p| p.first_seen.clone());
        info.dirs.insert(
            new.dir.clone(),
            Protected {
                name: new.name.clone(),
                versions: new.versions.clone(),
                partner: new.partner.clone(),
                first_seen,
                last_seen: now.clone(),
            },
        );
    }
    let file = InfoFile {
        format: 1,
        directories: info
            .dirs
            .iter()
            .map(|(dir, p)| InfoRow {
                path: Bytes::of_path(dir),
                name: Bytes::of_path(Path::new(&p.name)),
                versions: Bytes::of_path(&p.versions),
                partner: Bytes::of_path(&p.partner),
                first_seen: p.first_seen.clone(),
                last_seen: p.last_seen.clone(),
            })
            .collect(),
    };
    let mut json = serde_json::to_vec_pretty(&file)
        .map_err(|e| Error::Invalid { path: path.into(), reason: format!("cannot encode: {e}") })?;
    json.push(b'\n');
    let (dir, name) = fsio::open_beside(path, true)?;
    dir.write_atomic(name, &json)?;
    Ok(info)
}

/// The register of protected directories in a home.
pub fn info_path(home: &Path) -> PathBuf {
    home.join(".info.json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn info_is_merged_across_records_and_round_trips_raw_names() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(".info.json");
        let raw = PathBuf::from(std::ffi::OsStr::from_bytes(b"/data/caf\xe9"));
        let row = |dir: &Path, partner: &Path| NewProtected {
            dir: dir.to_path_buf(),
            name: "n-1".into(),
            versions: PathBuf::from("/h/__versions__/n-1"),
            partner: partner.to_path_buf(),
        };
        record(&path, &[row(&raw, Path::new("/b"))]).unwrap();
        let first = load_info(&path).unwrap().dirs[&raw].first_seen.clone();
        let info = record(&path, &[row(Path::new("/other"), Path::new("/c"))]).unwrap();
        assert_eq!(info.dirs.len(), 2, "merged, not clobbered");
        assert_eq!(info.dirs[&raw].first_seen, first);
        assert_eq!(load_info(&path).unwrap(), info);
    }

    #[test]
    fn a_corrupt_info_is_an_error_and_is_not_replaced() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(".info.json");
        fs::write(&path, "{broken").unwrap();
        let err = record(&path, &[]).unwrap_err().to_string();
        assert!(err.contains(".info.json") && err.contains("corrupt"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "{broken");
    }
}
