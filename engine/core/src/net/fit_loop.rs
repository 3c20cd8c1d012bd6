//! The training loop, as skorch chains it: [`partial_fit`] runs `on_train_begin`, [`fit_loop`]
//! and, always, `on_train_end`; [`fit_loop`] runs epochs; [`run_single_epoch`] runs the batches
//! of one pass, each through [`train_step`] or [`validation_step`].
//!
//! A stop asked during an epoch ([`Flow::Stop`]) ends the run after the epoch; a stop after the
//! batch ([`Flow::StopAfterBatch`]) ends the pass after the batch, skips the epoch's validation
//! and `on_epoch_end` (the epoch's record keeps the batches that ran), and ends the run. A raised
//! stop flag ([`super::interrupt`]) does the same, seen after every batch and between epochs.
//!
//! Each epoch the loop first opens the history record (`epoch`), reseeds libtorch's generator
//! from `(seed, epoch)` and draws the batch order from `(seed, epoch)`, so any epoch can be
//! replayed exactly; then callbacks run in order. Batch losses stay on the device during the
//! epoch and are written to history (`train_loss`, `valid_loss` per batch) in one transfer
//! before `on_epoch_end`.

use super::actions::perform;
use super::build::Components;
use super::events::{ask, notify, notify_epoch_end, notify_train_end, Event};
use super::interrupt::{interrupted, keep_boundary};
use super::update_bn::TrainData;
use super::{EpochCount, Valid};
use crate::config::OnNan;
use crate::data::{batches, for_each_batch, order, Batches, SplitMix64, Stream};
use crate::distributed::shard;
use crate::{Error, History, Result};
use std::ops::ControlFlow;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};
use torchfit_sdk::checkpoint::Action;
use torchfit_sdk::{Batch, BatchOutput, DatasetReader, Flow};

/// The checkpoint a fit resumes from, and the optimizer hyper-parameters set after restoring.
pub(super) struct Resume {
    pub dir: PathBuf,
    pub prefix: String,
    pub hypers: Vec<(String, serde_json::Value)>,
}

/// `on_train_begin`, the epochs, then `on_train_end` on every callback, also after an error.
/// Checkpoint saves in the run directory that a crash interrupted are completed or discarded
/// first, so callbacks find whole checkpoints there. With `resume` (a folder, a prefix and
/// optimizer hyper-parameters to set), everything is first restored from that checkpoint;
/// `count` then decides how many epochs run.
pub(super) fn partial_fit(
    c: &mut Components,
    history: &mut History,
    resume: Option<Resume>,
    count: EpochCount,
    reader: &mut dyn DatasetReader,
    train: &[i64],
    valid: Valid<'_>,
) -> Result<()> {
    if let Some(run_dir) = c.run_dir.as_ref().filter(|_| super::ddp::writes_files(c.ddp.as_ref())) {
        crate::checkpoint::recover_all(run_dir)?;
    }
    if let Some(d) = &c.ddp {
        d.dist.barrier()?; // the other ranks read checkpoints only once rank 0 recovered them
    }
    if let Some(Resume { dir, prefix, hypers }) = resume {
        perform(c, history, &Action::Load { dir, prefix, parts: torchfit_sdk::Parts::ALL })?;
        for (key, value) in &hypers {
            for group in 0..c.optimizer.groups().len() {
                c.optimizer.set_hyper(group, key, value).map_err(|m| Error::Data(format!("optimizer.{key}: {m}")))?;
            }
            log::info!("optimizer.{key} = {value} on resume (the checkpoint's value replaced)");
        }
        if let Some(d) = &c.ddp {
            d.sync_from_main(c.model.as_ref())?;
        }
    }
    keep_boundary(c, history);
    let epochs = count.epochs_to_run(c.settings.max_epochs, history.len());
    let result = match notify(c, history, (0, 0), &Event::TrainBegin) {
        Ok(Flow::Continue) => fit_loop(c, history, reader, train, valid, epochs),
        Ok(Flow::Stop | Flow::StopAfterBatch) => Ok(()),
        Err(e) => Err(e),
    };
    let end = notify_train_end(c, history, train_data(c, reader, train));
    result.and(end)
}

