//! The typed view of a config tree.

use crate::optim::OptimizerConfig;
use serde::Deserialize;
use toml::{Table, Value};
use torchfit_sdk::Task;

/// Everything the engine reads from a config, with skorch's defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Seed of every random choice (initialization, splits, shuffling, dropout).
    #[serde(default)]
    pub seed: u64,
    /// `cpu`, `cuda`, `cuda:N` or `auto`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Epochs per `fit` (and per `partial_fit` call).
    #[serde(default = "default_max_epochs")]
    pub max_epochs: usize,
    /// Classification or regression.
    #[serde(default)]
    pub task: Task,
    /// libtorch intra-op threads; unset keeps libtorch's default.
    #[serde(default)]
    pub threads: Option<i32>,
    /// glibc malloc thresholds: `"training"` fixes them for training loops, `"system"` keeps
    /// glibc's (see [`crate::malloc`]).
    #[serde(default)]
    pub malloc: crate::malloc::MallocPolicy,
    /// What a non-finite training loss does ([`OnNan`]); the default stops the run.
    #[serde(default)]
    pub on_nan: OnNan,
    /// How a training step's arithmetic runs (Lightning's names: `"32"`, `"bf16-mixed"`,
    /// `"16-mixed"`; see [`crate::amp`]).
    #[serde(default)]
    pub precision: crate::amp::Precision,
    /// Training batches per optimizer step (Lightning's `accumulate_grad_batches`, at least 1;
    /// see [`crate::net`]'s accumulation).
    #[serde(default = "default_accumulate_grad_batches")]
    pub accumulate_grad_batches: usize,
    /// Per-feature scaling of the inputs, fitted on the training samples ([`crate::data::scaling`]).
    #[serde(default)]
    pub scaler: crate::data::Scaling,
    /// Keep the trained model when `fit` is called again (skorch's `warm_start`).
    #[serde(default)]
    pub warm_start: bool,
    /// Folders searched for plugin libraries before `TORCHFIT_PLUGIN_PATH` (relative to the
    /// config file).
    #[serde(default)]
    pub plugin_dirs: Vec<String>,
    /// Plugin library files to load (relative to the config file).
    #[serde(default)]
    pub plugins: Vec<String>,
    /// The data set of `torchfit train` (a reader component).
    #[serde(default)]
    pub dataset: Option<ComponentSpec>,
    /// A held-out test split of `dataset`, evaluated after training.
    #[serde(default)]
    pub test_split: Option<SplitConfig>,
    /// A test set of its own (a reader component), evaluated after training; excludes
    /// `test_split`.
    #[serde(default)]
    pub test_dataset: Option<ComponentSpec>,
    /// How the training data is split into training and validation.
    #[serde(default)]
    pub train_split: SplitConfig,
    /// The validation set when `train_split.kind = "predefined"` (a reader component).
    #[serde(default)]
    pub valid_dataset: Option<ComponentSpec>,
    /// The model: the `name` of a model component and its keys.
    pub module: ComponentSpec,
    /// The loss; without it the net's [`crate::Defaults`] choose by task (the `torchfit`
    /// presets: `cross_entropy` or `mse`).
    #[serde(default)]
    pub criterion: Option<ComponentSpec>,
    /// The optimizer and its hyper-parameters ([`crate::optim`]).
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// Training batches.
    #[serde(default)]
    pub iterator_train: IteratorConfig,
    /// Validation and prediction batches.
    #[serde(default)]
    pub iterator_valid: IteratorConfig,
    /// How a process of a distributed job trains ([`crate::distributed`]).
    #[serde(default)]
    pub distributed: crate::distributed::DistributedConfig,
    /// Callbacks by name: a table configures one (`type` defaults to the name), `false`
    /// disables a default one.
    #[serde(default)]
    pub callbacks: Table,
}

fn default_device() -> String {
    "cpu".into()
}
fn default_max_epochs() -> usize {
    10
}
fn default_accumulate_grad_batches() -> usize {
    1
}

