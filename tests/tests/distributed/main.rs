//! Data-parallel training on c10d (Gloo on loopback): equal to one process, launched by
//! `--nproc`, by torchrun and by two torchrun agents, faults that end in errors, exact resume,
//! stops agreed by every rank. Every test picks its own free ports.

mod faults;
mod launchers;
mod library;
mod models;
mod resume;
mod stops;

use std::path::Path;
use std::process::Output;
use torchfit_tests::{history_without, torchfit_env};

/// Settings every run of these tests shares: the digits example without dropout (so that a
/// run does not depend on how ranks draw random numbers), one thread per process, 3 epochs, and
/// collectives that give up after 60 s (ranks that fell out of step fail a test, not hang it).
pub const BASE: &[&str] = &["module__dropout=0.0", "threads=1", "max_epochs=3", "distributed__timeout=60"];

/// A free TCP port on loopback (bound, then released for the job to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `torchfit train examples/digits/config.toml` with `BASE`, then `sets`, then `args`.
pub fn train(sets: &[&str], args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut all = vec!["train", "examples/digits/config.toml"];
    for s in BASE.iter().chain(sets) {
        all.extend(["--set", s]);
    }
    all.extend(args);
    torchfit_env(&all, env)
}

/// Asserts the run succeeded, showing its standard error if not.
pub fn ok(o: &Output) {
    assert!(o.status.success(), "exit {:?}\n{}", o.status.code(), String::from_utf8_lossy(&o.stderr));
}

/// The history of a run directory without the wall-clock keys.
pub fn history(dir: &Path) -> String {
    history_without(dir, &["dur"])
}
