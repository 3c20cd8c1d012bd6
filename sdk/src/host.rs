//! Services the engine lends to a callback during a hook call.

use crate::Result;
use serde_json::{Map, Value};
use tch::Tensor;

/// Where a callback runs: one process of a run ([`Host::process`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Process {
    /// This process's rank, from 0.
    pub rank: usize,
    /// How many processes train the model together.
    pub world_size: usize,
    /// This process's rank on its machine.
    pub local_rank: usize,
}

impl Process {
    /// A run of one process.
    pub const SINGLE: Process = Process { rank: 0, world_size: 1, local_rank: 0 };

    /// Whether this is the main process, rank 0: the one that writes files.
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }
}

/// The gradient scaler of a `precision = "16-mixed"` run ([`Host::grad_scaler`], SDK 1.4),
/// as `torch.amp.GradScaler` keeps it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScalerState {
    /// The factor the loss is multiplied by before backward.
    pub scale: f64,
    /// Optimizer steps in a row without an inf or a NaN since the scale last changed.
    pub growth_tracker: i64,
}

/// What a callback may read and change while one of its hooks runs.
///
/// Epoch indices follow Python: `0` is the first epoch, `-1` the last (current) one.
pub trait Host {
    /// Number of epochs in history, the current one included (1 during the first epoch).
    fn epochs(&self) -> usize;

    /// The value of `key` in epoch `epoch`, if recorded. `batches` gives the epoch's batch
    /// records as an array of objects (skorch's `history[-1, 'batches']`), each with the keys
    /// recorded in its batch (`train_batch_size` or `valid_batch_size`, the loss once written,
    /// the callbacks' `record_batch` keys).
    fn history_get(&self, epoch: isize, key: &str) -> Option<Value>;

    /// All keys of epoch `epoch` except its `batches`, in the order they were recorded.
    fn history_epoch(&self, epoch: isize) -> Option<Map<String, Value>>;

    /// The values of `key` in every batch of epoch `epoch` that recorded it, in batch order.
    ///
    /// The engine writes the batches' `train_loss` and `valid_loss` together before
    /// `on_epoch_end` (one device transfer per epoch), so during the epoch they are absent; a
    /// callback that needs a batch's loss at once reads `BatchOutput::loss`.
    fn history_batch_values(&self, epoch: isize, key: &str) -> Vec<Value>;

    /// Records `key = value` in the current epoch. Errors before the first epoch began.
    fn record(&mut self, key: &str, value: Value) -> Result<()>;

    /// Records `key = value` in the current batch of the current epoch.
    fn record_batch(&mut self, key: &str, value: Value) -> Result<()>;

    /// The model's trainable parameters by name (shallow handles: in-place changes, such as
    /// gradient clipping, act on the model), in a fixed order.
    fn parameters(&self) -> Vec<(String, Tensor)>;

    /// Sets `requires_grad` on every parameter whose name matches the glob `pattern` (Python's
    /// `fnmatch` syntax: `*` spans dots, `?` is one character, `[seq]` a class); returns
    /// how many matched. Parameters with `requires_grad = false` are skipped by the optimizer.
    fn set_requires_grad(&mut self, pattern: &str, requires_grad: bool) -> Result<usize>;

    /// Number of optimizer parameter groups.
    fn param_groups(&self) -> usize;

    /// Learning rate of parameter group `group`.
    fn lr(&self, group: usize) -> Result<f64>;

    /// Sets the learning rate of parameter group `group`.
    fn set_lr(&mut self, group: usize, lr: f64) -> Result<()>;

    /// `max_epochs` of the current `fit` call.
    fn max_epochs(&self) -> usize;

    /// Number of training and validation batches in the current epoch.
    fn batch_counts(&self) -> (usize, usize);

    /// Asks the engine to stop after the current epoch, as returning [`crate::Flow::Stop`] does.
    ///
    /// The older form of the one stop path: a hook says how the loop goes on by the [`crate::Flow`]
    /// it returns, which also says *where* to stop ([`crate::Flow::StopAfterBatch`]). Kept
    /// because SDK 1.0 plugins call it; new code returns a `Flow`.
    fn request_stop(&mut self);

