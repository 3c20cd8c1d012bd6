//! [`NeuralNet`]: skorch's net in Rust, one concept per file.
//!
//! | file | concept |
//! |---|---|
//! | `mod.rs` | the public API: configuration, `fit`, `partial_fit`, checkpoints, parameters |
//! | `build.rs` | building the components of a run (`initialize`), [`Defaults`] |
//! | `fit_loop.rs` | the loop: `partial_fit` → `fit_loop` (epochs) |
//! | `pass.rs` | one pass: `run_single_epoch` → `train_step` or a validation step, batch losses to history |
//! | `events.rs` | the event bus: each event sent to every callback, requests collected |
//! | `actions.rs` | the checkpoint requests callbacks make, carried out |
//! | `inference.rs` | outputs, `predict_proba`, `predict`, `score`, `evaluate` |
//! | `host.rs` | the services lent to a callback during a hook |
//! | `update_bn.rs` | the pass over the training data that recomputes batch-norm statistics |
//! | `lr_find.rs` | the learning-rate finder: a sweep on the real loop, then everything put back |
//! | `interrupt.rs` | stopping a fit from outside (signals), the copy kept at epoch boundaries |
//! | `replicas.rs` | the step's seam: how a step runs alone or as a rank of a data-parallel job |
//! | `accumulation.rs` | which training batches step the optimizer (`accumulate_grad_batches`) |
//! | `ddp.rs` | data-parallel mechanics: same start, gradient reduction, agreed decisions |
//!
//! Cross-validation and the search are [`crate::model_selection`]'s; mixed precision (autocast,
//! the gradient scaler) is [`crate::amp`]'s.
//!
//! **Gradient accumulation** (`accumulate_grad_batches = k`, Lightning's rule): the training
//! batches of an epoch form groups of `k`; each batch's backward adds its gradients with its
//! loss scaled by `1 / k`, and the optimizer steps after a group's last batch. The last group
//! of an epoch may be shorter: it is stepped at the epoch's end, its loss still scaled by
//! `1 / k`. `on_grad_computed`, the optimizer step and the gradient scaler run once per group,
//! so do LR schedulers stepped per batch (they read the batch record's `stepped`, which every
//! training batch gets when `k > 1` or under `16-mixed`). A non-finite loss in a group skips
//! that group's step. In a data-parallel job only a group's last batch all-reduces gradients
//! (DDP's `no_sync` for the others), and the ranks' decisions of a group (a non-finite loss, a
//! skipped step) are agreed at its last batch.
//!
//! The chain of steps is skorch's: [`NeuralNet::initialize`] builds the model, criterion,
//! optimizer and callbacks; `fit` initializes (unless `warm_start`) and runs the loop;
//! `partial_fit` runs it on the components as they are.

mod accumulation;
mod actions;
mod build;
mod ddp;
mod events;
mod fit_loop;
mod host;
mod inference;
mod interrupt;
mod lr_find;
mod pass;
mod replicas;
mod update_bn;

pub use build::{check_held_out, check_model_shape, Defaults};
pub use inference::Evaluation;
pub use interrupt::{Interruption, Keep, StopFlag};
pub use lr_find::{suggest, LrFind, LrFindConfig, Suggestion};

use crate::config::{Params, SplitKind};
use crate::data::{select, split_indices, FeatureScaler, Stream, TensorDataset};
use crate::{Error, History, Optimizer, Registry, Result};
use build::{class_labels, output_count, Components, Recipe};
use std::path::{Path, PathBuf};
use tch::Tensor;
use torchfit_sdk::checkpoint::Action;
use torchfit_sdk::{DatasetReader, Model, Task};

/// Prefix of the checkpoint a run directory ends with.
pub const RESUME_PREFIX: &str = "train_end_";

/// Where validation batches come from.
pub enum Valid<'a> {
    /// No validation.
    None,
    /// These indices of the training reader.
    Same(Vec<i64>),
    /// These indices of another reader.
    Other(&'a mut dyn DatasetReader, Vec<i64>),
}

/// Whether a fit starts from freshly built components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// `fit`: build the components again (unless `warm_start`) and clear the history.
    Fresh,
    /// `partial_fit`: go on with the components as they are (building them if there are none).
    Continue,
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

