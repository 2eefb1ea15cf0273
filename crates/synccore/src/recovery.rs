//! The recovery system's files (SPEC section 4 "Recovery"): `config.json`, which says how
//! `twoway` starts its versioning children, and `.info.json`, the register of protected
//! directories that `twoway --restore` looks a directory up in, even after it was deleted.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsio::{self, Root};
use crate::jsonbytes::Bytes;

/// The default interval arguments handed to each versioning child.
pub const DEFAULT_INTERVAL: [&str; 2] = ["--interval", "60"];

/// A loaded, validated `config.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The versioning program, resolved (a relative path is taken from the config's directory).
    pub script: PathBuf,
    /// Arguments that set the child's interval, e.g. `["--interval", "60"]`.
    pub interval: Vec<String>,
    /// Keys the file has that this version does not know (reported as warnings).
    pub unknown_keys: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ConfigFile {
    script: PathBuf,
    interval: Vec<String>,
}

/// Loads `path`, creating it with defaults (`script` = `default_script`) when it is missing.
/// Invalid JSON, wrong types, or a script that is missing or not executable are errors that
/// name the file and the problem.
pub fn load_config(path: &Path, default_script: &Path) -> Result<Config> {
    let invalid = |reason: String| Error::Invalid { path: path.to_path_buf(), reason };
    let (dir, name) = beside(path, true)?;
    let text = if let Some(text) = dir.read(name)? {
        text
    } else {
        let file = ConfigFile {
            script: default_script.to_path_buf(),
            interval: DEFAULT_INTERVAL.iter().map(ToString::to_string).collect(),
        };
        let mut json = serde_json::to_vec_pretty(&file).map_err(|e| invalid(e.to_string()))?;
        json.push(b'\n');
        dir.write_atomic(name, &json)?;
        json
    };
    let value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| invalid(format!("invalid JSON: {e}")))?;
    let serde_json::Value::Object(map) = &value else {
        return Err(invalid("expected a JSON object with \"script\" and \"interval\"".into()));
    };
    let unknown_keys =
        map.keys().filter(|k| !["script", "interval"].contains(&k.as_str())).cloned().collect();
    let script = match map.get("script") {
        Some(serde_json::Value::String(s)) if !s.is_empty() => PathBuf::from(s),
        Some(_) => return Err(invalid("\"script\" must be a non-empty string (the oneway program)".into())),
        None => return Err(invalid("\"script\" is missing".into())),
    };
    let interval = match map.get("interval") {
        Some(serde_json::Value::Array(items)) => {
            items.iter().map(|v| v.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>().ok_or_else(
                || invalid("\"interval\" must be an array of strings, e.g. [\"--interval\", \"60\"]".into()),
            )?
        }
        Some(_) => {
            return Err(invalid(
                "\"interval\" must be an array of strings, e.g. [\"--interval\", \"60\"]".into(),
            ));
        }
        None => return Err(invalid("\"interval\" is missing".into())),
    };
    check_interval(&interval).map_err(invalid)?;
    let script =
        if script.is_relative() { path.parent().unwrap_or(Path::new(".")).join(script) } else { script };
    check_executable(&script)
        .map_err(|reason| invalid(format!("script {}: {reason}", crate::error::Quoted(&script))))?;
    Ok(Config { script, interval, unknown_keys })
}

/// Checks `"interval"`, the arguments that set each child's period, before any child starts
/// (SPEC section 4: a bad config is a clear error and nothing is started). Without this, a
/// value `oneway` refuses made a child exit 2 after the first pass had run, and one past the
/// deadline's range made it panic (hardening issue, part A). Accepted: `[]` (the child's
/// default), `["--interval", "SECS"]`, `["-i", "SECS"]` and `["--interval=SECS"]`.
fn check_interval(args: &[String]) -> std::result::Result<(), String> {
    let secs = match args {
        [] => return Ok(()),
        [flag, secs] if flag == "--interval" || flag == "-i" => secs.as_str(),
        [one] if one.starts_with("--interval=") => &one["--interval=".len()..],
        _ => {
            return Err(format!(
                "\"interval\" must be [\"--interval\", \"SECS\"] (or []), not {args:?}, with SECS in \
                 {}..={}",
                crate::interval::MIN_SECS,
                crate::interval::MAX_SECS
            ));
        }
    };
    crate::interval::parse_secs(secs).map(drop).map_err(|e| format!("\"interval\": {e}"))
}

