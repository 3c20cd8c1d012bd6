//! One pass over the batches of an epoch: [`run_single_epoch`] runs each batch between
//! `on_batch_begin` and `on_batch_end`, through [`train_step`] or a validation step, and keeps
//! the batch losses on the device until [`record_losses`] writes them into history.
//!
//! How a step runs across replicas is [`super::replicas`]'s: a training step's backward (and,
//! in a data-parallel job, the ranks' agreement on its decisions), the flow after each batch,
//! and validation in rounds of `Replicas::validation_round` batches: at the start of a round
//! each rank computes the outputs of the batch it owns, all at once; then every rank runs the
//! round's batches in order, each with its owner's outputs, so every rank's callbacks see one
//! process's validation. Alone, a round is one batch and validation runs batch by batch.

use super::build::Components;
use super::events::{ask, notify, Event};
use super::replicas::StepFound;
use crate::config::OnNan;
use crate::data::{for_each_batch, Batches};
use crate::{History, Result};
use std::ops::ControlFlow;
use tch::{Device, Kind, Tensor};
use torchfit_sdk::{Batch, BatchOutput, DatasetReader, Flow, Stage};

/// The batch losses of one pass, waiting on the device to be written into history at the end
/// of the epoch: `values[i]` is the loss of the batch in history record `records[i]`.
///
/// The slots are one tensor allocated when the pass begins, so no batch syncs with the device
/// and no per-batch tensor outlives its step (small long-lived tensors scattered through the
/// heap make the allocator map fresh pages for the step's larger buffers; see bench/README.md).
pub(super) struct Pending {
    key: &'static str,
    records: Vec<usize>,
    values: Tensor,
}

/// A training batch whose loss was not finite, under a policy that checks ([`OnNan`]).
pub(super) struct NonFinite {
    /// The batch of the pass, from 1.
    pub batch: usize,
    pub value: f64,
}

/// How a pass ended: the callbacks' flow, under `on_nan = "stop"` the batch whose loss was
/// not finite (the pass ended after it), and the batch losses for history.
pub(super) struct PassEnd {
    pub flow: Flow,
    pub non_finite: Option<NonFinite>,
    pub losses: Pending,
}

/// What a pass gathers batch by batch.
struct PassState {
    stage: Stage,
    size_key: &'static str,
    flow: Flow,
    stopped: Option<NonFinite>,
    skipped: usize,
    losses: Pending,
}

/// A batch as the reader gave it.
struct Loaded {
    index: usize,
    size: usize,
    x: Tensor,
    y: Tensor,
}

/// One pass over `batches`: training steps in [`Stage::Train`], else validation steps, each
/// between `on_batch_begin` and `on_batch_end`.
pub(super) fn run_single_epoch(
    c: &mut Components,
    history: &mut History,
    reader: &mut dyn DatasetReader,
    batches: &Batches,
    stage: Stage,
) -> Result<PassEnd> {
    let (size_key, loss_key, prefetch) = match stage {
        Stage::Train => ("train_batch_size", "train_loss", c.settings.iterator_train.prefetch),
        Stage::Eval => ("valid_batch_size", "valid_loss", c.settings.iterator_valid.prefetch),
    };
    let training = stage == Stage::Train;
    let slots = Tensor::f_zeros([batches.len() as i64], (Kind::Double, c.device))?;
    let losses = Pending { key: loss_key, records: Vec::with_capacity(batches.len()), values: slots };
    let mut pass = PassState { stage, size_key, flow: Flow::Continue, stopped: None, skipped: 0, losses };
    let round_size = if training { 1 } else { c.replicas.validation_round() };
    if round_size == 1 {
        for_each_batch(reader, batches, stage, prefetch, |index, idx, x, y| {
            one_batch(c, history, &mut pass, Loaded { index, size: idx.len(), x, y }, None)
        })?
    } else {
        c.replicas.before_validation(c.model.as_ref())?;
        let mut round = Vec::with_capacity(round_size);
        for_each_batch(reader, batches, stage, prefetch, |index, idx, x, y| {
            round.push(Loaded { index, size: idx.len(), x, y });
            match round.len() == round_size || index + 1 == batches.len() {
                true => shared_round(c, history, &mut pass, std::mem::take(&mut round)),
                false => Ok(ControlFlow::Continue(())),
            }
        })?
    }
    let PassState { mut flow, stopped, skipped, losses, .. } = pass;
    if training {
        let (stop, raised_anywhere) = c.replicas.end_training_pass()?;
        if stop {
            flow = flow.and(Flow::StopAfterBatch);
        }
        raise_if(c, raised_anywhere);
    }
    if skipped > 0 {
        log::warn!(
            "epoch {}: {skipped} training batches skipped, their loss not finite (on_nan = \"skip_batch\")",
            history.len()
        );
        history.record("skipped_batches", skipped)?;
    }
    Ok(PassEnd { flow, non_finite: stopped, losses })
}

