//! `torchfit search`: hyper-parameter search over a config ([`torchfit_engine::net::search`]),
//! every fit of a candidate on a fold a worker process of this binary, up to `jobs` at once.
//!
//! The search folder (`--out DIR`) holds:
//! - `search-spec.json`: what is searched (the config's text, `--set`s, the space, folds,
//!   halving, scoring, threads per fit); `--resume` continues only the same search.
//! - `fits/i<iter>-c<candidate>-f<fold>.json`: each finished fit's score and times, or its error,
//!   written atomically; `fits/...log` beside it: the worker's output; `fits/.../`: its run
//!   directory, when a callback writes files.
//! - `search.json`: scikit-learn's `cv_results_` and `best_*_` ([`Search::cv_results`]), once
//!   every candidate is evaluated.
//! - `refit/`: the run directory of the best candidate fitted on all the samples, as `torchfit
//!   train --out` writes it (`torchfit predict DIR/refit`); `refit.json`: that candidate, written
//!   before the refit starts. `--resume` continues a refit only when `refit.json` names the best
//!   candidate of the finished search (a failed fit that succeeds on resume can change it);
//!   otherwise the refit starts afresh.
//!
//! A fit that fails is recorded with its error and the search goes on without its candidate. A
//! SIGINT or SIGTERM stops the workers at once; the finished fits stay, and `--resume` runs only
//! the others (a failed fit is tried again).

use crate::run::{self, training_data, TrainingData};
use crate::run_dir::Claim;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use torchfit_engine::config::{Params, SplitKind};
use torchfit_engine::distributed;
use torchfit_engine::fsutil::write_atomic;
use torchfit_engine::net::halving::Halving;
use torchfit_engine::net::random_search::{sample, Distribution};
use torchfit_engine::net::search::{grid, run as run_search, Candidate, Outcome, Search};
use torchfit_engine::net::{CrossValidation, Cv, FoldResult, StopFlag};
use torchfit_engine::{Error, NeuralNet, Result};

/// What `torchfit search` is asked.
#[derive(Debug, Clone)]
pub struct Request {
    /// The config.
    pub config: PathBuf,
    /// `--set` assignments, applied to the config first.
    pub sets: Vec<String>,
    /// The space, `key=values`: a comma-separated list, or with `random` a distribution
    /// (`uniform(a,b)`, `loguniform(a,b)`, `randint(a,b)`).
    pub space: Vec<String>,
    /// Folds (stratified for classification, as scikit-learn's `cv = k`).
    pub cv: usize,
    /// Draw this many candidates instead of taking the whole grid.
    pub random: Option<usize>,
    /// Successive halving with epochs as the resource, up to the config's `max_epochs`.
    pub halving: Option<HalvingRequest>,
    /// A scorer component by name (default: accuracy / R² by task).
    pub scoring: Option<String>,
    /// Fits at once.
    pub jobs: usize,
    /// Intra-op threads of each fit (default: the machine's cores / `jobs`; a resumed search
    /// keeps its own).
    pub threads: Option<usize>,
    /// The search folder.
    pub out: PathBuf,
    /// Continue the search in `out`.
    pub resume: bool,
}

/// `--halving`: scikit-learn's `factor` and `min_resources` (`None`: `"exhaust"`), in epochs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HalvingRequest {
    /// Candidates kept per iteration: `ceil(n / factor)`; epochs grow by `factor`.
    pub factor: f64,
    /// Epochs of the first iteration.
    pub min_epochs: Option<i64>,
}

/// How a search ended without an error.
#[derive(Debug)]
pub enum Ended {
    /// Every candidate evaluated and the best refitted: the search and its ranked table.
    Completed(Search, String),
    /// Stopped by the stop flag; this many fits of the search are kept.
    Interrupted(usize),
}

/// `search-spec.json`: what identifies a search, so that `--resume` continues the same one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    config: String,
    sets: Vec<String>,
    space: Vec<String>,
    cv: usize,
    random: Option<usize>,
    halving: Option<(f64, Option<i64>)>,
    scoring: Option<String>,
    threads: usize,
}

const SPEC_FILE: &str = "search-spec.json";
const REFIT: &str = "refit";
/// The candidate `refit/` trains: its `key=value` assignments, as JSON.
const REFIT_RECORD: &str = "refit.json";
/// How often the workers are polled.
const POLL: Duration = Duration::from_millis(20);

