//! Where a remote store is: `s3://bucket/prefix` or `sftp://[user@]host[:port]/path` (issue
//! 18), with the settings the URL cannot carry taken from `key=value` options and, for S3,
//! the standard AWS variables. A [`Location`] prints as its URL without any credential and
//! remembers every secret it holds, so that no message of the store can repeat one.

use std::fmt;
use std::path::PathBuf;

use synccore::{Error, Result};

/// Which protocol a location speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    S3,
    Sftp,
}

/// The settings of an S3 store. `Debug` is hand-written: it never prints the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    /// The key prefix, `/` for the whole bucket, else `/prefix/` (opendal's root).
    pub root: String,
    pub region: String,
    /// `http(s)://host[:port]` of an S3-compatible service; `None` for AWS itself.
    pub endpoint: Option<String>,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// The settings of an SFTP store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpSettings {
    /// What `ssh` connects to: `host` or `ssh://host:port`.
    pub endpoint: String,
    pub user: Option<String>,
    /// The directory on the server: absolute, or relative to the login directory.
    pub root: String,
    /// An identity file (`-i`); by default `ssh` uses the user's own keys and agent.
    pub key: Option<PathBuf>,
    /// `strict` (the default: the host must be in `known_hosts`), `add` or `accept`.
    pub known_hosts: String,
}

/// A parsed remote location.
#[derive(Clone, PartialEq, Eq)]
pub enum Settings {
    S3(S3Settings),
    Sftp(SftpSettings),
}

/// A remote store's address and settings.
#[derive(Clone, PartialEq, Eq)]
pub struct Location {
    url: String,
    settings: Settings,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("root", &self.root)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({})", self.url)
    }
}

