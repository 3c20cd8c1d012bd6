//! The callback interface: one method per event of the training loop.

use crate::{Host, Result};
use tch::Tensor;

/// What a hook asks of the loop: the one way a callback stops training. Every hook that may
/// stop returns one; the loop takes the strongest any callback returned for the event
/// ([`Flow::and`]) and carries it out once the event reached every callback. (`Host::request_stop`
/// is the older form of [`Flow::Stop`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub enum Flow {
    /// Go on.
    #[default]
    Continue,
    /// Stop training after the current epoch: the epoch ends as usual (validation,
    /// `on_epoch_end`), then `on_train_end` runs.
    Stop,
    /// Stop training after the current batch (SDK 1.1): the rest of the epoch's training
    /// batches and its validation pass are skipped, `on_epoch_end` is not sent for the cut
    /// epoch (its history record keeps the batches that ran), then `on_train_end` runs. A 1.0
    /// host, which knows only [`Flow::Stop`], stops after the epoch instead.
    StopAfterBatch,
}

impl Flow {
    /// The stronger of the two requests: `StopAfterBatch` over `Stop` over `Continue`.
    pub fn and(self, other: Flow) -> Flow {
        self.max(other)
    }

    /// Whether training stops (after this batch or after this epoch).
    pub fn stops(self) -> bool {
        self != Flow::Continue
    }
}

/// A batch as the loop sees it, borrowed for the duration of one hook call.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// Inputs of the batch (on the run's device).
    pub x: &'a Tensor,
    /// Targets of the batch (on the run's device).
    pub y: &'a Tensor,
    /// `true` for a training batch, `false` for a validation batch.
    pub training: bool,
    /// Index of the batch within its epoch and phase, from 0.
    pub index: usize,
}

/// A batch after its forward pass: what `on_batch_end` receives.
#[derive(Debug, Clone, Copy)]
pub struct BatchOutput<'a> {
    /// The batch these outputs are for.
    pub batch: Batch<'a>,
    /// The model's output for the batch (detached).
    pub y_pred: &'a Tensor,
    /// The batch's mean loss, a detached scalar tensor on the run's device. Reading its value
    /// (`double_value`) synchronises with the device; the engine itself does so once per epoch.
    pub loss: &'a Tensor,
}

/// The hooks of [`Callback`], in the order a batch and an epoch meet them: the one table of
/// hook names the engine's dispatch, its error messages and the ABI layer share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// [`Callback::on_train_begin`].
    TrainBegin,
    /// [`Callback::on_epoch_begin`].
    EpochBegin,
    /// [`Callback::on_batch_begin`].
    BatchBegin,
    /// [`Callback::on_loss_computed`] (SDK 1.1).
    LossComputed,
    /// [`Callback::on_grad_computed`].
    GradComputed,
    /// [`Callback::on_batch_end`].
    BatchEnd,
    /// [`Callback::on_epoch_end`].
    EpochEnd,
    /// [`Callback::on_train_end`].
    TrainEnd,
}

impl Hook {
    /// Every hook, in order.
    pub const ALL: [Hook; 8] = [
        Hook::TrainBegin,
        Hook::EpochBegin,
        Hook::BatchBegin,
        Hook::LossComputed,
        Hook::GradComputed,
        Hook::BatchEnd,
        Hook::EpochEnd,
        Hook::TrainEnd,
    ];

    /// The method's name, as errors name the hook: `on_epoch_end`.
    pub fn name(self) -> &'static str {
        match self {
            Hook::TrainBegin => "on_train_begin",
            Hook::EpochBegin => "on_epoch_begin",
            Hook::BatchBegin => "on_batch_begin",
            Hook::LossComputed => "on_loss_computed",
            Hook::GradComputed => "on_grad_computed",
            Hook::BatchEnd => "on_batch_end",
            Hook::EpochEnd => "on_epoch_end",
            Hook::TrainEnd => "on_train_end",
        }
    }
}

