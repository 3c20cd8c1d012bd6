//! The seam between the loop and how a step runs across replicas: [`Replicas`] is one process
//! training alone ([`Replicas::Local`]) or one rank of a data-parallel job
//! ([`Replicas::Ddp`], PyTorch's `DistributedDataParallel`, mechanics in [`super::ddp`]). The
//! loop (`fit_loop.rs`, `pass.rs`) calls the same methods at the same points in either case and
//! names no data-parallel type:
//!
//! | point | method | alone | data-parallel |
//! |---|---|---|---|
//! | a fit starts | [`Replicas::wait_for_main`], [`Replicas::after_resume`] | nothing | wait for rank 0's recovered checkpoints; after a resume, rank 0's model everywhere |
//! | an epoch's batches | [`Replicas::train_batches`] | every training sample | this rank's shard |
//! | before a training forward | [`Replicas::before_forward`] | nothing | the Reducer readied (a group's last batch), rank 0's buffers |
//! | backward | [`Replicas::backward`] | backward unless the loss is not finite or the step skipped | a group's last batch: every rank runs it, the ranks' decisions agreed through it; the others: on this rank alone (`no_sync`) |
//! | between batches and epochs | [`Replicas::agree`] | as asked | the strongest flow any rank asked |
//! | after a batch | [`Replicas::batch_flow`] | as asked | a training stop rides on the next step |
//! | a training pass ends | [`Replicas::end_training_pass`] | nothing | deferred stops agreed |
//! | validation | [`Replicas::validation_round`], [`Replicas::validation_outputs`] | batch by batch | rounds of `world_size` batches, each computed by its owner |
//! | the epoch's losses | [`Replicas::reduce_train_losses`] | as they are | size-weighted over the ranks |
//! | a fit ends | [`Replicas::finish`] | nothing | the Reducer's timings logged, parameters checked equal |
//!
//! Mixed precision and gradient accumulation sit around [`Replicas::backward`] in `train_step`:
//! autocast wraps the forward and the loss ([`crate::amp`]), the loss handed to backward is
//! divided by the accumulation's `k` and multiplied by the gradient scaler's scale, the scaler
//! unscales before `on_grad_computed`; the inner batches of an accumulation group run backward
//! without the all-reduce and without the optimizer step. The loop's shape stays forward → loss
//! → `on_loss_computed` → backward → `on_grad_computed` → step.

use super::ddp::Ddp;
use crate::data::{batches, order, Batches};
use crate::distributed::{shard, Distributed};
use crate::Result;
use std::sync::Arc;
use tch::{Device, Tensor};
use torchfit_sdk::{Flow, Model, Process};

/// Where the replicas of the model train.
pub(super) enum Replicas {
    /// One process, alone.
    Local,
    /// One rank of a data-parallel job.
    Ddp(Ddp),
}

/// What a training step found, on this rank ([`Replicas::backward`]'s input) or on any rank
/// (its output).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct StepFound {
    /// The loss was not finite (its value; NaN when another rank found it) under a policy that
    /// checks.
    pub non_finite: Option<f64>,
    /// A callback skipped the step.
    pub skip_step: bool,
    /// A stop after the batch was asked before this step (data-parallel: it takes effect now).
    pub stop_after_batch: bool,
    /// Another rank's stop flag was raised.
    pub interrupted: bool,
}

impl Replicas {
    /// Alone without `dist`; else this rank of its job, starting from rank 0's `model`.
    pub fn new(dist: Option<Arc<Distributed>>, device: Device, model: &dyn Model) -> Result<Self> {
        let Some(dist) = dist else { return Ok(Replicas::Local) };
        let ddp = Ddp::new(dist, device)?;
        ddp.sync_from_main(model)?;
        Ok(Replicas::Ddp(ddp))
    }

    /// The process this is: its rank and the world size.
    pub fn process(&self) -> Process {
        match self {
            Replicas::Local => Process::SINGLE,
            Replicas::Ddp(d) => d.dist.process(),
        }
    }

