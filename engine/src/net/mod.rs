//! [`NeuralNet`]: skorch's net in Rust.
//!
//! The chain of steps is skorch's: [`NeuralNet::initialize`] builds the model, criterion,
//! optimizer and callbacks; `fit` initializes (unless `warm_start`) and calls `partial_fit`;
//! `partial_fit` runs `on_train_begin`, the fit loop and, always, `on_train_end`; the fit loop runs
//! epochs of training batches (`train_step`) and validation batches (`validation_step`).
//!
//! Each epoch the engine first opens the history record (`epoch`), reseeds libtorch's generator
//! from `(seed, epoch)` and draws the batch order from `(seed, epoch)`, so any epoch can be
//! replayed exactly; then callbacks run in order. Batch losses stay on the device during the
//! epoch and are written to history (`train_loss`, `valid_loss` per batch) in one transfer
//! before `on_epoch_end`.

mod host;

use crate::config::{Params, Settings, SplitKind};
use crate::data::{batches, for_each_batch, split_indices, Batches, SplitMix64, Stream, TensorDataset};
use crate::{device, Error, History, Optimizer, Registry, Result};
use host::{RunHost, Scorers};
use std::path::Path;
use tch::{Device, Kind, Tensor};
use torchfit_sdk::checkpoint::{Action, Files};
use torchfit_sdk::{Batch, BatchOutput, BuildContext, Callback, Criterion, DatasetReader, Flow, Host, Model, Task};

/// An event of the loop, as sent to every callback.
enum Event<'a> {
    TrainBegin,
    EpochBegin,
    BatchBegin(&'a Batch<'a>),
    GradComputed(&'a Batch<'a>),
    BatchEnd(&'a BatchOutput<'a>),
    EpochEnd,
    TrainEnd,
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Event::TrainBegin => "on_train_begin",
            Event::EpochBegin => "on_epoch_begin",
            Event::BatchBegin(_) => "on_batch_begin",
            Event::GradComputed(_) => "on_grad_computed",
            Event::BatchEnd(_) => "on_batch_end",
            Event::EpochEnd => "on_epoch_end",
            Event::TrainEnd => "on_train_end",
        }
    }

    fn send(&self, cb: &mut dyn Callback, host: &mut dyn Host) -> torchfit_sdk::Result<Flow> {
        match self {
            Event::TrainBegin => cb.on_train_begin(host),
            Event::EpochBegin => cb.on_epoch_begin(host),
            Event::BatchBegin(b) => cb.on_batch_begin(host, b),
            Event::GradComputed(b) => cb.on_grad_computed(host, b),
            Event::BatchEnd(o) => cb.on_batch_end(host, o),
            Event::EpochEnd => cb.on_epoch_end(host),
            Event::TrainEnd => cb.on_train_end(host).map(|()| Flow::Continue),
        }
    }
}

/// Where validation batches come from.
pub enum Valid<'a> {
    /// No validation.
    None,
    /// These indices of the training reader.
    Same(Vec<i64>),
    /// These indices of another reader.
    Other(&'a mut dyn DatasetReader, Vec<i64>),
}

/// Loss (and accuracy, for classification) of a model on a set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean loss per sample.
    pub loss: f64,
    /// Fraction of correct arg-max predictions (classification only).
    pub accuracy: Option<f64>,
    /// Number of samples.
    pub samples: usize,
}

/// Everything `initialize` builds.
struct Parts {
    settings: Settings,
    device: Device,
    model: Box<dyn Model>,
    criterion: Box<dyn Criterion>,
    optimizer: Optimizer,
    callbacks: Vec<(String, Box<dyn Callback>)>,
    input_shape: Vec<i64>,
    n_outputs: i64,
    run_dir: Option<std::path::PathBuf>,
    scorers: Scorers,
}

/// A neural net with skorch's `fit`/`predict` shape.
pub struct NeuralNet {
    params: Params,
    registry: Registry,
    history: History,
    parts: Option<Parts>,
    run_dir: Option<std::path::PathBuf>,
    resume_from: Option<std::path::PathBuf>,
    epochs: EpochCount,
}

/// What `max_epochs` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EpochCount {
    /// Epochs of each `fit`/`partial_fit` call (skorch's semantics).
    #[default]
    PerCall,
    /// Epochs in the history in all: a resumed run trains only the missing ones (run
    /// directories, `torchfit train --resume`).
    Total,
}