/// A round of validation batches shared out among the ranks (see the module docs).
fn shared_round(
    c: &mut Components,
    history: &mut History,
    pass: &mut PassState,
    round: Vec<Loaded>,
) -> Result<ControlFlow<()>> {
    let p = c.replicas.process();
    let mut own = match round.iter().find(|b| b.index % p.world_size == p.rank) {
        Some(b) => {
            let _guard = tch::no_grad_guard();
            Some((b.index, c.forward(&b.x.f_to_device(c.device)?, false)?))
        }
        None => None,
    };
    for b in round {
        let mine = own.take_if(|(i, _)| *i == b.index).map(|(_, t)| t);
        if one_batch(c, history, pass, b, Some(mine))?.is_break() {
            return Ok(ControlFlow::Break(()));
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// One batch: `on_batch_begin`, the step, `on_batch_end`, its loss kept for history. `shared`
/// is set for a validation batch of a round shared among ranks: this rank's outputs for it when
/// it owns it (a batch a callback replaced is computed by every rank itself).
fn one_batch(
    c: &mut Components,
    history: &mut History,
    pass: &mut PassState,
    b: Loaded,
    shared: Option<Option<Tensor>>,
) -> Result<ControlFlow<()>> {
    let (training, index) = (pass.stage == Stage::Train, b.index);
    let (x, y) = (b.x.f_to_device(c.device)?, b.y.f_to_device(c.device)?);
    let record = history.new_batch()?;
    history.record_batch(pass.size_key, b.size)?;
    let asked = ask(c, history, &Event::BatchBegin(&Batch { x: &x, y: &y, training, index }))?;
    let mut batch_flow = asked.flow; // what this batch's hooks asked
    let replaced = asked.batch.is_some();
    let (x, y) = asked.batch.unwrap_or((x, y));
    let batch = Batch { x: &x, y: &y, training, index };
    let Stepped { y_pred, loss, flow, step, stop_agreed } = if training {
        train_step(c, history, &batch)?
    } else {
        let (y_pred, loss) = match shared {
            Some(mine) if !replaced => shared_validation_step(c, &batch, mine)?,
            _ => validation_step(c, &batch)?,
        };
        Stepped { y_pred, loss, flow: Flow::Continue, step: Step::Taken { stepped: false }, stop_agreed: false }
    };
    batch_flow = batch_flow.and(flow);
    if training && (c.accumulation.accumulates() || c.scaler.is_some()) {
        history.record_batch("stepped", matches!(step, Step::Taken { stepped: true }))?;
    }
    let out = BatchOutput { batch, y_pred: &y_pred, loss: &loss };
    batch_flow = batch_flow.and(notify(c, history, &Event::BatchEnd(&out))?);
    pass.flow = pass.flow.and(stop_where_agreed(c, batch_flow, training, stop_agreed)?);
    match step {
        Step::SkippedNonFinite(_) if c.settings.on_nan == OnNan::SkipBatch => {
            history.record_batch("skipped", true)?;
            pass.skipped += 1;
        }
        _ => {
            let losses = &mut pass.losses;
            losses.values.f_select(0, losses.records.len() as i64)?.f_copy_(&loss)?;
            losses.records.push(record);
        }
    }
    if let Step::SkippedNonFinite(value) = step {
        if c.settings.on_nan == OnNan::Stop {
            pass.stopped = Some(NonFinite { batch: index + 1, value });
            pass.flow = pass.flow.and(Flow::StopAfterBatch);
        }
    }
    Ok(if pass.flow == Flow::StopAfterBatch { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
}

/// What a training or validation step did.
struct Stepped {
    y_pred: Tensor,
    loss: Tensor,
    /// What the step's hooks asked.
    flow: Flow,
    step: Step,
    /// Whether a stop after this batch was agreed among the ranks.
    stop_agreed: bool,
}

/// Whether a training step was taken.
enum Step {
    /// Backward ran (or a callback skipped it); `stepped`: whether the optimizer stepped.
    Taken { stepped: bool },
    /// The loss was not finite under a policy that checks: no backward, no step.
    SkippedNonFinite(f64),
}

/// Forward and loss (under autocast in mixed precision), `on_loss_computed` (terms added to the
/// loss), backward, then at a group's last batch `on_grad_computed` and the optimizer step. A
/// callback may skip the step (and, from `on_loss_computed`, backward); a loss that is not
/// finite skips both unless `on_nan = "continue"`. How backward runs, and what the ranks of a
/// job decide through it, is `Replicas::backward`'s; the loss it runs from is scaled for
/// accumulation and the gradient scaler ([`backward_loss`]), whose unscaled gradients reach
/// `on_grad_computed` and whose skipped steps are its own.
fn train_step(c: &mut Components, history: &mut History, batch: &Batch<'_>) -> Result<Stepped> {
    let at = c.accumulation.position(batch.index, c.batch_counts.0);
    if at.first {
        c.optimizer.zero_grad();
    }
    c.replicas.before_forward(c.model.as_ref(), at.last)?;
    let (y_pred, mut loss) = {
        let _autocast = c.settings.precision.autocast(c.device)?;
        let y_pred = c.forward(batch.x, true)?;
        let loss = c.loss(&y_pred, batch.y)?;
        (y_pred, loss)
    };
    let asked = ask(c, history, &Event::LossComputed(&BatchOutput { batch: *batch, y_pred: &y_pred, loss: &loss }))?;
    let mut flow = asked.flow;
    for term in asked.loss_terms {
        loss = loss.f_add(&term.f_reshape([0i64; 0])?)?;
    }
    let found = StepFound {
        non_finite: non_finite(c.settings.on_nan, &loss)?,
        skip_step: asked.skip_step,
        ..Default::default()
    };
    let scaled = backward_loss(c, &loss)?;
    let found = c.replicas.backward(scaled.as_ref().unwrap_or(&loss), found, at.last)?;
    raise_if(c, found.interrupted);
    c.accumulation.note(at, found.non_finite.is_some());
    let (y_pred, loss, stop_agreed) = (y_pred.f_detach()?, loss.f_detach()?, found.stop_after_batch);
    if let Some(value) = found.non_finite {
        return Ok(Stepped { y_pred, loss, flow, step: Step::SkippedNonFinite(value), stop_agreed });
    }
    let mut stepped = false;
    if at.last && !found.skip_step && !c.accumulation.tainted() {
        let finite = match &mut c.scaler {
            Some(scaler) => scaler.unscale(&c.optimizer)?,
            None => true,
        };
        let asked = ask(c, history, &Event::GradComputed(batch))?;
        flow = flow.and(asked.flow);
        if !asked.skip_step && finite {
            c.optimizer.step()?;
            stepped = true;
        }
        if let Some(scaler) = &mut c.scaler {
            scaler.update()?;
        }
    }
    Ok(Stepped { y_pred, loss, flow, step: Step::Taken { stepped }, stop_agreed })
}

/// The loss backward runs from when it is not `loss` itself: divided by the accumulation's `k`,
/// multiplied by the gradient scaler's scale.
fn backward_loss(c: &Components, loss: &Tensor) -> Result<Option<Tensor>> {
    let divided = match c.accumulation.loss_factor() {
        Some(f) => Some(loss.f_mul_scalar(f)?),
        None => None,
    };
    match &c.scaler {
        Some(scaler) => Ok(Some(scaler.scale(divided.as_ref().unwrap_or(loss))?)),
        None => Ok(divided),
    }
}

/// The loss's value when it is not finite and the policy checks (one read from the device).
fn non_finite(policy: OnNan, loss: &Tensor) -> Result<Option<f64>> {
    match policy {
        OnNan::Continue => Ok(None),
        _ => Ok(Some(loss.f_double_value(&[])?).filter(|v| !v.is_finite())),
    }
}

/// The flow every rank follows where the loop decides between batches (the run's and each
/// epoch's start, the epoch's end): `Replicas::agree`; a stop flag raised on any rank is
/// raised on all. In one process, `flow` as it is.
pub(super) fn agreed(c: &mut Components, flow: Flow) -> Result<Flow> {
    Ok(agree_between_batches(c, flow)?.0)
}

/// Whether the stop flag is raised, on any rank of a distributed job (then it is raised on all):
/// the answer every rank acts on, even when a signal reaches this one right after.
pub(super) fn interrupted_anywhere(c: &mut Components) -> Result<bool> {
    Ok(agree_between_batches(c, Flow::Continue)?.1)
}

/// The agreed flow and whether the stop flag is raised anywhere (in one process: `flow` and the
/// local flag).
fn agree_between_batches(c: &mut Components, flow: Flow) -> Result<(Flow, bool)> {
    let raised = c.watch.as_ref().is_some_and(|w| w.raised());
    let (flow, raised_anywhere) = c.replicas.agree(flow, raised)?;
    raise_if(c, raised_anywhere);
    Ok((flow, raised_anywhere))
}

/// Raises this rank's stop flag when another rank of the job was interrupted (`elsewhere`).
fn raise_if(c: &Components, elsewhere: bool) {
    if let (true, Some(w)) = (elsewhere, &c.watch) {
        if !w.raised() {
            w.raise();
        }
    }
}

/// The flow a batch ends with (`Replicas::batch_flow`): what its hooks asked, a stop after it
/// when the stop flag is raised, and in a job the batch every rank stops after.
fn stop_where_agreed(c: &mut Components, asked: Flow, training: bool, stop_agreed: bool) -> Result<Flow> {
    let raised = c.watch.as_ref().is_some_and(|w| w.raised());
    let (flow, raised_elsewhere) = c.replicas.batch_flow(asked, raised, training, stop_agreed)?;
    raise_if(c, raised_elsewhere);
    Ok(flow)
}

/// Forward and loss in evaluation mode without gradients.
fn validation_step(c: &Components, batch: &Batch<'_>) -> Result<(Tensor, Tensor)> {
    let _guard = tch::no_grad_guard();
    let y_pred = c.forward(batch.x, false)?;
    let loss = c.loss(&y_pred, batch.y)?;
    Ok((y_pred, loss))
}

/// A validation step of a round shared among ranks: the batch's owner computed its outputs
/// (`mine`) and they reach every rank (`Replicas::validation_outputs`); every rank computes
/// the loss on them, so every rank holds what one process would.
fn shared_validation_step(c: &Components, batch: &Batch<'_>, mine: Option<Tensor>) -> Result<(Tensor, Tensor)> {
    let _guard = tch::no_grad_guard();
    let y_pred = c.replicas.validation_outputs(mine, batch.index, c.device)?;
    let loss = c.loss(&y_pred, batch.y)?;
    Ok((y_pred, loss))
}

/// Writes the epoch's batch losses into history with one device-to-host transfer. The training
/// batches are reduced over the ranks first (`Replicas::reduce_train_losses`): in a job each
/// record gets the size-weighted mean loss and the total size of that batch on all ranks.
pub(super) fn record_losses(c: &Components, history: &mut History, pending: Vec<Pending>) -> Result<()> {
    for pass in pending {
        let mut values =
            Vec::<f64>::try_from(pass.values.f_narrow(0, 0, pass.records.len() as i64)?.f_to_device(Device::Cpu)?)?;
        if pass.key == "train_loss" {
            let batches = history.batches(-1);
            let size = |r: &usize| batches.get(*r).and_then(|b| b.get("train_batch_size")).and_then(|v| v.as_f64());
            let sizes = || pass.records.iter().map(|r| size(r).unwrap_or(0.0)).collect();
            if let Some((means, totals)) = c.replicas.reduce_train_losses(&values, sizes)? {
                values = means;
                for (record, total) in pass.records.iter().zip(totals) {
                    history.record_batch_at(-1, *record, "train_batch_size", total.round() as u64)?;
                }
            }
        }
        for (record, v) in pass.records.iter().zip(values) {
            history.record_batch_at(-1, *record, pass.key, torchfit_sdk::values::number(v))?;
        }
    }
    Ok(())
}
