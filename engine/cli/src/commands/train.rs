//! `torchfit train`: the run a config describes, written to a run directory.
//!
//! A run directory holds `config.toml` (the resolved config), `history.json`, `summary.json`,
//! `model.safetensors` (the final parameters and buffers) and `model.json` (the shapes the model
//! was built for), and the `train_end_` checkpoint. Every file is written atomically. A run that
//! fails in training leaves its config, the history so far and the error (`summary.json`).

use super::signals::{received_signal, stop_on_signals};
use super::{load_params, Ended};
use crate::dataset::{reader, training_data, TrainingData};
use crate::launch;
use crate::run_dir::{Begin, RunDir};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;
use torchfit_engine::checkpoint::Sum;
use torchfit_engine::config::{Params, SplitKind};
use torchfit_engine::distributed::{Distributed, Launch};
use torchfit_engine::fsutil::write_atomic;
use torchfit_engine::net::{check_held_out, Interruption, Keep, Start, StopFlag, RESUME_PREFIX};
use torchfit_engine::{EpochCount, Error, Evaluation, History, NeuralNet, Result, Valid};
use torchfit_sdk::Task;

/// `torchfit train`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The TOML config.
    config: PathBuf,
    /// Override a config key, with skorch's routing: `optimizer__lr=0.05` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Write the run directory here (config.toml, history.json, summary.json, model, and a
    /// train_end_ checkpoint). An existing non-empty directory is refused without --resume.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in --out DIR from its train_end_ checkpoint, up to max_epochs in all.
    #[arg(long, requires = "out")]
    resume: bool,
    /// Train data-parallel in N worker processes on this machine (as `torchrun --standalone
    /// --nproc-per-node N`); `batch_size` is per process. Under torchrun, leave it out.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    nproc: Option<u16>,
}

/// Trains, or with `--nproc` launches the workers that do; reports the run's end.
pub fn execute(args: Args) -> Result<Ended> {
    let Args { config, sets, out, resume, nproc } = args;
    let params = load_params(&config, &sets)?;
    let stop = StopFlag::new();
    let received = stop_on_signals(&stop).map_err(|e| Error::io(Path::new("<signal handlers>"), e))?;
    if let Some(n) = nproc {
        return launch_workers(n.into(), received);
    }
    let outcome = train_until(params, out.as_deref(), resume, &stop)?;
    let (signal, name) = received_signal(&received);
    if !outcome.reports {
        return Ok(if outcome.interrupted.is_some() { Ended::Interrupted(signal) } else { Ended::Completed });
    }
    if let Some(interrupted) = outcome.interrupted {
        eprintln!("{}", interrupted_line(name, interrupted, &config, out.as_deref()));
        return Ok(Ended::Interrupted(signal));
    }
    if let Some(dir) = &out {
        log::info!("run written to {}", dir.display());
    }
    if let Some(test) = outcome.test {
        let mut text = format!("test_loss={:.6}\n", test.loss);
        if let Some(acc) = test.accuracy {
            text += &format!("test_accuracy={acc:.6}\n");
        }
        // A closed stdout (`| head`) is not an error of the run, which is complete.
        let _ = std::io::stdout().write_all(text.as_bytes());
    }
    Ok(Ended::Completed)
}

/// `train --nproc N`: the workers run this command without `--nproc` (see [`launch`]);
/// `received` is the signal this process got, passed on to them.
fn launch_workers(nproc: usize, received: Arc<AtomicUsize>) -> Result<Ended, Error> {
    if std::env::var_os("WORLD_SIZE").is_some() {
        let message = "--nproc starts workers itself; under torchrun (WORLD_SIZE is set) leave it out".into();
        return Err(Error::Config { origin: "--nproc".into(), key: "nproc".into(), message });
    }
    let args = launch::worker_args(std::env::args_os().skip(1));
    match launch::run(nproc, args, received)? {
        launch::JobEnd::Completed => Ok(Ended::Completed),
        launch::JobEnd::Interrupted(signal) => Ok(Ended::Interrupted(signal)),
        launch::JobEnd::Failed { code, .. } => Ok(Ended::WorkersFailed(code.clamp(1, 255) as u8)),
    }
}