impl std::fmt::Debug for NeuralNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NeuralNet").field("params", &self.params.to_toml()).field("epochs", &self.history.len()).field("initialized", &self.is_initialized()).finish()
    }
}

/// Config keys whose change needs the components rebuilt (the next `fit` re-initializes).
const REBUILD: &[&str] = &["module", "criterion", "optimizer", "callbacks", "device", "task", "seed", "threads"];

impl NeuralNet {
    /// A net over a config tree, with the builtin components.
    pub fn new(params: Params) -> Self {
        Self::with_registry(params, Registry::builtin())
    }

    /// A net over a config tree, with the components of `registry`.
    pub fn with_registry(params: Params, registry: Registry) -> Self {
        Self { params, registry, history: History::new(), parts: None, run_dir: None, resume_from: None, epochs: EpochCount::PerCall }
    }

    /// An empty classification net; set at least `module__name`.
    pub fn classifier() -> Self {
        Self::for_task("classification")
    }

    /// An empty regression net; set at least `module__name`.
    pub fn regressor() -> Self {
        Self::for_task("regression")
    }

    fn for_task(task: &str) -> Self {
        let text = format!("task = \"{task}\"\n[module]\nname = \"mlp\"\n");
        Self::new(Params::from_str(&text, "defaults", ".".into()).expect("the default config is valid"))
    }

    /// A net from a TOML config file.
    pub fn from_file(path: &Path) -> Result<Self> {
        Ok(Self::new(Params::from_file(path)?))
    }

    /// The config tree.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The registry components are built from.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The registry, to add in-process components before `fit`.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Sets one parameter with skorch's routing (`optimizer__lr`, `module__hidden`,
    /// `iterator_train__batch_size`, `callbacks__<name>__<key>`, `max_epochs`, ...).
    ///
    /// Changing a component (`module`, `criterion`, `optimizer`, `callbacks`, `device`, `task`,
    /// `seed`, `threads`) makes the next `fit` or `partial_fit` rebuild the components; other keys
    /// take effect at the next call without touching the trained model.
    pub fn set_param(&mut self, key: &str, value: impl Into<toml::Value>) -> Result<&mut Self> {
        self.params.set(key, value.into(), &format!("set_params({key})"))?;
        let top = crate::config::key_path(key).remove(0);
        if REBUILD.contains(&top.as_str()) {
            self.parts = None;
        } else if let Some(parts) = &mut self.parts {
            parts.settings = self.params.settings()?;
        }
        Ok(self)
    }

    /// Sets several parameters; values are parsed as TOML (`"0.1"`, `"[64, 32]"`, `"adam"`).
    pub fn set_params(&mut self, pairs: &[(&str, &str)]) -> Result<&mut Self> {
        for (k, v) in pairs {
            self.set_param(k, crate::config::parse_value(v))?;
        }
        Ok(self)
    }

    /// Sets the run directory callbacks write into (`Host::run_dir`); relative checkpoint
    /// folders resolve against it.
    pub fn set_run_dir(&mut self, dir: Option<std::path::PathBuf>) {
        if let Some(p) = &mut self.parts {
            p.run_dir = dir.clone();
        }
        self.run_dir = dir;
    }

    /// Makes the next `fit` restore everything from the train-end checkpoint in `dir`
    /// (`train_end_*` files) before `on_train_begin`, as `torchfit train --resume` does.
    pub fn resume_from(&mut self, dir: Option<std::path::PathBuf>) {
        self.resume_from = dir;
    }

    /// Sets what `max_epochs` counts.
    pub fn set_epoch_count(&mut self, count: EpochCount) {
        self.epochs = count;
    }

    /// Saves `parts` of the run as checkpoint `prefix` under `dir` now (what a callback's
    /// `save_checkpoint` request does at the end of an event).
    pub fn save_checkpoint(&mut self, dir: &Path, prefix: &str, what: torchfit_sdk::Parts) -> Result<()> {
        let parts = self.parts.as_mut().ok_or(Error::NotInitialized)?;
        perform(parts, &mut self.history, &Action::Save { dir: dir.to_path_buf(), prefix: prefix.into(), parts: what })
    }

    /// The training history.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Replaces the history (e.g. one loaded from disk).
    pub fn set_history(&mut self, history: History) {
        self.history = history;
    }