/// The training data, with `iterator_train`'s batching, for the hooks that may pass over it.
fn train_data<'a>(c: &Components, reader: &'a mut dyn DatasetReader, indices: &'a [i64]) -> TrainData<'a> {
    let it = &c.settings.iterator_train;
    TrainData { reader, indices, batch_size: it.batch_size, prefetch: it.prefetch }
}

/// Runs up to `epochs` epochs: a training pass over `train`, a validation pass, the epoch's end.
fn fit_loop(
    c: &mut Components,
    history: &mut History,
    reader: &mut dyn DatasetReader,
    train: &[i64],
    mut valid: Valid<'_>,
    epochs: usize,
) -> Result<()> {
    let seed = c.settings.seed;
    for _ in 0..epochs {
        if interrupted(c, history, false) {
            break;
        }
        let epoch = history.len() + 1;
        history.new_epoch();
        history.record("epoch", epoch)?;
        tch::manual_seed((SplitMix64::new(seed, Stream::Torch, epoch as u64).next_u64() >> 1) as i64);
        reader.reset(epoch as u64, seed)?;
        if let Valid::Other(r, _) = &mut valid {
            r.reset(epoch as u64, seed)?;
        }
        let it = &c.settings.iterator_train;
        let train_batches = match &c.ddp {
            None => batches(train, it.batch_size, it.shuffle.unwrap_or(true), seed, epoch as u64),
            Some(d) => {
                let order = order(train, it.shuffle.unwrap_or(true), seed, epoch as u64);
                let p = d.dist.process();
                let own = shard(&order, p.rank, p.world_size, d.dist.config().drop_last);
                batches(&own, it.batch_size, false, seed, epoch as u64)
            }
        };
        let iv = &c.settings.iterator_valid;
        let valid_batches = match &valid {
            Valid::None => Vec::new(),
            Valid::Same(idx) | Valid::Other(_, idx) => {
                batches(idx, iv.batch_size, iv.shuffle.unwrap_or(false), seed, epoch as u64)
            }
        };
        let counts = (train_batches.len(), valid_batches.len());
        let mut pending = Vec::with_capacity(2);
        let mut flow = notify(c, history, counts, &Event::EpochBegin)?;
        let (trained, non_finite) = run_single_epoch(c, history, reader, &train_batches, true, counts, &mut pending)?;
        flow = flow.and(trained);
        if let Some(NonFinite { batch, value }) = non_finite {
            record_losses(c, history, pending)?;
            return Err(Error::NonFinite { epoch, batch, value });
        }
        if !valid_batches.is_empty() && flow != Flow::StopAfterBatch {
            let valid_reader: &mut dyn DatasetReader = match &mut valid {
                Valid::Other(r, _) => &mut **r,
                _ => &mut *reader,
            };
            flow = flow.and(run_single_epoch(c, history, valid_reader, &valid_batches, false, counts, &mut pending)?.0);
        }
        record_losses(c, history, pending)?;
        if flow == Flow::StopAfterBatch {
            if !interrupted(c, history, true) {
                let batches = history.batches(-1).len();
                log::info!("stopping in epoch {epoch} after batch {batches}: a callback asked to stop after the batch");
            }
            break;
        }
        flow = flow.and(notify_epoch_end(c, history, counts, train_data(c, reader, train))?);
        if let Some(d) = &c.ddp {
            // A stop asked on any rank, or a signal any rank received, stops them all here.
            let raised = c.watch.as_ref().is_some_and(|w| w.raised());
            let (agreed, raised_anywhere) = d.agree(flow, raised)?;
            flow = agreed;
            if let (true, false, Some(w)) = (raised_anywhere, raised, &c.watch) {
                w.raise();
            }
        }
        keep_boundary(c, history);
        if flow.stops() {
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
/// and no per-batch tensor outlives its step (small long-lived tensors scattered through the
/// heap make the allocator map fresh pages for the step's larger buffers; see bench/README.md).
struct Pending {
    key: &'static str,
    records: Vec<usize>,
    values: Tensor,
}

/// A training batch whose loss was not finite, under a policy that checks ([`OnNan`]).
struct NonFinite {
    /// The batch of the pass, from 1.
    batch: usize,
    value: f64,
}

/// One pass over `batches`: training steps when `training`, else validation steps, each
/// between `on_batch_begin` and `on_batch_end`. Returns the callbacks' flow and, under
/// `on_nan = "stop"`, the batch whose loss was not finite (the pass ends after it).
fn run_single_epoch(
    c: &mut Components,
    history: &mut History,
    reader: &mut dyn DatasetReader,
    batches: &Batches,
    training: bool,
    counts: (usize, usize),
    pending: &mut Vec<Pending>,
) -> Result<(Flow, Option<NonFinite>)> {
    let (size_key, loss_key) =
        if training { ("train_batch_size", "train_loss") } else { ("valid_batch_size", "valid_loss") };
    let (mut flow, mut stopped, mut skipped) = (Flow::Continue, None, 0usize);
    let prefetch = if training { c.settings.iterator_train.prefetch } else { c.settings.iterator_valid.prefetch };
    let slots = Tensor::f_zeros([batches.len() as i64], (Kind::Double, c.device))?;
    let mut losses = Pending { key: loss_key, records: Vec::with_capacity(batches.len()), values: slots };
    for_each_batch(reader, batches, prefetch, |index, idx, x, y| {
        let (x, y) = (x.f_to_device(c.device)?, y.f_to_device(c.device)?);
        let record = history.new_batch()?;
        history.record_batch(size_key, idx.len())?;
        let replaced = {
            let asked = ask(c, history, counts, &Event::BatchBegin(&Batch { x: &x, y: &y, training, index }))?;
            flow = flow.and(asked.flow);
            asked.batch
        };
        let (x, y) = replaced.unwrap_or((x, y));
        let batch = Batch { x: &x, y: &y, training, index };
        let (y_pred, loss, step) = if training {
            let (y_pred, loss, f, step) = train_step(c, history, counts, &batch)?;
            flow = flow.and(f);
            (y_pred, loss, step)
        } else {
            let (y_pred, loss) = validation_step(c, &batch)?;
            (y_pred, loss, Step::Taken)
        };
        let out = BatchOutput { batch, y_pred: &y_pred, loss: &loss };
        flow = flow.and(notify(c, history, counts, &Event::BatchEnd(&out))?);
        match step {
            Step::SkippedNonFinite(_) if c.settings.on_nan == OnNan::SkipBatch => {
                history.record_batch("skipped", true)?;
                skipped += 1;
            }
            _ => {
                losses.values.f_select(0, losses.records.len() as i64)?.f_copy_(&loss)?;
                losses.records.push(record);
            }
        }
        if let Step::SkippedNonFinite(value) = step {
            if c.settings.on_nan == OnNan::Stop {
                stopped = Some(NonFinite { batch: index + 1, value });
                flow = flow.and(Flow::StopAfterBatch);
            }
        }
        if c.watch.as_ref().is_some_and(|w| w.raised()) {
            flow = flow.and(Flow::StopAfterBatch);
        }
        if let Some(d) = &c.ddp {
            let raised = c.watch.as_ref().is_some_and(|w| w.raised());
            let (agreed, raised_anywhere) = d.agree(flow, raised)?;
            flow = agreed;
            if let (true, false, Some(w)) = (raised_anywhere, raised, &c.watch) {
                w.raise();
            }
        }
        Ok::<_, Error>(if flow == Flow::StopAfterBatch { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
    })?;
    pending.push(losses);
    if skipped > 0 {
        log::warn!(
            "epoch {}: {skipped} training batches skipped, their loss not finite (on_nan = \"skip_batch\")",
            history.len()
        );
        history.record("skipped_batches", skipped)?;
    }
    Ok((flow, stopped))
}

/// Whether a training step was taken.
enum Step {
    /// Backward and the optimizer step ran (or a callback skipped them).
    Taken,
    /// The loss was not finite under a policy that checks: no backward, no step.
    SkippedNonFinite(f64),
}

/// Forward, loss, `on_loss_computed` (terms added to the loss), backward, `on_grad_computed`,
/// optimizer step; a callback may skip the step (and, from `on_loss_computed`, backward), and
/// a loss that is not finite skips both unless `on_nan = "continue"`.
/// Returns the detached outputs and loss.
fn train_step(
    c: &mut Components,
    history: &mut History,
    counts: (usize, usize),
    batch: &Batch<'_>,
) -> Result<(Tensor, Tensor, Flow, Step)> {
    if let Some(d) = &mut c.ddp {
        d.before_forward(c.model.as_ref())?;
    }
    let y_pred = c.forward(batch.x, true)?;
    let mut loss = c.loss(&y_pred, batch.y)?;
    let asked =
        ask(c, history, counts, &Event::LossComputed(&BatchOutput { batch: *batch, y_pred: &y_pred, loss: &loss }))?;
    let mut flow = asked.flow;
    for term in asked.loss_terms {
        loss = loss.f_add(&term.f_reshape([0i64; 0])?)?;
    }
    let mut non_finite = None;
    if c.settings.on_nan != OnNan::Continue {
        let value = loss.f_double_value(&[])?;
        non_finite = (!value.is_finite()).then_some(value);
    }
    let mut skip_step = asked.skip_step;
    if let Some(d) = &c.ddp {
        // Backward runs on every rank or on none: each one's all-reduces wait for the others'.
        let agreed = d.any(&[non_finite.is_some(), skip_step])?;
        non_finite = non_finite.or(agreed[0].then_some(f64::NAN));
        skip_step = agreed[1];
    }
    if let Some(value) = non_finite {
        return Ok((y_pred.f_detach()?, loss.f_detach()?, flow, Step::SkippedNonFinite(value)));
    }
    if !skip_step {
        c.optimizer.zero_grad();
        if let Some(d) = &c.ddp {
            d.before_backward(&loss)?;
        }
        loss.f_backward()?;
        let asked = ask(c, history, counts, &Event::GradComputed(batch))?;
        flow = flow.and(asked.flow);
        if !asked.skip_step {
            c.optimizer.step()?;
        }
    }
    Ok((y_pred.f_detach()?, loss.f_detach()?, flow, Step::Taken))
}

/// Forward and loss in evaluation mode without gradients.
fn validation_step(c: &Components, batch: &Batch<'_>) -> Result<(Tensor, Tensor)> {
    let _guard = tch::no_grad_guard();
    let y_pred = c.forward(batch.x, false)?;
    let loss = c.loss(&y_pred, batch.y)?;
    Ok((y_pred, loss))
}

/// Writes the epoch's batch losses into history with one device-to-host transfer. In a
/// distributed job the training batches are reduced over the ranks first: each record gets the
/// size-weighted mean loss and the total size of that batch on all ranks.
fn record_losses(c: &Components, history: &mut History, pending: Vec<Pending>) -> Result<()> {
    for pass in pending {
        let mut values =
            Vec::<f64>::try_from(pass.values.f_narrow(0, 0, pass.records.len() as i64)?.f_to_device(Device::Cpu)?)?;
        let reduce = c.ddp.as_ref().filter(|_| pass.key == "train_loss");
        if let Some(d) = reduce {
            let batches = history.batches(-1);
            let sizes: Vec<f64> = pass
                .records
                .iter()
                .map(|r| {
                    batches.get(*r).and_then(|b| b.get("train_batch_size")).and_then(|v| v.as_f64()).unwrap_or(0.0)
                })
                .collect();
            let (means, totals) = crate::distributed::reduce_batches(&d.dist, &values, &sizes)?;
            values = means;
            for (record, total) in pass.records.iter().zip(totals) {
                history.record_batch_at(-1, *record, "train_batch_size", total.round() as u64)?;
            }
        }
        for (record, v) in pass.records.iter().zip(values) {
            history.record_batch_at(-1, *record, pass.key, torchfit_sdk::values::number(v))?;
        }
    }
    Ok(())
}
