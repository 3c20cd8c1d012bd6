//! What `torchfit train` and `torchfit predict` do, as library functions.
//!
//! A run directory holds `config.toml` (the resolved config), `history.json`, `summary.json`,
//! `model.safetensors` (the final parameters and buffers) and `model.json` (the shapes the model
//! was built for), and the `train_end_` checkpoint. Every file is written atomically. A run that
//! fails in training leaves its config, the history so far and the error (`summary.json`).

use crate::run_dir::{Begin, RunDir};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::Tensor;
use torchfit_engine::checkpoint::Sum;
use torchfit_engine::config::{ComponentSpec, Params, SplitKind};
use torchfit_engine::data::{split_indices, Stream};
use torchfit_engine::distributed::{Distributed, Launch};
use torchfit_engine::fsutil::write_atomic;
use torchfit_engine::net::{check_held_out, Interruption, Keep, Start, StopFlag, RESUME_PREFIX};
use torchfit_engine::registry::Component;
use torchfit_engine::{EpochCount, Error, Evaluation, History, NeuralNet, Registry, Result, Valid};
use torchfit_sdk::metrics::{class_probabilities, predicted_classes};
use torchfit_sdk::{BuildContext, DatasetReader, Task};

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
}

/// Loads a config file and applies `--set` assignments.
pub fn load_params(config: &Path, sets: &[String]) -> Result<Params> {
    let mut params = Params::from_file(config)?;
    for s in sets {
        params.set_assignment(s)?;
    }
    Ok(params)
}

fn reader(registry: &Registry, params: &Params, key: &str, spec: &ComponentSpec) -> Result<Box<dyn DatasetReader>> {
    let settings = params.settings();
    let ctx = BuildContext {
        name: key.into(),
        input_shape: vec![],
        n_outputs: 0,
        task: settings.task,
        device: tch::Device::Cpu,
        base_dir: params.base_dir().to_path_buf(),
        seed: settings.seed,
    };
    registry.reader(&spec.name, &spec.json(), &ctx).map_err(|e| params.component_error(key, e))
}

/// The config's data set and how its samples are used.
pub(crate) struct TrainingData {
    /// The reader of `[dataset]`.
    pub reader: Box<dyn DatasetReader>,
    /// The samples training may use.
    pub pool: Vec<i64>,
    /// The held-out `test_split`.
    pub test: Vec<i64>,
}

/// The config's data set (`spec`) and the samples training may use (all but the held-out
/// `test_split`).
pub(crate) fn training_data(params: &Params, registry: &Registry, spec: &ComponentSpec) -> Result<TrainingData> {
    let settings = params.settings();
    let mut data = reader(registry, params, "dataset", spec)?;
    let n = data.len();
    if settings.test_dataset.is_some() && settings.test_split.is_some() {
        return Err(params.config_error("test_dataset", "give either [test_dataset] or [test_split], not both".into()));
    }
    let (pool, test) = match &settings.test_split {
        Some(ts) if ts.kind == SplitKind::Fraction => {
            let labels = if settings.stratify(ts) {
                Some(Vec::<i64>::try_from(data.targets()?.f_flatten(0, -1)?)?)
            } else {
                None
            };
            let (pool, test) = split_indices(n, labels.as_deref(), ts.fraction, settings.seed, Stream::TestSplit);
            if test.is_empty() {
                log::warn!("test_split.fraction = {} of {n} samples holds none out: the run has no test", ts.fraction);
            }
            (pool, test)
        }
        _ => ((0..n as i64).collect(), Vec::new()),
    };
    Ok(TrainingData { reader: data, pool, test })
}

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
    if let (Some(Begin::Resume(found)), Some(dir)) = (run.map(RunDir::begin), out) {
        log::info!("resuming from {found}");
        net.resume_from(found.dir.clone(), found.prefix.clone());
        net.override_on_resume(changed_hypers(&dir.join("config.toml"), &params)?);
    }
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
        write_failed_run(dir, &net, &params, e);
    }
    fitted?;
    let fit_seconds = fit_start.elapsed().as_secs_f64();
    if let Some(dir) = write_to {
        // Every run directory ends with what `--resume` needs; a run that cannot save it (a
        // callback whose state fails) still keeps its history and the error.
        if let Err(e) = net.save_resume_checkpoint(dir, RESUME_PREFIX) {
            write_failed_run(dir, &net, &params, &e);
            return Err(e);
        }
    }
    if let Some(interrupted) = net.interruption() {
        let seconds = start.elapsed().as_secs_f64();
        if let Some(dir) = write_to {
            let mut summary = summary(&net, (seconds, fit_seconds), None);
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
        write_run_dir(dir, &net, &params, &summary(&net, (seconds, fit_seconds), test))?;
    }
    Ok(Outcome { history: net.history().clone(), test, seconds, fit_seconds, interrupted: None, reports: writes })
}