    /// Whether the components are built.
    pub fn is_initialized(&self) -> bool {
        self.parts.is_some()
    }

    /// The model, once initialized.
    pub fn model(&self) -> Option<&dyn Model> {
        self.parts.as_ref().map(|p| p.model.as_ref())
    }

    /// The optimizer, once initialized.
    pub fn optimizer(&self) -> Option<&Optimizer> {
        self.parts.as_ref().map(|p| &p.optimizer)
    }

    /// The device the net runs on, once initialized.
    pub fn device(&self) -> Option<Device> {
        self.parts.as_ref().map(|p| p.device)
    }

    /// Builds model, criterion, optimizer and callbacks for samples of `input_shape` and
    /// `n_outputs` outputs, and clears the history. Seeds libtorch first, so the same seed gives
    /// the same initial weights.
    pub fn initialize(&mut self, input_shape: &[i64], n_outputs: i64) -> Result<&mut Self> {
        let settings = self.params.settings()?;
        if let Some(t) = settings.threads {
            tch::set_num_threads(t);
        }
        crate::malloc::apply(settings.malloc);
        let device = device::resolve(device::parse(&settings.device).map_err(|m| self.params.config_error("device", m))?)?;
        tch::manual_seed(settings.seed as i64);
        let ctx = |name: &str| BuildContext {
            name: name.into(),
            input_shape: input_shape.to_vec(),
            n_outputs,
            task: settings.task,
            device,
            base_dir: self.params.base_dir().to_path_buf(),
            seed: settings.seed,
        };
        let params = &self.params;
        let model = self.registry.model(&settings.module.name, &settings.module.json(), &ctx("module")).map_err(|e| params.component_error("module", e))?;
        let criterion = match &settings.criterion {
            Some(c) => self.registry.criterion(&c.name, &c.json(), &ctx("criterion")).map_err(|e| params.component_error("criterion", e))?,
            None => {
                let name = if settings.task == Task::Classification { "cross_entropy" } else { "mse" };
                self.registry.criterion(name, &serde_json::json!({}), &ctx("criterion"))?
            }
        };
        let optimizer = Optimizer::new(&settings.optimizer, model.parameters()).map_err(|e| match e {
            Error::Config { key, message, .. } => self.params.config_error(&format!("optimizer.{key}").trim_end_matches('.').to_string(), message),
            other => other,
        })?;
        let overrides = settings.callback_overrides().map_err(|(k, m)| self.params.config_error(&k, m))?;
        let mut callbacks = Vec::new();
        for spec in crate::callbacks::resolve(crate::callbacks::defaults(settings.task), overrides) {
            let section = format!("callbacks.{}", spec.name);
            let mut cb = self.registry.callback(&spec.kind, &spec.params, &ctx(&spec.name)).map_err(|e| params.component_error(&section, e))?;
            cb.initialize().map_err(|source| Error::Callback { name: spec.name.clone(), event: "initialize", source })?;
            callbacks.push((spec.name, cb));
        }
        self.history = History::new();
        let scorers = Scorers { registry: self.registry.clone(), ctx: ctx("scorer"), built: Default::default() };
        self.parts = Some(Parts { settings, device, model, criterion, optimizer, callbacks, input_shape: input_shape.to_vec(), n_outputs, run_dir: self.run_dir.clone(), scorers });
        Ok(self)
    }

    /// Trains from scratch (unless `warm_start`) on `x`, `y`, splitting off validation data as
    /// `train_split` says.
    pub fn fit(&mut self, x: &Tensor, y: &Tensor) -> Result<&mut Self> {
        let mut data = TensorDataset::new(x, y)?;
        self.fit_reader(&mut data, None, false)?;
        Ok(self)
    }

    /// Like [`NeuralNet::fit`], validating on `x_valid`, `y_valid` (skorch's `predefined_split`).
    pub fn fit_with_valid(&mut self, x: &Tensor, y: &Tensor, x_valid: &Tensor, y_valid: &Tensor) -> Result<&mut Self> {
        let mut data = TensorDataset::new(x, y)?;
        let mut valid = TensorDataset::new(x_valid, y_valid)?;
        let all = (0..valid.len() as i64).collect();
        let train = (0..data.len() as i64).collect();
        self.fit_readers(&mut data, train, Valid::Other(&mut valid, all), false)?;
        Ok(self)
    }