/// The candidates `request` describes, checked against `params` (every key and value is set on a
/// copy of the config, so a wrong one is refused before anything runs).
pub fn candidates(request: &Request, params: &Params) -> Result<Vec<Candidate>> {
    let refuse = |entry: &str, message: String| Error::Config { origin: "--grid".into(), key: entry.into(), message };
    let mut space = Vec::new();
    for entry in &request.space {
        let (key, values) = entry
            .split_once('=')
            .ok_or_else(|| refuse(entry, "needs KEY=VALUES, e.g. module__dropout=0.2,0.5".into()))?;
        let distribution: Distribution = values.parse().map_err(|m| refuse(entry, m))?;
        space.push((entry, key.trim().to_owned(), distribution));
    }
    if space.is_empty() {
        return Err(refuse("grid", "nothing to search: give --grid KEY=VALUES (repeatable)".into()));
    }
    let candidates = match request.random {
        Some(n) => sample(&space.into_iter().map(|(_, k, d)| (k, d)).collect::<Vec<_>>(), n, params.settings().seed),
        None => {
            let mut lists = Vec::with_capacity(space.len());
            for (entry, key, distribution) in space {
                match distribution {
                    Distribution::List(values) => lists.push((key, values)),
                    _ => return Err(refuse(entry, "draws values: give --random N for a random search".into())),
                }
            }
            grid(&lists)
        }
    };
    for candidate in &candidates {
        let mut p = params.clone();
        for (key, value) in candidate {
            p.set(key, value.clone(), "--grid")?;
        }
    }
    Ok(candidates)
}

/// Runs the search `request` asks for, stopping when `stop` is raised.
pub fn search(request: &Request, stop: &StopFlag) -> Result<Ended> {
    let params = run::load_params(&request.config, &request.sets)?;
    let settings = params.settings();
    if settings.dataset.is_none() {
        return Err(params.config_error("dataset", "missing: `torchfit search` needs a [dataset] section".into()));
    }
    if settings.train_split.kind == SplitKind::Predefined {
        let message =
            "a search cross-validates [dataset]; a predefined validation set does not fit in its folds".into();
        return Err(params.config_error("train_split.kind", message));
    }
    let candidates = candidates(request, &params)?;
    if let Some(threads) = request.threads {
        // Every fit would refuse a count the config refuses: say it once, before anything runs.
        let threads = i64::try_from(threads).unwrap_or(i64::MAX);
        params.clone().set("threads", toml::Value::Integer(threads), "--threads")?;
    }
    let halving = request.halving.map(|h| Halving {
        factor: h.factor,
        min_resources: h.min_epochs,
        max_resources: settings.max_epochs as i64,
    });
    torchfit_engine::net::search::check(&candidates, halving.as_ref())?;
    let cv = Cv { n_splits: request.cv, scoring: request.scoring.clone(), ..Cv::default() };
    check_cv(&params, &cv)?;
    let claim = Claim::new(&request.out, request.resume)?;
    let spec = settle_spec(request, claim.resumed)?;
    std::fs::create_dir_all(request.out.join("fits")).map_err(|e| Error::io(&request.out, e))?;
    let mut pool = Pool { request, spec: &spec, stop, interrupted: false };
    log::info!(
        "searching {} candidates x {} folds, {} fits at once, {} threads each",
        candidates.len(),
        request.cv,
        request.jobs,
        spec.threads
    );
    let found = run_search(&candidates, halving.as_ref(), |iter, round| pool.evaluate(iter, round, &cv));
    let found = match found {
        Err(_) if pool.interrupted => return Ok(Ended::Interrupted(finished_fits(&request.out))),
        other => other?,
    };
    let json = serde_json::to_string_pretty(&found.cv_results()).map_err(|e| Error::Data(e.to_string()))?;
    write_atomic(&request.out.join("search.json"), json.as_bytes())?;
    let table = table(&found);
    let best = &found.scored[found.best];
    log::info!("best: {} ({:.6}); refitting on all the samples", assignments(&best.params).join(" "), best.mean());
    let mut refit_params = params.clone();
    for (key, value) in &best.params {
        refit_params.set(key, value.clone(), "the best candidate")?;
    }
    let refit_dir = request.out.join(REFIT);
    let resume_refit = settle_refit(&request.out, &assignments(&best.params))?;
    let outcome = run::train_until(refit_params, Some(&refit_dir), resume_refit, stop)?;
    if outcome.interrupted.is_some() {
        return Ok(Ended::Interrupted(finished_fits(&request.out)));
    }
    Ok(Ended::Completed(found, table))
}