fn check_executable(script: &Path) -> std::result::Result<(), String> {
    match fs::metadata(script) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err("does not exist".into()),
        Err(e) => Err(e.to_string()),
        Ok(m) if !m.is_file() => Err("is not a file".into()),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err("is not executable".into()),
        Ok(_) => Ok(()),
    }
}

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
    let text = match beside(path, false) {
        Ok((dir, name)) => match dir.read(name)? {
            Some(text) => text,
            None => return Ok(Info::default()),
        },
        Err(Error::Missing { .. }) => return Ok(Info::default()),
        Err(err) => return Err(err),
    };
    let corrupt = |reason: String| Error::Invalid {
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

/// Records `dirs` (directory, name, versions location, partner) in `.info.json`, merged with
/// what the file already holds (other pairs, first-seen times), written atomically. Holds a
/// lock beside the file so that two `twoway` processes never lose each other's entries.
pub fn record(path: &Path, dirs: &[(PathBuf, std::ffi::OsString, PathBuf, PathBuf)]) -> Result<Info> {
    let _lock = crate::lock::acquire_blocking(&path.with_file_name(".info.lock"))?;
    let mut info = load_info(path)?;
    let now = chrono::Utc::now().to_rfc3339();
    for (dir, name, versions, partner) in dirs {
        let first_seen = info.dirs.get(dir).map_or_else(|| now.clone(), |p| p.first_seen.clone());
        info.dirs.insert(
            dir.clone(),
            Protected {
                name: name.clone(),
                versions: versions.clone(),
                partner: partner.clone(),
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
    let (dir, name) = beside(path, true)?;
    dir.write_atomic(name, &json)?;
    Ok(info)
}

/// The register of protected directories in a home.
pub fn info_path(home: &Path) -> PathBuf {
    home.join(".info.json")
}

/// The directory that holds the program's own file `path` (opened by its canonical path, and
/// created first when `create`), and the file's name in it: the file is then read and written
/// only through that directory, never through a symlink (the security issue).
fn beside(path: &Path, create: bool) -> Result<(Root, &Path)> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::Invalid { path: path.to_path_buf(), reason: "is not a file name".into() });
    };
    if create {
        fsio::create_dirs(dir)?;
    }
    Ok((Root::open(&crate::roots::absolute(dir)?)?, Path::new(name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    fn exe(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn a_missing_config_is_created_with_defaults() {
        let d = tempfile::tempdir().unwrap();
        let oneway = exe(d.path(), "oneway", 0o755);
        let path = d.path().join("home/config.json");
        let config = load_config(&path, &oneway).unwrap();
        assert_eq!(config.script, oneway);
        assert_eq!(config.interval, vec!["--interval", "60"]);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"script\"") && text.contains("\"--interval\""), "{text}");
    }

    #[test]
    fn relative_scripts_resolve_from_the_config_directory_and_unknown_keys_are_listed() {
        let d = tempfile::tempdir().unwrap();
        exe(d.path(), "my-oneway", 0o755);
        let path = d.path().join("config.json");
        fs::write(&path, r#"{"script": "my-oneway", "interval": ["--interval", "5"], "colour": "blue"}"#)
            .unwrap();
        let config = load_config(&path, Path::new("/unused")).unwrap();
        assert_eq!(config.script, d.path().join("my-oneway"));
        assert_eq!(config.unknown_keys, vec!["colour"]);
    }

    #[test]
    fn bad_configs_are_clear_errors() {
        let d = tempfile::tempdir().unwrap();
        exe(d.path(), "not-exec", 0o644);
        let path = d.path().join("config.json");
        let cases = [
            ("{oops", "invalid JSON"),
            ("[1, 2]", "expected a JSON object"),
            (r#"{"script": 5, "interval": []}"#, "\"script\" must be"),
            (r#"{"script": "x", "interval": "60"}"#, "\"interval\" must be"),
            (r#"{"script": "x", "interval": [60]}"#, "\"interval\" must be"),
            (r#"{"interval": []}"#, "\"script\" is missing"),
            (r#"{"script": "missing", "interval": []}"#, "does not exist"),
            (r#"{"script": "not-exec", "interval": []}"#, "is not executable"),
            (r#"{"script": ".", "interval": []}"#, "is not a file"),
            // Hardening issue, part A: the period is checked before any child starts.
            (r#"{"script": "x", "interval": ["--interval", "18446744073709551615"]}"#, "1..=31536000"),
            (r#"{"script": "x", "interval": ["--interval", "0"]}"#, "1..=31536000"),
            (r#"{"script": "x", "interval": ["-i", "soon"]}"#, "1..=31536000"),
            (r#"{"script": "x", "interval": ["--interval=31536001"]}"#, "1..=31536000"),
            (r#"{"script": "x", "interval": ["--interval"]}"#, "\"interval\" must be"),
            (r#"{"script": "x", "interval": ["--interval", "5", "--checksum"]}"#, "\"interval\" must be"),
        ];
        for (text, needle) in cases {
            fs::write(&path, text).unwrap();
            let err = load_config(&path, Path::new("/unused")).unwrap_err().to_string();
            assert!(err.contains(needle) && err.contains("config.json"), "{text}: {err}");
        }
    }

    #[test]
    fn info_is_merged_across_records_and_round_trips_raw_names() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(".info.json");
        let raw = PathBuf::from(std::ffi::OsStr::from_bytes(b"/data/caf\xe9"));
        let row = |dir: &Path, partner: &Path| {
            (dir.to_path_buf(), "n-1".into(), PathBuf::from("/h/__versions__/n-1"), partner.to_path_buf())
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