    /// Asks the engine to save `parts` of the run as checkpoint `prefix` under `dir`
    /// ([`crate::checkpoint::Files`]) once the current event has reached every callback, so the
    /// checkpoint includes what later callbacks record in the same event. Each file is written
    /// atomically. A failure is reported then, naming this callback.
    fn save_checkpoint(&mut self, dir: &std::path::Path, prefix: &str, parts: crate::Parts) -> Result<()>;

    /// Asks the engine to restore `parts` of the run from checkpoint `prefix` under `dir` once
    /// the current event has reached every callback. Training goes on from the epoch after the
    /// restored history's last. A missing or unreadable file is reported then, naming this
    /// callback.
    fn load_checkpoint(&mut self, dir: &std::path::Path, prefix: &str, parts: crate::Parts) -> Result<()>;

    /// The run directory (`torchfit train --out DIR`), where callbacks write their files; `None`
    /// when the run has none (relative paths then resolve against the working directory).
    fn run_dir(&self) -> Option<std::path::PathBuf>;

    /// The score of `y_pred` against `y_true` by the scorer component `name` (from any plugin),
    /// built once per run with an empty config. An unknown name is an error listing the known
    /// scorers.
    fn score(&mut self, name: &str, y_true: &Tensor, y_pred: &Tensor) -> Result<f64>;

    /// Saves named tensors to `path` as safetensors, atomically (a crash leaves the previous
    /// file intact).
    fn save_tensors(&mut self, path: &std::path::Path, tensors: &[(String, Tensor)]) -> Result<()> {
        crate::io::save_tensors(path, tensors)
    }

    /// Loads named tensors saved by [`Host::save_tensors`].
    fn load_tensors(&self, path: &std::path::Path) -> Result<Vec<(String, Tensor)>> {
        crate::io::load_tensors(path)
    }

    /// Saves JSON state to `path`, atomically.
    fn save_json(&mut self, path: &std::path::Path, value: &Value) -> Result<()> {
        crate::io::save_json(path, value)
    }

    /// Loads JSON state saved by [`Host::save_json`].
    fn load_json(&self, path: &std::path::Path) -> Result<Value> {
        crate::io::load_json(path)
    }

    // SDK 1.1. Each has a default that reports it unsupported, which is what a callback sees
    // on a 1.0 host.

    /// The SDK version of the host: what it provides.
    fn sdk_version(&self) -> crate::SdkVersion {
        crate::SdkVersion::V1_0
    }

    /// Adds `term` to the loss that is differentiated for this batch (in
    /// [`crate::Callback::on_loss_computed`] only; the terms of every callback are summed).
    fn add_to_loss(&mut self, _term: &Tensor) -> Result<()> {
        Err(crate::Error::unsupported("add_to_loss", crate::SdkVersion::V1_1))
    }

    /// Skips the optimizer step for this batch (in `on_loss_computed`, also backward; in
    /// `on_grad_computed`, the step only). The batch still counts and is recorded.
    fn skip_step(&mut self) -> Result<()> {
        Err(crate::Error::unsupported("skip_step", crate::SdkVersion::V1_1))
    }

    /// Replaces the batch's inputs and targets for the step and the hooks after
    /// `on_batch_begin` (in `on_batch_begin` only). The targets may be class probabilities
    /// (`f32`, one row per sample), which `cross_entropy` accepts as `torch.nn.CrossEntropyLoss`
    /// does. Callbacks after this one in the same `on_batch_begin` still see the original batch.
    fn replace_batch(&mut self, _x: &Tensor, _y: &Tensor) -> Result<()> {
        Err(crate::Error::unsupported("replace_batch", crate::SdkVersion::V1_1))
    }

    /// The parameter names of optimizer group `group`, in the group's order. Groups are those of
    /// `[[optimizer.param_groups]]` in config order, then the default group of every other
    /// trainable parameter (as in skorch).
    fn group_parameters(&self, _group: usize) -> Result<Vec<String>> {
        Err(crate::Error::unsupported("group_parameters", crate::SdkVersion::V1_1))
    }

    /// Hyper-parameter `name` of optimizer group `group` by its `torch.optim` name (`lr`,
    /// `momentum`, `dampening`, `weight_decay`, `nesterov`, `betas`, `eps`, `alpha`, `centered`),
    /// as JSON (`betas` is a pair). A name the optimizer does not have is an error.
    fn hyper(&self, _group: usize, _name: &str) -> Result<Value> {
        Err(crate::Error::unsupported("hyper", crate::SdkVersion::V1_1))
    }

