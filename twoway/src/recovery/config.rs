//! `config.json` (SPEC section 4 "Recovery"): how `twoway` starts its versioning children,
//! created with defaults when missing, and refused with a clear error (nothing started) when
//! invalid.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use synccore::error::{Error, Result};
use synccore::fsio;
use synccore::ignore::Excludes;

/// A loaded, validated `config.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// The versioning program, resolved (a relative path is taken from the config's directory).
    pub script: PathBuf,
    /// Arguments that set the child's interval, e.g. `["--interval", "60"]`, when the file
    /// says; `None`: the children follow twoway's own `--interval` (issue 16, point 7).
    pub interval: Option<Vec<String>>,
    /// Keys the file has that this version does not know (reported as warnings).
    pub unknown_keys: Vec<String>,
    /// The file's script was twoway's default and no longer exists, so `default_script`
    /// replaced it: the path the file names.
    pub replaced_script: Option<PathBuf>,
}

/// The file twoway creates: marked as its own (`"created_by": "twoway"`), so that its default
/// script is looked up again when it moves, and without an interval, so that the children
/// follow twoway's `--interval` (issue 16, point 7).
#[derive(Debug, Serialize, Deserialize)]
struct ConfigFile {
    created_by: String,
    script: PathBuf,
}

/// The value of `"created_by"` in a file twoway created.
pub const CREATED_BY: &str = "twoway";

/// Loads `path`, creating it with defaults (`script` = `default_script`, no interval) when
/// it is missing. Invalid JSON, wrong types, or a script that is missing or not executable
/// are errors that name the file and the problem; except that the script of a file twoway
/// created that no longer exists is replaced by `default_script` (found again beside twoway
/// or on `PATH`), so that moving the programs never breaks recovery for good.
pub fn load_config(path: &Path, default_script: &Path) -> Result<RecoveryConfig> {
    let invalid = |reason: String| Error::Invalid { path: path.to_path_buf(), reason };
    let (dir, name) = fsio::open_beside(path, true)?;
    let text = if let Some(text) = dir.read(name)? {
        text
    } else {
        let file = ConfigFile { created_by: CREATED_BY.into(), script: default_script.to_path_buf() };
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
    let unknown_keys = map
        .keys()
        .filter(|k| !["script", "interval", "created_by", "exclude"].contains(&k.as_str()))
        .cloned()
        .collect();
    exclude_of(map, path)?;
    let script = match map.get("script") {
        Some(serde_json::Value::String(s)) if !s.is_empty() => PathBuf::from(s),
        Some(_) => return Err(invalid("\"script\" must be a non-empty string (the oneway program)".into())),
        None => return Err(invalid("\"script\" is missing".into())),
    };
    let interval = match map.get("interval") {
        None => None,
        Some(serde_json::Value::Array(items)) => {
            Some(items.iter().map(|v| v.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>().ok_or_else(
                || invalid("\"interval\" must be an array of strings, e.g. [\"--interval\", \"60\"]".into()),
            )?)
        }
        Some(_) => {
            return Err(invalid(
                "\"interval\" must be an array of strings, e.g. [\"--interval\", \"60\"]".into(),
            ));
        }
    };
    if let Some(interval) = &interval {
        check_interval(interval).map_err(invalid)?;
    }
    let script =
        if script.is_relative() { path.parent().unwrap_or(Path::new(".")).join(script) } else { script };
    let created = map.get("created_by").and_then(serde_json::Value::as_str) == Some(CREATED_BY);
    let (script, replaced_script) = match check_executable(&script) {
        Err(_) if created && script != default_script && check_executable(default_script).is_ok() => {
            (default_script.to_path_buf(), Some(script))
        }
        Err(reason) => {
            return Err(invalid(format!("script {}: {reason}", synccore::error::Quoted(&script))));
        }
        Ok(()) => (script, None),
    };
    Ok(RecoveryConfig { script, interval, unknown_keys, replaced_script })
}

/// The `oneway` twoway runs: the one beside the running `twoway` (`exe`), else the first on
/// `PATH`; when neither exists, the one beside twoway (whose absence the config check then
/// reports).
pub fn find_oneway(exe: &Path) -> PathBuf {
    let beside = exe.with_file_name("oneway");
    if check_executable(&beside).is_ok() {
        return beside;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join("oneway"))
        .find(|candidate| check_executable(candidate).is_ok())
        .unwrap_or(beside)
}

/// The excludes of a run of twoway (issue 14): the config's `"exclude"` list (it applies to
/// every pair of the home; `config` is `--config`, else `<home>/config.json`, which may not
/// exist yet), then `--exclude-from`, then `--exclude`. A bad pattern, a wrong type or an
/// unreadable file is bad input.
pub fn excludes(config: Option<&Path>, home: &Path, common: &synccli::args::CommonArgs) -> Result<Excludes> {
    let path = match config {
        Some(path) => synccore::roots::absolute(path)?,
        None => home.join("config.json"),
    };
    let text = match fsio::open_beside(&path, false) {
        Ok((dir, name)) => dir.read(name)?,
        Err(Error::Missing { .. }) => None,
        Err(err) => return Err(err),
    };
    let mut all = Excludes::none();
    // A config that is not a JSON object is reported by `load_config` when the recovery
    // system starts (before any pass); `--no-recovery` goes on without it, as it always has.
    let parsed = text.and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok());
    if let Some(serde_json::Value::Object(map)) = &parsed {
        all.add(&path, &exclude_of(map, &path)?)?;
    }
    let cli = common.excludes()?;
    all.add(Path::new("--exclude"), cli.lines())?;
    Ok(all)
}

/// The optional `"exclude"` list of a config: an array of patterns (strings).
fn exclude_of(map: &serde_json::Map<String, serde_json::Value>, path: &Path) -> Result<Vec<String>> {
    let invalid = || Error::Invalid {
        path: path.to_path_buf(),
        reason: "\"exclude\" must be an array of patterns (strings), e.g. [\"node_modules/\", \"*.tmp\"]"
            .into(),
    };
    match map.get("exclude") {
        None => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(invalid),
        Some(_) => Err(invalid()),
    }
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
                synccli::interval::MIN_SECS,
                synccli::interval::MAX_SECS
            ));
        }
    };
    synccli::interval::parse_secs(secs).map(drop).map_err(|e| format!("\"interval\": {e}"))
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