/// The one line an interrupted `train` ends with: where it stopped and how to go on.
fn interrupted_line(signal: &str, at: Interruption, config: &Path, out: Option<&Path>) -> String {
    match out {
        Some(dir) => format!(
            "interrupted by {signal} {at}; {} keeps the run after epoch {}: continue with `torchfit train {} --out {} --resume`",
            dir.display(),
            at.epochs,
            config.display(),
            dir.display()
        ),
        None => format!("interrupted by {signal} {at} (nothing kept: train with --out DIR to resume later)"),
    }
}

/// What a finished `train` reports.
#[derive(Debug)]
pub struct Outcome {
    /// The history of the run.
    pub history: History,
    /// Evaluation on the held-out test split, when the config has one.
    pub test: Option<Evaluation>,
    /// Wall time of training and evaluation.
    pub seconds: f64,
    /// Wall time of the fit alone (the epochs, their training and validation passes).
    pub fit_seconds: f64,
    /// Where the run stopped when its stop flag was raised (then there is no test evaluation).
    pub interrupted: Option<Interruption>,
    /// Whether this process reports the run: it is a process of its own or rank 0 of a
    /// distributed job.
    pub reports: bool,
}

/// `model.json`: what `predict` needs to rebuild the model.
#[derive(Debug, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Shape of one input sample.
    pub input_shape: Vec<i64>,
    /// Number of outputs.
    pub n_outputs: i64,
    /// The task the model was trained for.
    pub task: Task,
    /// Folder the config's relative paths resolve against (absolute).
    pub base_dir: PathBuf,
    /// Length and CRC-32 of `model.safetensors`, checked before `predict` loads it (absent in a
    /// run directory from before they were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Sum>,
    /// Length and CRC-32 of `feature_scaler.safetensors`, the fitted `scaler` (absent without
    /// one), checked before `predict` loads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_scaler: Option<Sum>,
}

/// The file of a run directory that holds the fitted `scaler`.
pub const FEATURE_SCALER: &str = "feature_scaler.safetensors";

/// Trains the config in `params`; writes the run directory `out` when given (see
/// [`crate::run_dir`]). With `resume`, continues the run in `out` from its newest complete
/// checkpoint up to `max_epochs` epochs in all.
pub fn train(params: Params, out: Option<&Path>, resume: bool) -> Result<Outcome> {
    train_until(params, out, resume, &StopFlag::new())
}

/// [`train`], stopping after the current batch once `stop` is raised (`torchfit train` raises
/// it on SIGINT and SIGTERM): `on_train_end` still runs, and the run directory is written with
/// the model and history as they are and a `train_end_` checkpoint of the last epoch boundary,
/// from which `--resume` continues exactly.
pub fn train_until(params: Params, out: Option<&Path>, resume: bool, stop: &StopFlag) -> Result<Outcome> {
    let start = Instant::now();
    // A worker of a distributed job (torchrun, `--nproc`) joins it first; rank 0 owns the run
    // directory and the others follow it (see `RunDir::follow`).
    let dist = match Launch::from_env()? {
        Some(launch) => Some(Arc::new(Distributed::join(launch, &params.settings().distributed)?)),
        None => None,
    };
    let run = match (out, dist.as_deref()) {
        (Some(dir), Some(d)) => {
            let opened = if d.is_main() { Some(RunDir::open(dir, resume)) } else { None };
            d.barrier()?; // rank 0 has cleaned the folder
            let run = match opened {
                Some(run) => run?,
                None => RunDir::follow(dir, resume)?,
            };
            d.barrier()?; // every rank knows where it begins before rank 0 writes anything
            Some(run)
        }
        (Some(dir), None) => Some(RunDir::open(dir, resume)?),
        (None, _) if resume => {
            return Err(Error::RunDir {
                dir: ".".into(),
                message: "--resume needs --out DIR, the run to continue".into(),
            })
        }
        (None, _) => None,
    };
    let mut started = false;
    let result = train_in(params, run.as_ref(), dist, (start, stop), &mut started);
    if let (Err(_), Some(run), false) = (&result, run, started) {
        run.abandon();
    }
    result
}

