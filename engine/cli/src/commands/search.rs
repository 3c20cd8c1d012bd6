//! `torchfit search`: hyper-parameter search over a config ([`torchfit_engine::model_selection::search`]),
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

use super::signals::{received_signal, stop_on_signals};
use super::train::train_until;
use super::{load_params, Ended as CommandEnded};
use crate::dataset::{training_data, TrainingData};
use crate::run_dir::Claim;
use pool::Pool;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use torchfit_engine::config::{Params, SplitKind};
use torchfit_engine::distributed;
use torchfit_engine::fsutil::write_atomic;
use torchfit_engine::model_selection::halving::Halving;
use torchfit_engine::model_selection::random_search::{sample, Distribution};
use torchfit_engine::model_selection::search::{grid, run as run_search, Candidate, Search};
use torchfit_engine::model_selection::Cv;
use torchfit_engine::net::StopFlag;
use torchfit_engine::{Error, NeuralNet, Result};

mod pool;

/// `torchfit search`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The TOML config.
    config: PathBuf,
    /// Values to try, KEY=V1,V2,... with skorch's routing: `module__dropout=0.2,0.5,0.8`
    /// (repeatable; every combination is a candidate). With --random, also `uniform(a,b)`,
    /// `loguniform(a,b)`, `randint(a,b)`.
    #[arg(long = "grid", value_name = "KEY=VALUES", required = true)]
    grid: Vec<String>,
    /// Override a config key for every candidate (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Folds of the cross-validation (stratified for classification).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(2..))]
    cv: u16,
    /// Draw N candidates from the --grid values and distributions instead of taking them all.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    random: Option<u32>,
    /// Successive halving with epochs as the resource: few epochs for all candidates, the
    /// best 1/factor go on with factor times more, up to max_epochs.
    #[arg(long)]
    halving: bool,
    /// Halving's factor.
    #[arg(long, default_value_t = 3.0, requires = "halving")]
    factor: f64,
    /// Epochs of halving's first iteration (default: as many as reach max_epochs in the last).
    #[arg(long, value_name = "EPOCHS", requires = "halving")]
    min_epochs: Option<i64>,
    /// Score with this scorer component (`f1_macro`, `log_loss`, ...; default: accuracy or r2).
    #[arg(long)]
    scoring: Option<String>,
    /// Fits running at once, each a worker process.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: u16,
    /// Intra-op threads of each fit (default: cores / jobs). Scores are bit-identical for
    /// the same threads, whatever --jobs.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// The search folder: search.json, each fit, and the refitted best run (refit/).
    #[arg(long)]
    out: PathBuf,
    /// Continue the search in --out DIR: finished fits are kept.
    #[arg(long)]
    resume: bool,
}

/// `torchfit search-fold`'s arguments: one fit of a search, run by the search in a worker.
#[derive(clap::Args, Debug)]
pub struct FoldArgs {
    config: PathBuf,
    #[arg(long = "set")]
    sets: Vec<String>,
    #[arg(long = "candidate")]
    candidate: Vec<String>,
    #[arg(long)]
    cv: usize,
    #[arg(long)]
    fold: usize,
    #[arg(long)]
    scoring: Option<String>,
    #[arg(long)]
    result: PathBuf,
}

/// Runs the search and prints its ranked table, or ends as interrupted.
pub fn execute(args: Args) -> Result<CommandEnded> {
    let Args { config, grid, sets, cv, random, halving, factor, min_epochs, scoring, jobs, threads, out, resume } =
        args;
    let halving = halving.then_some(HalvingRequest { factor, min_epochs });
    let request = Request {
        config: config.clone(),
        sets,
        space: grid,
        cv: cv.into(),
        random: random.map(|n| n as usize),
        halving,
        scoring,
        jobs: jobs.into(),
        threads: threads.map(usize::from),
        out: out.clone(),
        resume,
    };
    let stop = StopFlag::new();
    let received = stop_on_signals(&stop).map_err(|e| Error::io(Path::new("<signal handlers>"), e))?;
    match search(&request, &stop)? {
        Ended::Completed(_, table) => {
            log::info!("search written to {}; the best refitted in {}", out.display(), out.join("refit").display());
            // A closed stdout (`| head`) is not an error of the search, which is complete.
            let _ = std::io::stdout().write_all(table.as_bytes());
            Ok(CommandEnded::Completed)
        }
        Ended::Interrupted(kept) => {
            let (signal, name) = received_signal(&received);
            eprintln!(
                "interrupted by {name}; {} keeps {kept} finished fits: continue with the same command and --resume",
                out.display()
            );
            Ok(CommandEnded::Interrupted(signal))
        }
    }
}

/// One fit of a search: what a worker runs.
pub fn execute_fold(args: FoldArgs) -> Result<CommandEnded> {
    let FoldArgs { config, sets, candidate, cv, fold, scoring, result } = args;
    let mut params = load_params(&config, &sets)?;
    for c in &candidate {
        params.set_assignment(c)?;
    }
    let cv = Cv { n_splits: cv, scoring, ..Default::default() };
    fit_fold(params, candidate, &cv, fold, &result)?;
    Ok(CommandEnded::Completed)
}

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
    let params = load_params(&request.config, &request.sets)?;
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
    torchfit_engine::model_selection::search::check(&candidates, halving.as_ref())?;
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
    let outcome = train_until(refit_params, Some(&refit_dir), resume_refit, stop)?;
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