impl fmt::Display for Location {
    /// The URL as the user gave it, minus any credential.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// True when a command-line argument names a remote store rather than a local path: it
/// starts with a scheme this crate knows. (`./s3:` or `s3:x` stay local paths.)
pub fn is_remote(arg: &std::ffi::OsStr) -> bool {
    let b = arg.as_encoded_bytes();
    b.starts_with(b"s3://") || b.starts_with(b"sftp://")
}

impl Location {
    /// Parses `url` with `options` (`key=value` pairs, e.g. from `--remote-option`) and the
    /// process's environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`, `AWS_REGION` or `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`).
    pub fn parse(url: &str, options: &[(String, String)]) -> Result<Location> {
        Self::parse_with_env(url, options, |name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// [`Location::parse`] with the environment given as a function (for tests).
    pub fn parse_with_env(
        url: &str,
        options: &[(String, String)],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Location> {
        if let Some(rest) = url.strip_prefix("s3://") {
            parse_s3(rest, options, &env)
        } else if let Some(rest) = url.strip_prefix("sftp://") {
            parse_sftp(rest, options)
        } else {
            Err(invalid(url, "not a remote URL (s3://bucket/prefix or sftp://[user@]host[:port]/path)"))
        }
    }

    /// The URL without credentials, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Which protocol.
    pub fn service(&self) -> Service {
        match self.settings {
            Settings::S3(_) => Service::S3,
            Settings::Sftp(_) => Service::Sftp,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Every secret this location holds, to be scrubbed from any message.
    pub fn secrets(&self) -> Vec<String> {
        match &self.settings {
            Settings::S3(s) => {
                let mut v = vec![s.secret_access_key.clone()];
                v.extend(s.session_token.clone());
                v.retain(|s| !s.is_empty());
                v
            }
            Settings::Sftp(_) => Vec::new(),
        }
    }

    /// The location of `sub` below this one (`URL/__versions__/<name>`, issue 18's remote
    /// versions): the same store, settings and credentials, a deeper root.
    #[must_use]
    pub fn join(&self, sub: &str) -> Location {
        let sub = sub.trim_matches('/');
        let mut next = self.clone();
        next.url = format!("{}/{sub}", self.url.trim_end_matches('/'));
        match &mut next.settings {
            Settings::S3(s) => s.root = format!("{}{sub}/", s.root),
            Settings::Sftp(s) => {
                s.root = if s.root.is_empty() {
                    sub.to_owned()
                } else {
                    format!("{}/{sub}", s.root.trim_end_matches('/'))
                }
            }
        }
        next
    }
}

fn invalid(url: &str, reason: &str) -> Error {
    // The path of `Invalid` is only printed; a URL given with a password never reaches here
    // whole (see `parse_sftp`).
    Error::Invalid { path: PathBuf::from(url), reason: reason.to_owned() }
}

/// Looks `key` up in the options, the last one winning (as on a command line).
fn option<'a>(options: &'a [(String, String)], key: &str) -> Option<&'a str> {
    options.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn check_keys(url: &str, options: &[(String, String)], known: &[&str]) -> Result<()> {
    for (k, _) in options {
        if !known.contains(&k.as_str()) {
            return Err(invalid(url, &format!("unknown remote option {k:?} (known: {})", known.join(", "))));
        }
    }
    Ok(())
}

const S3_OPTIONS: &[&str] = &["region", "endpoint", "access_key_id", "secret_access_key", "session_token"];

fn parse_s3(
    rest: &str,
    options: &[(String, String)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Location> {
    let shown = format!("s3://{rest}");
    check_keys(&shown, options, S3_OPTIONS)?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !bucket_ok {
        return Err(invalid(
            &shown,
            "not a valid bucket name (3 to 63 lowercase letters, digits, '-' or '.')",
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|c| c == "." || c == "..") {
        return Err(invalid(&shown, "a prefix may not hold '.' or '..' components"));
    }
    let pick = |key: &str, var: &[&str]| -> Option<String> {
        option(options, key).map(str::to_owned).or_else(|| var.iter().find_map(|v| env(v)))
    };
    let access_key_id = pick("access_key_id", &["AWS_ACCESS_KEY_ID"]);
    let secret_access_key = pick("secret_access_key", &["AWS_SECRET_ACCESS_KEY"]);
    let (Some(access_key_id), Some(secret_access_key)) = (access_key_id, secret_access_key) else {
        return Err(invalid(
            &shown,
            "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the options \
             access_key_id and secret_access_key)",
        ));
    };
    let endpoint = pick("endpoint", &["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"])
        .map(|e| e.trim_end_matches('/').to_owned());
    if let Some(e) = &endpoint
        && !(e.starts_with("http://") || e.starts_with("https://"))
    {
        return Err(invalid(&shown, "the endpoint must be an http:// or https:// URL"));
    }
    let settings = S3Settings {
        bucket: bucket.to_owned(),
        root: if prefix.is_empty() { "/".to_owned() } else { format!("/{prefix}/") },
        // us-east-1 when none is given: what S3-compatible services expect, and AWS answers
        // a wrong region with a clear error.
        region: pick("region", &["AWS_REGION", "AWS_DEFAULT_REGION"])
            .unwrap_or_else(|| "us-east-1".to_owned()),
        endpoint,
        access_key_id,
        secret_access_key,
        session_token: pick("session_token", &["AWS_SESSION_TOKEN"]),
    };
    let url = if prefix.is_empty() { format!("s3://{bucket}") } else { format!("s3://{bucket}/{prefix}") };
    Ok(Location { url, settings: Settings::S3(settings) })
}

const SFTP_OPTIONS: &[&str] = &["user", "key", "known_hosts"];

fn parse_sftp(rest: &str, options: &[(String, String)]) -> Result<Location> {
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if userinfo.is_some_and(|u| u.contains(':')) {
        // Never repeat the password, not even in this message.
        return Err(invalid(
            &format!("sftp://{hostport}{path}"),
            "passwords in sftp URLs are not supported; use an ssh key (the user's keys and agent are used)",
        ));
    }
    let shown = format!("sftp://{authority}{path}");
    check_keys(&shown, options, SFTP_OPTIONS)?;
    let (host, port) = split_host_port(hostport).ok_or_else(|| invalid(&shown, "not a valid host[:port]"))?;
    if host.is_empty() {
        return Err(invalid(&shown, "no host"));
    }
    let user = option(options, "user").or(userinfo).map(str::to_owned);
    if user.as_deref().is_some_and(|u| u.is_empty() || u.starts_with('-')) {
        return Err(invalid(&shown, "not a valid user name"));
    }
    if host.starts_with('-') {
        return Err(invalid(&shown, "not a valid host"));
    }
    // `/~/dir` (or `/~`) is relative to the login directory, as curl reads such URLs;
    // anything else is an absolute path on the server.
    let root = match path.strip_prefix("/~") {
        Some(r) if r.is_empty() || r.starts_with('/') => r.trim_start_matches('/').to_owned(),
        _ => path.to_owned(),
    };
    let root = root.trim_end_matches('/').to_owned();
    if root.split('/').any(|c| c == "." || c == "..") {
        return Err(invalid(&shown, "a path may not hold '.' or '..' components"));
    }
    let known_hosts = option(options, "known_hosts").unwrap_or("strict").to_owned();
    if !["strict", "add", "accept"].contains(&known_hosts.as_str()) {
        return Err(invalid(&shown, "known_hosts must be strict, add or accept"));
    }
    let endpoint = match port {
        Some(p) => format!("ssh://{host}:{p}"),
        None => host.to_owned(),
    };
    let key = option(options, "key").map(PathBuf::from);
    let settings = SftpSettings { endpoint, user, root, key, known_hosts };
    Ok(Location { url: shown.trim_end_matches('/').to_owned(), settings: Settings::Sftp(settings) })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        return Some((s.get(..host.len() + 2)?, port));
    }
    match s.split_once(':') {
        Some((h, p)) => Some((h, Some(p.parse().ok()?))),
        None => Some((s, None)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    const KEYS: &[(&str, &str)] = &[("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "s3cr3t")];

    #[test]
    fn s3_from_the_environment() {
        let l = Location::parse_with_env("s3://my-bucket/backups/laptop/", &[], env(KEYS)).unwrap();
        assert_eq!(l.url(), "s3://my-bucket/backups/laptop");
        let Settings::S3(s) = l.settings() else { panic!("not s3") };
        assert_eq!((s.bucket.as_str(), s.root.as_str()), ("my-bucket", "/backups/laptop/"));
        assert_eq!((s.region.as_str(), s.endpoint.as_deref()), ("us-east-1", None));
        assert_eq!(l.secrets(), vec!["s3cr3t".to_owned()]);
        // Neither Debug nor Display shows a secret.
        assert!(!format!("{l:?} {l} {s:?}").contains("s3cr3t"));
    }

    #[test]
    fn s3_options_win_over_the_environment() {
        let e =
            env(&[("AWS_ACCESS_KEY_ID", "A"), ("AWS_SECRET_ACCESS_KEY", "B"), ("AWS_REGION", "eu-west-1")]);
        let o = opts(&[("region", "eu-north-1"), ("endpoint", "http://127.0.0.1:9000/")]);
        let l = Location::parse_with_env("s3://bkt", &o, e).unwrap();
        let Settings::S3(s) = l.settings() else { panic!("not s3") };
        assert_eq!(
            (s.region.as_str(), s.endpoint.as_deref(), s.root.as_str()),
            ("eu-north-1", Some("http://127.0.0.1:9000"), "/")
        );
        assert_eq!(l.url(), "s3://bkt");
    }

    #[test]
    fn s3_refusals_are_clear() {
        let none = env(&[]);
        let err = Location::parse_with_env("s3://bkt/p", &[], none).unwrap_err().to_string();
        assert!(err.contains("no credentials") && err.contains("AWS_ACCESS_KEY_ID"), "{err}");
        let err = Location::parse_with_env("s3://Bad_Bucket/p", &[], env(KEYS)).unwrap_err().to_string();
        assert!(err.contains("bucket name"), "{err}");
        let err = Location::parse_with_env("s3://bkt/a/../b", &[], env(KEYS)).unwrap_err().to_string();
        assert!(err.contains("'..'"), "{err}");
        let err = Location::parse_with_env("s3://bkt", &opts(&[("colour", "red")]), env(KEYS)).unwrap_err();
        assert!(err.to_string().contains("unknown remote option \"colour\""), "{err}");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn sftp_forms() {
        let l = Location::parse("sftp://ann@backup.example:2222/srv/backups/", &[]).unwrap();
        assert_eq!(l.url(), "sftp://ann@backup.example:2222/srv/backups");
        let Settings::Sftp(s) = l.settings() else { panic!("not sftp") };
        assert_eq!(s.endpoint, "ssh://backup.example:2222");
        assert_eq!(
            (s.user.as_deref(), s.root.as_str(), s.known_hosts.as_str()),
            (Some("ann"), "/srv/backups", "strict")
        );

        let l =
            Location::parse("sftp://host/~/bk", &opts(&[("key", "/k/id"), ("known_hosts", "add")])).unwrap();
        let Settings::Sftp(s) = l.settings() else { panic!("not sftp") };
        assert_eq!((s.endpoint.as_str(), s.user.as_deref(), s.root.as_str()), ("host", None, "bk"));
        assert_eq!((s.key.as_deref(), s.known_hosts.as_str()), (Some(std::path::Path::new("/k/id")), "add"));

        let l = Location::parse("sftp://[::1]:22/x", &[]).unwrap();
        let Settings::Sftp(s) = l.settings() else { panic!("not sftp") };
        assert_eq!(s.endpoint, "ssh://[::1]:22");
    }

    #[test]
    fn sftp_password_is_refused_without_repeating_it() {
        let err = Location::parse("sftp://ann:hunter2@host/x", &[]).unwrap_err().to_string();
        assert!(err.contains("passwords") && !err.contains("hunter2"), "{err}");
        assert!(Location::parse("sftp://host:notaport/x", &[]).is_err());
        assert!(Location::parse("sftp://-oProxyCommand=x/x", &[]).is_err());
        assert!(Location::parse("ftp://host/x", &[]).is_err());
    }

    #[test]
    fn join_goes_below() {
        let l = Location::parse_with_env("s3://bkt/p", &[], env(KEYS))
            .unwrap()
            .join("__versions__/Docs-1b9f03c2");
        assert_eq!(l.url(), "s3://bkt/p/__versions__/Docs-1b9f03c2");
        let Settings::S3(s) = l.settings() else { panic!("not s3") };
        assert_eq!(s.root, "/p/__versions__/Docs-1b9f03c2/");
        let l = Location::parse("sftp://h/~", &[]).unwrap().join("v");
        let Settings::Sftp(s) = l.settings() else { panic!("not sftp") };
        assert_eq!(s.root, "v");
    }

    #[test]
    fn remote_arguments_are_recognised_by_scheme_only() {
        use std::ffi::OsStr;
        assert!(is_remote(OsStr::new("s3://b/p")) && is_remote(OsStr::new("sftp://h/p")));
        assert!(!is_remote(OsStr::new("./s3://b")) && !is_remote(OsStr::new("/home/s3")));
    }
}
