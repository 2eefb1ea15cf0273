//! Supervision of the versioning children (SPEC section 4 "Recovery"): one `oneway
//! --versioned` per directory of the pair, restarted with backoff when it dies, stopped and
//! reaped when `twoway` stops. Each child also watches `twoway` through a pidfd (its
//! `SYNCCORE_WATCH_PID`), so even a `kill -9` of `twoway` leaves no orphan behind.
//!
//! Nothing here polls: a thread per child blocks in `wait` and reports the exit, a thread per
//! child relays its error lines, and the supervisor sleeps on one channel until an event (a
//! child exited, a shutdown, the end of the passes) or the next restart is due.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use synccore::error::Quoted;
use synccore::shutdown::{Shutdown, WATCH_PID_ENV};

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

/// What wakes the supervisor.
enum Wake {
    /// Child `index` (of the given generation: a restarted child is a new one) exited.
    Exited { index: usize, generation: u64, status: std::io::Result<ExitStatus> },
    /// A shutdown was requested.
    Shutdown,
    /// `twoway`'s passes are over.
    Done,
}

/// One supervised child.
struct Supervised {
    spec: ChildSpec,
    /// Pid of the running process (`None` while it waits for a restart or after `--once`).
    pid: Option<u32>,
    generation: u64,
    started: Instant,
    backoff: Duration,
    /// When to restart it (`None`: not to be restarted).
    restart_at: Option<Instant>,
}

/// How supervision ended.
#[derive(Debug, Default)]
pub struct Verdict {
    /// A child refused its input (exit 2): restarting would loop, so twoway stopped.
    pub fatal: Option<String>,
}

/// Running children and their supervising thread.
pub struct Children {
    wake: Sender<Wake>,
    thread: JoinHandle<Verdict>,
}

impl Children {
    /// Called when twoway's passes are over. In periodic mode the children are stopped
    /// (SIGTERM, then SIGKILL after a grace period) and reaped; with `--once` they finish
    /// their own single pass first. Returns how supervision ended.
    pub fn finish(self, shutdown: &Shutdown) -> Verdict {
        let _ = self.wake.send(Wake::Done);
        if let Ok(verdict) = self.thread.join() {
            return verdict;
        }
        shutdown.request();
        Verdict { fatal: Some("the supervising thread failed".into()) }
    }
}

/// Starts every child now, then supervises them on a thread. A child that exits is restarted
/// with backoff, except with `once` (each child runs one pass); a child exiting 2 requests a
/// shutdown and is reported in the verdict. A shutdown (a signal) stops them all.
pub fn start(specs: Vec<ChildSpec>, shutdown: &Shutdown, once: bool) -> std::io::Result<Children> {
    let (wake, events) = mpsc::channel();
    let mut children = Vec::new();
    for (index, spec) in specs.into_iter().enumerate() {
        let mut child = Supervised {
            spec,
            pid: None,
            generation: 0,
            started: Instant::now(),
            backoff: MIN_BACKOFF,
            restart_at: None,
        };
        spawn(&mut child, index, &wake)?;
        log::info!("started versioning of {} (pid {})", Quoted(&child.spec.dir), child.pid.unwrap_or(0));
        children.push(child);
    }
    // A shutdown request becomes an event on the same channel.
    let (watcher, on_shutdown) = (shutdown.clone(), wake.clone());
    std::thread::Builder::new().name("shutdown-watch".into()).spawn(move || {
        watcher.sleep(Duration::MAX);
        let _ = on_shutdown.send(Wake::Shutdown);
    })?;
    let (shutdown, respawn) = (shutdown.clone(), wake.clone());
    let thread = std::thread::Builder::new()
        .name("supervisor".into())
        .spawn(move || supervise(children, &events, &respawn, &shutdown, once))?;
    Ok(Children { wake, thread })
}

/// Starts `child`'s process, with a thread that waits for its exit and one that relays its
/// warnings and errors into twoway's log.
fn spawn(child: &mut Supervised, index: usize, wake: &Sender<Wake>) -> std::io::Result<()> {
    let mut process = Command::new(&child.spec.program)
        .args(&child.spec.args)
        .env(WATCH_PID_ENV, std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    child.generation += 1;
    child.pid = Some(process.id());
    child.started = Instant::now();
    if let Some(stderr) = process.stderr.take() {
        let dir = child.spec.dir.clone();
        std::thread::spawn(move || relay(&dir, stderr));
    }
    let (wake, generation) = (wake.clone(), child.generation);
    std::thread::spawn(move || {
        let status = process.wait();
        let _ = wake.send(Wake::Exited { index, generation, status });
    });
    Ok(())
}

/// Re-logs a child's console lines (it runs with `--quiet`: warnings and errors only) under
/// twoway's name, at their own level: a child that a rail stops on every pass (say, after a
/// deliberate mass delete) is then an ERROR in twoway's log each time, not a silent freeze of
/// the versions (the architecture issue).
fn relay(dir: &std::path::Path, stderr: std::process::ChildStderr) {
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        // `[ONEWAY] <time> <LEVEL> <message>`
        let mut fields = line.splitn(4, ' ');
        let (tag, _, level, message) = (fields.next(), fields.next(), fields.next(), fields.next());
        let message = if tag == Some("[ONEWAY]") { message.unwrap_or_default().trim_start() } else { &line };
        match level {
            Some("ERROR") => log::error!("versioning of {}: {message}", Quoted(dir)),
            _ => log::warn!("versioning of {}: {message}", Quoted(dir)),
        }
    }
}

