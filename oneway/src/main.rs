//! `oneway`: mirrors a source directory into a backup directory (SPEC section 3). A thin shell
//! around `synccore`: parse and validate arguments, set up logging, loop over passes, report.

mod cli;
mod versioned;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use clap::Parser;
use synccore::apply::{ApplyStats, Event};
use synccore::error::Quoted;
use synccore::logging::{self, Verbosity};
use synccore::mirror::{self, PassOptions};
use synccore::versioned::VersionedOptions;
use synccore::versions::Layout;
use synccore::{Error, lock, roots, shutdown};

use crate::cli::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    let logging_ready = std::cell::Cell::new(false);
    match run(&args, &logging_ready) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            if logging_ready.get() {
                log::error!("{err}");
            } else {
                eprintln!("oneway: error: {err}");
            }
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
        roots::existing_dir(&args.source)?
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

fn run(args: &Args, logging_ready: &std::cell::Cell<bool>) -> Result<u8, Error> {
    let config = match validate(args) {
        Ok(config) => config,
        Err(err) => {
            // Whatever stopped validation, it is about the input: exit 2 (SPEC section 5).
            eprintln!("oneway: error: {err}");
            return Ok(2);
        }
    };
    let verbosity = match (args.quiet, args.verbose) {
        (true, _) => Verbosity::Quiet,
        (_, true) => Verbosity::Verbose,
        _ => Verbosity::Normal,
    };
    logging::init("ONEWAY", &args.log, verbosity)?;
    logging_ready.set(true);
    let shutdown = shutdown::install().map_err(|e| Error::Io {
        op: synccore::error::Op::Create,
        path: "signal handlers".into(),
        source: e,
    })?;
    let dry = if config.pass.dry_run { " (dry run)" } else { "" };
    let _lock = if let Some((layout, _)) = &config.versioned {
        log::info!("versioning {} into {}{dry}", Quoted(&config.source), Quoted(layout.dir()));
        versioned::lock(layout, config.pass.dry_run)?
    } else {
        log::info!("mirroring {} into {}{dry}", Quoted(&config.source), Quoted(&config.backup));
        Some(lock::acquire(&lock::mirror_lock_path(&config.backup))?)
    };

    let mut totals = Totals::default();
    let once = args.once || args.dry_run;
    loop {
        let status = one_pass(&config, &shutdown, &mut totals);
        if once {
            totals.log_summary();
            return Ok(status);
        }
        if shutdown::sleep(&shutdown, Duration::from_secs(args.interval)) {
            break;
        }
    }
    log::info!("stopping on signal");
    totals.log_summary();
    Ok(0)
}

/// Runs a pass, logs what it did, and returns its exit status (0, 1 or 3).
fn one_pass(config: &Config, shutdown: &AtomicBool, totals: &mut Totals) -> u8 {
    if let Some((layout, options)) = &config.versioned {
        return versioned::one_pass(&config.source, layout, *options, shutdown, totals);
    }
    let started = Instant::now();
    let mut progress = Progress::new();
    let result = mirror::run_pass(&config.source, &config.backup, config.pass, shutdown, &mut |event| {
        log_event(&event);
        progress.tick();
    });
    totals.passes += 1;
    let report = match result {
        Ok(report) => report,
        Err(err) => {
            log::error!("pass aborted: {err}");
            totals.errors += 1;
            return err.exit_code() as u8;
        }
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
    totals.errors += report.scan_errors.len() as u64;
    totals.stats.add(&report.stats);
    let ops = report.stats.operations();
    let secs = started.elapsed().as_secs_f64();
    if ops > 0 || report.had_errors() {
        log::info!(
            "pass {}: {ops} operations, {} bytes copied, {} failed, {} left for next pass, {secs:.2} s",
            totals.passes,
            report.stats.copied_bytes,
            report.stats.failed + report.scan_errors.len() as u64,
            report.stats.skipped
        );
    } else {
        log::debug!("pass {}: nothing to do ({secs:.2} s)", totals.passes);
    }
    u8::from(report.had_errors())
}

fn log_event(event: &Event<'_>) {
    match event {
        Event::Done(step) => log::info!("{step}"),
        Event::Failed(step, err) => log::error!("{step} failed: {err}"),
        Event::Skipped(step, why) => log::warn!("{step} skipped: {why}; left for the next pass"),
    }
}

/// Logs a progress line every few seconds during a long pass.
struct Progress {
    started: Instant,
    last: Instant,
    steps: u64,
}

impl Progress {
    fn new() -> Self {
        Progress { started: Instant::now(), last: Instant::now(), steps: 0 }
    }

    fn tick(&mut self) {
        self.steps += 1;
        if self.last.elapsed() >= Duration::from_secs(5) {
            self.last = Instant::now();
            log::info!(
                "progress: {} operations in {:.0} s",
                self.steps,
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}

/// What all passes of a run did, for the summary at exit.
#[derive(Default)]
struct Totals {
    passes: u64,
    stats: ApplyStats,
    errors: u64,
    /// Versions rotated in (versioned mode).
    rotations: u64,
}

impl Totals {
    fn log_summary(&self) {
        let by_kind: Vec<String> = synccore::plan::StepKind::ALL
            .iter()
            .map(|k| format!("{} {}", k.word(), self.stats.done.get(k).copied().unwrap_or(0)))
            .collect();
        log::info!(
            "summary: {} passes; {}, rotate {}; {} bytes copied; {} errors",
            self.passes,
            by_kind.join(", "),
            self.rotations,
            self.stats.copied_bytes,
            self.errors + self.stats.failed
        );
        log::info!("Total number of operations: {}", self.stats.operations() + self.rotations);
    }
}