impl EpochCount {
    /// How many epochs a fit runs, given `max_epochs` and the epochs already in the history.
    pub fn epochs_to_run(self, max_epochs: usize, done: usize) -> usize {
        match self {
            EpochCount::PerCall => max_epochs,
            EpochCount::Total => max_epochs.saturating_sub(done),
        }
    }
}

/// A neural net with skorch's `fit`/`predict` shape.
pub struct NeuralNet {
    params: Params,
    registry: Registry,
    defaults: Defaults,
    history: History,
    components: Option<Components>,
    run_dir: Option<PathBuf>,
    resume_from: Option<(PathBuf, String)>,
    /// Optimizer hyper-parameters set on every group after a resume restored the optimizer.
    resume_hypers: Vec<(String, serde_json::Value)>,
    epochs: EpochCount,
    stop: Option<(StopFlag, Keep)>,
    interrupted: Option<Interruption>,
    /// Whether the last fit ended by itself (not interrupted, no error).
    completed: bool,
    /// The distributed job this process trains in.
    dist: Option<std::sync::Arc<crate::distributed::Distributed>>,
}

impl std::fmt::Debug for NeuralNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NeuralNet")
            .field("params", &self.params.to_toml())
            .field("epochs", &self.history.len())
            .field("initialized", &self.is_initialized())
            .finish()
    }
}

/// Config keys whose change needs the components rebuilt (the next `fit` re-initializes).
const REBUILD: &[&str] = &["module", "criterion", "optimizer", "callbacks", "device", "task", "seed", "threads"];

impl NeuralNet {
    /// A net over a config tree, with the builtin components and no [`Defaults`].
    pub fn new(params: Params) -> Self {
        Self::with_registry(params, Registry::builtin())
    }

    /// A net over a config tree, with the components of `registry` and no [`Defaults`].
    pub fn with_registry(params: Params, registry: Registry) -> Self {
        let defaults = Defaults::default();
        Self {
            params,
            registry,
            defaults,
            history: History::new(),
            components: None,
            run_dir: None,
            resume_from: None,
            resume_hypers: Vec::new(),
            epochs: EpochCount::PerCall,
            stop: None,
            interrupted: None,
            completed: false,
            dist: None,
        }
    }

