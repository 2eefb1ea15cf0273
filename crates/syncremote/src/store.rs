//! The connection to one remote store: an OpenDAL operator (S3 or SFTP) behind its retry,
//! timeout and concurrency-limit layers, driven through the blocking operator over the one
//! tokio runtime of the process; what the store can do ([`Capabilities`], asked of the store,
//! never of the URL's scheme); the requests made ([`RequestStats`]); and every failure turned
//! into one line naming the URL and never a secret.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opendal::layers::{ConcurrentLimitLayer, RetryLayer, TimeoutLayer};
use opendal::{ErrorKind, Operator, services};
use synccore::{Error, Result};
use tokio::runtime::Runtime;

use crate::location::{Location, Settings};

/// Attempts of a request that failed in a way the store calls temporary (a refused or dropped
/// connection, a 5xx, a timeout): the first and 3 retries, 0.2 s to 2 s apart. A store that
/// is down is reported within seconds; the pass is retried at the next interval.
const RETRIES: usize = 3;
/// A request that makes no progress for this long fails (and is retried).
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests in flight at once per store.
const CONCURRENCY: usize = 8;

/// What a store can do, as its OpenDAL service declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// An object can be renamed (SFTP): writes go to a temporary name first.
    pub rename: bool,
    /// A write can be made conditional on the current ETag (S3's `If-Match`): the head is
    /// switched that way when the store has it.
    pub write_if_match: bool,
    /// A write can be made create-only (S3's `If-None-Match: *`, SFTP's exclusive open).
    pub write_if_not_exists: bool,
    /// A read can be made conditional on an ETag.
    pub read_if_match: bool,
    /// Never on a remote store: versions share content-addressed objects instead.
    pub hard_links: bool,
    /// Keeps POSIX modes and mtimes itself (never relied on: the manifest keeps them).
    pub posix_metadata: bool,
}

/// Requests made through a [`Store`], by kind (one per call of the store; a multipart upload
/// counts once). The S3 tests compare them with the emulator's own log.
#[derive(Debug, Default)]
struct Counters {
    stat: AtomicU64,
    read: AtomicU64,
    write: AtomicU64,
    list: AtomicU64,
    delete: AtomicU64,
    rename: AtomicU64,
}

/// A snapshot of the requests made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestStats {
    pub stat: u64,
    pub read: u64,
    pub write: u64,
    pub list: u64,
    pub delete: u64,
    pub rename: u64,
}

impl RequestStats {
    /// All requests.
    pub fn total(&self) -> u64 {
        self.stat + self.read + self.write + self.list + self.delete + self.rename
    }
}

/// The kinds of request, for counting.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Req {
    Stat,
    Read,
    Write,
    List,
    Delete,
    Rename,
}

/// The tokio runtime every store of the process shares (issue 18: one runtime), started on
/// first use with two workers (the machines are small; requests mostly wait).
pub(crate) fn runtime() -> Result<&'static Runtime> {
    static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("syncremote")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    rt.as_ref().map_err(|reason| Error::Setup { what: "the remote-store runtime", reason: reason.clone() })
}

/// rustls needs one crypto provider per process (ring: it builds faster than the default),
/// and OpenDAL one HTTP transport (reqwest over that rustls), both installed before the
/// first store opens.
fn install_http() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // Err means another part of the process installed one first: that one serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
        opendal::HttpTransporter::install_default(opendal_http_transport_reqwest::ReqwestTransport::default());
    });
}

/// An open remote store.
pub struct Store {
    pub(crate) op: Operator,
    pub(crate) blocking: opendal::blocking::Operator,
    pub(crate) rt: &'static Runtime,
    url: String,
    secrets: Vec<String>,
    caps: Capabilities,
    counters: Counters,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.url)
    }
}