/// Refuses, before any worker starts, what every fit would fail on: a scorer `--scoring` names
/// that no component provides, and folds the config's data cannot be split into (`--cv` above
/// the number of samples, or of every class's members when stratified).
fn check_cv(params: &Params, cv: &Cv) -> Result<()> {
    let registry = torchfit_engine::plugins::registry_for(params)?;
    if let Some(name) = &cv.scoring {
        let scorers: Vec<&str> = registry
            .components()
            .iter()
            .filter(|c| c.kind == torchfit_sdk::ComponentKind::Scorer)
            .map(|c| c.name.as_str())
            .collect();
        if !scorers.contains(&name.as_str()) {
            let message = format!("no scorer named `{name}`; known: {}", scorers.join(", "));
            return Err(Error::Config { origin: "--scoring".into(), key: name.clone(), message });
        }
    }
    let spec = params.settings().dataset.clone().ok_or_else(|| params.config_error("dataset", "missing".into()))?;
    let TrainingData { reader: mut data, pool, .. } = training_data(params, &registry, &spec)?;
    let net = NeuralNet::with_registry(params.clone(), registry);
    net.check_folds(data.as_mut(), Some(&pool), cv).map_err(|e| match e {
        Error::Config { message, .. } => Error::Config { origin: "--cv".into(), key: cv.n_splits.to_string(), message },
        other => other,
    })
}

/// The spec of this search; a resumed one must match the folder's (threads default to its).
fn settle_spec(request: &Request, resumed: bool) -> Result<Spec> {
    let path = request.out.join(SPEC_FILE);
    let config = std::fs::read_to_string(&request.config).map_err(|e| Error::io(&request.config, e))?;
    let recorded: Option<Spec> = match resumed {
        true => {
            let text = std::fs::read_to_string(&path).map_err(|_| Error::RunDir {
                dir: request.out.clone(),
                message: format!("holds no search to resume (no {SPEC_FILE}); choose another --out"),
            })?;
            Some(serde_json::from_str(&text).map_err(|e| Error::Data(format!("{}: {e}", path.display())))?)
        }
        false => None,
    };
    let threads = request
        .threads
        .or(recorded.as_ref().map(|r| r.threads))
        .unwrap_or_else(|| distributed::threads_per_process(distributed::cores(), request.jobs));
    let spec = Spec {
        config,
        sets: request.sets.clone(),
        space: request.space.clone(),
        cv: request.cv,
        random: request.random,
        halving: request.halving.map(|h| (h.factor, h.min_epochs)),
        scoring: request.scoring.clone(),
        threads,
    };
    match recorded {
        Some(r) if r != spec => {
            let (a, b) =
                (serde_json::to_value(&r).unwrap_or_default(), serde_json::to_value(&spec).unwrap_or_default());
            let field = a
                .as_object()
                .and_then(|o| o.keys().find(|k| a[k.as_str()] != b[k.as_str()]).cloned())
                .unwrap_or_default();
            let message = format!("holds another search ({field} differs from its {SPEC_FILE}); choose another --out");
            Err(Error::RunDir { dir: request.out.clone(), message })
        }
        Some(r) => Ok(r),
        None => {
            let json = serde_json::to_string_pretty(&spec).map_err(|e| Error::Data(e.to_string()))?;
            write_atomic(&path, json.as_bytes())?;
            Ok(spec)
        }
    }
}

/// Whether the refit of `best` (its assignments) continues what `out/refit/` holds: only when
/// `refit.json` names the same candidate. A refit of another candidate, or of none recorded, is
/// removed; then `refit.json` names `best`, before its refit writes anything.
fn settle_refit(out: &Path, best: &[String]) -> Result<bool> {
    let (dir, record) = (out.join(REFIT), out.join(REFIT_RECORD));
    let recorded: Option<Vec<String>> = std::fs::read(&record).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let held = std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some());
    if recorded.as_deref() == Some(best) {
        return Ok(held);
    }
    if held {
        log::warn!(
            "{} holds a refit of another candidate than the best ({}): it starts afresh",
            dir.display(),
            best.join(" ")
        );
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    let json = serde_json::to_string_pretty(best).map_err(|e| Error::Data(e.to_string()))?;
    write_atomic(&record, json.as_bytes())?;
    Ok(false)
}

