//! The shutdown flag: SIGINT and SIGTERM ask the running pass to stop after the step at hand
//! (SPEC section 3). A second signal while the first is pending exits at once; every write is
//! atomic, so even that leaves each file old or new.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};

/// Installs the handlers and returns the flag they set.
pub fn install() -> io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag before this signal sets it: exits on the second.
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&flag))?;
        signal_hook::flag::register(sig, Arc::clone(&flag))?;
    }
    Ok(flag)
}

/// Sleeps for `duration` or until the flag is set; returns true when it was set.
pub fn sleep(flag: &AtomicBool, duration: Duration) -> bool {
    let end = Instant::now() + duration;
    loop {
        if flag.load(Ordering::Relaxed) {
            return true;
        }
        let now = Instant::now();
        if now >= end {
            return false;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}