impl Store {
    /// Prepares the operator for `loc`. No request is made: an unreachable store or refused
    /// credentials show at the first request, as one line naming the URL.
    pub fn open(loc: &Location) -> Result<Store> {
        install_http();
        let rt = runtime()?;
        let _guard = rt.enter();
        let url = loc.url().to_owned();
        let secrets = loc.secrets();
        let built = match loc.settings() {
            Settings::S3(s) => {
                // Only what the location says: no ~/.aws profile, and never the EC2 metadata
                // service (a request to an address no user named).
                let mut b = services::S3::default()
                    .bucket(&s.bucket)
                    .root(&s.root)
                    .region(&s.region)
                    .access_key_id(&s.access_key_id)
                    .secret_access_key(&s.secret_access_key)
                    .disable_config_load()
                    .disable_ec2_metadata();
                if let Some(e) = &s.endpoint {
                    b = b.endpoint(e);
                }
                if let Some(t) = &s.session_token {
                    b = b.session_token(t);
                }
                Operator::new(b)
            }
            Settings::Sftp(s) => {
                let mut b = services::Sftp::default()
                    .endpoint(&s.endpoint)
                    .root(&s.root)
                    .known_hosts_strategy(&s.known_hosts);
                if let Some(u) = &s.user {
                    b = b.user(u);
                }
                if let Some(k) = &s.key {
                    b = b.key(&k.to_string_lossy());
                }
                Operator::new(b)
            }
        };
        let scrub = Scrubber { secrets: &secrets };
        let op = built.map_err(|e| Error::Remote {
            op: "cannot open",
            url: url.clone(),
            reason: scrub.describe(&e),
        })?;
        let op = op
            .layer(ConcurrentLimitLayer::new(CONCURRENCY))
            .layer(TimeoutLayer::new().with_timeout(IO_TIMEOUT * 2).with_io_timeout(IO_TIMEOUT))
            .layer(
                RetryLayer::new()
                    .with_max_times(RETRIES)
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(2))
                    .with_jitter(),
            );
        let blocking = opendal::blocking::Operator::new(op.clone()).map_err(|e| Error::Remote {
            op: "cannot open",
            url: url.clone(),
            reason: scrub.describe(&e),
        })?;
        let full = op.info().capability();
        let caps = Capabilities {
            rename: full.rename,
            write_if_match: full.write_with_if_match,
            write_if_not_exists: full.write_with_if_not_exists,
            read_if_match: full.read_with_if_match,
            hard_links: false,
            posix_metadata: false,
        };
        Ok(Store { op, blocking, rt, url, secrets, caps, counters: Counters::default() })
    }

    /// The store's URL (no credential).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What the store can do.
    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    /// The requests made so far.
    pub fn requests(&self) -> RequestStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RequestStats {
            stat: get(&c.stat),
            read: get(&c.read),
            write: get(&c.write),
            list: get(&c.list),
            delete: get(&c.delete),
            rename: get(&c.rename),
        }
    }

    pub(crate) fn count(&self, req: Req, n: u64) {
        let c = &self.counters;
        let counter = match req {
            Req::Stat => &c.stat,
            Req::Read => &c.read,
            Req::Write => &c.write,
            Req::List => &c.list,
            Req::Delete => &c.delete,
            Req::Rename => &c.rename,
        };
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The error for a failed request: `<op> <url>: <reason>`, one line, no secret.
    pub(crate) fn fail(&self, op: &'static str, e: &opendal::Error) -> Error {
        Error::Remote { op, url: self.url.clone(), reason: Scrubber { secrets: &self.secrets }.describe(e) }
    }

    /// An error of ours about the store (a bad manifest, a corrupt object), one line.
    pub(crate) fn refuse(&self, op: &'static str, reason: impl Into<String>) -> Error {
        let reason = Scrubber { secrets: &self.secrets }.line(&reason.into());
        Error::Remote { op, url: self.url.clone(), reason }
    }
}

/// Turns OpenDAL's errors into one short line and removes every secret from it.
struct Scrubber<'a> {
    secrets: &'a [String],
}

impl Scrubber<'_> {
    fn describe(&self, e: &opendal::Error) -> String {
        let what = match e.kind() {
            ErrorKind::NotFound => "not found",
            ErrorKind::PermissionDenied => "access denied (check the credentials and permissions)",
            ErrorKind::ConfigInvalid => "invalid settings",
            ErrorKind::RateLimited => "too many requests (rate limited)",
            ErrorKind::ConditionNotMatch => "changed meanwhile",
            ErrorKind::Unsupported => "not supported by this store",
            ErrorKind::AlreadyExists => "already exists",
            _ => "",
        };
        // The innermost cause says what happened ("Connection refused (os error 111)"); an
        // S3 error body says it in <Code> and <Message>.
        let mut detail = e.message().to_owned();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
        while let Some(c) = cause {
            detail = c.to_string();
            cause = c.source();
        }
        let detail = s3_error(e.message()).unwrap_or(detail);
        let line = match (what, detail.is_empty()) {
            ("", _) => detail,
            (w, true) => w.to_owned(),
            (w, false) => format!("{w}: {detail}"),
        };
        let line = if e.is_temporary() || e.kind() == ErrorKind::Unexpected && what.is_empty() {
            format!("{line} (after {RETRIES} retries)")
        } else {
            line
        };
        self.line(&line)
    }

    /// One line, at most 300 characters, with every secret replaced.
    fn line(&self, s: &str) -> String {
        let mut out: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
        for secret in self.secrets.iter().filter(|s| s.len() >= 4) {
            out = out.replace(secret.as_str(), "<secret>");
        }
        if out.chars().count() > 300 {
            out = out.chars().take(297).collect::<String>() + "...";
        }
        out
    }
}

/// `Code: Message` of an S3 XML error body, if `msg` holds one.
fn s3_error(msg: &str) -> Option<String> {
    let tag = |name: &str| -> Option<String> {
        let open = format!("<{name}>");
        let start = msg.find(&open)? + open.len();
        let end = msg[start..].find(&format!("</{name}>"))? + start;
        Some(msg[start..end].trim().to_owned())
    };
    let code = tag("Code")?;
    Some(match tag("Message") {
        Some(m) if !m.is_empty() => format!("{code}: {m}"),
        _ => code,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn s3_error_bodies_become_code_and_message() {
        let body = "<?xml version=\"1.0\"?><Error><Code>InvalidAccessKeyId</Code><Message>The key \
                    does not exist</Message><RequestId>1</RequestId></Error>";
        assert_eq!(s3_error(body).unwrap(), "InvalidAccessKeyId: The key does not exist");
        assert_eq!(s3_error("plain"), None);
    }

    #[test]
    fn lines_are_single_short_and_secret_free() {
        let secrets = vec!["topsecret".to_owned(), "x".to_owned()];
        let s = Scrubber { secrets: &secrets };
        assert_eq!(s.line("a\n  b topsecret c x"), "a b <secret> c x");
        assert_eq!(s.line(&"y".repeat(400)).chars().count(), 300);
    }
}