    /// Whether this process writes files: rank 0 of a job, or a process alone.
    pub fn writes_files(&self) -> bool {
        match self {
            Replicas::Local => true,
            Replicas::Ddp(d) => d.dist.is_main(),
        }
    }

    /// As a fit starts, after rank 0 recovered the run directory's checkpoints: the other ranks
    /// wait for it, so they read whole checkpoints.
    pub fn wait_for_main(&self) -> Result<()> {
        match self {
            Replicas::Local => Ok(()),
            Replicas::Ddp(d) => d.dist.barrier(),
        }
    }

    /// After a resume loaded a checkpoint: rank 0's model on every rank.
    pub fn after_resume(&self, model: &dyn Model) -> Result<()> {
        match self {
            Replicas::Local => Ok(()),
            Replicas::Ddp(d) => d.sync_from_main(model),
        }
    }

    /// The training batches of `epoch`: the order drawn from `(seed, epoch)`, then this rank's
    /// shard of it in a data-parallel job.
    pub fn train_batches(&self, train: &[i64], batch_size: usize, shuffle: bool, seed: u64, epoch: u64) -> Batches {
        match self {
            Replicas::Local => batches(train, batch_size, shuffle, seed, epoch),
            Replicas::Ddp(d) => {
                let p = d.dist.process();
                let own = shard(&order(train, shuffle, seed, epoch), p.rank, p.world_size, d.dist.config().drop_last);
                batches(&own, batch_size, false, seed, epoch)
            }
        }
    }

    /// Before a training forward; `reduce`: its backward all-reduces the gradients (the last
    /// batch of an accumulation group).
    pub fn before_forward(&mut self, model: &dyn Model, reduce: bool) -> Result<()> {
        match self {
            Replicas::Local => Ok(()),
            Replicas::Ddp(d) => d.before_forward(model, reduce),
        }
    }

    /// Backward from `loss`, given what this rank `found`; returns what is found on any rank.
    /// Alone, backward runs unless the loss is not finite or the step is skipped. In a job,
    /// with `reduce` every rank runs it (the Reducer all-reduces inside), carrying the
    /// decisions and the stops deferred since the last reducing step; a rank lost meanwhile is
    /// named. Without `reduce` (an inner batch of an accumulation group) it runs on this rank
    /// alone, DDP's `no_sync`: a non-finite loss is kept for the group's last batch to agree on.
    pub fn backward(&mut self, loss: &Tensor, found: StepFound, reduce: bool) -> Result<StepFound> {
        let runs = found.non_finite.is_none() && !found.skip_step;
        let d = match self {
            Replicas::Ddp(d) if reduce => d,
            Replicas::Ddp(d) => {
                if runs {
                    loss.f_backward()?;
                }
                d.defer_non_finite(found.non_finite.is_some());
                return Ok(StepFound { non_finite: None, ..found });
            }
            Replicas::Local => {
                if runs {
                    loss.f_backward()?;
                }
                return Ok(found);
            }
        };
        let loss_and_flags = d.with_flags(loss, found.non_finite.is_some(), found.skip_step)?;
        d.before_backward(&loss_and_flags)?;
        loss_and_flags.f_backward().map_err(|e| {
            d.dist.lost("the gradient reduction", torchfit_c10d::Error(torchfit_sdk::error::torch_summary(&e)))
        })?;
        let agreed = d.agreed_flags()?;
        Ok(StepFound {
            non_finite: found.non_finite.or(agreed.non_finite.then_some(f64::NAN)),
            skip_step: agreed.skip_step,
            stop_after_batch: agreed.stop_after_batch,
            interrupted: agreed.interrupted,
        })
    }

    /// The flow every rank follows where the loop decides between batches, and whether the
    /// stop flag is raised anywhere (`raised` is this rank's): alone, both as they are; in a
    /// job, the strongest flow any rank asked and whether any rank was interrupted.
    pub fn agree(&self, flow: Flow, raised: bool) -> Result<(Flow, bool)> {
        match self {
            Replicas::Local => Ok((flow, raised)),
            Replicas::Ddp(d) => d.agree(flow, raised),
        }
    }

