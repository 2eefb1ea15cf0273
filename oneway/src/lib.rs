//! `oneway`: the mirror (SPEC section 3 "Mirror") and the versioned backup with its
//! `__versions__` `_0`/`_1` rotation and hash cache (SPEC section 3 "Versioned"), built on the
//! primitives of `synccore` and run as a command through `synccli`.
//!
//! - [`cli`]: the command line;
//! - [`mirror`]: one mirror pass and its log lines;
//! - [`versioned`]: one versioned pass, its hash cache and its log lines;
//! - [`run`]: inputs checked once, logging, the lock, the loop of passes, the exit status.

pub mod cli;
pub mod mirror;
pub mod remote;
pub mod versioned;

use std::path::{Path, PathBuf};

use synccli::Program;
use synccli::passes::{self, Totals};
use synccli::watching;
use synccore::error::{Error, Quoted};
use synccore::shutdown::{self, Shutdown};
use synccore::versions::Layout;
use synccore::{lock, rails, roots};

use crate::cli::Args;
use crate::mirror::MirrorOptions;
use crate::versioned::VersionedOptions;

/// What a run does, checked and canonical.
#[derive(Debug)]
pub struct Config {
    pub source: PathBuf,
    pub backup: PathBuf,
    pub mode: Mode,
    /// The log file (absolute).
    pub log: PathBuf,
}

/// Mirror or versions.
#[derive(Debug)]
pub enum Mode {
    Mirror(MirrorOptions),
    Versioned(Layout, VersionedOptions),
}

/// Runs `oneway` with its arguments and returns the exit status (SPEC section 5).
pub fn run(args: &Args) -> u8 {
    let program = Program { name: "oneway", tag: "ONEWAY" };
    synccli::run_command(program, &args.common, || validate(args), |config| run_passes(args, &config))
}

/// Checks every input before anything is created on disk (SPEC section 5).
pub fn validate(args: &Args) -> Result<Config, Error> {
    let common = &args.common;
    if args.versioned && common.watch {
        return Err(Error::Invalid {
            path: args.backup.clone(),
            reason: "--watch cannot be used with --versioned: a version per burst of changes would push the \
                     previous version out within seconds (versions rotate every --interval)"
                .into(),
        });
    }
    let source = if args.versioned {
        versioned::report::source_dir(&args.source, &args.backup)?
    } else {
        mirror_source(&args.source, &args.backup)?
    };
    let backup = roots::future_dir(&args.backup)?;
    roots::check_disjoint(&source, &backup)?;
    let excludes = common.excludes()?;
    let log = roots::absolute(common.log.as_deref().unwrap_or(Path::new("oneway.log")))?;
    let mode = if args.versioned {
        let layout = Layout::new(&backup, &source);
        // The log may sit in ROOT (twoway keeps its children's logs in its home), not in the
        // versions.
        if log.starts_with(layout.dir()) {
            return Err(Error::Invalid {
                path: log,
                reason: "the log file may not lie inside the versions directory".into(),
            });
        }
        let options = VersionedOptions {
            dry_run: common.dry_run,
            rehash: args.checksum,
            rails: common.rails(),
            excludes,
        };
        Mode::Versioned(layout, options)
    } else {
        if log.starts_with(&backup) {
            return Err(Error::Invalid {
                path: log,
                reason: "the log file may not lie inside BACKUP (the mirror would delete it)".into(),
            });
        }
        Mode::Mirror(MirrorOptions {
            checksum: args.checksum,
            dry_run: common.dry_run,
            rails: common.rails(),
            excludes,
            delete_excluded: args.delete_excluded,
        })
    };
    Ok(Config { source, backup, mode, log })
}

/// The canonical SOURCE of a mirror. A missing one is a mistyped path (exit 2) unless BACKUP
/// holds files: then it is an unmounted disk, the empty-source rail of SPEC section 5 (exit 3,
/// hardening issue part B), exactly as when SOURCE vanishes between passes. `--force` does not
/// change that: it overrides the rail for a source that was really emptied, and a missing one
/// was not. A SOURCE that is a file stays a usage error (exit 2).
fn mirror_source(source: &Path, backup: &Path) -> Result<PathBuf, Error> {
    match roots::existing_dir(source) {
        Err(Error::Missing { .. }) if roots::holds_entries(backup) => {
            Err(rails::empty_side(&roots::absolute(source)?, &roots::future_dir(backup)?))
        }
        other => other,
    }
}

/// Installs the signal handlers, takes the lock and runs the passes.
fn run_passes(args: &Args, config: &Config) -> Result<u8, Error> {
    let shutdown = Shutdown::install()?;
    shutdown::watch_parent_from_env(&shutdown);
    let common = &args.common;
    let dry = if common.dry_run { " (dry run)" } else { "" };
    let lock_path = match &config.mode {
        Mode::Versioned(layout, _) => {
            log::info!("versioning {} into {}{dry}", Quoted(&config.source), Quoted(&layout.dir()));
            layout.lock()
        }
        Mode::Mirror(_) => {
            log::info!("mirroring {} into {}{dry}", Quoted(&config.source), Quoted(&config.backup));
            lock::prepare_mirror_lock(&config.backup)?
        }
    };
    let _lock = lock::acquire_unless_dry_run(&lock_path, common.dry_run)?;
    let mut totals = Totals::default();
    if let (true, Mode::Mirror(options)) = (common.watch, &config.mode) {
        let mut watched =
            mirror::MirrorWatch::new(&config.source, &config.backup, options, &shutdown, &config.log);
        return Ok(watching::run_watch(
            &mut watched,
            common.interval(),
            common.settle(),
            &shutdown,
            &mut totals,
        ));
    }
    Ok(passes::run_passes(common.once(), common.interval(), &shutdown, &mut totals, |totals| {
        match &config.mode {
            Mode::Mirror(options) => {
                mirror::pass_and_log(&config.source, &config.backup, options, &shutdown, totals)
            }
            Mode::Versioned(layout, options) => {
                versioned::report::pass_and_log(&config.source, layout, options, &shutdown, totals)
            }
        }
    }))
}