/// What a training batch whose loss is NaN or infinite does (Keras' `TerminateOnNaN`,
/// Lightning's anomaly detection). Checked after `on_loss_computed`, before backward; every
/// policy but `continue` reads the loss back from the device once per batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnNan {
    /// The run ends at once with an error naming the epoch and the batch; the step is not taken,
    /// so the weights stay those of the last finite batch.
    #[default]
    Stop,
    /// The batch is skipped (no backward, no step; its record gets `skipped = true` and no
    /// loss) and training goes on; the epoch records `skipped_batches`.
    SkipBatch,
    /// Train on: the loss goes into the history as it is (`NaN`), as skorch does.
    Continue,
}

/// A component section: `name` plus the component's own keys.
#[derive(Debug, Clone, Deserialize)]
pub struct ComponentSpec {
    /// Registered name of the component.
    pub name: String,
    /// The component's keys, handed to its constructor as JSON.
    #[serde(flatten)]
    pub params: Table,
}

impl ComponentSpec {
    /// The component's keys as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::to_value(&self.params).unwrap_or(serde_json::Value::Null)
    }
}

/// How a split is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SplitKind {
    /// A seeded fraction of the data (stratified for classification by default).
    #[default]
    Fraction,
    /// No split: no validation (or no test) data.
    None,
    /// Validation data comes from elsewhere (`[valid_dataset]` or `fit_with_valid`).
    Predefined,
}

/// `[train_split]` / `[test_split]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitConfig {
    /// How to split.
    pub kind: SplitKind,
    /// Fraction held out (skorch's `ValidSplit(5)` = 0.2).
    pub fraction: f64,
    /// Stratify by class; defaults to true for classification.
    pub stratified: Option<bool>,
}

impl Default for SplitConfig {
    fn default() -> Self {
        Self { kind: SplitKind::Fraction, fraction: 0.2, stratified: None }
    }
}

/// `[iterator_train]` / `[iterator_valid]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IteratorConfig {
    /// Samples per batch (skorch's default 128).
    pub batch_size: usize,
    /// Shuffle every epoch; defaults to true for training, false for validation.
    pub shuffle: Option<bool>,
    /// Batches a loader thread reads ahead of the loop (0: read in line, the default). Helps when
    /// reading costs time of its own: decoding images, a streamed file.
    pub prefetch: usize,
    /// Which training samples an epoch draws ([`crate::data::sampler`]; `iterator_train` only).
    pub sampler: crate::data::SamplerConfig,
}

impl Default for IteratorConfig {
    fn default() -> Self {
        Self { batch_size: 128, shuffle: None, prefetch: 0, sampler: Default::default() }
    }
}

/// A callback's name and its configuration, or `None` to disable a default callback of that name.
pub type CallbackOverride = (String, Option<CallbackSpec>);

/// One configured callback.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackSpec {
    /// Its name (history keys and errors use it).
    pub name: String,
    /// The registered callback type.
    pub kind: String,
    /// Its keys as JSON.
    pub params: serde_json::Value,
}

/// The fewest intra-op threads [`max_threads`] allows, whatever the machine: more than the cores
/// of the largest common machines, so a config written for one still runs on a small machine (its
/// thread count decides a CPU result's bits), only slower.
pub const THREADS_FLOOR: usize = 1024;

/// The most intra-op threads a config may ask for on a machine with `cores` cores: its cores, or
/// [`THREADS_FLOOR`] when that is more. libtorch starts that many OpenMP threads, and every
/// operation waits on all of them: far beyond the cores a run slows without end and can use up
/// the processes the system allows, so a larger count is refused as a mistake.
pub fn max_threads(cores: usize) -> usize {
    cores.max(THREADS_FLOOR)
}

/// `threads` is at least 1 and at most [`max_threads`] on a machine with `cores` cores.
fn check_threads(threads: i32, cores: usize) -> Result<(), (String, String)> {
    let max = max_threads(cores);
    match usize::try_from(threads) {
        Ok(t) if t >= 1 && t <= max => Ok(()),
        Ok(t) if t > max => Err((
            "threads".into(),
            format!(
                "{t} is more than this machine can run: at most {max} (the larger of its {cores} cores and {THREADS_FLOOR}), \
                 since every operation would wait on all {t} OpenMP threads"
            ),
        )),
        _ => Err(("threads".into(), "must be at least 1".into())),
    }
}

