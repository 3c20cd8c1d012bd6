//! [`Host::update_batch_norm`](torchfit_sdk::Host::update_batch_norm): the batch-norm statistics
//! of the model's current weights, recomputed over the training data as
//! `torch.optim.swa_utils.update_bn` does.

use crate::data::{batches, for_each_batch};
use std::ops::ControlFlow;
use tch::Device;
use torchfit_sdk::{BatchNormStats, DatasetReader, Model, Result, Stage};

/// The training data of the run, lent to the hooks that may pass over it (`on_epoch_end`,
/// `on_train_end`).
pub(super) struct TrainData<'a> {
    pub reader: &'a mut dyn DatasetReader,
    /// The training samples, in index order.
    pub indices: &'a [i64],
    /// `iterator_train`'s batch size and prefetch depth.
    pub batch_size: usize,
    pub prefetch: usize,
}

impl TrainData<'_> {
    /// The same data, lent for a shorter time.
    pub fn reborrow(&mut self) -> TrainData<'_> {
        TrainData { reader: &mut *self.reader, indices: self.indices, ..*self }
    }
}

/// Switches `model`'s batch-norm layers to a cumulative average (resetting their statistics),
/// runs every training batch through it in training mode without gradients, and switches them
/// back to their momentum, also when the pass fails. Returns whether the model has batch norm;
/// without, no pass runs.
pub(super) fn update_batch_norm(model: &mut dyn Model, device: Device, data: TrainData<'_>) -> Result<bool> {
    if !model.set_batch_norm_stats(BatchNormStats::Cumulative)? {
        return Ok(false);
    }
    let order = batches(data.indices, data.batch_size, false, 0, 0);
    let pass = for_each_batch(data.reader, &order, Stage::Train, data.prefetch, |_, _, x, _| {
        let x = x.f_to_device(device)?;
        drop(tch::no_grad(|| model.forward(&x, true))?);
        Ok(ControlFlow::Continue(()))
    });
    let restored = model.set_batch_norm_stats(BatchNormStats::Momentum);
    pass.and(restored).map(|_| true)
}
