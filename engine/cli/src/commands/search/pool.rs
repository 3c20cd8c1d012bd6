//! The worker processes of `torchfit search`: every fit of a candidate on a fold runs in a worker
//! of this binary (`torchfit search-fold`), up to `jobs` at once; a fit kept from an earlier
//! attempt is not run again.

use super::{assignments, read_fit, write_fit, FitFile, FitResult, Request, Spec, POLL};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use torchfit_engine::model_selection::search::{Candidate, Outcome};
use torchfit_engine::model_selection::{CrossValidation, Cv, FoldResult};
use torchfit_engine::net::StopFlag;
use torchfit_engine::{Error, Result};

/// The worker processes of a search.
pub(super) struct Pool<'a> {
    pub request: &'a Request,
    pub spec: &'a Spec,
    pub stop: &'a StopFlag,
    /// Whether the stop flag ended the search.
    pub interrupted: bool,
}

/// A fit running in a worker.
struct Running {
    candidate: usize,
    fold: usize,
    child: Child,
}

/// The running workers; those still running when it goes (an error, an interruption) are
/// stopped: asked with SIGTERM, killed after 10 s, reaped.
struct Workers(Vec<Running>);

impl Drop for Workers {
    fn drop(&mut self) {
        let mut children: Vec<Child> = self.0.drain(..).map(|r| r.child).collect();
        crate::launch::stop(&mut children, Duration::from_secs(10));
    }
}

impl Pool<'_> {
    /// Cross-validates the candidates of iteration `iter`: every fit not kept from an earlier
    /// attempt runs in a worker, up to `jobs` at once.
    pub fn evaluate(&mut self, iter: usize, round: &[Candidate], cv: &Cv) -> Result<Vec<Outcome>> {
        let n_folds = cv.n_splits;
        let mut fits: Vec<Vec<Option<FitResult>>> = vec![vec![None; n_folds]; round.len()];
        let mut queue = VecDeque::new();
        for (c, (candidate, slots)) in round.iter().zip(&mut fits).enumerate() {
            for (fold, slot) in slots.iter_mut().enumerate() {
                match read_fit(&self.fit_path(iter, c, fold)) {
                    Some(f) if f.result.is_ok() && f.candidate == assignments(candidate) && f.fold == fold => {
                        *slot = Some(f.result)
                    }
                    _ => queue.push_back((c, fold)),
                }
            }
        }
        let (total, kept) = (round.len() * n_folds, round.len() * n_folds - queue.len());
        if kept > 0 {
            log::info!("iteration {iter}: {kept} of {total} fits kept from before");
        }
        let mut workers = Workers(Vec::new());
        let running = &mut workers.0;
        let mut done = kept;
        loop {
            while running.len() < self.request.jobs.max(1) && !self.stop.is_raised() {
                let Some((c, fold)) = queue.pop_front() else { break };
                running.push(Running { candidate: c, fold, child: self.spawn(iter, c, fold, &round[c], cv)? });
            }
            if self.stop.is_raised() {
                self.interrupted = true;
                return Err(Error::Data("the search was interrupted".into())); // `workers` stops the rest
            }
            if running.is_empty() {
                break;
            }
            std::thread::sleep(POLL);
            let mut i = 0;
            while i < running.len() {
                let status = running[i].child.try_wait().map_err(|e| Error::io(Path::new("<search worker>"), e))?;
                let Some(status) = status else {
                    i += 1;
                    continue;
                };
                let Running { candidate: c, fold, .. } = running.swap_remove(i);
                let path = self.fit_path(iter, c, fold);
                if self.stop.is_raised() && interrupted_by_signal(&status) {
                    continue; // not a result: the search stops
                }
                let result = match read_fit(&path) {
                    Some(f) if status.success() => f.result,
                    _ => {
                        let error = worker_error(&path.with_extension("log"), &status);
                        let failed = FitResult::Failed { error: error.clone() };
                        write_fit(&path, &FitFile { candidate: assignments(&round[c]), fold, result: failed.clone() })?;
                        log::warn!("candidate {} fold {fold} failed: {error}", assignments(&round[c]).join(" "));
                        failed
                    }
                };
                done += 1;
                if let FitResult::Scored { scoring, score, fit_time, .. } = &result {
                    log::info!(
                        "fit {done} of {total}: {} fold {fold}: {scoring} {score:.6} ({fit_time:.1} s)",
                        assignments(&round[c]).join(" ")
                    );
                }
                fits[c][fold] = Some(result);
            }
        }
        Ok(fits.into_iter().map(outcome).collect())
    }

    fn fit_path(&self, iter: usize, candidate: usize, fold: usize) -> PathBuf {
        self.request.out.join("fits").join(format!("i{iter}-c{candidate:03}-f{fold}.json"))
    }

    /// Starts a worker fitting fold `fold` of `candidate`, its output in the fit's `.log`.
    fn spawn(&self, iter: usize, c: usize, fold: usize, candidate: &Candidate, cv: &Cv) -> Result<Child> {
        let path = self.fit_path(iter, c, fold);
        let log_path = path.with_extension("log");
        let log = std::fs::File::create(&log_path).map_err(|e| Error::io(&log_path, e))?;
        let log2 = log.try_clone().map_err(|e| Error::io(&log_path, e))?;
        let exe = std::env::current_exe().map_err(|e| Error::io(Path::new("<current executable>"), e))?;
        let mut command = Command::new(exe);
        command.arg("search-fold").arg(&self.request.config);
        for s in self.request.sets.iter().cloned().chain([format!("threads={}", self.spec.threads)]) {
            command.arg("--set").arg(s);
        }
        for a in assignments(candidate) {
            command.arg("--candidate").arg(a);
        }
        command.args(["--cv", &cv.n_splits.to_string(), "--fold", &fold.to_string()]).arg("--result").arg(&path);
        if let Some(s) = &cv.scoring {
            command.args(["--scoring", s]);
        }
        command.stdin(Stdio::null()).stdout(log).stderr(log2);
        // A worker does not outlive the search (its parent killed).
        // SAFETY: prctl(2) is async-signal-safe and touches only the child's own state.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        command.spawn().map_err(|e| Error::io(Path::new("<search worker>"), e))
    }
}

/// A candidate's outcome from its folds' results: the first error, or the cross-validation.
fn outcome(folds: Vec<Option<FitResult>>) -> Outcome {
    let mut scored = Vec::new();
    let mut name = String::new();
    for fit in folds {
        match fit {
            Some(FitResult::Scored { scoring, score, fit_time, score_time, train_samples, test_samples }) => {
                name = scoring;
                scored.push(FoldResult {
                    score,
                    fit_seconds: fit_time,
                    score_seconds: score_time,
                    train_samples,
                    test_samples,
                });
            }
            Some(FitResult::Failed { error }) => return Err(error),
            None => return Err("not run".into()),
        }
    }
    Ok(CrossValidation::of(name, scored))
}

fn interrupted_by_signal(status: &std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    matches!(status.signal(), Some(libc::SIGINT | libc::SIGTERM | libc::SIGKILL))
        || matches!(status.code(), Some(130 | 143))
}

/// Why a worker failed: its `error:` line, else how it ended.
fn worker_error(log: &Path, status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    let text = std::fs::read_to_string(log).unwrap_or_default();
    match text.lines().rev().find_map(|l| l.strip_prefix("error: ")) {
        Some(line) => line.to_owned(),
        None => match status.signal() {
            Some(s) => format!("the worker was killed by signal {s} (see {})", log.display()),
            None => format!("the worker exited with {status} (see {})", log.display()),
        },
    }
}
