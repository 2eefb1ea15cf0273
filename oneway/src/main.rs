//! `oneway`: mirrors a source directory into a backup directory (SPEC section 3). A thin shell
//! around `synccore`: parse and validate arguments, set up logging, loop over passes, report.

mod cli;
mod versioned;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use clap::Parser;
use synccore::error::{Quoted, Rail};
use synccore::logging::{self, Verbosity};
use synccore::mirror::{self, PassOptions};
use synccore::observe::{self, Progress, Totals};
use synccore::versioned::VersionedOptions;
use synccore::versions::Layout;
use synccore::{Error, lock, roots, shutdown};

use crate::cli::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match validate(&args) {
        Ok(config) => config,
        Err(err) => {
            // Whatever stopped validation is about the input (exit 2, SPEC section 5), except
            // a missing SOURCE whose BACKUP holds files: the empty-source rail (exit 3).
            eprintln!("oneway: error: {err}");
            return ExitCode::from(if matches!(err, Error::Aborted(_)) { 3 } else { 2 });
        }
    };
    let verbosity = match (args.quiet, args.verbose) {
        (true, _) => Verbosity::Quiet,
        (_, true) => Verbosity::Verbose,
        _ => Verbosity::Normal,
    };
    if let Err(err) = logging::init("ONEWAY", &args.log, verbosity) {
        eprintln!("oneway: error: {err}");
        return ExitCode::from(2);
    }
    match run(&args, &config) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            log::error!("{err}");
            ExitCode::from(err.exit_code() as u8)
        }
    }
}

/// Validated, canonical inputs of a run.
struct Config {
    source: PathBuf,
    backup: PathBuf,
    pass: PassOptions,
    /// Set in versioned mode: where SOURCE's versions live, and how a pass runs.
    versioned: Option<(Layout, VersionedOptions)>,
}

/// Checks every input before anything is created on disk (SPEC section 5).
fn validate(args: &Args) -> Result<Config, Error> {
    let source = if args.versioned {
        versioned::source_dir(&args.source, &args.backup)?
    } else {
        mirror_source(&args.source, &args.backup)?
    };
    let backup = roots::future_dir(&args.backup)?;
    roots::check_disjoint(&source, &backup)?;
    let log = roots::absolute(&args.log)?;
    let versioned = args.versioned.then(|| {
        (Layout::new(&backup, &source), VersionedOptions { dry_run: args.dry_run, rehash: args.checksum })
    });
    if let Some((layout, _)) = &versioned {
        // The log may sit in ROOT (twoway keeps its children's logs in its home), not in the slots.
        if log.starts_with(layout.dir()) {
            return Err(Error::Invalid {
                path: args.log.clone(),
                reason: "the log file may not lie inside the versions directory".into(),
            });
        }
    } else if log.starts_with(&backup) {
        return Err(Error::Invalid {
            path: args.log.clone(),
            reason: "the log file may not lie inside BACKUP (the mirror would delete it)".into(),
        });
    }
    let pass = PassOptions {
        checksum: args.checksum,
        dry_run: args.dry_run,
        max_delete_percent: args.max_delete,
        force: args.force,
    };
    Ok(Config { source, backup, pass, versioned })
}

/// The canonical SOURCE of a mirror. A missing one is a mistyped path (exit 2) unless BACKUP
/// holds files: then it is an unmounted disk, the empty-source rail of SPEC section 5 (exit 3,
/// hardening issue part B), exactly as when SOURCE vanishes between passes. `--force` does not
/// change that: it overrides the rail for a source that was really emptied, and a missing one
/// was not. A SOURCE that is a file stays a usage error (exit 2).
fn mirror_source(source: &Path, backup: &Path) -> Result<PathBuf, Error> {
    match roots::existing_dir(source) {
        Err(Error::Missing { .. }) if roots::holds_entries(backup) => Err(Error::Aborted(Rail::EmptySide {
            empty: roots::absolute(source)?,
            other: roots::future_dir(backup)?,
        })),
        other => other,
    }
}

fn run(args: &Args, config: &Config) -> Result<u8, Error> {
    let shutdown = shutdown::install()?;
    shutdown::watch_parent_from_env(&shutdown);
    let dry = if config.pass.dry_run { " (dry run)" } else { "" };
    let _lock = if let Some((layout, _)) = &config.versioned {
        log::info!("versioning {} into {}{dry}", Quoted(&config.source), Quoted(&layout.dir()));
        versioned::lock(layout, config.pass.dry_run)?
    } else {
        log::info!("mirroring {} into {}{dry}", Quoted(&config.source), Quoted(&config.backup));
        Some(lock::acquire_mirror(&config.backup)?)
    };

    let mut totals = Totals::default();
    let once = args.once || args.dry_run;
    let interval = Duration::from_secs(args.interval);
    Ok(observe::run_passes(once, interval, &shutdown, &mut totals, |totals| {
        one_pass(config, &shutdown, totals)
    }))
}

/// Runs a pass, logs what it did, and returns its exit status (0, 1 or 3).
fn one_pass(config: &Config, shutdown: &AtomicBool, totals: &mut Totals) -> u8 {
    if let Some((layout, options)) = &config.versioned {
        return versioned::one_pass(&config.source, layout, *options, shutdown, totals);
    }
    let started = Instant::now();
    let mut progress = Progress::default();
    let result = mirror::run_pass(&config.source, &config.backup, config.pass, shutdown, &mut |event| {
        observe::log_event("", &event);
        progress.tick();
    });
    let report = match result {
        Ok(report) => report,
        Err(err) => return observe::pass_aborted(totals, &err),
    };
    for err in &report.scan_errors {
        log::error!("{err}");
    }
    for path in &report.special {
        log::warn!("skipped special file \"{path}\" (fifo, socket or device)");
    }
    if config.pass.dry_run {
        for step in &report.plan.steps {
            println!("{step}");
        }
        log::info!(
            "dry run: {} operations, {} bytes to copy; nothing changed",
            report.plan.steps.len(),
            report.plan.bytes()
        );
    }
    observe::record_pass(totals, &report.stats, report.scan_errors.len(), 0, started);
    u8::from(report.had_errors())
}