    /// The flow a batch ends with, given what its hooks `asked` and this rank's stop flag
    /// (`raised`), and whether another rank's stop flag must be raised here. Alone: what was
    /// asked, a stop after the batch when the flag is raised. In a job every rank stops after
    /// the same batch: a training batch's stop rides on the next step (`stop_agreed`: the one
    /// of this step was agreed), a validation batch's is agreed at once.
    pub fn batch_flow(&mut self, asked: Flow, raised: bool, training: bool, stop_agreed: bool) -> Result<(Flow, bool)> {
        let local = if raised { asked.and(Flow::StopAfterBatch) } else { asked };
        match (self, training) {
            (Replicas::Local, _) => Ok((local, false)),
            (Replicas::Ddp(d), true) => {
                d.defer(local == Flow::StopAfterBatch, raised);
                let rest = if local == Flow::StopAfterBatch { Flow::Stop } else { local };
                Ok((if stop_agreed { Flow::StopAfterBatch } else { rest }, false))
            }
            (Replicas::Ddp(d), false) => d.agree(local, raised),
        }
    }

    /// At the end of a training pass: whether a stop after the batch is agreed (a stop asked in
    /// the pass's last batch had no next step to ride on), and whether any rank was interrupted.
    pub fn end_training_pass(&mut self) -> Result<(bool, bool)> {
        match self {
            Replicas::Local => Ok((false, false)),
            Replicas::Ddp(d) => d.flush_deferred(),
        }
    }

    /// How many validation batches run as one round: 1 alone; `world_size` in a job, each rank
    /// computing the outputs of the batch it owns (batch `i` belongs to rank `i % world_size`).
    pub fn validation_round(&self) -> usize {
        self.process().world_size.max(1)
    }

    /// Before a validation pass: in a job, rank 0's buffers on every rank, so every rank's share
    /// runs the same model.
    pub fn before_validation(&self, model: &dyn Model) -> Result<()> {
        match self {
            Replicas::Local => Ok(()),
            Replicas::Ddp(d) => d.sync_buffers(model),
        }
    }

    /// The outputs of validation batch `index` on every rank: its owner's (`mine` on the owner),
    /// sent to the others. Alone, `mine`.
    pub fn validation_outputs(&self, mine: Option<Tensor>, index: usize, device: Device) -> Result<Tensor> {
        match self {
            // Alone, every batch is this process's own: rounds of one never ask for another's.
            Replicas::Local => {
                mine.ok_or_else(|| crate::Error::Data(format!("validation batch {index} has no outputs")))
            }
            Replicas::Ddp(d) => d.dist.share(mine, index % d.dist.process().world_size, device),
        }
    }

    /// The epoch's training batch losses and sizes over every rank: in a job, each batch's
    /// size-weighted mean loss and total size; alone, `None` (they are as they are).
    pub fn reduce_train_losses(
        &self,
        values: &[f64],
        sizes: impl FnOnce() -> Vec<f64>,
    ) -> Result<Option<(Vec<f64>, Vec<f64>)>> {
        match self {
            Replicas::Local => Ok(None),
            Replicas::Ddp(d) => crate::distributed::reduce_batches(&d.dist, values, &sizes()).map(Some),
        }
    }

    /// After the last epoch of a fit that ended without error: in a job, the Reducer's timings
    /// logged and the ranks' parameters checked equal.
    pub fn finish(&self, model: &dyn Model) -> Result<()> {
        let Replicas::Ddp(d) = self else { return Ok(()) };
        d.log_reduction_times();
        d.log_backwards();
        match d.dist.parameters_in_sync(&model.parameters())? {
            true => Ok(()),
            false => Err(crate::Error::Distributed(
                "the ranks' parameters differ after training: their gradients were not averaged alike".into(),
            )),
        }
    }
}
