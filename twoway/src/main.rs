//! `twoway`: keeps two directories equal in both directions and runs the recovery system that
//! keeps their earlier versions (SPEC section 4). A thin shell around `synccore`: parse and
//! validate arguments, set up logging, start the versioning children, loop over passes, report.

mod cli;
mod recovery;
mod supervise;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use synccore::bisync::{self, Pair};
use synccore::error::{Quoted, Rail};
use synccore::logging::{self, Verbosity};
use synccore::merge::Side;
use synccore::observe::{self, Progress, Totals};
use synccore::{Error, lock, roots, shutdown};

use crate::cli::Args;

fn main() -> ExitCode {
    let args = cli::parse();
    let verbosity = match (args.quiet, args.verbose) {
        (true, _) => Verbosity::Quiet,
        (_, true) => Verbosity::Verbose,
        _ => Verbosity::Normal,
    };
    let code = if args.restore { restore(&args, verbosity) } else { sync(&args, verbosity) };
    ExitCode::from(code)
}

/// `twoway DIR_A DIR_B`: the sync loop, with the recovery system unless `--no-recovery`.
fn sync(args: &Args, verbosity: Verbosity) -> u8 {
    let config = match validate(args) {
        Ok(config) => config,
        Err(err) => {
            // Whatever stopped validation is about the input (exit 2), except a directory
            // that was synced before and has vanished: that is the empty-side rail (exit 3).
            eprintln!("twoway: error: {err}");
            return if matches!(err, Error::Aborted(_)) { 3 } else { 2 };
        }
    };
    if let Err(err) = logging::init("TWOWAY", &args.log, verbosity) {
        eprintln!("twoway: error: {err}");
        return 2;
    }
    match run(args, &config) {
        Ok(code) => code,
        Err(err) => {
            log::error!("{err}");
            err.exit_code() as u8
        }
    }
}

/// `twoway DIR --restore [--version …]`.
fn restore(args: &Args, verbosity: Verbosity) -> u8 {
    let home = match home_of(args).and_then(|h| roots::future_dir(&h)) {
        Ok(home) => home,
        Err(err) => {
            eprintln!("twoway: error: {err}");
            return 2;
        }
    };
    if let Err(err) = logging::init("TWOWAY", &args.log, verbosity) {
        eprintln!("twoway: error: {err}");
        return 2;
    }
    let Ok(shutdown) = shutdown::install() else {
        log::error!("cannot install signal handlers");
        return 1;
    };
    let version = recovery::version_of(args.version);
    match synccore::restore::restore(&home, &args.dir_a, version, &shutdown) {
        Ok(done) => {
            recovery::log_restored(&done);
            0
        }
        Err(err) => {
            log::error!("restore failed: {err}");
            err.exit_code() as u8
        }
    }
}

/// Validated, canonical inputs of a run.
struct Config {
    pair: Pair,
    home: PathBuf,
    options: bisync::Options,
}

/// The home of SPEC section 4: `--home`, else `$TWOWAY_HOME`, else `$XDG_DATA_HOME/twoway`,
/// else `~/.local/share/twoway`.
fn home_of(args: &Args) -> Result<PathBuf, Error> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    args.home
        .clone()
        .or_else(|| env("TWOWAY_HOME"))
        .or_else(|| env("XDG_DATA_HOME").map(|d| d.join("twoway")))
        .or_else(|| env("HOME").map(|h| h.join(".local/share/twoway")))
        .ok_or_else(|| Error::Invalid {
            path: "~/.local/share/twoway".into(),
            reason: "no home directory: set --home or $TWOWAY_HOME".into(),
        })
}

/// Checks every input before anything is created on disk (SPEC section 5).
fn validate(args: &Args) -> Result<Config, Error> {
    let home = roots::future_dir(&home_of(args)?)?;
    let dir_b = args.dir_b.as_deref().unwrap_or(Path::new(""));
    let (a, b) = match (roots::existing_dir(&args.dir_a), roots::existing_dir(dir_b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(err), _) | (_, Err(err)) => return Err(vanished_or(err, &args.dir_a, dir_b, &home)),
    };
    roots::check_disjoint(&a, &b)?;
    for dir in [&a, &b] {
        if home.starts_with(dir) {
            return Err(Error::Invalid {
                path: home.clone(),
                reason: format!("the home may not lie inside {}", Quoted(dir)),
            });
        }
    }
    let log = roots::absolute(&args.log)?;
    if log.starts_with(&a) || log.starts_with(&b) {
        return Err(Error::Invalid {
            path: args.log.clone(),
            reason: "the log file may not lie inside a synced directory".into(),
        });
    }
    let options =
        bisync::Options { dry_run: args.dry_run, max_delete_percent: args.max_delete, force: args.force };
    Ok(Config { pair: Pair::locate(&home, a, b), home, options })
}

