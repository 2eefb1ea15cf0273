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
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{
    BinaryBytes, HumanCount, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle,
};
use synccore::plan::{Step, Summary};

/// How long a pass runs before its bar appears.
pub const SHOW_AFTER: Duration = Duration::from_secs(1);
/// Overrides [`SHOW_AFTER`], in milliseconds.
pub const SHOW_AFTER_ENV: &str = "SYNCCLI_PROGRESS_AFTER_MS";
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

    /// The whole line of the bar: `label: figures [=====>    ]  42% ETA 12s`.
    pub fn line(&self, label: &str, elapsed: Duration) -> String {
        const WIDTH: u64 = 24;
        let (done, total) = self.weighted();
        let share = (done.min(total) * 100).checked_div(total).unwrap_or(0);
        let filled = (share * WIDTH / 100) as usize;
        let mut bar = "=".repeat(filled);
        if filled < WIDTH as usize {
            bar.push('>');
            bar.push_str(&" ".repeat(WIDTH as usize - filled - 1));
        }
        let eta = self.eta(elapsed).map_or_else(|| "?".to_owned(), |d| format!("{}", HumanDuration(d)));
        format!("{label}: {} [{bar}] {share:>3}% ETA {eta}", self.describe(elapsed))
    }
}

/// Steps that count as files in the figures: everything but directories.
fn is_file_step(step: &Step) -> bool {
    step.is_about_a_file()
}

/// The figures as the pass updates them and the bar reads them (on its own thread, every
/// redraw): bytes count what the copies wrote so far ([`synccore::fsio::bytes_written`]), so
/// the bar moves while a batch is staged, before any of its steps is done.
#[derive(Debug, Default)]
struct Shared {
    figures: Mutex<Figures>,
    /// `bytes_written` when the work started.
    written_before: u64,
}

impl Shared {
    fn now(&self) -> Figures {
        let mut f = *self.figures.lock().unwrap_or_else(PoisonError::into_inner);
        let written = synccore::fsio::bytes_written().saturating_sub(self.written_before);
        f.bytes_done = f.bytes_done.max(written).min(f.bytes_total);
        f
    }
}

/// The progress of one piece of work (a pass, a restore): a bar on a terminal, progress log
/// lines elsewhere. Dropping it clears the bar.
pub struct Progress {
    started: Instant,
    last_log: Instant,
    shared: Arc<Shared>,
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
        let shared =
            Arc::new(Shared { figures: Mutex::default(), written_before: synccore::fsio::bytes_written() });
        let live = terminal().then(|| Live::start(label, now, Arc::clone(&shared)));
        Progress { started: now, last_log: now, shared, live }
    }

    /// The figures so far.
    pub fn figures(&self) -> Figures {
        self.shared.now()
    }

    fn update(&mut self, change: impl FnOnce(&mut Figures)) {
        change(&mut self.shared.figures.lock().unwrap_or_else(PoisonError::into_inner));
        if let Some(live) = &self.live {
            live.bar.tick();
        } else if self.last_log.elapsed() >= LOG_EVERY {
            self.last_log = Instant::now();
            let (figures, elapsed) = (self.shared.now(), self.started.elapsed());
            let eta = figures
                .eta(elapsed)
                .map_or_else(String::new, |d| format!(", about {} left", HumanDuration(d)));
            log::info!(
                "progress: {}{eta} ({:.0} s so far)",
                figures.describe(elapsed),
                elapsed.as_secs_f64()
            );
        }
    }

    /// Adds a plan that is about to be carried out to the total.
    pub fn planned(&mut self, plan: &Summary) {
        self.update(|f| {
            f.steps_total += plan.steps();
            f.files_total += plan.files;
            f.bytes_total += plan.bytes;
        });
    }

    /// Counts one step as finished (done, failed or left for the next pass: either way it is
    /// behind us).
    pub fn step(&mut self, step: &Step) {
        self.update(|f| {
            f.steps_done += 1;
            f.bytes_done += step.bytes();
            f.files_done += u64::from(is_file_step(step));
        });
    }

    /// Counts what an observer of a pass is told: a plan to carry out, or a finished step.
    pub fn observe(&mut self, event: &synccore::apply::Event<'_>) {
        use synccore::apply::Event;
        match event {
            Event::Planned(plan) => self.planned(plan),
            Event::Done(step) | Event::Failed(step, _) | Event::Skipped(step, _) => self.step(step),
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

/// Puts the bar on screen, where console lines go through it.
fn show(bar: &ProgressBar) {
    bar.set_draw_target(ProgressDrawTarget::stderr());
    bar.enable_steady_tick(Duration::from_millis(200));
    *VISIBLE.lock().unwrap_or_else(PoisonError::into_inner) = Some(bar.clone());
}

/// [`SHOW_AFTER`], or the milliseconds of [`SHOW_AFTER_ENV`] (the end-to-end tests show the
/// bar at once, so that a pass they hold still is sure to have drawn it).
fn show_after() -> Duration {
    std::env::var(SHOW_AFTER_ENV)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(SHOW_AFTER, Duration::from_millis)
}

/// The bar's one line, rendered from the shared figures at each redraw: before the first
/// plan is known, a spinner while the pass scans.
fn style(label: &'static str, started: Instant, shared: Arc<Shared>) -> ProgressStyle {
    let line = move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
        let f = shared.now();
        let _ = if f.steps_total == 0 {
            write!(w, "{label}: scanning")
        } else {
            write!(w, "{}", f.line(label, started.elapsed()))
        };
    };
    ProgressStyle::with_template("{spinner} {line}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .with_key("line", line)
}

impl Live {
    fn start(label: &'static str, started: Instant, shared: Arc<Shared>) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
            .with_style(style(label, started, shared));
        let after = show_after();
        if after.is_zero() {
            show(&bar);
            return Live { bar, stop: None, shower: None };
        }
        let (stop, wait) = mpsc::channel::<()>();
        let shown = bar.clone();
        let shower = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                if wait.recv_timeout(after) == Err(RecvTimeoutError::Timeout) {
                    show(&shown);
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
        let line = f.line("mirroring", Duration::from_secs(2));
        assert_eq!(
            line,
            "mirroring: 1/4 files, 0 B/0 B, 0 B/s [======>                 ]  25% ETA 6 seconds"
        );
    }

    #[test]
    fn without_a_terminal_there_is_no_bar() {
        set_terminal(false);
        let mut p = Progress::new("testing");
        assert!(p.live.is_none());
        p.planned(&Summary::default());
        assert_eq!(p.figures(), Figures::default());
    }
}
