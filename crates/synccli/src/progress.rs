//! Progress of a pass, a restore or a versions rotation (issue 16, point 1).
//!
//! On a terminal (stderr is a TTY and not `-q`) a pass that takes more than about a second
//! shows one redrawn line (`indicatif`): files and bytes done of the plan's total, the rate
//! and the time left. Console log lines written meanwhile go through the bar
//! ([`write_console`]: the bar is cleared, the line written, the bar redrawn), so they scroll
//! above it. Elsewhere (a pipe, a file, a supervising `twoway`) there is no bar: a long pass
//! logs a progress line every 5 seconds instead, with the same figures.
//!
//! The bar appears only after [`SHOW_AFTER`] so that the many short passes of a periodic run
//! never flash one. No polling: a thread waits on a channel for that delay or for the end.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{BinaryBytes, HumanCount, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};
use synccore::plan::{Action, Plan, Step};

/// How long a pass runs before its bar appears.
pub const SHOW_AFTER: Duration = Duration::from_secs(1);
/// How often a long pass logs a progress line when there is no bar.
const LOG_EVERY: Duration = Duration::from_secs(5);
/// What one step costs besides its bytes, for the bar's share done and its ETA: creating,
/// renaming and syncing a file costs about as much as writing this many bytes, so a pass of
/// many small files is not shown as done when its bytes are.
const STEP_COST: u64 = 32 * 1024;

/// Set at start-up: a bar may be shown (stderr is a terminal, not `-q`).
static TERMINAL: AtomicBool = AtomicBool::new(false);
/// The bar on screen now, through which console lines are written.
static VISIBLE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Allows (or forbids) bars for this run.
pub fn set_terminal(on: bool) {
    TERMINAL.store(on, Ordering::Relaxed);
}

/// True when bars are shown instead of progress log lines.
pub fn terminal() -> bool {
    TERMINAL.load(Ordering::Relaxed)
}

/// Writes whole console lines to `out`, above the bar when one is on screen.
pub(crate) fn write_console(out: &mut dyn Write, lines: &[u8]) {
    let bar = VISIBLE.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut write = || {
        let _ = out.write_all(lines);
        let _ = out.flush();
    };
    match bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// Figures of a piece of work: done of planned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub steps_done: u64,
    pub steps_total: u64,
}

impl Figures {
    /// The share of the work done, weighing each step's bytes plus a fixed cost per step.
    pub fn weighted(&self) -> (u64, u64) {
        (self.bytes_done + self.steps_done * STEP_COST, self.bytes_total + self.steps_total * STEP_COST)
    }

    /// `1,234/52,811 files, 120.00 MiB/600.00 MiB`, and the rate after `elapsed`.
    pub fn describe(&self, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64().max(0.001);
        format!(
            "{}/{} files, {}/{}, {}/s",
            HumanCount(self.files_done),
            HumanCount(self.files_total),
            BinaryBytes(self.bytes_done),
            BinaryBytes(self.bytes_total),
            BinaryBytes((self.bytes_done as f64 / secs) as u64)
        )
    }

    /// The time left at the rate so far, when it can be told.
    pub fn eta(&self, elapsed: Duration) -> Option<Duration> {
        let (done, total) = self.weighted();
        (done > 0 && total >= done).then(|| elapsed.mul_f64((total - done) as f64 / done as f64))
    }
}

/// Steps that count as files in the figures: everything but directories.
fn is_file_step(step: &Step) -> bool {
    !matches!(step.action, Action::Mkdir { .. } | Action::Rmdir | Action::Meta { dir: true, .. })
}

/// The progress of one piece of work (a pass, a restore): a bar on a terminal, progress log
/// lines elsewhere. Dropping it clears the bar.
pub struct Progress {
    label: &'static str,
    started: Instant,
    last_log: Instant,
    last_message: Instant,
    figures: Figures,
    live: Option<Live>,
}

/// A bar that is (or will be) on screen.
struct Live {
    bar: ProgressBar,
    stop: Option<Sender<()>>,
    shower: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts the progress of `label` (e.g. `"mirroring"`). The bar, if any, appears after
    /// [`SHOW_AFTER`].
    pub fn new(label: &'static str) -> Self {
        let now = Instant::now();
        Progress {
            label,
            started: now,
            last_log: now,
            last_message: now,
            figures: Figures::default(),
            live: terminal().then(|| Live::start(label)),
        }
    }

