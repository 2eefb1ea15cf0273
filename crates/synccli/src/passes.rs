//! What both programs tell the user while they work: one log line per operation, a progress
//! line every few seconds on long passes, and a summary when they stop (SPEC section 3). Also
//! the loop of periodic passes, which both programs share.

use std::time::{Duration, Instant};

use synccore::apply::{ApplyStats, Event};
use synccore::plan::StepKind;
use synccore::shutdown::Shutdown;

/// Logs one operation's outcome; `prefix` tells where it happened (e.g. `"B: "` for twoway).
pub fn log_event(prefix: &str, event: &Event<'_>) {
    match event {
        Event::Done(step) => log::info!("{prefix}{step}"),
        Event::Failed(step, err) => log::error!("{prefix}{step} failed: {err}"),
        Event::Skipped(step, why) => log::warn!("{prefix}{step} skipped: {why}; left for the next pass"),
    }
}

/// Logs what a pass ignored (issue 14) and records how much for its summary line: each
/// ignored entry is named at debug level (`--verbose`), a rules file that was not read is a
/// warning.
pub fn log_ignored(
    prefix: &str,
    ignored: &[synccore::relpath::RelPath],
    not_read: &[synccore::relpath::RelPath],
    totals: &mut Totals,
) {
    for path in not_read {
        log::warn!(
            "{prefix}\"{path}\" is not read: it is a symlink or not a regular file, and rules files are only read as regular files (a symlink is never followed)"
        );
    }
    for path in ignored {
        log::debug!("{prefix}ignored \"{path}\"");
    }
    totals.ignored += ignored.len() as u64;
}

/// Logs a pass that stopped before doing anything (a rail, a missing root) and returns its
/// exit status.
pub fn pass_aborted(totals: &mut Totals, err: &synccore::Error) -> u8 {
    log::error!("pass aborted: {err}");
    totals.errors += 1;
    err.exit_code() as u8
}

/// Adds a finished pass to the totals and logs its one-line summary (at debug level when the
/// pass had nothing to do, so that an idle periodic run does not fill the log).
pub fn record_pass(
    totals: &mut Totals,
    stats: &ApplyStats,
    scan_errors: usize,
    conflicts: usize,
    started: Instant,
) {
    totals.errors += scan_errors as u64;
    totals.conflicts += conflicts as u64;
    totals.stats.add(stats);
    let (pass, ops, secs) = (totals.passes + 1, stats.operations(), started.elapsed().as_secs_f64());
    let ignored = std::mem::take(&mut totals.ignored);
    let ignored = if ignored > 0 { format!("{ignored} ignored, ") } else { String::new() };
    if ops == 0 && scan_errors == 0 && stats.failed == 0 {
        log::debug!("pass {pass}: nothing to do ({ignored}{secs:.2} s)");
        return;
    }
    let conflicts = if conflicts > 0 { format!("{conflicts} conflicts, ") } else { String::new() };
    log::info!(
        "pass {pass}: {ops} operations, {} bytes copied, {conflicts}{ignored}{} failed, {} left for the next pass, {secs:.2} s",
        stats.copied_bytes,
        stats.failed + scan_errors as u64,
        stats.skipped
    );
}

/// Logs a progress line every few seconds during a long pass.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    last: Instant,
    steps: u64,
}

impl Default for Progress {
    fn default() -> Self {
        Progress { started: Instant::now(), last: Instant::now(), steps: 0 }
    }
}

impl Progress {
    /// Counts one finished step, logging progress when 5 seconds have passed since the last line.
    pub fn tick(&mut self) {
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

/// The observer of a pass's steps: each is logged by `log` and counted for the progress line.
pub fn observer<'p>(progress: &'p mut Progress, log: impl Fn(&Event<'_>) + 'p) -> impl FnMut(Event<'_>) + 'p {
    move |event| {
        log(&event);
        progress.tick();
    }
}

/// What all passes of a run did, for the summary at exit.
#[derive(Debug, Default)]
pub struct Totals {
    pub passes: u64,
    pub stats: ApplyStats,
    /// Errors outside the steps: scan errors, aborted passes.
    pub errors: u64,
    /// Conflicts resolved (twoway).
    pub conflicts: u64,
    /// Versions rotated (`oneway --versioned`).
    pub rotations: u64,
    /// Entries the pass in progress ignored (issue 14), for its summary line.
    pub ignored: u64,
}

impl Totals {
    /// Logs the summary, ending with the original's `Total number of operations: N` line.
    pub fn log_summary(&self) {
        let mut by_kind: Vec<String> = StepKind::ALL
            .iter()
            .map(|k| format!("{} {}", k.word(), self.stats.done.get(k).copied().unwrap_or(0)))
            .collect();
        by_kind.push(format!("rotate {}", self.rotations));
        log::info!(
            "summary: {} passes; {}; {} bytes copied; {} conflicts; {} errors",
            self.passes,
            by_kind.join(", "),
            self.stats.copied_bytes,
            self.conflicts,
            self.errors + self.stats.failed
        );
        log::info!("Total number of operations: {}", self.stats.operations());
    }
}

/// Runs `pass` now and then every `interval` until a shutdown signal; with `once`, runs it
/// once and returns its exit status. A stopped loop logs the summary and returns 0.
pub fn run_passes(
    once: bool,
    interval: Duration,
    shutdown: &Shutdown,
    totals: &mut Totals,
    mut pass: impl FnMut(&mut Totals) -> u8,
) -> u8 {
    loop {
        // A panic outside the threads a pass already watches (a bug) ends the run with an
        // error that says so, instead of a pass counted as done (the hardening issue, 12).
        let Ok(status) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pass(totals))) else {
            log::error!("internal error: the pass panicked and was stopped (please report this)");
            totals.errors += 1;
            totals.log_summary();
            return 1;
        };
        totals.passes += 1;
        if once {
            totals.log_summary();
            return status;
        }
        if shutdown.sleep(interval) {
            break;
        }
    }
    log::info!("stopping on signal");
    totals.log_summary();
    0
}
