//! Data-parallel training on c10d (Gloo on loopback): equal to one process, launched by
//! `--nproc`, by torchrun and by two torchrun agents, faults that end in errors, exact resume,
//! stops agreed by every rank. Every test picks its own free ports.

mod faults;
mod launchers;
mod library;
mod models;
mod resume;
mod stops;

use std::io::{BufRead, BufReader, Lines};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use torchfit_tests::{history_without, root, torchfit_bin};

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
    spawn(sets, args, env).wait_with_output().unwrap()
}

/// [`train`] started in the background, its output piped.
pub fn spawn(sets: &[&str], args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(torchfit_bin());
    cmd.args(["train", "examples/digits/config.toml"]);
    for s in BASE.iter().chain(sets) {
        cmd.args(["--set", s]);
    }
    cmd.args(args).current_dir(root()).env("TORCHFIT_LOG", "warn").env_remove("TORCHFIT_PLUGIN_PATH");
    cmd.envs(env.iter().copied());
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Reads `child`'s standard output until a table row starting with `row`; the rest of the lines.
pub fn wait_for_row(child: &mut Child, row: &str) -> Lines<BufReader<ChildStdout>> {
    let mut rows = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in rows.by_ref() {
        if line.unwrap().trim_start().starts_with(row) {
            break;
        }
    }
    rows
}

/// The pids of the two workers a `--nproc 2` launcher started, in rank order.
pub fn workers(launcher: &Child) -> Vec<String> {
    let pid = launcher.id();
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let pids: Vec<String> = children.split_whitespace().map(str::to_owned).collect();
    assert_eq!(pids.len(), 2, "{children}");
    pids
}

/// Asserts the run succeeded, showing its standard error if not.
pub fn ok(o: &Output) {
    assert!(o.status.success(), "exit {:?}\n{}", o.status.code(), String::from_utf8_lossy(&o.stderr));
}

/// The history of a run directory without the wall-clock keys.
pub fn history(dir: &Path) -> String {
    history_without(dir, &["dur"])
}
