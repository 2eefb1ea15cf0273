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
pub mod status;
pub mod watched;

use std::path::{Path, PathBuf};
use std::time::Instant;

use synccli::Program;
use synccli::output;
use synccli::passes::{self, PassEnd, Place, Totals};
use synccli::progress::Progress;
use synccli::watching::{self, Watched};
use synccore::apply::ApplyStats;
use synccore::error::{Error, Quoted};
use synccore::plan::Steps;
use synccore::relpath::RelPath;
use synccore::shutdown::Shutdown;
use synccore::watch::{Adder, Changes};
use synccore::{lock, rails, roots};

use crate::base::Pair;
use crate::cli::Args;
use crate::merge::Side;
use crate::pass::{SyncOptions, SyncReport};

const PROGRAM: Program = Program { name: "twoway", tag: "TWOWAY" };

/// Runs `twoway` with its arguments and returns the exit status (SPEC section 5): the sync
/// loop (with the recovery system unless `--no-recovery`), or `DIR --restore`.
pub fn run(args: &Args) -> u8 {
    if args.status {
        return show_status(args);
    }
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

/// `twoway DIR --restore [--version …]`, with progress on a terminal and a `restore` event
/// with `--json` (issue 16, point 1).
fn restore(args: &Args, home: &Path, excludes: &synccore::ignore::Excludes) -> Result<u8, Error> {
    let shutdown = Shutdown::install()?;
    let version = restore::version_of(args.version);
    let mut progress = Progress::new("restoring");
    let mut observe = |e: synccore::apply::Event<'_>| progress.observe(&e);
    let result = restore::restore(home, dir_a(args), version, excludes, shutdown.flag(), &mut observe);
    drop(progress);
    match result {
        Ok(done) => {
            restore::log_restored(&done);
            output::emit(|| restore::restored_event(&done));
            Ok(0)
        }
        Err(err) => {
            log::error!("restore failed: {err}");
            Ok(err.exit_code() as u8)
        }
    }
}

/// `twoway --status`: prints the home's status on stdout (one JSON object with `--json`).
/// It sets up no logging, takes no lock and writes nothing (issue 16, point 8).
fn show_status(args: &Args) -> u8 {
    let gathered = home_of(args).and_then(|h| roots::existing_dir(&h)).and_then(|h| status::gather(&h));
    match gathered {
        Ok(status) if args.common.json => {
            println!("{}", status.to_json());
            0
        }
        Ok(status) => {
            print!("{}", status.render());
            0
        }
        Err(err) => {
            eprintln!("twoway: error: {err}");
            err.exit_code() as u8
        }
    }
}

/// The first directory of the command line (clap requires it unless `--status`).
fn dir_a(args: &Args) -> &Path {
    args.dir_a.as_deref().unwrap_or(Path::new(""))
}

/// Validated, canonical inputs of a run.
#[derive(Debug)]
pub struct Config {
    pub pair: Pair,
    pub home: PathBuf,
    pub options: SyncOptions,
    /// The log file (absolute).
    pub log: PathBuf,
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
    let (a, b) = match (roots::existing_dir(dir_a(args)), roots::existing_dir(dir_b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(err), _) | (_, Err(err)) => return Err(vanished_or(err, dir_a(args), dir_b, &home)),
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
    Ok(Config { pair: Pair::locate(&home, a, b), home, options, log })
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
    let status = if common.watch {
        let mut watched = PairWatch {
            pair: &pair,
            options: &config.options,
            shutdown: &shutdown,
            log: &config.log,
            kept: None,
        };
        watching::run_watch(&mut watched, common.interval(), common.settle(), &shutdown, &mut totals)
    } else {
        passes::run_passes(once, common.interval(), &shutdown, &mut totals, |totals| {
            pass_and_log(&pair, &config.options, &shutdown, totals)
        })
    };
    let Some(children) = children else { return Ok(status) };
    let verdict = children.finish(&shutdown);
    Ok(if verdict.fatal.is_some() { 2 } else { status })
}

/// Where the operations of a side happen, for log lines and `--json` events.
fn place(side: Side) -> Place {
    Place { prefix: side.prefix(), side: Some(side.letter()) }
}

/// Runs a pass, logs what it did, records its status in the home (unless dry-running; issue
/// 16, point 8), and returns its exit status (0, 1 or 3).
fn pass_and_log(pair: &Pair, options: &SyncOptions, shutdown: &Shutdown, totals: &mut Totals) -> u8 {
    log_pass(pair, options, totals, |observe| pass::run_pass(pair, options, shutdown, observe))
}

/// Runs `pass` with the progress bar and the per-operation log lines, logs what it did,
/// records its status in the home (unless dry-running), and returns its exit status.
fn log_pass(
    pair: &Pair,
    options: &SyncOptions,
    totals: &mut Totals,
    pass: impl FnOnce(&mut dyn FnMut(Side, synccore::apply::Event<'_>)) -> Result<SyncReport, Error>,
) -> u8 {
    let (started, mut progress) = (Instant::now(), Progress::new("syncing"));
    let mut observe = |side: Side, event: synccore::apply::Event<'_>| {
        progress.observe(&event);
        passes::log_event(place(side), &event);
    };
    let result = pass(&mut observe);
    // The bar is cleared before the pass's own lines.
    drop(progress);
    let (exit, done) = match &result {
        Ok(report) => (log_report(report, options, started, totals), report.stats.clone()),
        Err(err) => (passes::pass_aborted(totals, err), ApplyStats::default()),
    };
    if !options.dry_run
        && let Ok(home) = synccore::fsio::Root::open(&pair.home)
    {
        let ending = synccli::status::Ending {
            program: "twoway",
            exit,
            error: result.as_ref().err(),
            stats: &done,
            seconds: started.elapsed().as_secs_f64(),
        };
        synccli::status::record(&home, &pair.dir.join(synccli::status::FILE_NAME), &ending);
    }
    exit
}

/// Logs what a pass that ran found and did (its conflicts named with their copies, issue 16
/// point 10); returns its exit status.
fn log_report(report: &SyncReport, options: &SyncOptions, started: Instant, totals: &mut Totals) -> u8 {
    if let Some(problem) = &report.base_problem {
        log::warn!("{problem}; syncing as if for the first time (nothing is deleted)");
    }
    for err in &report.scan_errors {
        passes::report_error(err);
    }
    for (side, path) in &report.special {
        let message = format!("skipped special file \"{path}\" (fifo, socket or device)");
        passes::warn_at(place(*side), path, &message);
    }
    for (side, (ignored, not_read)) in [Side::A, Side::B].into_iter().zip(&report.ignored) {
        passes::log_ignored(side.prefix(), ignored, not_read, totals);
    }
    for c in &report.merge.conflicts {
        log::warn!(
            target: synccli::logging::OP_TARGET,
            "conflict at \"{}\": both sides changed it; {} kept the path, the other version was set aside \
             as \"{}\"",
            c.path,
            c.winner.name(),
            c.copy
        );
        output::emit(|| {
            serde_json::json!({
                "event": "conflict",
                "path": output::rel(&c.path),
                "winner": c.winner.letter().to_string(),
                "copy": output::rel(&c.copy),
                "copy_from": c.winner.other().letter().to_string(),
            })
        });
    }
    let planned;
    let stats = if options.dry_run {
        print_plan(report);
        let m = &report.merge;
        let summaries = [&m.renames[0], &m.renames[1], &m.plans[1], &m.plans[0]].map(Steps::summary);
        planned = passes::planned_stats(&summaries.iter().collect::<Vec<_>>());
        &planned
    } else {
        &report.stats
    };
    let copies: Vec<RelPath> = report.merge.conflicts.iter().map(|c| c.copy.clone()).collect();
    let exit = u8::from(report.had_errors());
    let end = PassEnd {
        stats,
        scan_errors: report.scan_errors.len(),
        conflict_copies: &copies,
        started,
        status: exit,
        dry_run: options.dry_run,
        extra: serde_json::Map::new(),
    };
    passes::record_pass(totals, &end);
    exit
}

/// Dry run: every step on stdout, prefixed with the side it would change (with `--json`,
/// events with `"would": true` and their side).
fn print_plan(report: &SyncReport) {
    let m = &report.merge;
    for side in [Side::A, Side::B] {
        passes::show_plan(place(side), &m.renames[side.index()]);
    }
    for side in [Side::B, Side::A] {
        passes::show_plan(place(side), &m.plans[side.index()]);
    }
}

/// A pair in watch mode: what the last pass left, for the next ([`watched`]).
struct PairWatch<'a> {
    pair: &'a Pair,
    options: &'a SyncOptions,
    shutdown: &'a Shutdown,
    log: &'a Path,
    kept: Option<pass::Kept>,
}

impl Watched for PairWatch<'_> {
    fn roots(&self) -> Vec<PathBuf> {
        self.pair.roots.to_vec()
    }

    fn quiet(&self) -> Vec<PathBuf> {
        watched::quiet(self.pair, self.log)
    }

    fn full_pass(&mut self, adders: &[Adder], totals: &mut Totals) -> u8 {
        let (pair, options, shutdown) = (self.pair, self.options, self.shutdown);
        let kept = &mut self.kept;
        *kept = None;
        log_pass(pair, options, totals, |observe| {
            let (report, left) = pass::full_pass(pair, options, shutdown, observe, adders)?;
            *kept = left;
            Ok(report)
        })
    }

    fn changed_pass(&mut self, changes: &Changes, adders: &[Adder], totals: &mut Totals) -> Option<u8> {
        let (pair, options, shutdown) = (self.pair, self.options, self.shutdown);
        let kept = self.kept.as_mut()?;
        match watched::rescan(kept, changes, adders) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(err) => {
                log::warn!("{err}: a full pass follows");
                return None;
            }
        }
        let mut stopped = false;
        let status = log_pass(pair, options, totals, |observe| {
            let report = watched::sync(kept, pair, options, shutdown, observe);
            stopped = report.is_err();
            report
        });
        if stopped {
            // A pass that stopped (a rail, an error of the pass itself): the next one looks at
            // everything again.
            self.kept = None;
        }
        Some(status)
    }
}
