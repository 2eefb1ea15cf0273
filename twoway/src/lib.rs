//! `twoway`: the bidirectional merge plus recovery of the design card, built on the
//! primitives of `synccore` and run as a command through `synccli`.
//!
//! - [`cli`]: the command line;
//! - [`merge`]: the three-way merge, a pure `decide` per path;
//! - [`base`]: the merge base of a pair, its lock and its identity in either argument order;
//! - [`pass`]: one two-way pass (scan, rails, merge, apply, base);
//! - [`recovery`]: `config.json`, `.info.json` and the supervised versioning children;
//! - [`restore`]: `twoway DIR --restore` and its undo generations;
//! - [`run`]: inputs checked once, logging, the lock, the loop of passes, the exit status.

pub mod base;
pub mod cli;
pub mod merge;
pub mod pass;
pub mod recovery;
pub mod renames;
pub mod restore;

use std::path::{Path, PathBuf};
use std::time::Instant;

use synccli::Program;
use synccli::passes::{self, Progress, Totals};
use synccore::error::{Error, Quoted};
use synccore::shutdown::Shutdown;
use synccore::{lock, rails, roots};

use crate::base::Pair;
use crate::cli::Args;
use crate::merge::Side;
use crate::pass::{SyncOptions, SyncReport};

const PROGRAM: Program = Program { name: "twoway", tag: "TWOWAY" };

/// Runs `twoway` with its arguments and returns the exit status (SPEC section 5): the sync
/// loop (with the recovery system unless `--no-recovery`), or `DIR --restore`.
pub fn run(args: &Args) -> u8 {
    if args.restore {
        let check = || {
            let home = roots::future_dir(&home_of(args)?)?;
            let excludes = recovery::config::excludes(args.config.as_deref(), &home, &args.common)?;
            Ok((home, excludes))
        };
        return synccli::run_command(PROGRAM, &args.common, check, |(home, excludes)| {
            restore(args, &home, &excludes)
        });
    }
    synccli::run_command(PROGRAM, &args.common, || validate(args), |config| run_passes(args, &config))
}

/// `twoway DIR --restore [--version …]`.
fn restore(args: &Args, home: &Path, excludes: &synccore::ignore::Excludes) -> Result<u8, Error> {
    let shutdown = Shutdown::install()?;
    let version = restore::version_of(args.version);
    match restore::restore(home, &args.dir_a, version, excludes, shutdown.flag()) {
        Ok(done) => {
            restore::log_restored(&done);
            Ok(0)
        }
        Err(err) => {
            log::error!("restore failed: {err}");
            Ok(err.exit_code() as u8)
        }
    }
}

/// Validated, canonical inputs of a run.
#[derive(Debug)]
pub struct Config {
    pub pair: Pair,
    pub home: PathBuf,
    pub options: SyncOptions,
}

