//! The loop of watch mode (`--watch`, the watch issue), which both programs share: one full
//! pass, then a pass as soon as a burst of changes has settled, over only the directories that
//! had events; a full pass every `--interval` (it catches whatever the watcher could not see)
//! and whenever the watcher asks for one; a signal ends it like the periodic loop.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use synccore::shutdown::Shutdown;
use synccore::watch::{Adder, Changes, Wake, Watch};

use crate::passes::Totals;

/// A program's passes in watch mode.
pub trait Watched {
    /// The roots to watch (canonical).
    fn roots(&self) -> Vec<PathBuf>;

    /// What the program itself writes inside them (its log file, twoway's home), whose events
    /// must not cause passes.
    fn quiet(&self) -> Vec<PathBuf>;

    /// A full pass: everything scanned again, each directory handed to its root's adder
    /// before it is listed (`adders` is empty when nothing is watched). Returns the exit status.
    fn full_pass(&mut self, adders: &[Adder], totals: &mut Totals) -> u8;

    /// A pass over what `changes` names; `None` when only a full pass will do (it then runs).
    fn changed_pass(&mut self, changes: &Changes, adders: &[Adder], totals: &mut Totals) -> Option<u8>;
}

/// Runs `program` in watch mode until a shutdown; returns 0 (like the periodic loop stopped by
/// a signal) or 1 when a pass panicked.
pub fn run_watch(
    program: &mut dyn Watched,
    interval: Duration,
    settle: Duration,
    shutdown: &Shutdown,
    totals: &mut Totals,
) -> u8 {
    let roots = program.roots();
    let mut watch = match Watch::start(roots.clone(), program.quiet(), shutdown) {
        Ok(watch) => Some(watch),
        Err(err) => {
            log::warn!("{err}; running full passes every {} s instead", interval.as_secs());
            None
        }
    };
    log::info!(
        "watching for changes (a pass {} ms after they settle, a full pass every {} s)",
        settle.as_millis(),
        interval.as_secs()
    );
    let adders = |watch: &Option<Watch>| -> Vec<Adder> {
        watch
            .as_ref()
            .filter(|w| w.stopped().is_none())
            .map_or_else(Vec::new, |w| (0..roots.len()).map(|i| w.adder(i)).collect())
    };
    let mut next_full = Instant::now();
    let mut wake = Wake::Timer;
    loop {
        let ran = match wake {
            Wake::Shutdown => break,
            Wake::Timer => None,
            Wake::Changes(changes) => match &changes.full {
                Some(reason) => {
                    log::info!("{reason}: a full pass follows");
                    None
                }
                None => {
                    match guarded(totals, |totals| program.changed_pass(&changes, &adders(&watch), totals)) {
                        Ok(ran) => ran,
                        Err(()) => return 1,
                    }
                }
            },
        };
        if ran.is_none() {
            // Whatever was seen so far, the full pass looks at; what changes during it is kept.
            if let Some(w) = watch.as_mut() {
                w.clear();
            }
            next_full = deadline(interval);
            if guarded(totals, |totals| Some(program.full_pass(&adders(&watch), totals))).is_err() {
                return 1;
            }
        }
        wake = match watch.as_mut().filter(|w| w.stopped().is_none()) {
            Some(w) => w.wait(settle, next_full),
            None if shutdown.sleep(next_full.saturating_duration_since(Instant::now())) => Wake::Shutdown,
            None => Wake::Timer,
        };
    }
    log::info!("stopping on signal");
    totals.log_summary();
    0
}

/// The next full pass's time; "never" (a far deadline) when that overflows.
fn deadline(interval: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(interval).unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

/// Runs one pass, counted in the totals when it ran (`Some`); a panic (a bug) is logged and
/// ends the run, as in the periodic loop.
fn guarded(totals: &mut Totals, pass: impl FnOnce(&mut Totals) -> Option<u8>) -> Result<Option<u8>, ()> {
    let Ok(ran) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pass(totals))) else {
        log::error!("internal error: the pass panicked and was stopped (please report this)");
        totals.errors += 1;
        totals.log_summary();
        return Err(());
    };
    totals.passes += u64::from(ran.is_some());
    Ok(ran)
}