    /// Sets hyper-parameter `name` of optimizer group `group` (see [`Host::hyper`]); the next
    /// step uses it, and checkpoints keep it.
    fn set_hyper(&mut self, _group: usize, _name: &str, _value: Value) -> Result<()> {
        Err(crate::Error::unsupported("set_hyper", crate::SdkVersion::V1_1))
    }

    /// The optimizer's state tensors (step counts, moments) by name, as in its checkpoint file:
    /// shallow handles, to read. Names, with `torch.optim`'s buffer names:
    ///
    /// | name | what |
    /// |---|---|
    /// | `<param>.step` | steps taken for parameter `<param>` (an `i64` scalar; absent before the first) |
    /// | `<param>.momentum_buffer` | SGD with `momentum > 0` |
    /// | `<param>.exp_avg`, `<param>.exp_avg_sq` | Adam and AdamW's first and second moments |
    /// | `<param>.square_avg`, `<param>.grad_avg` | RMSprop's mean square (and mean, when `centered`) |
    /// | `group<i>.<hyper>` | group `i`'s hyper-parameters (`lr`, `momentum`, `weight_decay`, `betas`, ...; the [`Host::hyper`] names that apply to the optimizer), as `f64` scalars (`betas` a pair, a flag 0 or 1) |
    ///
    /// `<param>` is the parameter's name ([`Host::parameters`]); groups are numbered as in
    /// [`Host::group_parameters`]. A buffer appears once the optimizer created it (its first
    /// step for that parameter).
    fn optimizer_state(&self) -> Result<Vec<(String, Tensor)>> {
        Err(crate::Error::unsupported("optimizer_state", crate::SdkVersion::V1_1))
    }

    /// The model's buffers (batch-norm running statistics and counts): its state dict without
    /// its parameters, by name, as shallow handles.
    fn buffers(&self) -> Result<Vec<(String, Tensor)>> {
        Err(crate::Error::unsupported("buffers", crate::SdkVersion::V1_1))
    }

    /// The model's whole state dict (parameters and buffers, frozen parameters included) by
    /// name, as shallow handles.
    fn state_dict(&self) -> Result<Vec<(String, Tensor)>> {
        Err(crate::Error::unsupported("state_dict", crate::SdkVersion::V1_1))
    }

    /// Copies `state` into the model, as `Model::load_state_dict` does: every name of the
    /// state dict, with its shape.
    fn load_state_dict(&mut self, _state: &[(String, Tensor)]) -> Result<()> {
        Err(crate::Error::unsupported("load_state_dict", crate::SdkVersion::V1_1))
    }

    /// Runs the model on `x` (on the run's device) as `mode` says, and returns its output.
    fn forward(&mut self, _x: &Tensor, _mode: Forward) -> Result<Tensor> {
        Err(crate::Error::unsupported("forward", crate::SdkVersion::V1_1))
    }

    /// Recomputes the model's batch-norm running statistics for its weights as they are now, as
    /// `torch.optim.swa_utils.update_bn` does: statistics reset, then one pass over the training
    /// data in training mode (without gradients) in which each layer averages the batches
    /// cumulatively ([`crate::BatchNormStats::Cumulative`]); then the layers' momentum again.
    /// The batches are `iterator_train`'s, in index order. In `on_epoch_end` and `on_train_end`
    /// only. Returns whether the model has batch norm (without, no pass runs).
    fn update_batch_norm(&mut self) -> Result<bool> {
        Err(crate::Error::unsupported("update_batch_norm", crate::SdkVersion::V1_1))
    }

    /// The process this callback runs in (SDK 1.2): its rank among the processes of a
    /// data-parallel run, their number, and its rank on its machine. Every rank runs every
    /// callback; one that writes files should do so on the main process only
    /// ([`Host::is_main_process`]).
    fn process(&self) -> Result<Process> {
        Err(crate::Error::unsupported("process", crate::SdkVersion::V1_2))
    }