/// A missing directory of a pair that has a base was synced before: it vanished (an
/// unmounted disk, an `rm -rf`), and the pass must not touch its partner. Anything else
/// stays the input error it is.
fn vanished_or(err: Error, dir_a: &Path, dir_b: &Path, home: &Path) -> Error {
    let (Ok(a), Ok(b)) = (roots::absolute(dir_a), roots::absolute(dir_b)) else { return err };
    let pair = Pair::locate(home, a.clone(), b.clone());
    if !matches!(err, Error::Missing { .. }) || !pair.has_base() {
        return err;
    }
    let (empty, other) = if a.exists() { (b, a) } else { (a, b) };
    Error::Aborted(Rail::EmptySide { empty, other })
}

fn run(args: &Args, config: &Config) -> Result<u8, Error> {
    let shutdown = shutdown::install()?;
    if !config.options.dry_run {
        synccore::fsio::create_dirs(&config.home)?;
    }
    // A dry run writes nothing, not even a lock file, but still refuses while a sync runs.
    let lock_path = config.pair.lock_path();
    let _lock = if config.options.dry_run {
        match lock::holder(&lock_path) {
            Some(pid) => return Err(Error::Locked { path: lock_path, pid }),
            None => None,
        }
    } else {
        Some(lock::acquire(&lock_path)?)
    };
    let mut pair = config.pair.clone();
    if !config.options.dry_run {
        pair.adopt_legacy_base()?;
    }
    let once = args.once || args.dry_run;
    let children = if args.no_recovery || config.options.dry_run {
        None
    } else {
        Some(recovery::start(args, &config.home, &pair.roots, once, Arc::clone(&shutdown))?)
    };
    let [a, b] = &pair.roots;
    log::info!(
        "syncing {} (A) and {} (B), state in {}{}",
        Quoted(a),
        Quoted(b),
        Quoted(&config.home),
        if config.options.dry_run { " (dry run)" } else { "" }
    );
    let mut totals = Totals::default();
    let interval = Duration::from_secs(args.interval);
    let status = observe::run_passes(once, interval, &shutdown, &mut totals, |totals| {
        one_pass(&pair, config, &shutdown, totals)
    });
    let Some(children) = children else { return Ok(status) };
    let verdict = children.finish(&shutdown);
    if verdict.fatal.is_some() {
        return Ok(2);
    }
    Ok(status)
}

/// Runs a pass, logs what it did, and returns its exit status (0, 1 or 3).
fn one_pass(pair: &Pair, config: &Config, shutdown: &AtomicBool, totals: &mut Totals) -> u8 {
    let started = Instant::now();
    let mut progress = Progress::default();
    let result = bisync::run_pass(pair, config.options, shutdown, &mut |side, event| {
        observe::log_event(prefix(side), &event);
        progress.tick();
    });
    let report = match result {
        Ok(report) => report,
        Err(err) => return observe::pass_aborted(totals, &err),
    };
    if let Some(problem) = &report.base_problem {
        log::warn!("{problem}; syncing as if for the first time (nothing is deleted)");
    }
    for err in &report.scan_errors {
        log::error!("{err}");
    }
    for (side, path) in &report.special {
        log::warn!("{}skipped special file \"{path}\" (fifo, socket or device)", prefix(*side));
    }
    for (path, winner) in &report.merge.conflicts {
        log::warn!(
            "conflict at \"{path}\": both sides changed it; {} kept the path, the other version was set aside",
            side_name(*winner)
        );
    }
    if config.options.dry_run {
        print_plan(&report);
    }
    observe::record_pass(
        totals,
        &report.stats,
        report.scan_errors.len(),
        report.merge.conflicts.len(),
        started,
    );
    if shutdown.load(Ordering::Relaxed) {
        log::debug!("stop requested");
    }
    u8::from(report.had_errors())
}

/// Dry run: every step on stdout, prefixed with the side it would change.
fn print_plan(report: &bisync::Report) {
    let m = &report.merge;
    let mut n = 0;
    for side in [Side::A, Side::B] {
        for step in &m.renames[side.index()].steps {
            println!("{}{step}", prefix(side));
            n += 1;
        }
    }
    for side in [Side::B, Side::A] {
        for step in &m.plans[side.index()].steps {
            println!("{}{step}", prefix(side));
            n += 1;
        }
    }
    log::info!("dry run: {n} operations; nothing changed");
}

fn prefix(side: Side) -> &'static str {
    match side {
        Side::A => "A: ",
        Side::B => "B: ",
    }
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::A => "A",
        Side::B => "B",
    }
}