    /// Trains `max_epochs` more epochs without re-initializing (initializing first if needed).
    pub fn partial_fit(&mut self, x: &Tensor, y: &Tensor) -> Result<&mut Self> {
        let mut data = TensorDataset::new(x, y)?;
        self.fit_reader(&mut data, None, true)?;
        Ok(self)
    }

    /// Fits on the samples `indices` of `reader` (all when `None`), split by `train_split`.
    /// `partial` keeps an initialized net as it is (`partial_fit`).
    pub fn fit_reader(&mut self, reader: &mut dyn DatasetReader, indices: Option<&[i64]>, partial: bool) -> Result<()> {
        let settings = self.params.settings()?;
        let pool: Vec<i64> = indices.map(<[i64]>::to_vec).unwrap_or_else(|| (0..reader.len() as i64).collect());
        let (train, valid) = match settings.train_split.kind {
            SplitKind::None => (pool, Valid::None),
            SplitKind::Predefined => {
                return Err(self.params.config_error("train_split.kind", "`predefined` needs validation data: use fit_with_valid or [valid_dataset]".into()))
            }
            SplitKind::Fraction => {
                let labels = if settings.stratify(&settings.train_split) { Some(select(&targets_i64(reader)?, &pool)) } else { None };
                let (kept, held) = split_indices(pool.len(), labels.as_deref(), settings.train_split.fraction, settings.seed, Stream::ValidSplit);
                (kept.iter().map(|&i| pool[i as usize]).collect(), Valid::Same(held.iter().map(|&i| pool[i as usize]).collect()))
            }
        };
        self.fit_readers(reader, train, valid, partial)
    }

    /// Fits on `train` indices of `reader`, validating as `valid` says.
    pub fn fit_readers(&mut self, reader: &mut dyn DatasetReader, train: Vec<i64>, mut valid: Valid<'_>, partial: bool) -> Result<()> {
        if train.is_empty() {
            return Err(Error::Data("no training samples".into()));
        }
        let settings = self.params.settings()?;
        let keep = self.parts.is_some() && (partial || settings.warm_start);
        if !keep {
            let n_outputs = match settings.task {
                Task::Classification => {
                    let mut max = select(&targets_i64(reader)?, &train).into_iter().max().unwrap_or(0);
                    if let Valid::Other(r, idx) = &mut valid {
                        max = max.max(select(&targets_i64(*r)?, idx).into_iter().max().unwrap_or(0));
                    }
                    max + 1
                }
                Task::Regression => reader.targets()?.size().get(1).copied().unwrap_or(1),
            };
            self.initialize(&reader.sample_shape(), n_outputs)?;
        }
        self.partial_fit_loop(reader, &train, valid)
    }

    fn partial_fit_loop(&mut self, reader: &mut dyn DatasetReader, train: &[i64], valid: Valid<'_>) -> Result<()> {
        let parts = self.parts.as_mut().ok_or(Error::NotInitialized)?;
        let history = &mut self.history;
        if let Some(dir) = self.resume_from.take() {
            perform(parts, history, &Action::Load { dir, prefix: "train_end_".into(), parts: torchfit_sdk::Parts::ALL })?;
        }
        let epochs = match self.epochs {
            EpochCount::PerCall => parts.settings.max_epochs,
            EpochCount::Total => parts.settings.max_epochs.saturating_sub(history.len()),
        };
        let result = match notify(parts, history, (0, 0), &Event::TrainBegin) {
            Ok(Flow::Continue) => fit_loop(parts, history, reader, train, valid, epochs),
            Ok(Flow::Stop) => Ok(()),
            Err(e) => Err(e),
        };
        let end = notify_train_end(parts, history);
        result.and(end)
    }

    /// The model's outputs (in evaluation mode, without gradients) for samples `indices` of
    /// `reader`, on the CPU.
    pub fn forward_reader(&mut self, reader: &mut dyn DatasetReader, indices: &[i64]) -> Result<Tensor> {
        let parts = self.parts.as_ref().ok_or(Error::NotInitialized)?;
        let _guard = tch::no_grad_guard();
        let mut outs = Vec::new();
        let iv = &parts.settings.iterator_valid;
        for_each_batch(reader, &batches(indices, iv.batch_size, false, 0, 0), iv.prefetch, |_, _, x, _| {
            outs.push(model_forward(parts, &x.f_to_device(parts.device)?, false)?);
            Ok::<_, Error>(())
        })?;
        Ok(Tensor::f_cat(&outs, 0)?.f_to_device(Device::Cpu)?)
    }