    /// The number `key` holds in the current epoch: what a callback that monitors a key reads.
    /// Absent (or not a number) it is [`crate::Error::MissingHistoryKey`], naming `writer`, the
    /// component expected to write it ("its scoring callback"). A provided method over
    /// [`Host::history_get`]: every host has it.
    fn history_number(&self, key: &str, writer: &str) -> Result<f64> {
        self.history_get(-1, key).and_then(|v| crate::values::as_number(&v)).ok_or_else(|| {
            crate::Error::MissingHistoryKey { key: key.into(), epoch: self.epochs(), writer: writer.into() }
        })
    }

    /// The value of `key` in batch `batch` of epoch `epoch` (both indexed as epochs are: `-1`
    /// is the last), if recorded (SDK 1.4). In `on_batch_end`, `history_batch_value(-1, -1,
    /// "stepped")` says whether the batch ended an optimizer step where the engine records it
    /// (gradient accumulation, `16-mixed`). The default reads the epoch's whole `batches` list
    /// through [`Host::history_get`]; the engine's host reads the one value.
    fn history_batch_value(&self, epoch: isize, batch: isize, key: &str) -> Option<Value> {
        batch_value_from_epoch(self.history_get(epoch, "batches")?, batch, key)
    }

    /// The gradient scaler of a `precision = "16-mixed"` run (SDK 1.4); `None` in any other
    /// precision. A host older than 1.4 has none to report.
    fn grad_scaler(&self) -> Result<Option<ScalerState>> {
        Err(crate::Error::unsupported("grad_scaler", crate::SdkVersion::V1_4))
    }

    /// Training batches per optimizer step (`accumulate_grad_batches`, SDK 1.4): an epoch of
    /// `n` training batches takes `n.div_ceil(k)` optimizer steps. A host older than 1.4 steps
    /// after every batch: 1.
    fn accumulate_grad_batches(&self) -> usize {
        1
    }

    /// Whether training batches record `stepped` (SDK 1.4): whether the optimizer stepped after
    /// each, written by the engine under gradient accumulation and `16-mixed` (whose scaler may
    /// skip a step). A callback that acts per optimizer step asks once, at `on_train_begin`,
    /// and reads `history_batch_value(-1, -1, "stepped")` per batch only when this is true. A
    /// provided method over [`Host::accumulate_grad_batches`] and [`Host::grad_scaler`]: false
    /// on an older host.
    fn records_stepped(&self) -> bool {
        self.accumulate_grad_batches() > 1 || matches!(self.grad_scaler(), Ok(Some(_)))
    }

    /// Whether this is the main process (rank 0) of the run; a host older than SDK 1.2 runs one
    /// process, which is.
    fn is_main_process(&self) -> bool {
        self.process().map_or(true, |p| p.is_main())
    }

    /// The device the run trains on.
    fn device(&self) -> Result<tch::Device> {
        Err(crate::Error::unsupported("device", crate::SdkVersion::V1_1))
    }

    /// The direction of scorer component `name`, if it declares one
    /// ([`crate::Scorer::lower_is_better`]).
    fn scorer_lower_is_better(&mut self, _name: &str) -> Result<Option<bool>> {
        Err(crate::Error::unsupported("scorer_lower_is_better", crate::SdkVersion::V1_1))
    }
}

/// Batch `batch` (Python's indexing) of an epoch's `batches` list, its value of `key`.
pub(crate) fn batch_value_from_epoch(batches: Value, batch: isize, key: &str) -> Option<Value> {
    let batches = batches.as_array()?;
    let index = if batch < 0 { batches.len().checked_sub(batch.unsigned_abs())? } else { batch as usize };
    batches.get(index)?.get(key).cloned()
}

/// How [`Host::forward`] runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Forward {
    /// Training behaviour (dropout on, batch-norm statistics updated) instead of evaluation
    /// behaviour.
    pub train: bool,
    /// Record the autograd graph (for gradients to the input: saliency, adversarial examples),
    /// also during validation, where the loop runs without it.
    pub grad: bool,
}

/// `path` inside the run directory when it is relative and the run has one (where callbacks keep
/// their files), else `path` as given.
pub fn in_run_dir(host: &dyn Host, path: impl AsRef<std::path::Path>) -> std::path::PathBuf {
    let path = path.as_ref();
    match host.run_dir() {
        Some(run) if path.is_relative() => run.join(path),
        _ => path.to_path_buf(),
    }
}
