//! Supervision of the versioning children (SPEC section 4 "Recovery"): one `oneway
//! --versioned` per directory of the pair, restarted with backoff when it dies, stopped and
//! reaped when `twoway` stops. Each child also watches `twoway`'s pid (through
//! `SYNCCORE_WATCH_PID`), so even a `kill -9` of `twoway` leaves no orphan behind.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use synccore::error::Quoted;
use synccore::shutdown::WATCH_PID_ENV;

/// First restart delay; it doubles up to [`MAX_BACKOFF`] and resets after a stable run.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A child that ran this long counts as stable again.
const STABLE: Duration = Duration::from_secs(60);
/// How long a child gets to stop after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(10);

/// What to run for one protected directory.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// The directory it versions (for messages).
    pub dir: PathBuf,
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

struct Supervised {
    spec: ChildSpec,
    process: Option<Child>,
    started: Instant,
    backoff: Duration,
    restart_at: Instant,
}

/// How supervision ended.
#[derive(Debug, Default)]
pub struct Verdict {
    /// A child refused its input (exit 2): restarting would loop, so twoway stopped.
    pub fatal: Option<String>,
}

/// Running children and their supervising thread.
pub struct Children {
    done: Arc<AtomicBool>,
    thread: JoinHandle<Verdict>,
}

impl Children {
    /// Called when twoway's passes are over. In periodic mode the children are stopped
    /// (SIGTERM, then SIGKILL after a grace period) and reaped; with `--once` they finish
    /// their own single pass first. Returns how supervision ended.
    pub fn finish(self, shutdown: &AtomicBool) -> Verdict {
        self.done.store(true, Ordering::Relaxed);
        if let Ok(verdict) = self.thread.join() {
            return verdict;
        }
        shutdown.store(true, Ordering::Relaxed);
        Verdict { fatal: Some("the supervising thread failed".into()) }
    }
}

/// Starts every child now, then supervises them on a thread. A child that exits is restarted
/// with backoff, except with `once` (each child runs one pass); a child exiting 2 sets
/// `shutdown` and is reported in the verdict. `shutdown` (a signal) stops them all.
pub fn start(specs: Vec<ChildSpec>, shutdown: Arc<AtomicBool>, once: bool) -> std::io::Result<Children> {
    let mut children = Vec::new();
    for spec in specs {
        let process = spawn(&spec)?;
        log::info!("started versioning of {} (pid {})", Quoted(&spec.dir), process.id());
        children.push(Supervised {
            spec,
            process: Some(process),
            started: Instant::now(),
            backoff: MIN_BACKOFF,
            restart_at: Instant::now(),
        });
    }
    let done = Arc::new(AtomicBool::new(false));
    let parent_done = Arc::clone(&done);
    let thread = std::thread::spawn(move || supervise(children, &shutdown, &parent_done, once));
    Ok(Children { done, thread })
}

fn spawn(spec: &ChildSpec) -> std::io::Result<Child> {
    Command::new(&spec.program)
        .args(&spec.args)
        .env(WATCH_PID_ENV, std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
}

fn supervise(mut children: Vec<Supervised>, shutdown: &AtomicBool, done: &AtomicBool, once: bool) -> Verdict {
    let mut verdict = Verdict::default();
    while !shutdown.load(Ordering::Relaxed) {
        for child in &mut children {
            check(child, shutdown, &mut verdict, once);
        }
        let all_exited = children.iter().all(|c| c.process.is_none());
        if done.load(Ordering::Relaxed) && (!once || all_exited) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for child in &mut children {
        stop(child);
    }
    verdict
}

/// Reaps a child that exited and restarts it when its backoff has passed.
#[allow(clippy::collapsible_match)] // one arm per state of the child reads best
fn check(child: &mut Supervised, shutdown: &AtomicBool, verdict: &mut Verdict, once: bool) {
    let dir = Quoted(&child.spec.dir);
    match child.process.as_mut().map(Child::try_wait) {
        Some(Ok(None)) => {
            if child.started.elapsed() >= STABLE {
                child.backoff = MIN_BACKOFF;
            }
        }
        Some(Ok(Some(status))) => {
            child.process = None;
            if once && status.code() != Some(2) {
                if !status.success() {
                    log::warn!("versioning of {dir} ended with {status}; see its log");
                }
                child.restart_at = Instant::now() + Duration::from_secs(u64::from(u32::MAX));
                return;
            }
            if status.code() == Some(2) {
                let message =
                    format!("versioning of {dir} refused its input (exit 2; see its log); stopping");
                log::error!("{message}");
                verdict.fatal = Some(message);
                shutdown.store(true, Ordering::Relaxed);
                return;
            }
            log::warn!(
                "versioning of {dir} exited unexpectedly ({status}); restarting in {} s",
                child.backoff.as_secs()
            );
            child.restart_at = Instant::now() + child.backoff;
            child.backoff = (child.backoff * 2).min(MAX_BACKOFF);
        }
        Some(Err(e)) => log::error!("cannot check the versioning child of {dir}: {e}"),
        None if Instant::now() >= child.restart_at => match spawn(&child.spec) {
            Ok(process) => {
                log::info!("restarted versioning of {dir} (pid {})", process.id());
                child.process = Some(process);
                child.started = Instant::now();
            }
            Err(e) => {
                log::error!(
                    "cannot restart versioning of {dir}: {e}; retrying in {} s",
                    child.backoff.as_secs()
                );
                child.restart_at = Instant::now() + child.backoff;
                child.backoff = (child.backoff * 2).min(MAX_BACKOFF);
            }
        },
        None => {}
    }
}

/// SIGTERM, up to [`GRACE`] to finish the step at hand, then SIGKILL; always reaped.
fn stop(child: &mut Supervised) {
    let Some(mut process) = child.process.take() else { return };
    if let Some(pid) = Pid::from_raw(process.id() as i32) {
        let _ = kill_process(pid, Signal::TERM);
    }
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = process.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    log::warn!(
        "versioning of {} did not stop within {} s; killing it",
        Quoted(&child.spec.dir),
        GRACE.as_secs()
    );
    let _ = process.kill();
    let _ = process.wait();
}