    /// Class probabilities (softmax of the outputs) for classification, the outputs for
    /// regression.
    pub fn predict_proba(&mut self, x: &Tensor) -> Result<Tensor> {
        let n = x.size().first().copied().unwrap_or(0);
        let mut data = TensorDataset::new(x, &Tensor::zeros([n], (Kind::Int64, Device::Cpu)))?;
        let out = self.forward_reader(&mut data, &(0..n).collect::<Vec<_>>())?;
        match self.task() {
            Task::Classification => Ok(out.f_softmax(-1, Kind::Float)?),
            Task::Regression => Ok(out),
        }
    }

    /// Predicted classes (arg-max) for classification, the outputs for regression.
    pub fn predict(&mut self, x: &Tensor) -> Result<Tensor> {
        let proba = self.predict_proba(x)?;
        match self.task() {
            Task::Classification => Ok(proba.f_argmax(-1, false)?),
            Task::Regression => Ok(proba),
        }
    }

    /// Accuracy (classification) or R² (regression) on `x`, `y`.
    pub fn score(&mut self, x: &Tensor, y: &Tensor) -> Result<f64> {
        let pred = self.predict(x)?;
        match self.task() {
            Task::Classification => Ok(pred.f_eq_tensor(&y.f_to_kind(Kind::Int64)?)?.f_to_kind(Kind::Double)?.f_mean(Kind::Double)?.f_double_value(&[])?),
            Task::Regression => {
                let y = y.f_to_kind(Kind::Double)?.f_view_as(&pred)?;
                let pred = pred.f_to_kind(Kind::Double)?;
                let ss_res = (&y - &pred).f_square()?.f_sum(Kind::Double)?.f_double_value(&[])?;
                let ss_tot = (&y - y.f_mean(Kind::Double)?).f_square()?.f_sum(Kind::Double)?.f_double_value(&[])?;
                Ok(1.0 - ss_res / ss_tot)
            }
        }
    }

    /// Mean loss (and accuracy for classification) on samples `indices` of `reader`.
    pub fn evaluate(&mut self, reader: &mut dyn DatasetReader, indices: &[i64]) -> Result<Evaluation> {
        let parts = self.parts.as_ref().ok_or(Error::NotInitialized)?;
        let _guard = tch::no_grad_guard();
        let zero = || Tensor::zeros([], (Kind::Double, parts.device));
        let (mut loss_sum, mut correct) = (zero(), zero());
        let iv = &parts.settings.iterator_valid;
        for_each_batch(reader, &batches(indices, iv.batch_size, false, 0, 0), iv.prefetch, |_, idx, x, y| {
            let (x, y) = (x.f_to_device(parts.device)?, y.f_to_device(parts.device)?);
            let out = model_forward(parts, &x, false)?;
            let loss = criterion_loss(parts, &out, &y)?;
            loss_sum = loss_sum.f_add(&loss.f_to_kind(Kind::Double)?.f_mul_scalar(idx.len() as f64)?)?;
            if parts.settings.task == Task::Classification {
                correct = correct.f_add(&out.f_argmax(-1, false)?.f_eq_tensor(&y)?.f_sum(Kind::Double)?)?;
            }
            Ok::<_, Error>(())
        })?;
        let n = indices.len().max(1) as f64;
        Ok(Evaluation {
            loss: loss_sum.f_double_value(&[])? / n,
            accuracy: (parts.settings.task == Task::Classification).then(|| correct.double_value(&[]) / n),
            samples: indices.len(),
        })
    }

    fn task(&self) -> Task {
        self.parts.as_ref().map(|p| p.settings.task).unwrap_or_default()
    }

    /// Input shape and output count the net was initialized for.
    pub fn shape(&self) -> Option<(Vec<i64>, i64)> {
        self.parts.as_ref().map(|p| (p.input_shape.clone(), p.n_outputs))
    }

    /// Saves the model's state dict as safetensors (readable by `safetensors.torch.load_file`),
    /// atomically.
    pub fn save_params(&self, path: &Path) -> Result<()> {
        let model = self.model().ok_or(Error::NotInitialized)?;
        torchfit_sdk::io::save_tensors(path, &model.state_dict()).map_err(|e| Error::Data(e.to_string()))
    }

