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
use syncremote::{Location, is_remote};

use crate::cli::Args;
use crate::mirror::MirrorOptions;
use crate::remote::{RemoteBackup, RemoteSource};
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

/// Mirror or versions, locally or with a remote store on one side (issue 18).
#[derive(Debug)]
pub enum Mode {
    Mirror(MirrorOptions),
    Versioned(Layout, VersionedOptions),
    /// SOURCE (local) into a remote store: a mirror, or `--versioned`.
    Push(RemoteBackup, MirrorOptions),
    /// A remote version into BACKUP (local): a pull, the restore path.
    Pull(RemoteSource, MirrorOptions),
}

/// Runs `oneway` with its arguments and returns the exit status (SPEC section 5).
pub fn run(args: &Args) -> u8 {
    let program = Program { name: "oneway", tag: "ONEWAY" };
    synccli::run_command(program, &args.common, || validate(args), |config| run_passes(args, &config))
}

/// Checks every input before anything is created on disk (SPEC section 5).
pub fn validate(args: &Args) -> Result<Config, Error> {
    let (src_remote, dst_remote) = (is_remote(args.source.as_os_str()), is_remote(args.backup.as_os_str()));
    if src_remote || dst_remote {
        return validate_remote(args, src_remote, dst_remote);
    }
    if !args.remote_options.is_empty() {
        return Err(Error::Invalid {
            path: args.backup.clone(),
            reason: "--remote-option needs a remote SOURCE or BACKUP (s3://… or sftp://…)".into(),
        });
    }
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

/// A URL argument as text (a URL that is not UTF-8 cannot name a store).
fn url_arg(arg: &Path) -> Result<&str, Error> {
    arg.to_str()
        .ok_or_else(|| Error::Invalid { path: arg.to_path_buf(), reason: "a URL must be UTF-8".into() })
}

/// [`validate`] for a pass with a remote store on one side (issue 18). Nothing is asked of
/// the store yet: an unreachable one fails the first pass, which the loop retries.
fn validate_remote(args: &Args, src_remote: bool, dst_remote: bool) -> Result<Config, Error> {
    let common = &args.common;
    let refuse = |reason: &str| Err(Error::Invalid { path: args.backup.clone(), reason: reason.to_owned() });
    if src_remote && dst_remote {
        return refuse("SOURCE and BACKUP are both remote: one of them must be a local directory");
    }
    if common.watch {
        return refuse("--watch needs a local SOURCE and BACKUP (a remote store sends no change events)");
    }
    if args.delete_excluded {
        return refuse("--delete-excluded applies to a local BACKUP only");
    }
    if src_remote && args.versioned {
        return refuse(
            "--versioned needs a local SOURCE; a remote version is brought back by naming it: \
             URL/__versions__/<name>/_1 (or _0) as SOURCE",
        );
    }
    let options = MirrorOptions {
        checksum: args.checksum,
        dry_run: common.dry_run,
        rails: common.rails(),
        excludes: common.excludes()?,
        delete_excluded: false,
    };
    let log = roots::absolute(common.log.as_deref().unwrap_or(Path::new("oneway.log")))?;
    if dst_remote {
        let source = roots::existing_dir(&args.source)?;
        let root = Location::parse(url_arg(&args.backup)?, &args.remote_options)?;
        let location = if args.versioned { remote::versions_location(&root, &source)? } else { root };
        let backup = RemoteBackup { location, versioned: args.versioned };
        return Ok(Config { source, backup: args.backup.clone(), mode: Mode::Push(backup, options), log });
    }
    let source = remote::parse_source(url_arg(&args.source)?, &args.remote_options)?;
    let backup = roots::future_dir(&args.backup)?;
    if log.starts_with(&backup) {
        return Err(Error::Invalid {
            path: log,
            reason: "the log file may not lie inside BACKUP (the mirror would delete it)".into(),
        });
    }
    Ok(Config { source: args.source.clone(), backup, mode: Mode::Pull(source, options), log })
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
            Some(layout.lock())
        }
        Mode::Mirror(_) => {
            log::info!("mirroring {} into {}{dry}", Quoted(&config.source), Quoted(&config.backup));
            Some(lock::prepare_mirror_lock(&config.backup)?)
        }
        Mode::Pull(remote, _) => {
            log::info!("bringing {} back into {}{dry}", remote.location, Quoted(&config.backup));
            Some(lock::prepare_mirror_lock(&config.backup)?)
        }
        Mode::Push(remote, _) => {
            // No local lock: two writers of one store are kept apart by the conditional
            // switch of its head (the loser's pass fails and is retried).
            let what = if remote.versioned { "versioning" } else { "mirroring" };
            log::info!("{what} {} into {}{dry}", Quoted(&config.source), remote.location);
            None
        }
    };
    let _lock = match &lock_path {
        Some(path) => Some(lock::acquire_unless_dry_run(path, common.dry_run)?),
        None => None,
    };
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
            Mode::Pull(remote, options) => {
                remote::pull_and_log(remote, &config.backup, options, &shutdown, totals)
            }
            Mode::Push(remote, options) => {
                remote::push_and_log(&config.source, remote, options, &shutdown, totals)
            }
        }
    }))
}