    /// The figures so far.
    pub fn figures(&self) -> Figures {
        self.figures
    }

    /// Adds a plan that is about to be carried out to the total.
    pub fn planned(&mut self, plan: &Plan) {
        let f = &mut self.figures;
        f.steps_total += plan.steps.len() as u64;
        f.files_total += plan.steps.iter().filter(|s| is_file_step(s)).count() as u64;
        f.bytes_total += plan.bytes();
        if let Some(live) = &self.live {
            live.bar.set_style(bar_style());
            live.bar.set_length(f.weighted().1);
        }
        self.refresh(true);
    }

    /// Counts one step as finished (done, failed or left for the next pass: either way it is
    /// behind us).
    pub fn step(&mut self, step: &Step) {
        let f = &mut self.figures;
        f.steps_done += 1;
        f.bytes_done += step.bytes();
        f.files_done += u64::from(is_file_step(step));
        self.refresh(false);
    }

    /// Counts what an observer of a pass is told: a plan to carry out, or a finished step.
    pub fn observe(&mut self, event: &synccore::apply::Event<'_>) {
        use synccore::apply::Event;
        match event {
            Event::Planned(plan) => self.planned(plan),
            Event::Done(step) | Event::Failed(step, _) | Event::Skipped(step, _) => self.step(step),
        }
    }

    fn refresh(&mut self, force: bool) {
        let elapsed = self.started.elapsed();
        if let Some(live) = &self.live {
            live.bar.set_position(self.figures.weighted().0);
            if force || self.last_message.elapsed() >= Duration::from_millis(100) {
                self.last_message = Instant::now();
                live.bar.set_message(format!("{}: {}", self.label, self.figures.describe(elapsed)));
            }
        } else if self.last_log.elapsed() >= LOG_EVERY {
            self.last_log = Instant::now();
            let eta = self
                .figures
                .eta(elapsed)
                .map_or_else(String::new, |d| format!(", about {} left", HumanDuration(d)));
            log::info!(
                "progress: {}{eta} ({:.0} s so far)",
                self.figures.describe(elapsed),
                elapsed.as_secs_f64()
            );
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(live) = self.live.take() {
            live.finish();
        }
    }
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg} [{bar:24}] {percent:>3}% ETA {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner())
}

impl Live {
    fn start(label: &'static str) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
            .with_style(spinner_style())
            .with_message(format!("{label}: scanning"));
        let (stop, wait) = mpsc::channel::<()>();
        let shown = bar.clone();
        let shower = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                if wait.recv_timeout(SHOW_AFTER) == Err(RecvTimeoutError::Timeout) {
                    shown.set_draw_target(ProgressDrawTarget::stderr());
                    shown.enable_steady_tick(Duration::from_millis(200));
                    *VISIBLE.lock().unwrap_or_else(PoisonError::into_inner) = Some(shown);
                }
            })
            .ok();
        Live { bar, stop: Some(stop), shower }
    }

    fn finish(mut self) {
        // Wakes the thread (or lets it finish showing the bar), then clears the bar.
        drop(self.stop.take());
        if let Some(shower) = self.shower.take() {
            let _ = shower.join();
        }
        VISIBLE.lock().unwrap_or_else(PoisonError::into_inner).take();
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_weigh_bytes_and_steps_and_tell_the_time_left() {
        let f = Figures {
            files_done: 1,
            files_total: 4,
            bytes_done: 0,
            bytes_total: 0,
            steps_done: 1,
            steps_total: 4,
        };
        assert_eq!(f.weighted(), (STEP_COST, 4 * STEP_COST));
        assert_eq!(f.eta(Duration::from_secs(2)), Some(Duration::from_secs(6)));
        assert_eq!(Figures::default().eta(Duration::from_secs(2)), None);
        let d = Figures { bytes_done: 1024, bytes_total: 2048, ..f }.describe(Duration::from_secs(1));
        assert_eq!(d, "1/4 files, 1.00 KiB/2.00 KiB, 1.00 KiB/s");
    }

    #[test]
    fn without_a_terminal_there_is_no_bar() {
        set_terminal(false);
        let mut p = Progress::new("testing");
        assert!(p.live.is_none());
        p.planned(&Plan::default());
        assert_eq!(p.figures(), Figures::default());
    }
}