    /// Loads a state dict saved by [`NeuralNet::save_params`] into the initialized model.
    pub fn load_params(&mut self, path: &Path) -> Result<()> {
        let parts = self.parts.as_mut().ok_or(Error::NotInitialized)?;
        let state = Tensor::read_safetensors(path).map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
        parts.model.load_state_dict(&state).map_err(|e| Error::Data(format!("{}: {e}", path.display())))
    }
}

fn targets_i64(reader: &mut dyn DatasetReader) -> Result<Vec<i64>> {
    let y = reader.targets()?;
    if y.is_floating_point() {
        return Err(Error::Data("classification needs integer class labels; set task = \"regression\" for real-valued targets".into()));
    }
    Ok(Vec::<i64>::try_from(y.f_to_kind(Kind::Int64)?.f_flatten(0, -1)?)?)
}

fn select(values: &[i64], idx: &[i64]) -> Vec<i64> {
    idx.iter().map(|&i| values[i as usize]).collect()
}

/// What a failing callback does to the rest of an event.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnError {
    /// The event stops at once and the error is returned (the run aborts).
    Abort,
    /// Every callback still runs and every request is carried out; errors are logged and the
    /// first is returned (`on_train_end`).
    Continue,
}

/// Sends `event` to every callback, then carries out the checkpoint requests they made.
fn dispatch(parts: &mut Parts, history: &mut History, counts: (usize, usize), event: &Event<'_>, on_error: OnError) -> Result<Flow> {
    let (mut flow, mut requested, mut first) = (Flow::Continue, Vec::new(), None);
    let mut fail = |e: Error| match on_error {
        OnError::Abort => Err(e),
        OnError::Continue => {
            log::error!("{e}");
            first.get_or_insert(e);
            Ok(())
        }
    };
    {
        let Parts { callbacks, model, optimizer, settings, run_dir, scorers, .. } = &mut *parts;
        for (name, cb) in callbacks.iter_mut() {
            let (mut stop, mut actions) = (false, Vec::new());
            let mut host = RunHost { history: &mut *history, model: model.as_ref(), optimizer: &mut *optimizer, max_epochs: settings.max_epochs, batch_counts: counts, stop: &mut stop, actions: &mut actions, run_dir: run_dir.as_deref(), scorers: &mut *scorers };
            match event.send(cb.as_mut(), &mut host) {
                Ok(f) => flow = flow.and(f),
                Err(source) => fail(Error::Callback { name: name.clone(), event: event.name(), source })?,
            }
            if stop {
                flow = Flow::Stop;
            }
            requested.extend(actions.into_iter().map(|a| (name.clone(), a)));
        }
    }
    for (name, action) in requested {
        if let Err(e) = perform(parts, history, &action) {
            fail(Error::Callback { name, event: event.name(), source: torchfit_sdk::Error::msg(e) })?;
        }
    }
    first.map_or(Ok(flow), Err)
}

fn notify(parts: &mut Parts, history: &mut History, counts: (usize, usize), event: &Event<'_>) -> Result<Flow> {
    dispatch(parts, history, counts, event, OnError::Abort)
}

/// `on_train_end` on every callback, even after one fails, then the checkpoint requests they
/// made; the first error is returned.
fn notify_train_end(parts: &mut Parts, history: &mut History) -> Result<()> {
    dispatch(parts, history, (0, 0), &Event::TrainEnd, OnError::Continue).map(|_| ())
}