/// The optimizer hyper-parameters (top-level keys of `[optimizer]`) that `params` sets to other
/// values than the run's recorded config (`recorded`, absent for a run that never wrote one):
/// a rate changed on resume applies instead of the checkpoint's. Changing the model's settings,
/// the optimizer or its parameter groups on resume is refused: the weights were trained with
/// the recorded ones.
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
        .filter(|(k, v)| !["name", "param_groups"].contains(&k.as_str()) && old.get(*k) != Some(*v))
        .map(|(k, v)| Ok((k.clone(), serde_json::to_value(v).map_err(|e| Error::Data(e.to_string()))?)))
        .collect()
}

/// What a run that failed in training leaves besides its checkpoints: its config, the history so
/// far and the error in `summary.json` (best effort: the run's own error is the one reported). The history is not
/// written over the `history.json` of a checkpoint saved with an empty prefix into the run
/// directory, which `--resume` may still need.
fn write_failed_run(dir: &Path, net: &NeuralNet, params: &Params, error: &Error) {
    let summary = serde_json::json!({ "epochs": net.history().len(), "error": error.to_string() });
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
fn summary(net: &NeuralNet, (seconds, fit_seconds): (f64, f64), test: Option<Evaluation>) -> serde_json::Value {
    let mut summary =
        serde_json::json!({ "epochs": net.history().len(), "seconds": seconds, "fit_seconds": fit_seconds });
    if let Some(t) = test {
        summary["test"] = serde_json::json!({ "accuracy": t.accuracy, "loss": t.loss, "samples": t.samples });
    }
    summary
}

fn write_run_dir(dir: &Path, net: &NeuralNet, params: &Params, summary: &serde_json::Value) -> Result<()> {
    let (input_shape, n_outputs) = net.shape().ok_or(Error::NotInitialized)?;
    let base_dir = std::fs::canonicalize(params.base_dir()).map_err(|e| Error::io(params.base_dir(), e))?;
    write_atomic(&dir.join("config.toml"), params.to_toml().as_bytes())?;
    save_history(dir, net)?;
    let model = dir.join("model.safetensors");
    net.save_params(&model)?;
    let meta =
        ModelMeta { input_shape, n_outputs, task: params.settings().task, base_dir, model: Some(Sum::of(&model)?) };
    write_atomic(&dir.join("model.json"), json(&serde_json::to_value(&meta).unwrap_or_default()).as_bytes())?;
    write_atomic(&dir.join("summary.json"), json(summary).as_bytes())
}

/// What `torchfit predict` gives for each sample (skorch's `predict` and `predict_proba`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Predicted {
    /// The class (classifier) or the outputs (regressor).
    #[default]
    Labels,
    /// The class and its probabilities (classifier; a regressor's outputs).
    Proba,
    /// The model's raw outputs, in their shape.
    Logits,
}