    /// The same net, falling back on `defaults` where its config is silent.
    pub fn with_defaults(mut self, defaults: Defaults) -> Self {
        self.defaults = defaults;
        self.components = None;
        self
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
            self.components = None;
        } else if let Some(c) = &mut self.components {
            c.settings = self.params.settings().clone();
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
    pub fn set_run_dir(&mut self, dir: Option<PathBuf>) {
        if let Some(c) = &mut self.components {
            c.run_dir = dir.clone();
        }
        self.run_dir = dir;
    }

    /// Makes the next `fit` restore everything from checkpoint `prefix` in `dir` before
    /// `on_train_begin`, as `torchfit train --resume` does (with the checkpoint
    /// [`crate::checkpoint::newest`] finds).
    pub fn resume_from(&mut self, dir: impl Into<PathBuf>, prefix: impl Into<String>) {
        self.resume_from = Some((dir.into(), prefix.into()));
    }

    /// Sets these optimizer hyper-parameters (`lr`, `momentum`, ...) on every parameter group
    /// once the resume of the next `fit` restored the optimizer, whose checkpoint would
    /// otherwise bring back its own values: the user's change on resume wins.
    pub fn override_on_resume(&mut self, hypers: Vec<(String, serde_json::Value)>) {
        self.resume_hypers = hypers;
    }

    /// Makes every fit stop after the current batch once `flag` is raised (see
    /// [`interrupt`](StopFlag)); with [`Keep::Boundary`] the run at the last epoch boundary is
    /// kept for [`NeuralNet::save_resume_checkpoint`].
    pub fn set_stop_flag(&mut self, flag: StopFlag, keep: Keep) {
        self.stop = Some((flag, keep));
    }

    /// Where the last fit stopped, when its stop flag ended it.
    pub fn interruption(&self) -> Option<Interruption> {
        self.interrupted
    }

    /// Saves, as checkpoint `prefix` under `dir`, what resumes the run exactly: the whole run as
    /// it is after a fit that ended by itself at an epoch boundary; after an interruption, an
    /// error or a callback's stop after a batch, the run at the last epoch boundary (an error
    /// when none was kept: see [`NeuralNet::set_stop_flag`]).
    pub fn save_resume_checkpoint(&mut self, dir: &Path, prefix: &str) -> Result<()> {
        let c = self.components.as_mut().ok_or(Error::NotInitialized)?;
        match (self.completed && !c.mid_epoch, c.watch.as_ref().and_then(|w| w.boundary.as_ref())) {
            (true, _) => self.save_checkpoint(dir, prefix, torchfit_sdk::Parts::ALL),
            (false, Some(boundary)) => boundary.write(dir, prefix, true),
            (false, None) => Err(Error::Data("the last fit did not end by itself and kept no epoch boundary".into())),
        }
    }

    /// Makes this net train data-parallel as one process of the job `dist` (see
    /// [`crate::distributed`]); the next `fit` rebuilds the components. Every rank runs the same
    /// code with the same config; only rank 0 writes checkpoints.
    pub fn set_distributed(&mut self, dist: Option<std::sync::Arc<crate::distributed::Distributed>>) {
        self.dist = dist;
        self.components = None;
    }

    /// The distributed job this net trains in, if any.
    pub fn distributed(&self) -> Option<&crate::distributed::Distributed> {
        self.dist.as_deref()
    }

    /// Sets what `max_epochs` counts.
    pub fn set_epoch_count(&mut self, count: EpochCount) {
        self.epochs = count;
    }

    /// Saves `parts` of the run as checkpoint `prefix` under `dir` now (what a callback's
    /// `save_checkpoint` request does at the end of an event).
    pub fn save_checkpoint(&mut self, dir: &Path, prefix: &str, parts: torchfit_sdk::Parts) -> Result<()> {
        let c = self.components.as_mut().ok_or(Error::NotInitialized)?;
        actions::perform(c, &mut self.history, &Action::Save { dir: dir.to_path_buf(), prefix: prefix.into(), parts })
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
        self.components.is_some()
    }

    /// The model, once initialized.
    pub fn model(&self) -> Option<&dyn Model> {
        self.components.as_ref().map(|c| c.model.as_ref())
    }

    /// The optimizer, once initialized.
    pub fn optimizer(&self) -> Option<&Optimizer> {
        self.components.as_ref().map(|c| &c.optimizer)
    }

    /// The device the net runs on, once initialized.
    pub fn device(&self) -> Option<tch::Device> {
        self.components.as_ref().map(|c| c.device)
    }

    /// Input shape and output count the net was initialized for.
    pub fn shape(&self) -> Option<(Vec<i64>, i64)> {
        self.components.as_ref().map(|c| (c.input_shape.clone(), c.n_outputs))
    }

    /// Builds model, criterion, optimizer and callbacks for samples of `input_shape` and
    /// `n_outputs` outputs, and clears the history. Seeds libtorch first, so the same seed gives
    /// the same initial weights. A sample dimension or an output count below 1 is an
    /// [`Error::Data`] ([`check_model_shape`]), before any component is built.
    pub fn initialize(&mut self, input_shape: &[i64], n_outputs: i64) -> Result<&mut Self> {
        let recipe = Recipe {
            params: &self.params,
            registry: &self.registry,
            defaults: &self.defaults,
            run_dir: self.run_dir.clone(),
            dist: self.dist.clone(),
        };
        let components = Components::build(recipe, input_shape, n_outputs)?;
        self.history = History::new();
        self.components = Some(components);
        Ok(self)
    }

    /// [`NeuralNet::initialize`] for the samples `indices` of `reader`: their shape, and the
    /// outputs `fit` would give the model (the classes of their labels, or the targets' width).
    pub fn initialize_for(&mut self, reader: &mut dyn DatasetReader, indices: &[i64]) -> Result<&mut Self> {
        let n_outputs = output_count(self.params.settings().task, reader, indices, &mut Valid::None)?;
        self.initialize(&reader.sample_shape(), n_outputs)
    }

    /// Trains from scratch (unless `warm_start`) on `x`, `y`, splitting off validation data as
    /// `train_split` says.
    pub fn fit(&mut self, x: &Tensor, y: &Tensor) -> Result<&mut Self> {
        let mut data = TensorDataset::new(x, y)?;
        self.fit_dataset(&mut data, None, Start::Fresh)?;
        Ok(self)
    }

    /// Like [`NeuralNet::fit`], validating on `x_valid`, `y_valid` (skorch's `predefined_split`).
    pub fn fit_with_valid(&mut self, x: &Tensor, y: &Tensor, x_valid: &Tensor, y_valid: &Tensor) -> Result<&mut Self> {
        let mut data = TensorDataset::new(x, y)?;
        let mut valid = TensorDataset::new(x_valid, y_valid)?;
        let all = (0..valid.len() as i64).collect();
        let train = (0..data.len() as i64).collect();
        self.fit_train_valid(&mut data, train, Valid::Other(&mut valid, all), Start::Fresh)?;
        Ok(self)
    }

    /// Trains `max_epochs` more epochs without re-initializing (initializing first if needed).
    pub fn partial_fit(&mut self, x: &Tensor, y: &Tensor) -> Result<&mut Self> {
        let mut data = TensorDataset::new(x, y)?;
        self.fit_dataset(&mut data, None, Start::Continue)?;
        Ok(self)
    }

    /// Fits on the samples `indices` of `reader` (all when `None`), holding validation data out
    /// as `train_split` says.
    pub fn fit_dataset(&mut self, reader: &mut dyn DatasetReader, indices: Option<&[i64]>, start: Start) -> Result<()> {
        let settings = self.params.settings();
        let pool: Vec<i64> = indices.map(<[i64]>::to_vec).unwrap_or_else(|| (0..reader.len() as i64).collect());
        let (train, valid) = match settings.train_split.kind {
            SplitKind::None => (pool, Valid::None),
            SplitKind::Predefined => {
                let message = "`predefined` needs validation data: use fit_with_valid or [valid_dataset]";
                return Err(self.params.config_error("train_split.kind", message.into()));
            }
            SplitKind::Fraction => {
                let labels = if settings.stratify(&settings.train_split) {
                    Some(select(&class_labels(reader)?, &pool))
                } else {
                    None
                };
                let (kept, held) = split_indices(
                    pool.len(),
                    labels.as_deref(),
                    settings.train_split.fraction,
                    settings.seed,
                    Stream::ValidSplit,
                );
                if held.is_empty() {
                    log::warn!(
                        "train_split.fraction = {} of {} samples holds none out: the run trains without validation",
                        settings.train_split.fraction,
                        pool.len()
                    );
                }
                (select(&pool, &kept), Valid::Same(select(&pool, &held)))
            }
        };
        self.fit_train_valid(reader, train, valid, start)
    }

    /// Fits on the training samples `train` of `reader`, validating as `valid` says (no split).
    pub fn fit_train_valid(
        &mut self,
        reader: &mut dyn DatasetReader,
        train: Vec<i64>,
        mut valid: Valid<'_>,
        start: Start,
    ) -> Result<()> {
        if train.is_empty() {
            return Err(Error::Data("no training samples".into()));
        }
        if let Valid::Other(r, _) = &valid {
            build::check_shape("the validation", &**r, reader)?;
        }
        let keep = self.components.is_some() && (start == Start::Continue || self.params.settings().warm_start);
        if !keep {
            let n_outputs = output_count(self.params.settings().task, reader, &train, &mut valid)?;
            self.initialize(&reader.sample_shape(), n_outputs)?;
            let settings = self.params.settings();
            let fitted = FeatureScaler::fit(settings.scaler, reader, &train, settings.iterator_valid.batch_size)?;
            self.set_feature_scaler(fitted)?;
        } else if let Some(c) = self.components.as_ref().filter(|c| c.settings.task == Task::Classification) {
            // The model keeps its outputs: every class must be one of them.
            build::check_labels("the training data", &select(&class_labels(reader)?, &train), c.n_outputs)?;
        }
        let c = self.components.as_mut().ok_or(Error::NotInitialized)?;
        c.watch = self.stop.clone().map(|(flag, keep)| interrupt::Watch::new(flag, keep));
        let hypers = std::mem::take(&mut self.resume_hypers);
        let resume = self.resume_from.take().map(|(dir, prefix)| fit_loop::Resume { dir, prefix, hypers });
        let fitted = fit_loop::partial_fit(c, &mut self.history, resume, self.epochs, reader, &train, valid);
        self.interrupted = c.watch.as_ref().and_then(|w| w.interrupted);
        self.completed = fitted.is_ok() && self.interrupted.is_none();
        fitted.map_err(|e| self.config_error_of(e))
    }

    /// The `scaler` fitted on the last fit's training samples, which every input passes
    /// through before the model ([`crate::data::scaling`]); `None` without one.
    pub fn feature_scaler(&self) -> Option<&FeatureScaler> {
        self.components.as_ref().and_then(|c| c.features.as_ref())
    }

    /// Sets the scaler inputs pass through (one saved with a model, for prediction); the net
    /// must be initialized.
    pub fn set_feature_scaler(&mut self, scaler: Option<FeatureScaler>) -> Result<()> {
        let c = self.components.as_mut().ok_or(Error::NotInitialized)?;
        c.features = scaler.map(|s| s.to_device(c.device)).transpose()?;
        Ok(())
    }

    /// A config error a callback found while running (a key it could check only with the host)
    /// is reported as the config's: the file or `--set`, and the callback's dotted key; so is a
    /// config error the loop found (`iterator_train.sampler` against the data).
    fn config_error_of(&self, e: Error) -> Error {
        match e {
            Error::Callback { name, source: torchfit_sdk::Error::Config { key, message }, .. } => {
                self.params.config_error(&format!("callbacks.{name}.{key}"), message)
            }
            Error::Config { origin, key, message } if origin.is_empty() => self.params.config_error(&key, message),
            other => other,
        }
    }

    /// Saves the model's state dict as safetensors (readable by `safetensors.torch.load_file`),
    /// atomically.
    pub fn save_params(&self, path: &Path) -> Result<()> {
        let model = self.model().ok_or(Error::NotInitialized)?;
        torchfit_sdk::io::save_tensors(path, &model.state_dict()).map_err(Error::from)
    }

    /// Loads from a state dict saved by [`NeuralNet::save_params`] what fits the initialized
    /// model, leaving as initialized the tensors `exclude` patterns match (a new head: `fc.*`)
    /// and, without `strict`, those the file lacks or has in another shape; says what it loaded
    /// and left ([`torchfit_sdk::checkpoint::partial_state`]).
    pub fn load_params_partially(
        &mut self,
        path: &Path,
        strict: bool,
        exclude: &[&str],
    ) -> Result<torchfit_sdk::checkpoint::PartialLoad> {
        let exclude: Vec<torchfit_sdk::glob::Glob> =
            exclude.iter().map(|p| torchfit_sdk::glob::Glob::new(p).map_err(Error::Data)).collect::<Result<_>>()?;
        let c = self.components.as_mut().ok_or(Error::NotInitialized)?;
        let saved = Tensor::read_safetensors(path).map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
        let (state, report) = torchfit_sdk::checkpoint::partial_state(&c.model.state_dict(), &saved, &exclude, strict)
            .map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
        c.model.load_state_dict(&state).map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
        Ok(report)
    }

    /// Loads a state dict saved by [`NeuralNet::save_params`] into the initialized model.
    pub fn load_params(&mut self, path: &Path) -> Result<()> {
        let c = self.components.as_mut().ok_or(Error::NotInitialized)?;
        let state = Tensor::read_safetensors(path).map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
        c.model.load_state_dict(&state).map_err(|e| Error::Data(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::EpochCount;

    #[test]
    fn max_epochs_counts_per_call_or_in_all() {
        assert_eq!(EpochCount::PerCall.epochs_to_run(5, 3), 5);
        assert_eq!(EpochCount::Total.epochs_to_run(5, 3), 2);
        assert_eq!(EpochCount::Total.epochs_to_run(5, 7), 0, "a finished run trains nothing more");
    }
}