impl Settings {
    pub(crate) fn validated(self) -> Result<Self, (String, String)> {
        for (key, split) in [("train_split", Some(&self.train_split)), ("test_split", self.test_split.as_ref())] {
            if let Some(s) = split {
                if s.kind == SplitKind::Fraction && !(s.fraction > 0.0 && s.fraction < 1.0) {
                    return Err((format!("{key}.fraction"), format!("must be in (0, 1), got {}", s.fraction)));
                }
            }
        }
        if self.test_split.as_ref().is_some_and(|s| s.kind == SplitKind::Predefined) {
            return Err(("test_split.kind".into(), "must be `fraction` or `none`".into()));
        }
        for (key, it) in [("iterator_train", &self.iterator_train), ("iterator_valid", &self.iterator_valid)] {
            if it.batch_size == 0 {
                return Err((format!("{key}.batch_size"), "must be at least 1".into()));
            }
        }
        if self.iterator_valid.sampler != crate::data::SamplerConfig::Unset {
            return Err((
                "iterator_valid.sampler".into(),
                "validation takes every sample once: a sampler is for iterator_train".into(),
            ));
        }
        if self.accumulate_grad_batches == 0 {
            return Err(("accumulate_grad_batches".into(), "must be at least 1".into()));
        }
        if let Some(threads) = self.threads {
            check_threads(threads, crate::distributed::cores())?;
        }
        crate::device::parse(&self.device).map_err(|m| ("device".to_owned(), m))?;
        self.distributed.validated()?;
        self.callback_overrides()?;
        Ok(self)
    }

    /// The `[callbacks]` table as `(name, Some(spec))` to configure or add, `(name, None)` to
    /// disable, in config order.
    pub fn callback_overrides(&self) -> Result<Vec<CallbackOverride>, (String, String)> {
        self.callbacks
            .iter()
            .map(|(name, v)| match v {
                Value::Boolean(false) => Ok((name.clone(), None)),
                Value::Boolean(true) => Ok((
                    name.clone(),
                    Some(CallbackSpec { name: name.clone(), kind: name.clone(), params: serde_json::json!({}) }),
                )),
                Value::Table(t) => {
                    let mut params = t.clone();
                    let kind = match params.remove("type") {
                        None => name.clone(),
                        Some(Value::String(s)) => s,
                        Some(_) => return Err((format!("callbacks.{name}.type"), "must be a string".into())),
                    };
                    let params =
                        serde_json::to_value(&params).map_err(|e| (format!("callbacks.{name}"), e.to_string()))?;
                    Ok((name.clone(), Some(CallbackSpec { name: name.clone(), kind, params })))
                }
                _ => {
                    Err((format!("callbacks.{name}"), "must be a table, or false to disable a default callback".into()))
                }
            })
            .collect()
    }

    /// Whether the split should be stratified.
    pub fn stratify(&self, split: &SplitConfig) -> bool {
        split.stratified.unwrap_or(self.task == Task::Classification)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_up_to_the_cores_or_the_floor_are_accepted() {
        assert!(check_threads(1, 2).is_ok());
        assert!(check_threads(THREADS_FLOOR as i32, 2).is_ok());
        assert!(check_threads(4096, 4096).is_ok());
    }

    #[test]
    fn threads_beyond_what_the_machine_can_run_are_refused_with_the_bound() {
        let (key, message) = check_threads(THREADS_FLOOR as i32 + 1, 2).unwrap_err();
        assert_eq!(key, "threads");
        assert!(message.contains("at most 1024 (the larger of its 2 cores and 1024)"), "{message}");
        assert!(check_threads(4097, 4096).is_err());
        assert!(check_threads(i32::MAX, 2).is_err());
    }

    #[test]
    fn threads_below_one_are_refused() {
        for t in [0, -3, i32::MIN] {
            assert_eq!(check_threads(t, 2).unwrap_err().1, "must be at least 1");
        }
    }
}
