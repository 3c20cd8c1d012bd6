//! SIGINT and SIGTERM: the first stops the run after its batch, a second ends the process.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use torchfit_engine::net::StopFlag;

/// Exit code of a run stopped by signal `signal`: the shell's 128 + its number (130 for
/// SIGINT, 143 for SIGTERM).
pub fn signal_exit_code(signal: i32) -> u8 {
    (128 + signal) as u8
}

/// The first SIGINT or SIGTERM raises `stop` (the run ends after its batch, see
/// [`super::train::train_until`]) and is remembered in the returned cell; a second one ends the process
/// at once, with the signal's exit code.
pub(crate) fn stop_on_signals(stop: &StopFlag) -> std::io::Result<Arc<AtomicUsize>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let received = Arc::new(AtomicUsize::new(0));
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(signal, signal_exit_code(signal).into(), stop.shared())?;
        signal_hook::flag::register_usize(signal, Arc::clone(&received), signal as usize)?;
        signal_hook::flag::register(signal, stop.shared())?;
    }
    Ok(received)
}

/// The signal `stop_on_signals` recorded, and its name. A worker of a distributed job stops with
/// the others when a signal reached any of them: SIGINT then, when none reached this one.
pub(crate) fn received_signal(received: &AtomicUsize) -> (i32, &'static str) {
    match received.load(Ordering::SeqCst) as i32 {
        signal_hook::consts::SIGTERM => (signal_hook::consts::SIGTERM, "SIGTERM"),
        _ => (signal_hook::consts::SIGINT, "SIGINT"),
    }
}