/// `key=value` assignments of a candidate, as `--set` takes them.
fn assignments(candidate: &Candidate) -> Vec<String> {
    candidate.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The fits kept in a search folder.
fn finished_fits(out: &Path) -> usize {
    std::fs::read_dir(out.join("fits"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".json")))
                .filter(|e| read_fit(&e.path()).is_some_and(|f| f.result.is_ok()))
                .count()
        })
        .unwrap_or(0)
}

/// One fit's file: the candidate it fitted, and its result or error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FitFile {
    candidate: Vec<String>,
    fold: usize,
    #[serde(flatten)]
    result: FitResult,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum FitResult {
    Scored { scoring: String, score: f64, fit_time: f64, score_time: f64, train_samples: usize, test_samples: usize },
    Failed { error: String },
}

impl FitResult {
    fn is_ok(&self) -> bool {
        matches!(self, FitResult::Scored { .. })
    }
}

fn read_fit(path: &Path) -> Option<FitFile> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn write_fit(path: &Path, fit: &FitFile) -> Result<()> {
    let json = serde_json::to_string_pretty(fit).map_err(|e| Error::Data(e.to_string()))?;
    write_atomic(path, json.as_bytes())
}

/// Fits fold `fold` of `cv` for the config `params` (with the `candidate` assignments applied)
/// and writes its score and times to `result`: what a worker of the search (`torchfit
/// search-fold`) does.
pub fn fit_fold(params: Params, candidate: Vec<String>, cv: &Cv, fold: usize, result: &Path) -> Result<()> {
    let spec = params.settings().dataset.clone().ok_or_else(|| params.config_error("dataset", "missing".into()))?;
    torchfit_engine::malloc::apply(params.settings().malloc);
    let registry = torchfit_engine::plugins::registry_for(&params)?;
    let TrainingData { reader: mut data, pool, .. } = training_data(&params, &registry, &spec)?;
    let mut net = NeuralNet::with_registry(params, registry).with_defaults(crate::defaults());
    net.set_run_dir(Some(result.with_extension("")));
    let (scoring, f) = net.cross_validate_fold(data.as_mut(), Some(&pool), cv, fold)?;
    let result_of = FitResult::Scored {
        scoring,
        score: f.score,
        fit_time: f.fit_seconds,
        score_time: f.score_seconds,
        train_samples: f.train_samples,
        test_samples: f.test_samples,
    };
    write_fit(result, &FitFile { candidate, fold, result: result_of })
}

/// The worker processes of a search.
struct Pool<'a> {
    request: &'a Request,
    spec: &'a Spec,
    stop: &'a StopFlag,
    /// Whether the stop flag ended the search.
    interrupted: bool,
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
    fn evaluate(&mut self, iter: usize, round: &[Candidate], cv: &Cv) -> Result<Vec<Outcome>> {
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

/// The ranked table: rank, mean and std of the score, mean fit time per fold, and the candidate
/// (with halving, its iteration first), best first, under a line naming the scoring.
pub fn table(found: &Search) -> String {
    let halving = !found.iterations.is_empty();
    let first = found.scored.iter().find_map(|s| s.outcome.as_ref().ok());
    let (scoring, folds) = first.map_or(("score", 0), |cv| (cv.scoring.as_str(), cv.folds.len()));
    let mut order: Vec<usize> = (0..found.scored.len()).collect();
    order.sort_by_key(|&i| (found.scored[i].rank, std::cmp::Reverse(found.scored[i].iter), i));
    let iter_header = if halving { "iter  " } else { "" };
    let mut out = format!("{scoring}, {folds}-fold cross-validation\n");
    out += &format!("{:>4}  {:>10}  {:>10}  {:>9}  {iter_header}params\n", "rank", "mean", "std", "fit (s)");
    for i in order {
        let s = &found.scored[i];
        let iter = if halving { format!("{:>4}  ", s.iter) } else { String::new() };
        let params = assignments(&s.params).join(" ");
        out += &match &s.outcome {
            Ok(cv) => {
                let fit = cv.folds.iter().map(|f| f.fit_seconds).sum::<f64>() / cv.folds.len().max(1) as f64;
                format!("{:>4}  {:>10.6}  {:>10.6}  {:>9.2}  {iter}{params}\n", s.rank, cv.mean, cv.std, fit)
            }
            Err(e) => format!("{:>4}  {:>10}  {:>10}  {:>9}  {iter}{params}  ({e})\n", s.rank, "failed", "", ""),
        };
    }
    out
}