/// [`train`] in the run directory `run`; `started` turns true once training ran far enough to
/// leave something (from then on the run directory is written, also when training fails; a run
/// that fails before has nothing to keep but its error).
fn train_in(
    params: Params,
    run: Option<&RunDir>,
    dist: Option<Arc<Distributed>>,
    (start, stop): (Instant, &StopFlag),
    started: &mut bool,
) -> Result<Outcome> {
    let settings = params.settings().clone();
    // Before the readers load anything: the heap is laid out for training from the start.
    torchfit_engine::malloc::apply(settings.malloc);
    let spec = settings
        .dataset
        .clone()
        .ok_or_else(|| params.config_error("dataset", "missing: `torchfit train` needs a [dataset] section".into()))?;
    let registry = torchfit_engine::plugins::registry_for(&params)?;
    let TrainingData { reader: mut data, pool, test } = training_data(&params, &registry, &spec)?;
    let mut test_data = match &settings.test_dataset {
        Some(t) => Some(reader(&registry, &params, "test_dataset", t)?),
        None => None,
    };
    if let Some(t) = test_data.as_mut() {
        check_held_out(settings.task, data.as_mut(), &pool, t.as_mut(), "[test_dataset]")?;
    }
    let mut net = NeuralNet::with_registry(params.clone(), registry.clone()).with_defaults(crate::defaults());
    // Only rank 0 of a distributed job writes the run directory.
    let writes = dist.as_ref().is_none_or(|d| d.is_main());
    net.set_distributed(dist);
    let mut valid = match settings.train_split.kind {
        SplitKind::Predefined => {
            let vspec = settings.valid_dataset.clone().ok_or_else(|| {
                params.config_error(
                    "valid_dataset",
                    "missing: train_split.kind = \"predefined\" needs a [valid_dataset] section".into(),
                )
            })?;
            Some(reader(&registry, &params, "valid_dataset", &vspec)?)
        }
        _ => None,
    };
    let out = run.map(RunDir::path);
    net.set_run_dir(out.map(Path::to_path_buf));
    let write_to = out.filter(|_| writes);
    net.set_epoch_count(EpochCount::Total);
    net.set_stop_flag(stop.clone(), if out.is_some() { Keep::Boundary } else { Keep::Nothing });
    let resumed = match (run.map(RunDir::begin), out) {
        (Some(Begin::Resume(found)), Some(dir)) => resumed_after(dir, found.epochs),
        _ => Vec::new(),
    };
    if let (Some(Begin::Resume(found)), Some(dir)) = (run.map(RunDir::begin), out) {
        log::info!("resuming from {found}");
        net.resume_from(found.dir.clone(), found.prefix.clone());
        net.override_on_resume(changed_hypers(&dir.join("config.toml"), &params)?);
    }
    // A CUDA context is start-up: made before the fit clock, as every program of the benchmark
    // suite makes it before its own.
    torchfit_engine::device::warm_up(&net.params().settings().device);
    let fit_start = std::time::Instant::now();
    let fitted = match valid.as_mut() {
        Some(v) => {
            let all = (0..v.len() as i64).collect();
            net.fit_train_valid(data.as_mut(), pool, Valid::Other(v.as_mut(), all), Start::Fresh)
        }
        None => net.fit_dataset(data.as_mut(), Some(&pool), Start::Fresh),
    };
    // A run that failed before an epoch of its own began (a resume point that does not load, a
    // callback failing in on_train_begin) leaves the folder as it found it; bad input found in
    // the first epoch (a criterion that does not fit the targets) leaves nothing worth keeping
    // either; any other failure keeps the run so far.
    let resumed_epochs = match run.map(RunDir::begin) {
        Some(Begin::Resume(found)) => found.epochs,
        _ => 0,
    };
    *started = match &fitted {
        Err(e) if e.is_bad_input() => net.history().len() > resumed_epochs + 1,
        Err(_) => net.history().len() > resumed_epochs,
        Ok(()) => true,
    };
    if let (Err(e), Some(dir), true) = (&fitted, write_to, *started) {
        // The last epoch boundary, from which `--resume` continues.
        if let Err(e) = net.save_resume_checkpoint(dir, RESUME_PREFIX) {
            log::debug!("no train_end_ checkpoint for the failed run: {e}");
        }
        write_failed_run(dir, &net, &params, e, &resumed);
    }
    fitted?;
    let fit_seconds = fit_start.elapsed().as_secs_f64();
    if let Some(dir) = write_to {
        // Every run directory ends with what `--resume` needs; a run that cannot save it (a
        // callback whose state fails) still keeps its history and the error.
        if let Err(e) = net.save_resume_checkpoint(dir, RESUME_PREFIX) {
            write_failed_run(dir, &net, &params, &e, &resumed);
            return Err(e);
        }
    }
    if let Some(interrupted) = net.interruption() {
        let seconds = start.elapsed().as_secs_f64();
        if let Some(dir) = write_to {
            let mut summary = summary(&net, (seconds, fit_seconds), None, &resumed);
            summary["interrupted"] =
                serde_json::json!({ "epochs": interrupted.epochs, "batches": interrupted.batches });
            write_run_dir(dir, &net, &params, &summary)?;
        }
        let history = net.history().clone();
        return Ok(Outcome {
            history,
            test: None,
            seconds,
            fit_seconds,
            interrupted: Some(interrupted),
            reports: writes,
        });
    }
    let test = match test_data.as_mut() {
        Some(t) => {
            let all: Vec<i64> = (0..t.len() as i64).collect();
            Some(net.evaluate(t.as_mut(), &all)?)
        }
        None if test.is_empty() => None,
        None => Some(net.evaluate(data.as_mut(), &test)?),
    };
    let seconds = start.elapsed().as_secs_f64();
    if let Some(dir) = write_to {
        write_run_dir(dir, &net, &params, &summary(&net, (seconds, fit_seconds), test, &resumed))?;
    }
    Ok(Outcome { history: net.history().clone(), test, seconds, fit_seconds, interrupted: None, reports: writes })
}