/// Carries out a checkpoint request: the callback decided, the loop acts.
fn perform(parts: &mut Parts, history: &mut History, action: &Action) -> Result<()> {
    let sdk_err = |e: torchfit_sdk::Error| Error::Data(e.to_string());
    match action {
        Action::Save { dir, prefix, parts: what } => {
            let files = Files::new(dir, prefix);
            let mut set: Vec<crate::checkpoint::Writer<'_>> = Vec::new();
            if what.params {
                let state = parts.model.state_dict();
                set.push((files.params, Box::new(move |p: &Path| torchfit_sdk::io::save_tensors(p, &state).map_err(sdk_err))));
            }
            if what.optimizer {
                let state = parts.optimizer.state_dict();
                set.push((files.optimizer, Box::new(move |p: &Path| torchfit_sdk::io::save_tensors(p, &state).map_err(sdk_err))));
            }
            if what.callbacks {
                let mut states = serde_json::Map::new();
                for (name, cb) in &parts.callbacks {
                    states.insert(name.clone(), cb.state().map_err(|source| Error::Callback { name: name.clone(), event: "state", source })?);
                }
                let states = serde_json::Value::Object(states);
                set.push((files.callbacks, Box::new(move |p: &Path| torchfit_sdk::io::save_json(p, &states).map_err(sdk_err))));
            }
            if what.history {
                let history = &*history;
                set.push((files.history, Box::new(move |p: &Path| history.save(p))));
            }
            crate::checkpoint::save(dir, prefix, set)?;
        }
        Action::Load { dir, prefix, parts: what } => {
            crate::checkpoint::recover(dir, prefix)?;
            let files = Files::new(dir, prefix);
            if what.history {
                *history = History::load(&files.history)?;
            }
            if what.params {
                let state = torchfit_sdk::io::load_tensors(&files.params).map_err(sdk_err)?;
                parts.model.load_state_dict(&state).map_err(|e| Error::Data(format!("{}: {e}", files.params.display())))?;
            }
            if what.optimizer {
                let state = torchfit_sdk::io::load_tensors(&files.optimizer).map_err(sdk_err)?;
                parts.optimizer.load_state_dict(&state)?;
            }
            if what.callbacks {
                let states = torchfit_sdk::io::load_json(&files.callbacks).map_err(sdk_err)?;
                for (name, cb) in &mut parts.callbacks {
                    if let Some(state) = states.get(name.as_str()) {
                        cb.load_state(state.clone()).map_err(|source| Error::Callback { name: name.clone(), event: "load_state", source })?;
                    }
                }
            }
            log::info!("restored {:?} from {} (history: {} epochs)", what, dir.join(prefix).display(), history.len());
        }
    }
    Ok(())
}

fn fit_loop(parts: &mut Parts, history: &mut History, reader: &mut dyn DatasetReader, train: &[i64], mut valid: Valid<'_>, epochs: usize) -> Result<()> {
    let seed = parts.settings.seed;
    for _ in 0..epochs {
        let epoch = history.len() + 1;
        history.new_epoch();
        history.record("epoch", epoch)?;
        tch::manual_seed((SplitMix64::new(seed, Stream::Torch, epoch as u64).next_u64() >> 1) as i64);
        reader.reset(epoch as u64, seed)?;
        if let Valid::Other(r, _) = &mut valid {
            r.reset(epoch as u64, seed)?;
        }
        let it = &parts.settings.iterator_train;
        let train_batches = batches(train, it.batch_size, it.shuffle.unwrap_or(true), seed, epoch as u64);
        let iv = &parts.settings.iterator_valid;
        let valid_batches = match &valid {
            Valid::None => Vec::new(),
            Valid::Same(idx) | Valid::Other(_, idx) => batches(idx, iv.batch_size, iv.shuffle.unwrap_or(false), seed, epoch as u64),
        };
        let counts = (train_batches.len(), valid_batches.len());
        let mut pending = Vec::with_capacity(2);
        let mut flow = notify(parts, history, counts, &Event::EpochBegin)?;
        flow = flow.and(run_single_epoch(parts, history, reader, &train_batches, true, counts, &mut pending)?);
        if !valid_batches.is_empty() {
            let valid_reader: &mut dyn DatasetReader = match &mut valid {
                Valid::Other(r, _) => &mut **r,
                _ => &mut *reader,
            };
            flow = flow.and(run_single_epoch(parts, history, valid_reader, &valid_batches, false, counts, &mut pending)?);
        }
        record_losses(history, pending)?;
        flow = flow.and(notify(parts, history, counts, &Event::EpochEnd)?);
        if flow == Flow::Stop {
            log::info!("stopping after epoch {epoch}: a callback asked to stop");
            break;
        }
    }
    Ok(())
}

/// The batch losses of one pass, waiting on the device to be written into history at the end
/// of the epoch: `values[i]` is the loss of the batch in history record `records[i]`.
///
/// The slots are one tensor allocated when the pass begins, so no batch syncs with the device
/// and no per-batch tensor outlives its step: keeping 1,500 small loss tensors alive until the
/// epoch ends scattered them through the heap and made glibc map fresh pages for the step's
/// larger buffers (about 70,000 extra page faults per MNIST epoch at batch size 32).
struct Pending {
    key: &'static str,
    records: Vec<usize>,
    values: Tensor,
}