/// A training-loop callback.
///
/// Every method has a default that does nothing and continues, so a callback implements only the
/// events it cares about. The engine runs its own bookkeeping first, then callbacks in config
/// order, the print-log callback last.
///
/// Returning `Ok(Flow::Stop)` from any hook stops training after the current epoch
/// (`Flow::StopAfterBatch` after the current batch);
/// returning `Err` aborts the run at once (after `on_train_end` has run on every callback) and
/// the error is reported with this callback's name.
pub trait Callback: Send {
    /// Called once when the net is initialized (and again on re-initialization, e.g. after
    /// `set_params`). Reset per-run state here.
    fn initialize(&mut self) -> Result<()> {
        Ok(())
    }
    /// Before the first epoch of `fit`/`partial_fit`.
    fn on_train_begin(&mut self, _host: &mut dyn Host) -> Result<Flow> {
        Ok(Flow::Continue)
    }
    /// At the start of each epoch, after the engine opened the epoch's history record.
    fn on_epoch_begin(&mut self, _host: &mut dyn Host) -> Result<Flow> {
        Ok(Flow::Continue)
    }
    /// Before each training or validation batch. [`Host::replace_batch`] (SDK 1.1) gives the
    /// step other inputs and targets (mixup, cutmix).
    fn on_batch_begin(&mut self, _host: &mut dyn Host, _batch: &Batch<'_>) -> Result<Flow> {
        Ok(Flow::Continue)
    }
    /// Between the loss and `backward()` (training batches only; SDK 1.1): `out.loss` and
    /// `out.y_pred` still carry their autograd graph. [`Host::add_to_loss`] adds a term to what
    /// is differentiated (a penalty, an auxiliary loss; skorch's `get_loss`, fastai's
    /// `after_loss`); [`Host::skip_step`] skips backward and the optimizer step for this batch.
    /// The batch's recorded `train_loss` is the loss with the terms added.
    ///
    /// It runs before the engine's `on_nan` check, so it sees every loss, finite or not; the
    /// check then applies to the loss with the terms added, and a batch it skips (`skip_batch`,
    /// `stop`) gets no backward, no `on_grad_computed` and no step, but still `on_batch_end`.
    fn on_loss_computed(&mut self, _host: &mut dyn Host, _out: &BatchOutput<'_>) -> Result<Flow> {
        Ok(Flow::Continue)
    }
    /// After `backward()` and before the optimizer step (training batches only): gradients are
    /// readable and may be modified (clipping) through [`Host::parameters`];
    /// [`Host::skip_step`] (SDK 1.1) skips the optimizer step for this batch. It runs once per
    /// optimizer step: with `accumulate_grad_batches = k`, after the last batch of each group
    /// of `k` (the gradients of the whole group); under `precision = "16-mixed"` the gradients
    /// are already unscaled (they may hold an inf or a NaN, and the scaler then skips the step).
    fn on_grad_computed(&mut self, _host: &mut dyn Host, _batch: &Batch<'_>) -> Result<Flow> {
        Ok(Flow::Continue)
    }
    /// After each training or validation batch (for a training batch, after the optimizer
    /// step), with the detached outputs and loss.
    fn on_batch_end(&mut self, _host: &mut dyn Host, _out: &BatchOutput<'_>) -> Result<Flow> {
        Ok(Flow::Continue)
    }
    /// After the validation batches of an epoch. The engine has already written the epoch's
    /// batch-level `train_loss`/`valid_loss` values into history.
    fn on_epoch_end(&mut self, _host: &mut dyn Host) -> Result<Flow> {
        Ok(Flow::Continue)
    }
    /// After the last epoch; always runs, also after a stop request or an error in a hook.
    fn on_train_end(&mut self, _host: &mut dyn Host) -> Result<()> {
        Ok(())
    }
    /// Run state to checkpoint (JSON); `Null` when there is none.
    fn state(&self) -> Result<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }
    /// Restores what [`Callback::state`] returned.
    fn load_state(&mut self, _state: serde_json::Value) -> Result<()> {
        Ok(())
    }
    /// Tensor run state to checkpoint beside [`Callback::state`] (SDK 1.1): saved in the
    /// checkpoint's `<prefix>callbacks.safetensors` under `<callback name>/<tensor name>`, in
    /// their dtype, so that averaged weights or moments resume exactly. Empty by default.
    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(Vec::new())
    }
    /// Restores what [`Callback::state_tensors`] returned (after [`Callback::load_state`]).
    fn load_state_tensors(&mut self, _tensors: Vec<(String, Tensor)>) -> Result<()> {
        Ok(())
    }
    /// The oldest host SDK this callback can run with. A host of an older SDK refuses to build
    /// it, in one line naming this version, instead of running it without the hooks and
    /// services it relies on. 1.0 by default: a callback that only adds to what 1.0 does (an
    /// optional hook, a service it can do without) runs on a 1.0 host without the addition.
    fn requires_sdk(&self) -> crate::SdkVersion {
        crate::SdkVersion::V1_0
    }
}

/// A boxed callback is a callback (the engine and the ABI adapters hold them boxed).
impl<C: Callback + ?Sized> Callback for Box<C> {
    fn initialize(&mut self) -> Result<()> {
        (**self).initialize()
    }
    fn on_train_begin(&mut self, host: &mut dyn Host) -> Result<Flow> {
        (**self).on_train_begin(host)
    }
    fn on_epoch_begin(&mut self, host: &mut dyn Host) -> Result<Flow> {
        (**self).on_epoch_begin(host)
    }
    fn on_batch_begin(&mut self, host: &mut dyn Host, batch: &Batch<'_>) -> Result<Flow> {
        (**self).on_batch_begin(host, batch)
    }
    fn on_loss_computed(&mut self, host: &mut dyn Host, out: &BatchOutput<'_>) -> Result<Flow> {
        (**self).on_loss_computed(host, out)
    }
    fn on_grad_computed(&mut self, host: &mut dyn Host, batch: &Batch<'_>) -> Result<Flow> {
        (**self).on_grad_computed(host, batch)
    }
    fn on_batch_end(&mut self, host: &mut dyn Host, out: &BatchOutput<'_>) -> Result<Flow> {
        (**self).on_batch_end(host, out)
    }
    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        (**self).on_epoch_end(host)
    }
    fn on_train_end(&mut self, host: &mut dyn Host) -> Result<()> {
        (**self).on_train_end(host)
    }
    fn state(&self) -> Result<serde_json::Value> {
        (**self).state()
    }
    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        (**self).load_state(state)
    }
    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        (**self).state_tensors()
    }
    fn load_state_tensors(&mut self, tensors: Vec<(String, Tensor)>) -> Result<()> {
        (**self).load_state_tensors(tensors)
    }
    fn requires_sdk(&self) -> crate::SdkVersion {
        (**self).requires_sdk()
    }
}