#[cfg(test)]
mod tests {
    use super::*;

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
        // Issue 16, point 7: the children follow twoway's --interval.
        assert_eq!(config.interval, None);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"created_by\": \"twoway\"") && text.contains("\"script\""), "{text}");
        assert!(!text.contains("interval"), "{text}");
    }

    #[test]
    fn a_default_script_that_moved_is_found_again_but_a_users_is_not() {
        let d = tempfile::tempdir().unwrap();
        let oneway = exe(d.path(), "oneway", 0o755);
        let path = d.path().join("config.json");
        fs::write(&path, r#"{"created_by": "twoway", "script": "/gone/oneway"}"#).unwrap();
        let config = load_config(&path, &oneway).unwrap();
        assert_eq!(
            (config.script, config.replaced_script),
            (oneway.clone(), Some(PathBuf::from("/gone/oneway")))
        );
        fs::write(&path, r#"{"script": "/gone/oneway", "interval": ["--interval", "5"]}"#).unwrap();
        let err = load_config(&path, &oneway).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn oneway_is_found_beside_twoway_first() {
        let d = tempfile::tempdir().unwrap();
        let oneway = exe(d.path(), "oneway", 0o755);
        assert_eq!(find_oneway(&d.path().join("twoway")), oneway);
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
            (r#"{"script": "x", "interval": {}}"#, "\"interval\" must be"),
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
    fn excludes_come_from_the_config_then_the_command_line() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            common: synccli::args::CommonArgs,
        }
        let d = tempfile::tempdir().unwrap();
        let cli = Cli::parse_from(["t", "--exclude", "*.tmp"]);
        // No config yet: the command line only.
        assert_eq!(excludes(None, d.path(), &cli.common).unwrap().lines(), ["*.tmp"]);
        let path = d.path().join("config.json");
        fs::write(&path, r#"{"script": "x", "interval": [], "exclude": ["node_modules/"]}"#).unwrap();
        assert_eq!(excludes(None, d.path(), &cli.common).unwrap().lines(), ["node_modules/", "*.tmp"]);
        for (text, needle) in [
            (r#"{"exclude": "x"}"#, "\"exclude\" must be an array"),
            (r#"{"exclude": [1]}"#, "\"exclude\" must be an array"),
            (r#"{"exclude": ["[z-a]"]}"#, "bad pattern"),
        ] {
            fs::write(&path, text).unwrap();
            let err = excludes(Some(&path), d.path(), &cli.common).unwrap_err();
            assert!(err.exit_code() == 2 && err.to_string().contains(needle), "{text}: {err}");
        }
    }
}