/// The predictions of a run's model: one row per sample, in the data set's order.
#[derive(Debug)]
pub struct Predictions {
    /// Each sample's id: its name when the reader gives names (an image's path under the
    /// reader's root), else its row in the data set.
    pub ids: Vec<String>,
    /// The column names of [`Predictions::rows`] after `id`.
    pub columns: Vec<String>,
    /// What `--out FILE.npy` holds: the labels (`Int64`, one per sample), the probabilities
    /// (`[samples, classes]`), or the outputs in the model's shape (`[samples, ...]`).
    pub array: Tensor,
    /// Each sample's values, as the CSV writes them (the label first, then the probabilities).
    pub rows: Vec<Vec<String>>,
}

impl Predictions {
    /// CSV with a header: `id` ([`Predictions::ids`], quoted as RFC 4180 asks when it holds a
    /// comma, a quote or a line break), then [`Predictions::columns`].
    pub fn csv(&self) -> String {
        let mut text =
            std::iter::once("id").chain(self.columns.iter().map(String::as_str)).collect::<Vec<_>>().join(",");
        text.push('\n');
        for (id, row) in self.ids.iter().zip(&self.rows) {
            text += &format!("{},{}\n", csv_field(id), row.join(","));
        }
        text
    }

    /// Writes the predictions to `path`: a NumPy file for `.npy` ([`Predictions::array`]), CSV
    /// otherwise; atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("npy") => torchfit_sdk::io::with_temp(path, |tmp| {
                self.array.write_npy(tmp).map_err(|e| torchfit_sdk::Error::msg(format!("{}: {e}", path.display())))
            })
            .map_err(Error::from),
            _ => write_atomic(path, self.csv().as_bytes()),
        }
    }
}

/// `text` as one CSV field: quoted, with its quotes doubled, when it holds a comma, a quote or a
/// line break.
fn csv_field(text: &str) -> String {
    match text.contains([',', '"', '\n', '\r']) {
        true => format!("\"{}\"", text.replace('"', "\"\"")),
        false => text.to_owned(),
    }
}

/// Each row of `t` (`[samples, ...]`, flattened per sample) as text.
fn rows_of(t: &Tensor) -> Result<Vec<Vec<String>>> {
    let n = t.size().first().copied().unwrap_or(0);
    let rows = t.f_to_kind(tch::Kind::Float)?.f_reshape([n, -1])?;
    let k = rows.size()[1] as usize;
    let flat = Vec::<f32>::try_from(rows.f_flatten(0, -1)?)?;
    // Debug: the shortest text that reads back as the same float32, in exponent form when tiny.
    Ok(flat.chunks(k.max(1)).map(|r| r.iter().map(|v| format!("{v:?}")).collect()).collect())
}

/// `prefix_0`, `prefix_1`, ... for `k` columns (`prefix` alone for one).
fn numbered(prefix: &str, k: usize) -> Vec<String> {
    match k {
        1 => vec![prefix.to_owned()],
        _ => (0..k).map(|i| format!("{prefix}_{i}")).collect(),
    }
}

/// The predictions of the model in run directory `run` for the config's data set (or `data`, a
/// file the same reader can read), as `what` asks.
pub fn predict(run: &Path, data: Option<&Path>, sets: &[String], what: Predicted) -> Result<Predictions> {
    let (out, task, names) = predict_outputs(run, data, sets)?;
    let per_sample = |t: &Tensor| t.size().iter().skip(1).product::<i64>() as usize;
    let ids = names.unwrap_or_else(|| (0..out.size()[0]).map(|i| i.to_string()).collect());
    Ok(match (task, what) {
        (_, Predicted::Logits) => {
            let name = if task == Task::Classification { "logit" } else { "value" };
            Predictions { ids, columns: numbered(name, per_sample(&out)), rows: rows_of(&out)?, array: out }
        }
        (Task::Regression, _) => {
            Predictions { ids, columns: numbered("value", per_sample(&out)), rows: rows_of(&out)?, array: out }
        }
        (Task::Classification, Predicted::Labels) => {
            let labels = predicted_classes(&out)?;
            let rows = Vec::<i64>::try_from(&labels)?.into_iter().map(|c| vec![c.to_string()]).collect();
            Predictions { ids, columns: vec!["label".into()], rows, array: labels }
        }
        (Task::Classification, Predicted::Proba) => {
            let proba = class_probabilities(&out)?;
            let labels = Vec::<i64>::try_from(&predicted_classes(&out)?)?;
            let rows = labels
                .iter()
                .zip(rows_of(&proba)?)
                .map(|(c, p)| std::iter::once(c.to_string()).chain(p).collect())
                .collect();
            let columns = std::iter::once("label".to_owned()).chain(numbered("proba", per_sample(&proba))).collect();
            Predictions { ids, columns, rows, array: proba }
        }
    })
}