/// The optimizer hyper-parameters (top-level keys of `[optimizer]`) that `params` sets to other
/// values than the run's recorded config (`recorded`, absent for a run that never wrote one):
/// a rate changed on resume applies instead of the checkpoint's. (`implementation` is no
/// hyper-parameter: the resumed run builds its optimizer with the new one, over the same
/// state.) Changing the model's settings, the optimizer or its parameter groups on resume is
/// refused: the weights were trained with the recorded ones.
fn changed_hypers(recorded: &Path, params: &Params) -> Result<Vec<(String, serde_json::Value)>> {
    let Ok(text) = std::fs::read_to_string(recorded) else { return Ok(Vec::new()) };
    let before = Params::from_str(&text, &recorded.display().to_string(), params.base_dir().to_path_buf())?;
    let section =
        |p: &Params, name: &str| p.table().get(name).and_then(toml::Value::as_table).cloned().unwrap_or_default();
    let (old, new) = (section(&before, "module"), section(params, "module"));
    if let Some(key) = old.keys().chain(new.keys()).find(|k| old.get(*k) != new.get(*k)) {
        let message =
            format!("differs from the run's ({}): a resumed run keeps the model it trained", recorded.display());
        return Err(params.config_error(&format!("module.{key}"), message));
    }
    let (old, new) = (section(&before, "optimizer"), section(params, "optimizer"));
    for fixed in ["name", "param_groups"] {
        if old.get(fixed) != new.get(fixed) {
            let message = format!("differs from the run's ({}): a resumed run keeps its optimizer", recorded.display());
            return Err(params.config_error(&format!("optimizer.{fixed}"), message));
        }
    }
    new.iter()
        .filter(|(k, v)| !["name", "param_groups", "implementation"].contains(&k.as_str()) && old.get(*k) != Some(*v))
        .map(|(k, v)| Ok((k.clone(), serde_json::to_value(v).map_err(|e| Error::Data(e.to_string()))?)))
        .collect()
}

