//! The shutdown flag: SIGINT and SIGTERM ask the running pass to stop after the step at hand
//! (SPEC section 3). A second signal while the first is pending exits at once; every write is
//! atomic, so even that leaves each file old or new.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};

/// Installs the handlers and returns the flag they set.
pub fn install() -> crate::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let register = |sig| -> io::Result<()> {
        // Registered first, so it sees the flag before this signal sets it: exits on the second.
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&flag))?;
        signal_hook::flag::register(sig, Arc::clone(&flag))?;
        Ok(())
    };
    for sig in [SIGINT, SIGTERM] {
        register(sig).map_err(|source| crate::Error::Io {
            op: crate::error::Op::Create,
            path: "signal handlers".into(),
            source,
        })?;
    }
    Ok(flag)
}

/// Sleeps for `duration` or until the flag is set; returns true when it was set.
///
/// Never panics: a deadline past what an `Instant` can hold (`Instant::now() + duration`
/// panicked for `--interval 18446744073709551615`, hardening issue part A) means "no deadline",
/// and the sleep then ends only on the flag. The programs refuse such intervals anyway
/// ([`crate::interval`]); this keeps the loop safe for any caller.
pub fn sleep(flag: &AtomicBool, duration: Duration) -> bool {
    const TICK: Duration = Duration::from_millis(50);
    let end = Instant::now().checked_add(duration);
    loop {
        if flag.load(Ordering::Relaxed) {
            return true;
        }
        let left = end.map_or(TICK, |end| end.saturating_duration_since(Instant::now()));
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(left.min(TICK));
    }
}

/// The environment variable through which a supervising parent (`twoway`) tells a child
/// (`oneway --versioned`) its pid, so the child stops when the parent is gone: no orphan
/// outlives a crashed or killed parent (SPEC section 7).
pub const WATCH_PID_ENV: &str = "SYNCCORE_WATCH_PID";

/// When [`WATCH_PID_ENV`] names a pid, watches that process and sets `flag` once it is gone.
pub fn watch_parent_from_env(flag: &Arc<AtomicBool>) {
    let Some(pid) = std::env::var(WATCH_PID_ENV).ok().and_then(|v| v.parse::<i32>().ok()) else { return };
    let Some(pid) = rustix::process::Pid::from_raw(pid) else { return };
    let flag = Arc::clone(flag);
    std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            if rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH) {
                log::warn!("the supervising process {} is gone; stopping", pid.as_raw_nonzero());
                flag.store(true, Ordering::Relaxed);
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_ends_on_time_or_on_the_flag_and_never_overflows() {
        let flag = AtomicBool::new(false);
        let started = Instant::now();
        assert!(!sleep(&flag, Duration::from_millis(20)));
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert!(!sleep(&flag, Duration::ZERO));

        // A duration no deadline can hold: only the flag ends it, and nothing panics.
        let flag = Arc::new(AtomicBool::new(false));
        let setter = {
            let flag = Arc::clone(&flag);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                flag.store(true, Ordering::Relaxed);
            })
        };
        assert!(sleep(&flag, Duration::MAX));
        assert!(sleep(&flag, Duration::from_secs(u64::MAX)));
        setter.join().unwrap();
    }
}