fn supervise(
    mut children: Vec<Supervised>,
    events: &Receiver<Wake>,
    wake: &Sender<Wake>,
    shutdown: &Shutdown,
    once: bool,
) -> Verdict {
    let mut verdict = Verdict::default();
    let mut done = false;
    while !shutdown.is_requested() {
        if done && (!once || children.iter().all(|c| c.pid.is_none())) {
            break;
        }
        let next_restart = children.iter().filter_map(|c| c.restart_at).min();
        let event = match next_restart {
            Some(at) => events.recv_timeout(at.saturating_duration_since(Instant::now())),
            None => events.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match event {
            Ok(Wake::Exited { index, generation, status }) => {
                if let Some(child) = children.get_mut(index).filter(|c| c.generation == generation) {
                    exited(child, status, shutdown, &mut verdict, once);
                }
            }
            Ok(Wake::Done) => done = true,
            Err(RecvTimeoutError::Timeout) => {}
            Ok(Wake::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
        }
        for (index, child) in children.iter_mut().enumerate() {
            restart_if_due(child, index, wake);
        }
    }
    stop_all(&mut children, events);
    verdict
}

/// Records a child's exit and schedules its restart with backoff.
fn exited(
    child: &mut Supervised,
    status: std::io::Result<ExitStatus>,
    shutdown: &Shutdown,
    verdict: &mut Verdict,
    once: bool,
) {
    let dir = Quoted(&child.spec.dir);
    child.pid = None;
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            log::error!("cannot wait for the versioning child of {dir}: {e}");
            return;
        }
    };
    if status.code() == Some(2) {
        let message = format!("versioning of {dir} refused its input (exit 2; see its log); stopping");
        log::error!("{message}");
        verdict.fatal = Some(message);
        shutdown.request();
        return;
    }
    if once {
        if !status.success() {
            log::warn!("versioning of {dir} ended with {status}; see its log");
        }
        return;
    }
    if child.started.elapsed() >= STABLE {
        child.backoff = MIN_BACKOFF;
    }
    log::warn!(
        "versioning of {dir} exited unexpectedly ({status}); restarting in {} s",
        child.backoff.as_secs()
    );
    child.restart_at = Some(Instant::now() + child.backoff);
    child.backoff = (child.backoff * 2).min(MAX_BACKOFF);
}

fn restart_if_due(child: &mut Supervised, index: usize, wake: &Sender<Wake>) {
    let Some(at) = child.restart_at else { return };
    if Instant::now() < at {
        return;
    }
    child.restart_at = None;
    let spawned = spawn(child, index, wake);
    let dir = Quoted(&child.spec.dir);
    match spawned {
        Ok(()) => log::info!("restarted versioning of {dir} (pid {})", child.pid.unwrap_or(0)),
        Err(e) => {
            log::error!("cannot restart versioning of {dir}: {e}; retrying in {} s", child.backoff.as_secs());
            child.restart_at = Some(Instant::now() + child.backoff);
            child.backoff = (child.backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// SIGTERM to every running child, up to [`GRACE`] to finish the step at hand, then SIGKILL;
/// each is reaped by its waiting thread, whose exit event this waits for. A pid cannot have
/// been reused before that event: an exited child stays a zombie until it is reaped.
fn stop_all(children: &mut [Supervised], events: &Receiver<Wake>) {
    let signal = |children: &[Supervised], sig: Signal| {
        for pid in children.iter().filter_map(|c| c.pid).filter_map(|p| Pid::from_raw(p as i32)) {
            let _ = kill_process(pid, sig);
        }
    };
    signal(children, Signal::TERM);
    for (sig, wait) in [(None, GRACE), (Some(Signal::KILL), GRACE)] {
        if let Some(sig) = sig {
            for child in children.iter().filter(|c| c.pid.is_some()) {
                log::warn!(
                    "versioning of {} did not stop within {} s; killing it",
                    Quoted(&child.spec.dir),
                    GRACE.as_secs()
                );
            }
            signal(children, sig);
        }
        let deadline = Instant::now() + wait;
        while children.iter().any(|c| c.pid.is_some()) {
            match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Wake::Exited { index, generation, .. }) => {
                    if let Some(child) = children.get_mut(index).filter(|c| c.generation == generation) {
                        child.pid = None;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
}