/// What a run that failed in training leaves besides its checkpoints: its config, the history so
/// far and the error in `summary.json` (best effort: the run's own error is the one reported). The history is not
/// written over the `history.json` of a checkpoint saved with an empty prefix into the run
/// directory, which `--resume` may still need.
fn write_failed_run(dir: &Path, net: &NeuralNet, params: &Params, error: &Error, resumed: &[usize]) {
    let summary = serde_json::json!({ "epochs": net.history().len(), "error": error.to_string() });
    let summary = with_resumes(summary, resumed);
    let written = write_atomic(&dir.join("config.toml"), params.to_toml().as_bytes())
        .and_then(|()| save_history(dir, net))
        .and_then(|()| write_atomic(&dir.join("summary.json"), json(&summary).as_bytes()));
    if let Err(e) = written {
        log::warn!("the failed run's directory is incomplete: {e}");
    }
}

/// Writes the history as `history.json`, unless a checkpoint saved with an empty prefix into the
/// run directory owns that file (a `checkpoint` with the default `dirname` and `fn_prefix`, as
/// skorch's `Checkpoint` writes `history.json`): then it stays the checkpoint's, consistent with
/// its parameters, and the run's own history is in its `train_end_history.json`.
fn save_history(dir: &Path, net: &NeuralNet) -> Result<()> {
    match torchfit_sdk::checkpoint::Files::new(dir, "").exist(torchfit_sdk::Parts::ALL) {
        true => Ok(()),
        false => net.history().save(&dir.join("history.json")),
    }
}

fn json(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// `summary.json` of a run that ended: its length and times, and the test evaluation.
fn summary(
    net: &NeuralNet,
    (seconds, fit_seconds): (f64, f64),
    test: Option<Evaluation>,
    resumed: &[usize],
) -> serde_json::Value {
    let mut summary =
        serde_json::json!({ "epochs": net.history().len(), "seconds": seconds, "fit_seconds": fit_seconds });
    if let Some(t) = test {
        summary["test"] = serde_json::json!({ "accuracy": t.accuracy, "loss": t.loss, "samples": t.samples });
    }
    with_resumes(summary, resumed)
}

/// `summary` with `resumed_after`, the epochs after which `--resume` continued the run (absent
/// for a run never resumed): `torchfit plot` marks them.
fn with_resumes(mut summary: serde_json::Value, resumed: &[usize]) -> serde_json::Value {
    if !resumed.is_empty() {
        summary["resumed_after"] = serde_json::json!(resumed);
    }
    summary
}

/// The epochs after which the run in `dir` was resumed: the earlier ones its `summary.json`
/// lists (before `epochs`), then `epochs`, where this `--resume` continues it.
fn resumed_after(dir: &Path, epochs: usize) -> Vec<usize> {
    let mut all: Vec<usize> = crate::run_dir::resumed_after(dir).into_iter().filter(|&e| e < epochs).collect();
    all.push(epochs);
    all
}

fn write_run_dir(dir: &Path, net: &NeuralNet, params: &Params, summary: &serde_json::Value) -> Result<()> {
    let (input_shape, n_outputs) = net.shape().ok_or(Error::NotInitialized)?;
    let base_dir = std::fs::canonicalize(params.base_dir()).map_err(|e| Error::io(params.base_dir(), e))?;
    write_atomic(&dir.join("config.toml"), params.to_toml().as_bytes())?;
    save_history(dir, net)?;
    let model = dir.join("model.safetensors");
    net.save_params(&model)?;
    let feature_scaler = match net.feature_scaler() {
        Some(s) => {
            let path = dir.join(FEATURE_SCALER);
            torchfit_sdk::io::save_tensors(&path, &s.tensors())?;
            Some(Sum::of(&path)?)
        }
        None => None,
    };
    let task = params.settings().task;
    let meta = ModelMeta { input_shape, n_outputs, task, base_dir, model: Some(Sum::of(&model)?), feature_scaler };
    write_atomic(&dir.join("model.json"), json(&serde_json::to_value(&meta).unwrap_or_default()).as_bytes())?;
    write_atomic(&dir.join("summary.json"), json(summary).as_bytes())
}
