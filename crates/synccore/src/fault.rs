//! Fault injection for the end-to-end tests, so that they drive the moment of a fault instead
//! of hoping a timer lands in it. A named point in a pass acts when the environment variable
//! [`FAULT_ENV`] names it:
//!
//! - `SYNCCORE_FAULT=<point>` panics there (a bug, as the hardening issue's point 12 has it:
//!   the pass must end with an error that says so and change nothing further);
//! - `SYNCCORE_FAULT=stop:<point>` stops the process there with `SIGSTOP`, the first time only,
//!   so a test can change the trees at exactly that moment and then send `SIGCONT`.
//!
//! Several may be named, separated by commas (`stop:a,stop:b`): each acts at its own point.
//!
//! Compiled only into debug builds (the ones `cargo test` runs); in a release build a point is
//! an empty inline function.

/// The variable naming the point that should act.
pub const FAULT_ENV: &str = "SYNCCORE_FAULT";

/// Acts when this is the point [`FAULT_ENV`] names (debug builds only).
#[cfg(debug_assertions)]
pub fn point(name: &str) {
    use std::sync::Mutex;
    static CHOSEN: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    /// The `stop:` points that already stopped the process once.
    static STOPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let chosen = CHOSEN.get_or_init(|| {
        std::env::var(FAULT_ENV).map(|v| v.split(',').map(str::to_owned).collect()).unwrap_or_default()
    });
    if chosen.is_empty() {
        return;
    }
    assert!(!chosen.iter().any(|c| c == name), "fault injected at {name}");
    if chosen.iter().any(|c| c.strip_prefix("stop:") == Some(name)) {
        let first = STOPPED.lock().is_ok_and(|mut stopped| {
            let first = !stopped.iter().any(|s| s == name);
            if first {
                stopped.push(name.to_owned());
            }
            first
        });
        if first {
            let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::STOP);
        }
    }
}

/// Acts when this is the point [`FAULT_ENV`] names (debug builds only).
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn point(_name: &str) {}