fn run_single_epoch(parts: &mut Parts, history: &mut History, reader: &mut dyn DatasetReader, batches: &Batches, training: bool, counts: (usize, usize), pending: &mut Vec<Pending>) -> Result<Flow> {
    let (size_key, loss_key) = if training { ("train_batch_size", "train_loss") } else { ("valid_batch_size", "valid_loss") };
    let mut flow = Flow::Continue;
    let prefetch = if training { parts.settings.iterator_train.prefetch } else { parts.settings.iterator_valid.prefetch };
    let mut losses = Pending { key: loss_key, records: Vec::with_capacity(batches.len()), values: Tensor::f_zeros([batches.len() as i64], (Kind::Double, parts.device))? };
    for_each_batch(reader, batches, prefetch, |index, idx, x, y| {
        let (x, y) = (x.f_to_device(parts.device)?, y.f_to_device(parts.device)?);
        let record = history.new_batch()?;
        history.record_batch(size_key, idx.len())?;
        let batch = Batch { x: &x, y: &y, training, index };
        flow = flow.and(notify(parts, history, counts, &Event::BatchBegin(&batch))?);
        let (y_pred, loss) = if training {
            let (y_pred, loss, f) = train_step(parts, history, counts, &batch)?;
            flow = flow.and(f);
            (y_pred, loss)
        } else {
            validation_step(parts, &batch)?
        };
        let out = BatchOutput { batch, y_pred: &y_pred, loss: &loss };
        flow = flow.and(notify(parts, history, counts, &Event::BatchEnd(&out))?);
        losses.values.f_select(0, index as i64)?.f_copy_(&loss)?;
        losses.records.push(record);
        Ok::<_, Error>(())
    })?;
    pending.push(losses);
    Ok(flow)
}

/// The criterion's loss as a 0-dim tensor. It must hold a single value: backward and the
/// batch's history entry need one.
fn criterion_loss(parts: &Parts, y_pred: &Tensor, y: &Tensor) -> Result<Tensor> {
    let error = |source| Error::Component { kind: torchfit_sdk::ComponentKind::Criterion, name: "criterion".into(), source };
    let loss = parts.criterion.loss(y_pred, y).map_err(error)?;
    match (loss.dim(), loss.numel()) {
        (0, _) => Ok(loss),
        (_, 1) => Ok(loss.f_reshape([0i64; 0])?),
        _ => Err(error(torchfit_sdk::Error::msg(format!("the loss has shape {:?}; it must be a single value (reduce it, e.g. with its mean)", loss.size())))),
    }
}

fn model_forward(parts: &Parts, x: &Tensor, train: bool) -> Result<Tensor> {
    parts.model.forward(x, train).map_err(|source| Error::Component { kind: torchfit_sdk::ComponentKind::Model, name: "module".into(), source })
}

/// Forward, loss, backward, `on_grad_computed`, optimizer step. Returns the detached outputs.
fn train_step(parts: &mut Parts, history: &mut History, counts: (usize, usize), batch: &Batch<'_>) -> Result<(Tensor, Tensor, Flow)> {
    let y_pred = model_forward(parts, batch.x, true)?;
    let loss = criterion_loss(parts, &y_pred, batch.y)?;
    parts.optimizer.zero_grad();
    loss.f_backward()?;
    let flow = notify(parts, history, counts, &Event::GradComputed(batch))?;
    parts.optimizer.step()?;
    Ok((y_pred.f_detach()?, loss.f_detach()?, flow))
}

/// Forward and loss in evaluation mode without gradients.
fn validation_step(parts: &Parts, batch: &Batch<'_>) -> Result<(Tensor, Tensor)> {
    let _guard = tch::no_grad_guard();
    let y_pred = model_forward(parts, batch.x, false)?;
    let loss = criterion_loss(parts, &y_pred, batch.y)?;
    Ok((y_pred, loss))
}

/// Writes the epoch's batch losses into history with one device-to-host transfer.
fn record_losses(history: &mut History, pending: Vec<Pending>) -> Result<()> {
    for pass in pending {
        let values = Vec::<f64>::try_from(pass.values.f_narrow(0, 0, pass.records.len() as i64)?.f_to_device(Device::Cpu)?)?;
        for (record, v) in pass.records.iter().zip(values) {
            history.record_batch_at(-1, *record, pass.key, v)?;
        }
    }
    Ok(())
}
