//! `torchfit train --nproc N`: starts N worker processes of this binary on this machine, as
//! `torchrun --standalone --nproc-per-node N` would, and watches them.
//!
//! The launcher plays torchrun's agent: it serves the rendezvous store (on `MASTER_PORT`, or a
//! free port) and gives each worker torchrun's environment (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//! `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`, `TORCHELASTIC_USE_AGENT_STORE=True`) and,
//! unless set, `OMP_NUM_THREADS` = cores / N. When a worker fails, the others get a grace period to
//! end by themselves (they lose it in their next collective, or they were interrupted with it),
//! then are stopped (SIGTERM, then SIGKILL); the launcher exits with the first failed worker's
//! code, or 1 when a worker was lost to a signal (killed). A SIGINT or SIGTERM to the launcher
//! is passed on, as the same signal, to the workers, which stop after their batch as one process
//! does; the launcher then exits as they do (130 for SIGINT). The workers run in a process group
//! of their own, so a terminal's Ctrl-C (sent to the launcher's group) reaches each of them once,
//! through the launcher; and a worker whose launcher dies is sent SIGTERM.

use std::ffi::OsString;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// The launcher passed this signal on and every worker stopped as it asked.
    Interrupted(i32),
    /// A worker failed first.
    Failed {
        /// Its rank.
        rank: usize,
        /// Its exit code; 1 for a worker lost to a signal the launcher did not send.
        code: i32,
    },
}

/// What the exit `status` of a worker says, once the launcher passed on `passed_on` (if any):
/// its exit code, and whether the job lost it (a signal killed it that the launcher did not send).
fn worker_code(status: std::process::ExitStatus, passed_on: Option<i32>) -> (i32, bool) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => (code, false),
        (None, Some(s)) if Some(s) == passed_on => (128 + s, false),
        _ => (1, true),
    }
}

/// How the job ended: the first failure, unless every worker stopped as the signal the launcher
/// passed on asked (its code, 128 + the signal).
fn job_end(first_failure: Option<(usize, i32)>, passed_on: Option<i32>) -> JobEnd {
    match (first_failure, passed_on) {
        (None, None) => JobEnd::Completed,
        (None, Some(signal)) => JobEnd::Interrupted(signal),
        (Some((_, code)), Some(signal)) if code == 128 + signal => JobEnd::Interrupted(signal),
        (Some((rank, code)), _) => JobEnd::Failed { rank, code },
    }
}

/// Starts `nproc` workers running this binary with `args` and waits for them. `received` holds
/// the signal the launcher got (0 while none), which it passes on to the workers.
pub fn run(nproc: usize, args: Vec<OsString>, received: Arc<AtomicUsize>) -> Result<JobEnd> {
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
        let mut command = Command::new(&exe);
        own_group_until_the_launcher_dies(&mut command);
        let spawned = command
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
    let mut passed_on = None;
    let mut first_failure = None;
    let mut deadline = None;
    loop {
        let signal = received.load(Ordering::SeqCst) as i32;
        if signal != 0 && passed_on.is_none() {
            passed_on = Some(signal);
            signal_all(&running, signal);
        }
        for (rank, slot) in running.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            if let Ok(Some(status)) = child.try_wait() {
                *slot = None;
                let (code, lost) = worker_code(status, passed_on);
                if code != 0 && first_failure.is_none() {
                    first_failure = Some((rank, code));
                    deadline = Some(Instant::now() + GRACE);
                    match status.signal() {
                        Some(s) if lost => log::error!(
                            "worker rank {rank} was killed by signal {s}: the job lost it; stopping the other workers"
                        ),
                        _ if passed_on.is_none() => {
                            log::error!("worker rank {rank} exited with code {code}: stopping the other workers")
                        }
                        _ => {}
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
    Ok(job_end(first_failure, passed_on))
}

/// Makes the worker `command` starts the leader of a process group of its own, and sends it
/// SIGTERM when the launcher dies (as a search's workers are).
fn own_group_until_the_launcher_dies(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    command.process_group(0);
    // SAFETY: `getpid` before the fork; in the child, prctl(2) and getppid(2) are
    // async-signal-safe and touch only the child's own state.
    let launcher = unsafe { libc::getpid() };
    unsafe {
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            match libc::getppid() == launcher {
                true => Ok(()),
                false => Err(std::io::Error::other("the launcher is gone")),
            }
        });
    }
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
    fn a_job_stopped_by_the_signal_passed_on_ends_interrupted_and_a_killed_worker_is_lost() {
        use std::os::unix::process::ExitStatusExt;
        let exited = |code: i32| std::process::ExitStatus::from_raw(code << 8);
        let killed = |signal: i32| std::process::ExitStatus::from_raw(signal);
        assert_eq!(worker_code(exited(130), Some(libc::SIGINT)), (130, false));
        assert_eq!(worker_code(killed(libc::SIGINT), Some(libc::SIGINT)), (130, false));
        assert_eq!(worker_code(killed(libc::SIGKILL), None), (1, true));
        assert_eq!(worker_code(killed(libc::SIGKILL), Some(libc::SIGINT)), (1, true));
        assert_eq!(job_end(None, None), JobEnd::Completed);
        assert_eq!(job_end(Some((0, 130)), Some(libc::SIGINT)), JobEnd::Interrupted(libc::SIGINT));
        assert_eq!(job_end(None, Some(libc::SIGTERM)), JobEnd::Interrupted(libc::SIGTERM));
        assert_eq!(job_end(Some((1, 1)), Some(libc::SIGINT)), JobEnd::Failed { rank: 1, code: 1 });
        assert_eq!(job_end(Some((1, 2)), None), JobEnd::Failed { rank: 1, code: 2 });
    }

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
