//! SIGINT and SIGTERM during a search: the first one lets the search finish the write in
//! progress (it waits for `nas_search::outdir::persist_guard`, which every state write holds),
//! prints the exact command that continues the search, and exits with 130; a second one exits
//! at once (signal-hook's conditional shutdown, run inside the signal handler).

use nas_search::outdir::persist_guard;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Exit code after an interrupt (128 + SIGINT, what shells report for Ctrl-C).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Installs the handlers for a search writing into `dir` (call once, when the search starts).
pub fn install(dir: &Path) -> std::io::Result<()> {
    let resume = nas_search::outdir::resume_command(std::env::args().collect(), dir);
    let flagged = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Order matters: the shutdown checks the flag before the second handler sets it.
        flag::register_conditional_shutdown(sig, EXIT_INTERRUPTED, Arc::clone(&flagged))?;
        flag::register(sig, Arc::clone(&flagged))?;
    }
    std::thread::Builder::new()
        .name("nas-signals".into())
        .spawn(move || {
            while !flagged.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            // No write of the search's state is in progress while this is held, and none starts.
            let _g = persist_guard();
            // A remote executor cancels the trials it has in flight.
            nas_search::outdir::run_interrupt_hooks();
            let mut err = std::io::stderr().lock();
            let _ = writeln!(
                err,
                "\nnas: interrupted; every finished trial is saved. Continue the search with:\n  {resume}"
            );
            let _ = err.flush();
            // Test hook: hold the guard a while, so that a test can send the second signal.
            if let Some(ms) = std::env::var("NAS_TEST_INTERRUPT_DELAY_MS")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                std::thread::sleep(Duration::from_millis(ms));
            }
            std::process::exit(EXIT_INTERRUPTED);
        })?;
    Ok(())
}
