//! What both programs tell the user while they work: one log line (and, with `--json`, one
//! event) per operation, progress on long passes, a summary per pass and one when they stop
//! (SPEC section 3, issue 16). Also the loop of periodic passes, which both programs share.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use synccore::apply::{ApplyStats, Event};
use synccore::plan::{StepKind, Steps, Summary};
use synccore::relpath::RelPath;
use synccore::shutdown::Shutdown;

use crate::logging::OP_TARGET;
use crate::output::{self, Level, Origin};
use crate::progress::Progress;

/// Where a pass's operations happen: the prefix of their log lines (e.g. `"B: "` for twoway)
/// and the side of their `--json` events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Place {
    pub prefix: &'static str,
    pub side: Option<char>,
}

/// Logs one operation's outcome (and writes its `--json` event).
pub fn log_event(place: Place, event: &Event<'_>) {
    let prefix = place.prefix;
    match event {
        Event::Done(step) => {
            log::info!(target: OP_TARGET, "{prefix}{step}");
            output::emit(|| output::step_event(step, Origin { side: place.side, would: false }));
        }
        Event::Failed(step, err) => {
            log::error!(target: OP_TARGET, "{prefix}{step} failed: {err}");
            problem(Level::Error, place, step, &format!("{step} failed: {err}"));
        }
        Event::Skipped(step, why) => {
            log::warn!(target: OP_TARGET, "{prefix}{step} skipped: {why}; left for the next pass");
            problem(Level::Warning, place, step, &format!("{step} skipped: {why}; left for the next pass"));
        }
        Event::Planned(_) => {}
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

/// The `--json` event of a step that failed or was skipped.
pub fn problem(level: Level, place: Place, step: &synccore::plan::Step, message: &str) {
    let path = Some(output::rel(&step.path));
    output::emit(|| output::problem_event(level, message, path, Some(step.kind()), place.side));
}

/// Logs an error met outside the steps (a scan error), with its `--json` event naming the
/// path the error names.
pub fn report_error(err: &synccore::Error) {
    log::error!(target: OP_TARGET, "{err}");
    let path = error_path(err).map(output::path);
    output::emit(|| output::problem_event(Level::Error, &err.to_string(), path, None, None));
}

/// Logs a warning about one entry of a tree (`path` relative to it; `message` names it),
/// with its `--json` event.
pub fn warn_at(place: Place, path: &RelPath, message: &str) {
    log::warn!(target: OP_TARGET, "{}{message}", place.prefix);
    output::emit(|| {
        output::problem_event(Level::Warning, message, Some(output::rel(path)), None, place.side)
    });
}

/// The path an error names, if it names one.
pub fn error_path(err: &synccore::Error) -> Option<&std::path::Path> {
    use synccore::Error as E;
    match err {
        E::Io { path, .. }
        | E::Missing { path }
        | E::NotADirectory { path }
        | E::Locked { path, .. }
        | E::Invalid { path, .. }
        | E::Corrupt { path, .. }
        | E::Incomplete { path, .. } => Some(path),
        E::RenameIo { from, .. } => Some(from),
        _ => None,
    }
}

/// A dry run's plan: on stdout as text (SPEC section 3: "prints exactly the plan"), or, with
/// `--json`, as events with `"would": true` (and no text on stdout).
pub fn show_plan(place: Place, plan: &dyn Steps) {
    let shown = plan.each(&mut |step| {
        if output::json() {
            output::emit(|| output::step_event(step, Origin { side: place.side, would: true }));
        } else {
            println!("{}{step}", place.prefix);
        }
        std::ops::ControlFlow::Continue(())
    });
    if let Err(err) = shown {
        log::error!("cannot read the rest of the plan back from its temporary file: {err}");
    }
}

/// What plans would do, counted like the steps of a pass that did it: a dry run's totals
/// (issue 16, point 3: its closing total is the number of planned operations).
pub fn planned_stats(plans: &[&Summary]) -> ApplyStats {
    let mut stats = ApplyStats::default();
    for plan in plans {
        for (kind, n) in &plan.by_kind {
            *stats.done.entry(*kind).or_default() += n;
        }
        stats.copied_bytes += plan.bytes;
    }
    stats
}

/// Logs a pass that stopped before doing anything (a rail, a missing root), writes its
/// `--json` summary, and returns its exit status.
pub fn pass_aborted(totals: &mut Totals, err: &synccore::Error) -> u8 {
    log::error!("pass aborted: {err}");
    totals.errors += 1;
    aborted_summary(totals, err)
}

/// The `--json` summary of a pass that `err` stopped before it did anything; returns the
/// pass's exit status.
pub fn aborted_summary(totals: &Totals, err: &synccore::Error) -> u8 {
    let status = err.exit_code() as u8;
    let mut event = Map::new();
    event.insert("event".into(), "summary".into());
    event.insert("pass".into(), (totals.passes + 1).into());
    event.insert("status".into(), status.into());
    event.insert("aborted".into(), err.to_string().into());
    output::emit(|| Value::Object(event));
    status
}

/// How a pass ended, for its summary.
#[derive(Debug)]
pub struct PassEnd<'a> {
    /// What the pass did (a dry run: what it would do, see [`planned_stats`]).
    pub stats: &'a ApplyStats,
    /// Errors outside the steps (scan errors).
    pub scan_errors: usize,
    /// The conflict copies the pass made (twoway), relative to both directories.
    pub conflict_copies: &'a [RelPath],
    pub started: Instant,
    /// The pass's exit status.
    pub status: u8,
    pub dry_run: bool,
    /// Program-specific fields of the `--json` summary (e.g. a versioned pass's outcome).
    pub extra: Map<String, Value>,
}

/// Adds a finished pass to the totals, logs its one-line summary (at debug level when the
/// pass had nothing to do, so that an idle periodic run does not fill the log) and writes
/// its `--json` summary.
pub fn record_pass(totals: &mut Totals, end: &PassEnd<'_>) {
    let (pass, errors, secs) = count_pass(totals, end);
    let (stats, ops) = (end.stats, end.stats.operations());
    let ignored = std::mem::take(&mut totals.ignored);
    let ignored = if ignored > 0 { format!("{ignored} ignored, ") } else { String::new() };
    if ops == 0 && errors == 0 && end.conflict_copies.is_empty() {
        log::debug!("pass {pass}: nothing to do ({ignored}{secs:.2} s)");
        return;
    }
    let conflicts = match end.conflict_copies {
        [] => String::new(),
        copies => {
            let names: Vec<String> = copies.iter().map(|c| format!("\"{c}\"")).collect();
            format!("{} conflicts (conflict copies: {}), ", copies.len(), names.join(", "))
        }
    };
    let (would, verb) = if end.dry_run { ("would do ", "to copy") } else { ("", "copied") };
    log::info!(
        "pass {pass}: {would}{ops} operations, {} bytes {verb}, {conflicts}{ignored}{errors} failed, {} \
         left for the next pass, {secs:.2} s",
        stats.copied_bytes,
        stats.skipped
    );
}

/// Adds a finished pass to the totals and writes its `--json` summary, without a log line
/// (for a pass that logs its own, like a versioned one). Returns the pass's number, its
/// errors and its duration in seconds.
pub fn count_pass(totals: &mut Totals, end: &PassEnd<'_>) -> (u64, u64, f64) {
    let stats = end.stats;
    totals.errors += end.scan_errors as u64;
    totals.conflicts += end.conflict_copies.len() as u64;
    totals.stats.add(stats);
    totals.dry_run |= end.dry_run;
    let (pass, secs) = (totals.passes + 1, end.started.elapsed().as_secs_f64());
    let errors = stats.failed + end.scan_errors as u64;
    emit_summary(pass, end, errors, secs);
    (pass, errors, secs)
}

fn emit_summary(pass: u64, end: &PassEnd<'_>, errors: u64, secs: f64) {
    if !output::json() {
        return;
    }
    let mut event = Map::new();
    event.insert("event".into(), "summary".into());
    event.insert("pass".into(), pass.into());
    event.insert("status".into(), end.status.into());
    if end.dry_run {
        event.insert("would".into(), true.into());
    }
    event.extend(output::counts(end.stats));
    event.insert("conflicts".into(), end.conflict_copies.len().into());
    let copies: Vec<Value> = end.conflict_copies.iter().map(output::rel).collect();
    event.insert("conflict_copies".into(), copies.into());
    event.insert("errors".into(), errors.into());
    event.insert("seconds".into(), json!((secs * 1000.0).round() / 1000.0));
    event.extend(end.extra.clone());
    output::emit(|| Value::Object(event));
}

/// The observer of a pass's steps: each is logged by `log` and counted by `progress`.
pub fn observer<'p>(progress: &'p mut Progress, log: impl Fn(&Event<'_>) + 'p) -> impl FnMut(Event<'_>) + 'p {
    move |event| {
        progress.observe(&event);
        log(&event);
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
    /// The passes were dry runs: the counts are what they would have done.
    pub dry_run: bool,
    /// Entries the pass in progress ignored (issue 14), for its summary line.
    pub ignored: u64,
}

impl Totals {
    /// Logs the summary, ending with the original's `Total number of operations: N` line (a
    /// dry run's says that N would be done, issue 16 point 3), and writes the `--json`
    /// `totals` event.
    pub fn log_summary(&self) {
        let mut by_kind: Vec<String> = StepKind::ALL
            .iter()
            .map(|k| format!("{} {}", k.word(), self.stats.done.get(k).copied().unwrap_or(0)))
            .collect();
        by_kind.push(format!("rotate {}", self.rotations));
        log::info!(
            "summary: {} passes; {}; {} bytes {}; {} conflicts; {} errors",
            self.passes,
            by_kind.join(", "),
            self.stats.copied_bytes,
            if self.dry_run { "to copy" } else { "copied" },
            self.conflicts,
            self.errors + self.stats.failed
        );
        let would = if self.dry_run { " (would be; dry run, nothing changed)" } else { "" };
        log::info!("Total number of operations: {}{would}", self.stats.operations());
        if output::json() {
            let mut event = Map::new();
            event.insert("event".into(), "totals".into());
            event.insert("passes".into(), self.passes.into());
            if self.dry_run {
                event.insert("would".into(), true.into());
            }
            event.extend(output::counts(&self.stats));
            event.insert("rotate".into(), self.rotations.into());
            event.insert("conflicts".into(), self.conflicts.into());
            event.insert("errors".into(), (self.errors + self.stats.failed).into());
            output::emit(|| Value::Object(event));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use synccore::plan::{Action, Plan, Step};

    #[test]
    fn a_dry_run_counts_what_its_plans_would_do() {
        let step = |p: &[u8], action| Step { path: RelPath::from_bytes(p), action };
        let owner = synccore::entry::Owner::default();
        let mtime = synccore::entry::Mtime { secs: 1, nanos: 0 };
        let a = Plan {
            steps: vec![
                step(b"x", Action::Copy { size: 5, mode: 0o644, mtime, owner }),
                step(b"d", Action::Rmdir),
            ],
        };
        let b = Plan { steps: vec![step(b"y", Action::Cleanup)] };
        let stats = planned_stats(&[&a.summary(), &b.summary()]);
        assert_eq!(stats.operations(), 3);
        assert_eq!(stats.copied_bytes, 5);
        assert_eq!(stats.done.get(&StepKind::Copy), Some(&1));
    }
}