/// The home of SPEC section 4: `--home`, else `$TWOWAY_HOME`, else `$XDG_DATA_HOME/twoway`,
/// else `~/.local/share/twoway`.
pub fn home_of(args: &Args) -> Result<PathBuf, Error> {
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
pub fn validate(args: &Args) -> Result<Config, Error> {
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
    let log = roots::absolute(args.common.log.as_deref().unwrap_or(Path::new("twoway.log")))?;
    if log.starts_with(&a) || log.starts_with(&b) {
        return Err(Error::Invalid {
            path: log,
            reason: "the log file may not lie inside a synced directory".into(),
        });
    }
    let excludes = recovery::config::excludes(args.config.as_deref(), &home, &args.common)?;
    let options = SyncOptions { dry_run: args.common.dry_run, rails: args.common.rails(), excludes };
    Ok(Config { pair: Pair::locate(&home, a, b), home, options })
}

/// A missing directory of a pair that has a base was synced before: it vanished (an
/// unmounted disk, an `rm -rf`), and the pass must not touch its partner: the empty-side rail.
/// Anything else stays the input error it is.
fn vanished_or(err: Error, dir_a: &Path, dir_b: &Path, home: &Path) -> Error {
    let (Ok(a), Ok(b)) = (roots::absolute(dir_a), roots::absolute(dir_b)) else { return err };
    let has_base = Pair::locate(home, a.clone(), b.clone()).has_base();
    let (empty, other) = if a.exists() { (b, a) } else { (a, b) };
    match err {
        Error::Missing { .. } => rails::missing_root(err, has_base, &empty, &other),
        other_err => other_err,
    }
}

/// Installs the signal handlers, takes the pair's lock, starts the recovery system and runs
/// the passes.
fn run_passes(args: &Args, config: &Config) -> Result<u8, Error> {
    let shutdown = Shutdown::install()?;
    let (common, dry_run) = (&args.common, config.options.dry_run);
    if !dry_run {
        synccore::fsio::create_dirs(&config.home)?;
    }
    let _lock = lock::acquire_unless_dry_run(&config.pair.lock_path(), dry_run)?;
    let mut pair = config.pair.clone();
    if !dry_run {
        pair.adopt_legacy_base()?;
    }
    let once = common.once();
    let children = if args.no_recovery || dry_run {
        None
    } else {
        Some(recovery::start(args, &config.home, &pair.roots, &config.options.excludes, once, &shutdown)?)
    };
    let [a, b] = &pair.roots;
    let dry = if dry_run { " (dry run)" } else { "" };
    log::info!("syncing {} (A) and {} (B), state in {}{dry}", Quoted(a), Quoted(b), Quoted(&config.home));
    let mut totals = Totals::default();
    let status = passes::run_passes(once, common.interval(), &shutdown, &mut totals, |totals| {
        pass_and_log(&pair, &config.options, &shutdown, totals)
    });
    let Some(children) = children else { return Ok(status) };
    let verdict = children.finish(&shutdown);
    Ok(if verdict.fatal.is_some() { 2 } else { status })
}

/// Runs a pass, logs what it did, and returns its exit status (0, 1 or 3).
fn pass_and_log(pair: &Pair, options: &SyncOptions, shutdown: &Shutdown, totals: &mut Totals) -> u8 {
    let (started, mut progress) = (Instant::now(), Progress::default());
    let mut observe = |side: Side, event: synccore::apply::Event<'_>| {
        passes::log_event(side.prefix(), &event);
        progress.tick();
    };
    let report = match pass::run_pass(pair, options, shutdown, &mut observe) {
        Ok(report) => report,
        Err(err) => return passes::pass_aborted(totals, &err),
    };
    if let Some(problem) = &report.base_problem {
        log::warn!("{problem}; syncing as if for the first time (nothing is deleted)");
    }
    for err in &report.scan_errors {
        log::error!("{err}");
    }
    for (side, path) in &report.special {
        log::warn!("{}skipped special file \"{path}\" (fifo, socket or device)", side.prefix());
    }
    for (side, (ignored, not_read)) in [Side::A, Side::B].into_iter().zip(&report.ignored) {
        passes::log_ignored(side.prefix(), ignored, not_read, totals);
    }
    for (path, winner) in &report.merge.conflicts {
        log::warn!(
            "conflict at \"{path}\": both sides changed it; {} kept the path, the other version was set aside",
            winner.name()
        );
    }
    if options.dry_run {
        print_plan(&report);
    }
    passes::record_pass(
        totals,
        &report.stats,
        report.scan_errors.len(),
        report.merge.conflicts.len(),
        started,
    );
    u8::from(report.had_errors())
}

/// Dry run: every step on stdout, prefixed with the side it would change.
fn print_plan(report: &SyncReport) {
    let m = &report.merge;
    let mut n = 0;
    for side in [Side::A, Side::B] {
        for step in &m.renames[side.index()].steps {
            println!("{}{step}", side.prefix());
            n += 1;
        }
    }
    for side in [Side::B, Side::A] {
        for step in &m.plans[side.index()].steps {
            println!("{}{step}", side.prefix());
            n += 1;
        }
    }
    log::info!("dry run: {n} operations; nothing changed");
}
