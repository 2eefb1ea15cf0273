//! The shutdown request: SIGINT and SIGTERM ask the running pass to stop after the step at
//! hand (SPEC section 3). A second signal while the first is pending exits at once; every write
//! is atomic, so even that leaves each file old or new.
//!
//! Waiting is event-driven, never a polling loop (an idle process costs nothing): the signal
//! handlers set an atomic flag (which the copy engine checks between steps), and a thread
//! blocked on signal-hook's self-pipe wakes everyone who sleeps in [`Shutdown::sleep`]. A
//! supervised child watches its parent through a pidfd, which becomes readable when the
//! parent exits, so no orphan outlives a killed parent (SPEC section 7) and no pid is ever
//! polled (a reused pid cannot fool it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::error::{Error, Result};

/// A shared shutdown request: set by a signal, by a supervising parent that is gone, or by
/// the program itself; waited on without polling.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Set by the signal handlers themselves (async-signal-safe) and by [`Shutdown::request`].
    flag: Arc<AtomicBool>,
    lock: Mutex<()>,
    woken: Condvar,
    /// Called once by the request: for waits that block on something else than the condvar
    /// (the watcher's channel).
    hooks: Mutex<Vec<Box<dyn Fn() + Send>>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("requested", &self.flag.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Shutdown {
    /// A request nobody has made yet, with no signal handlers (for tests and library use).
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Installs the SIGINT and SIGTERM handlers and returns the request they make.
    pub fn install() -> Result<Self> {
        let shutdown = Shutdown::new();
        let flag = &shutdown.inner.flag;
        let setup = |e: std::io::Error| Error::Setup { what: "signal handlers", reason: e.to_string() };
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it sees the flag before this signal sets it: exits on the
            // second signal.
            signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(flag)).map_err(setup)?;
            signal_hook::flag::register(sig, Arc::clone(flag)).map_err(setup)?;
        }
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(setup)?;
        let waker = shutdown.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                // Blocks on the self-pipe until a signal arrives.
                if signals.forever().next().is_some() {
                    waker.request();
                }
            })
            .map_err(setup)?;
        Ok(shutdown)
    }

    /// The flag the copy engine checks between steps.
    pub fn flag(&self) -> &AtomicBool {
        &self.inner.flag
    }

    /// True once a shutdown was requested.
    pub fn is_requested(&self) -> bool {
        self.inner.flag.load(Ordering::Relaxed)
    }

    /// Requests a shutdown and wakes every sleeper.
    pub fn request(&self) {
        self.inner.flag.store(true, Ordering::Relaxed);
        {
            let _guard = self.inner.lock.lock();
            self.inner.woken.notify_all();
        }
        let hooks = self.inner.hooks.lock().map(|mut h| std::mem::take(&mut *h)).unwrap_or_default();
        for hook in hooks {
            hook();
        }
    }

    /// Calls `hook` when a shutdown is requested (at once if it already was): how a wait
    /// that blocks on its own channel learns of the request without polling.
    pub fn on_request(&self, hook: impl Fn() + Send + 'static) {
        if let Ok(mut hooks) = self.inner.hooks.lock()
            && !self.is_requested()
        {
            hooks.push(Box::new(hook));
            return;
        }
        hook();
    }

    /// Sleeps for `duration` or until a shutdown is requested; true when it was. Never
    /// panics: a deadline past what an `Instant` can hold (hardening issue, part A) means "no
    /// deadline", and the sleep then ends only on the request.
    pub fn sleep(&self, duration: Duration) -> bool {
        let end = Instant::now().checked_add(duration);
        let Ok(mut guard) = self.inner.lock.lock() else { return self.is_requested() };
        loop {
            if self.is_requested() {
                return true;
            }
            let Some(end) = end else {
                guard = match self.inner.woken.wait(guard) {
                    Ok(guard) => guard,
                    Err(_) => return self.is_requested(),
                };
                continue;
            };
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = match self.inner.woken.wait_timeout(guard, left) {
                Ok((guard, _)) => guard,
                Err(_) => return self.is_requested(),
            };
        }
    }
}

/// The environment variable through which a supervising parent (`twoway`) tells a child
/// (`oneway --versioned`) its pid, so the child stops when the parent is gone: no orphan
/// outlives a crashed or killed parent (SPEC section 7).
pub const WATCH_PID_ENV: &str = "SYNCCORE_WATCH_PID";

/// When [`WATCH_PID_ENV`] names this process's parent, requests `shutdown` as soon as that
/// parent exits: a pidfd of the parent (opened only after checking that it still is our
/// parent, so a reused pid is never watched) is waited on by a thread blocked in `poll`. A
/// parent already gone (we were re-parented) requests it at once.
pub fn watch_parent_from_env(shutdown: &Shutdown) {
    let Some(pid) = std::env::var(WATCH_PID_ENV).ok().and_then(|v| v.parse::<i32>().ok()) else { return };
    let Some(pid) = rustix::process::Pid::from_raw(pid) else { return };
    // The request comes first: whatever logging does next, the process stops.
    let gone = |why: &str| {
        shutdown.request();
        log::warn!("the supervising process {} is gone ({why}); stopping", pid.as_raw_nonzero());
    };
    if rustix::process::getppid() != Some(pid) {
        return gone("this process was handed to another parent");
    }
    let pidfd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(e) => return log::warn!("cannot watch the supervising process {}: {e}", pid.as_raw_nonzero()),
    };
    // The parent may have exited between the check and the open: a pidfd of a process that
    // is gone (or of a zombie) is readable at once, so that case is caught by the wait too.
    let shutdown = shutdown.clone();
    let spawned = std::thread::Builder::new().name("parent-watch".into()).spawn(move || {
        let mut fds = [rustix::event::PollFd::new(&pidfd, rustix::event::PollFlags::IN)];
        loop {
            match rustix::event::poll(&mut fds, None) {
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return log::warn!("cannot watch the supervising process: {e}"),
            }
        }
        shutdown.request();
        log::warn!("the supervising process {} is gone; stopping", pid.as_raw_nonzero());
    });
    if let Err(e) = spawned {
        log::warn!("cannot watch the supervising process: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_ends_on_time_or_on_the_request_and_never_overflows() {
        let shutdown = Shutdown::new();
        let started = Instant::now();
        assert!(!shutdown.sleep(Duration::from_millis(20)));
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert!(!shutdown.sleep(Duration::ZERO));

        // A duration no deadline can hold: only the request ends it, and nothing panics.
        let setter = {
            let shutdown = shutdown.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                shutdown.request();
            })
        };
        let started = Instant::now();
        assert!(shutdown.sleep(Duration::MAX));
        assert!(started.elapsed() < Duration::from_secs(10), "woken by the request, not a timer");
        assert!(shutdown.sleep(Duration::from_secs(u64::MAX)));
        setter.join().unwrap();
        assert!(shutdown.is_requested() && shutdown.flag().load(Ordering::Relaxed));
    }
}