/// The model of run directory `run`, loaded, and its outputs for every sample of the config's
/// data set (or `data`), on the CPU; the task it was trained for; the samples' names when the
/// reader gives them.
fn predict_outputs(run: &Path, data: Option<&Path>, sets: &[String]) -> Result<(Tensor, Task, Option<Vec<String>>)> {
    let meta_path = run.join("model.json");
    let meta_text = std::fs::read_to_string(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
    let meta: ModelMeta =
        serde_json::from_str(&meta_text).map_err(|e| Error::Data(format!("{}: {e}", meta_path.display())))?;
    torchfit_engine::net::check_model_shape(&meta.input_shape, meta.n_outputs)
        .map_err(|m| Error::Data(format!("{}: {m}", meta_path.display())))?;
    let config = run.join("config.toml");
    let text = std::fs::read_to_string(&config).map_err(|e| Error::io(&config, e))?;
    let mut params = Params::from_str(&text, &config.display().to_string(), meta.base_dir.clone())?;
    for s in sets {
        params.set_assignment(s)?;
    }
    if let Some(d) = data {
        let abs = std::path::absolute(d).map_err(|e| Error::io(d, e))?;
        let reader = params.settings().dataset.as_ref().map(|s| s.name.clone()).unwrap_or_default();
        let (key, targets) = data_keys(&reader).ok_or_else(|| {
            let message = format!(
                "`predict --data` knows the data key of the stock readers only; for `{reader}` set it with --set dataset__<key>=FILE"
            );
            params.config_error("dataset.name", message)
        })?;
        params.set(&format!("dataset.{key}"), toml::Value::String(abs.display().to_string()), "--data")?;
        if let Some(targets) = targets {
            // The run's targets belong to its own data, not to this file.
            params.remove(&format!("dataset.{targets}"))?;
        }
    }
    let spec = params.settings().dataset.clone().ok_or_else(|| params.config_error("dataset", "missing".into()))?;
    let registry = torchfit_engine::plugins::registry_for(&params)?;
    let mut reader = reader(&registry, &params, "dataset", &spec)?;
    if reader.sample_shape().iter().product::<i64>() != meta.input_shape.iter().product::<i64>() {
        return Err(Error::Data(format!(
            "samples have shape {:?} but the model was trained on {:?}",
            reader.sample_shape(),
            meta.input_shape
        )));
    }
    let mut net = NeuralNet::with_registry(params, registry).with_defaults(crate::defaults());
    net.initialize(&meta.input_shape, meta.n_outputs)?;
    let model = run.join("model.safetensors");
    if let Some(sum) = &meta.model {
        sum.check(&model, &meta_path)?;
    }
    net.load_params(&model)?;
    let all: Vec<i64> = (0..reader.len() as i64).collect();
    let names = reader.sample_names().filter(|n| n.len() == all.len());
    Ok((net.forward_reader(reader.as_mut(), &all)?, meta.task, names))
}

/// `torchfit summary`: the model the config builds for its data set, as torchinfo shows one:
/// each parameter's name, shape and count, the total, and the buffers apart (not counted).
pub fn model_summary(params: Params) -> Result<String> {
    let spec = params.settings().dataset.clone().ok_or_else(|| {
        params.config_error("dataset", "missing: `torchfit summary` sizes the model for a [dataset]".into())
    })?;
    let registry = torchfit_engine::plugins::registry_for(&params)?;
    let TrainingData { reader: mut data, pool, .. } = training_data(&params, &registry, &spec)?;
    let mut net = NeuralNet::with_registry(params, registry).with_defaults(crate::defaults());
    net.initialize_for(data.as_mut(), &pool)?;
    let model = net.model().ok_or(Error::NotInitialized)?;
    let parameters = model.parameters();
    let buffers: Vec<(String, Tensor)> =
        model.state_dict().into_iter().filter(|(n, _)| !parameters.iter().any(|(p, _)| p == n)).collect();
    let rows: Vec<[String; 3]> =
        parameters.iter().map(|(n, t)| [n.clone(), format!("{:?}", t.size()), thousands(t.numel() as u64)]).collect();
    let total: u64 = parameters.iter().map(|(_, t)| t.numel() as u64).sum();
    let mut text = aligned(["parameter", "shape", "count"], &rows, [false, false, true]);
    let (input_shape, n_outputs) = net.shape().ok_or(Error::NotInitialized)?;
    text += &format!("total parameters: {} (input {input_shape:?}, {n_outputs} outputs)\n", thousands(total));
    if !buffers.is_empty() {
        let values: u64 = buffers.iter().map(|(_, t)| t.numel() as u64).sum();
        text += &format!("buffers (not parameters): {} in {} tensors\n", thousands(values), buffers.len());
    }
    Ok(text)
}

/// `233578` as `233,578`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The key of a stock reader that names its data (what `predict --data` sets), and the key of
/// its targets file when it has one apart (removed: the file to predict comes without them).
fn data_keys(reader: &str) -> Option<(&'static str, Option<&'static str>)> {
    match reader {
        "csv" | "npz" => Some(("path", None)),
        "idx" => Some(("images", Some("labels"))),
        "npy" => Some(("x", Some("y"))),
        "image_folder" => Some(("root", None)),
        _ => None,
    }
}

/// `torchfit plugins`: one line per component, sorted by kind then name, in aligned columns
/// (kind, name, version, origin, summary).
pub fn component_table(components: &[Component]) -> String {
    let mut rows: Vec<[String; 5]> = components
        .iter()
        .map(|c| {
            [c.kind.as_str().to_owned(), c.name.clone(), c.version.clone(), c.origin.to_string(), c.summary.clone()]
        })
        .collect();
    rows.sort_by(|a, b| (&a[0], &a[1]).cmp(&(&b[0], &b[1])));
    aligned(["kind", "name", "version", "origin", "summary"], &rows, [false; 5])
}

/// `header` and `rows` as a table of columns two spaces apart, each as wide as its widest cell
/// and aligned to the right where `right` says (a last column aligned left is not padded).
fn aligned<const N: usize>(header: [&str; N], rows: &[[String; N]], right: [bool; N]) -> String {
    let header = header.map(str::to_owned);
    let mut widths = [0; N];
    for row in std::iter::once(&header).chain(rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = (0..N)
            .map(|i| match (right[i], i + 1 == N) {
                (true, _) => format!("{:>w$}", row[i], w = widths[i]),
                (false, true) => row[i].clone(),
                (false, false) => format!("{:<w$}", row[i], w = widths[i]),
            })
            .collect();
        text += &cells.join("  ");
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(thousands(233578), "233,578");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(0), "0");
    }

    #[test]
    fn the_component_table_is_sorted_by_kind_then_name_in_aligned_columns() {
        let text = component_table(Registry::builtin().components());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("kind") && lines[0].ends_with("summary"), "{}", lines[0]);
        let keys: Vec<(&str, &str)> = lines[1..]
            .iter()
            .map(|l| {
                let mut w = l.split_whitespace();
                (w.next().unwrap(), w.next().unwrap())
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(keys.contains(&("model", "mlp")) && keys.contains(&("callback", "print_log")), "{keys:?}");
        let column = |l: &str| l.find(l.split_whitespace().nth(2).unwrap()).unwrap();
        assert!(lines.iter().all(|l| column(l) == column(lines[0])), "the version column is aligned:\n{text}");
    }
}
