//! Logging setup shared by both programs (SPEC section 3): every line goes to the console and
//! to a log file, prefixed with the program's tag, a local timestamp and the level. The log
//! file is reopened when someone deletes or rotates it while the program runs (the original
//! needed a restart for that).

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::LevelFilter;

use crate::output::Level;

use synccore::error::{Error, IoResultExt, Op, Result};

/// How much the console shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Warnings and errors only (`--quiet`).
    Quiet,
    /// Operations, summaries, warnings and errors.
    Normal,
    /// Everything, including debug detail (`--verbose`).
    Verbose,
}

/// Installs the global logger: `tag` is e.g. `ONEWAY`. The file (`log`, else `default_name`
/// in the working directory) gets operations and above (debug too with `Verbose`); the
/// console follows `verbosity`. An explicit `log` that cannot be opened is an error (bad
/// input); when the default cannot be created (a read-only working directory) the program
/// warns once and logs to the console only (SPEC section 3).
pub fn init(tag: &'static str, log: Option<&Path>, default_name: &str, verbosity: Verbosity) -> Result<()> {
    let (file, warning) = match log {
        Some(path) => (Some(ReopeningFile::open(path).map_err(|e| invalid_log(path, &e))?), None),
        None => match ReopeningFile::open(Path::new(default_name)) {
            Ok(file) => (Some(file), None),
            Err(e) => (
                None,
                Some(format!("cannot create the log file {default_name} ({e}); logging to the console only")),
            ),
        },
    };
    let (console, file_level) = match verbosity {
        Verbosity::Quiet => (LevelFilter::Warn, LevelFilter::Info),
        Verbosity::Normal => (LevelFilter::Info, LevelFilter::Info),
        Verbosity::Verbose => (LevelFilter::Debug, LevelFilter::Debug),
    };
    let mut dispatch = fern::Dispatch::new()
        .level(LevelFilter::Debug)
        // The gitignore matcher's own debug lines (issue 14) say nothing a user needs.
        .level_for("globset", LevelFilter::Warn)
        .level_for("ignore", LevelFilter::Warn)
        .level_for("notify", LevelFilter::Warn)
        .level_for("mio", LevelFilter::Warn);
    // The remote stores' stack (issue 18) logs each retry with its whole context, many lines
    // long: a failed pass already says what went wrong in one line naming the URL. Those lines
    // show with --verbose only.
    let network = if verbosity == Verbosity::Verbose { LevelFilter::Warn } else { LevelFilter::Off };
    for target in NETWORK_TARGETS {
        dispatch = dispatch.level_for(*target, network);
    }
    dispatch = dispatch.chain(
        fern::Dispatch::new()
            .format(line_format(tag))
            .level(console)
            .chain(Box::new(Console(Vec::new())) as Box<dyn Write + Send>),
    );
    if let Some(file) = file {
        dispatch = dispatch.chain(
            fern::Dispatch::new()
                .format(line_format(tag))
                .level(file_level)
                .chain(Box::new(file) as Box<dyn Write + Send>),
        );
    }
    // `--json`: every warning and error is an event too, except those of operations, whose
    // events carry their path and kind (issue 16, point 4).
    if crate::output::json() {
        dispatch = dispatch.chain(
            fern::Dispatch::new().level(LevelFilter::Warn).filter(|meta| meta.target() != OP_TARGET).chain(
                fern::Output::call(|record| {
                    let level =
                        if record.level() == log::Level::Error { Level::Error } else { Level::Warning };
                    let message = record.args().to_string();
                    crate::output::emit(|| crate::output::problem_event(level, &message, None, None, None));
                }),
            ),
        );
    }
    dispatch.apply().map_err(|e| Error::Setup { what: "logging", reason: e.to_string() })?;
    if let Some(warning) = warning {
        log::warn!("{warning}");
    }
    Ok(())
}

/// Log targets of the crates that reach remote stores (OpenDAL, its SSH and HTTP clients).
const NETWORK_TARGETS: &[&str] = &[
    "opendal",
    "opendal_core",
    "opendal_layer_retry",
    "opendal_layer_timeout",
    "opendal_layer_concurrent_limit",
    "opendal_service_s3",
    "opendal_service_sftp",
    "opendal_http_transport_reqwest",
    "openssh",
    "openssh_sftp_client",
    "openssh_sftp_client_lowlevel",
    "reqwest",
    "hyper",
    "hyper_util",
    "rustls",
    "h2",
];

/// The log target of operation lines, whose `--json` events are written where they happen.
pub const OP_TARGET: &str = "op";

/// `[ONEWAY] <local time> <LEVEL> <message>` (docs/formats.md "Logs").
fn line_format(
    tag: &'static str,
) -> impl Fn(fern::FormatCallback<'_>, &std::fmt::Arguments<'_>, &log::Record<'_>) {
    move |out, message, record| {
        let now = chrono::Local::now().format("%Y-%m-%dT%H:%M:%S%.3f%:z");
        out.finish(format_args!("[{tag}] {now} {:<5} {message}", record.level()));
    }
}

/// The console (stderr). Whole lines per write(2), since fern writes a record in fragments,
/// and above the progress bar when one is on screen. A console that went away (a closed
/// pipe: `oneway ... | head`, or a supervising `twoway` that was killed) must never stop the
/// program, whose log file still gets every line: write errors are swallowed (fern panics
/// when logging to stderr fails twice).
struct Console(Vec<u8>);

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        if let Some(end) = self.0.iter().rposition(|&b| b == b'\n') {
            let rest = self.0.split_off(end + 1);
            crate::progress::write_console(&mut io::stderr(), &self.0);
            self.0 = rest;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.0.is_empty() {
            crate::progress::write_console(&mut io::stderr(), &self.0);
            self.0.clear();
        }
        Ok(())
    }
}

/// An explicit `--log` that cannot be opened: bad input (exit 2), naming the file.
fn invalid_log(path: &Path, err: &Error) -> Error {
    let reason = match err {
        Error::Io { source, .. } => format!("cannot open the log file: {source}"),
        other => other.to_string(),
    };
    Error::Invalid { path: path.to_path_buf(), reason }
}

/// An append-only log file that notices, at most once a second, when its path was deleted or
/// replaced, and reopens (recreating) it.
struct ReopeningFile {
    path: PathBuf,
    /// Buffered, and flushed after every record (fern does): a line reaches the file in one
    /// `write`, where a `LineWriter` made two of it (the text, then the line's end).
    file: io::BufWriter<File>,
    ino: u64,
    checked: Instant,
}

impl ReopeningFile {
    fn open(path: &Path) -> Result<Self> {
        // Never through a symlink: not one planted at the log's name, nor its directory (a
        // recovery child's log lies in twoway's home; the security issue).
        let (dir, name) = synccore::fsio::open_beside(path, false)?;
        let file = dir.top().open_append(name.as_os_str(), 0o644).at(Op::Create, path)?;
        let ino = file.metadata().at(Op::Stat, path)?.ino();
        Ok(ReopeningFile {
            path: path.to_path_buf(),
            file: io::BufWriter::new(file),
            ino,
            checked: Instant::now(),
        })
    }

    fn reopen_if_moved(&mut self) {
        if self.checked.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.checked = Instant::now();
        let current = std::fs::metadata(&self.path).map(|m| m.ino()).ok();
        if current != Some(self.ino)
            && let Ok(fresh) = ReopeningFile::open(&self.path)
        {
            let _ = self.file.flush();
            *self = fresh;
        }
    }
}

impl Write for ReopeningFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.reopen_if_moved();
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
