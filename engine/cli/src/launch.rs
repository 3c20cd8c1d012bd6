//! `torchfit train --nproc N`: starts N worker processes of this binary on this machine, as
//! `torchrun --standalone --nproc-per-node N` would, and watches them.
//!
//! The launcher plays torchrun's agent: it serves the rendezvous store (on `MASTER_PORT`, or a
//! free port) and gives each worker torchrun's environment (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//! `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`, `TORCHELASTIC_USE_AGENT_STORE=True`) and,
//! unless set, `OMP_NUM_THREADS` = cores / N. When a worker fails, the others get a grace period to
//! end by themselves (they lose it in their next collective, or they were interrupted with it),
//! then are stopped (SIGTERM, then SIGKILL); the launcher exits with the first failed worker's
//! code. A SIGINT or SIGTERM to the launcher is passed on to the workers, which stop after their
//! batch.

use std::ffi::OsString;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use torchfit_c10d::Store;
use torchfit_engine::{distributed, Error, Result};

/// How long the other workers get to end by themselves once one failed (they fail at once when
/// they lose it in a collective; an interrupted job's workers write their run directory).
const GRACE: Duration = Duration::from_secs(30);
/// How long workers asked to stop (SIGTERM) get before they are killed.
const KILL_AFTER: Duration = Duration::from_secs(10);

/// The arguments of a worker: this process's, without `--nproc N` / `--nproc=N`.
pub fn worker_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for a in args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        match a.to_str() {
            Some("--nproc") => skip_value = true,
            Some(s) if s.starts_with("--nproc=") => {}
            _ => out.push(a),
        }
    }
    out
}

/// How the job of workers ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEnd {
    /// Every worker exited with 0.
    Completed,
    /// A worker failed first (or was interrupted).
    Failed {
        /// Its rank.
        rank: usize,
        /// Its exit code (128 + the signal's number for a worker a signal ended).
        code: i32,
    },
}

/// Starts `nproc` workers running this binary with `args` and waits for them.
pub fn run(nproc: usize, args: Vec<OsString>, signals: Arc<AtomicBool>) -> Result<JobEnd> {
    use std::os::unix::process::ExitStatusExt;
    let exe = std::env::current_exe().map_err(|e| Error::io(std::path::Path::new("<current executable>"), e))?;
    let addr = "127.0.0.1";
    let port = match std::env::var("MASTER_PORT") {
        Ok(p) => p.parse::<u16>().map_err(|_| Error::Config {
            origin: "environment".into(),
            key: "MASTER_PORT".into(),
            message: format!("must be a port number, got {p:?}"),
        })?,
        Err(_) => 0,
    };
    torchfit_c10d::set_cpp_log(torchfit_c10d::CppLog::Fatal);
    let store = Store::serve(addr, port, nproc, Duration::from_secs(1800))
        .map_err(|e| Error::Rendezvous(format!("cannot serve the store on {addr}:{port}: {e}")))?;
    let threads = std::env::var("OMP_NUM_THREADS")
        .unwrap_or_else(|_| distributed::threads_per_process(distributed::cores(), nproc).to_string());
    log::info!("starting {nproc} workers (store on {addr}:{}, {threads} threads each)", store.port());
    let mut workers: Vec<Child> = Vec::with_capacity(nproc);
    for rank in 0..nproc {
        let spawned = Command::new(&exe)
            .args(&args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("GROUP_RANK", "0")
            .env("MASTER_ADDR", addr)
            .env("MASTER_PORT", store.port().to_string())
            .env("TORCHELASTIC_USE_AGENT_STORE", "True")
            .env("TORCHELASTIC_RESTART_COUNT", "0")
            .env("OMP_NUM_THREADS", &threads)
            .spawn();
        match spawned {
            Ok(child) => workers.push(child),
            Err(e) => {
                stop(&mut workers, KILL_AFTER);
                return Err(Error::io(&exe, e));
            }
        }
    }
    let mut running: Vec<Option<Child>> = workers.into_iter().map(Some).collect();
    let mut passed_on = false;
    let mut first_failure = None;
    let mut deadline = None;
    loop {
        if signals.load(Ordering::SeqCst) && !passed_on {
            passed_on = true;
            signal_all(&running, libc::SIGTERM);
        }
        for (rank, slot) in running.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            if let Ok(Some(status)) = child.try_wait() {
                *slot = None;
                let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
                if code != 0 && first_failure.is_none() {
                    first_failure = Some((rank, code));
                    deadline = Some(Instant::now() + GRACE);
                    if !passed_on {
                        let how = match status.signal() {
                            Some(s) => format!("was killed by signal {s}"),
                            None => format!("exited with code {code}"),
                        };
                        log::error!("worker rank {rank} {how}: stopping the other workers");
                    }
                }
            }
        }
        if running.iter().all(Option::is_none) {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            let mut rest: Vec<Child> = running.iter_mut().filter_map(Option::take).collect();
            stop(&mut rest, KILL_AFTER);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(match first_failure {
        None => JobEnd::Completed,
        Some((rank, code)) => JobEnd::Failed { rank, code },
    })
}

fn signal_all(workers: &[Option<Child>], signal: i32) {
    for child in workers.iter().flatten() {
        send(child, signal);
    }
}

/// Sends `signal` to a worker not reaped yet.
fn send(child: &Child, signal: i32) {
    // SAFETY: kill(2) on the pid of a child this process has not reaped yet.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
}

/// Asks `workers` to stop (SIGTERM), kills those still running after `grace`, and reaps all.
pub(crate) fn stop(workers: &mut [Child], grace: Duration) {
    for child in workers.iter() {
        send(child, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    for child in workers.iter_mut() {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_get_the_arguments_without_nproc() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            worker_args(args(&["train", "c.toml", "--nproc", "2", "--out", "d"])),
            args(&["train", "c.toml", "--out", "d"])
        );
        assert_eq!(worker_args(args(&["train", "--nproc=4", "c.toml"])), args(&["train", "c.toml"]));
    }
}
