//! The mechanics of a rank of a data-parallel job (PyTorch's `DistributedDataParallel`), which
//! [`super::replicas::Replicas::Ddp`] drives: the same start on every rank, DDP's Reducer around
//! each backward, buffers from rank 0, and decisions every rank agrees on. What each step means
//! is in [`crate::distributed`].
//!
//! Agreeing costs no collective of its own in a training step: the Reducer also averages the
//! gradient of a small `flags` tensor that joins the loss as `loss + sum(flags * values)`
//! (`flags` is zero, so the loss is unchanged bit for bit), and `values` are this rank's
//! decisions. After backward every rank reads the same averaged gradient, so every rank knows
//! whether any rank found a non-finite loss, skipped the step, asked to stop after its previous
//! batch or was interrupted. A stop asked after a training batch therefore takes effect after
//! the next one on every rank; one asked in the pass's last batch is agreed when the pass ends.

use crate::distributed::Distributed;
use crate::Result;
use std::collections::HashSet;
use std::sync::Arc;
use tch::Tensor;
use torchfit_c10d::Reducer;
use torchfit_sdk::{Flow, Model};

/// A net's membership of a distributed job, and the Reducer of the parameters being trained.
pub(super) struct Ddp {
    pub dist: Arc<Distributed>,
    /// The Reducer and which parameters required grad when it was built: built at the first
    /// training step, again whenever that set changes (a callback froze or unfroze some).
    reducer: Option<(Reducer, Vec<bool>)>,
    /// Zeros whose averaged gradient carries the ranks' decisions (see the module docs).
    flags: Tensor,
    /// A stop after the batch, and an interruption, asked since the last step: they ride on
    /// the next one.
    deferred: (bool, bool),
    /// A non-finite loss in an inner batch of the accumulation group running: it rides on the
    /// group's last batch.
    deferred_non_finite: bool,
    /// Training backwards run, and of them those that all-reduced the gradients.
    backwards: (u64, u64),
}

/// What the ranks decided in a training step: each true when it is true on any rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Agreed {
    pub non_finite: bool,
    pub skip_step: bool,
    /// A stop after the batch asked (by a callback, or a signal) before this step.
    pub stop_after_batch: bool,
    pub interrupted: bool,
}

/// The flags' name among the Reducer's parameters (not a model parameter name: models' have no dots
/// at the start).
const FLAGS: &str = ".torchfit.flags";

impl Ddp {
    pub fn new(dist: Arc<Distributed>, device: tch::Device) -> Result<Self> {
        let flags = Tensor::f_zeros([4], (tch::Kind::Float, device))?.set_requires_grad(true);
        Ok(Self { dist, reducer: None, flags, deferred: (false, false), deferred_non_finite: false, backwards: (0, 0) })
    }

    /// Logs DDP's Logger's timing of the gradient reduction (sampled iterations): how much of
    /// the communication ran while backward still computed.
    pub fn log_reduction_times(&self) {
        let Some((reducer, _)) = &self.reducer else { return };
        match reducer.stats() {
            Ok(Some(s)) => log::info!(
                "gradient reduction (DDP's Logger, sampled iterations up to {}): forward {:.2} ms, backward {:.2} ms, \
                 communication {:.2} ms, of it overlapped with backward {:.2} ms",
                s.iteration,
                s.forward_compute.as_secs_f64() * 1e3,
                s.backward_compute.as_secs_f64() * 1e3,
                s.backward_comm.as_secs_f64() * 1e3,
                s.backward_overlap.as_secs_f64() * 1e3,
            ),
            Ok(None) => {}
            Err(e) => log::debug!("no reduction times: {e}"),
        }
    }

    /// Makes every rank start from rank 0's model: checks that the ranks built the same
    /// parameters, then broadcasts parameters and buffers.
    pub fn sync_from_main(&self, model: &dyn Model) -> Result<()> {
        self.dist.check_same_parameters(&model.parameters())?;
        let state: Vec<Tensor> = model.state_dict().into_iter().map(|(_, t)| t).collect();
        self.dist.broadcast_from_main(&state)
    }

    /// Before a training forward: the Reducer of the parameters that require grad now (one is
    /// built when that set changed), DDP's `prepare_for_forward` when this backward reduces
    /// (`reduce`; not under `no_sync`, as DDP), and rank 0's buffers.
    pub fn before_forward(&mut self, model: &dyn Model, reduce: bool) -> Result<()> {
        self.backwards.0 += 1;
        let params = model.parameters();
        let names: Option<HashSet<String>> =
            self.dist.config().broadcast_buffers.then(|| params.iter().map(|(n, _)| n.clone()).collect());
        let trained: Vec<bool> = params.iter().map(|(_, t)| t.requires_grad()).collect();
        if self.reducer.as_ref().is_none_or(|(_, was)| *was != trained) {
            let mut live: Vec<(String, Tensor)> = params.into_iter().filter(|(_, t)| t.requires_grad()).collect();
            live.push((FLAGS.into(), self.flags.shallow_clone()));
            self.reducer = None; // the old Reducer's hooks go before the new one's are placed
            self.reducer = Some((self.dist.reducer(&live)?, trained));
        }
        if let Some((reducer, _)) = self.reducer.as_ref().filter(|_| reduce) {
            self.backwards.1 += 1;
            reducer.prepare_for_forward().map_err(|e| self.dist.lost("preparing the gradient reduction", e))?;
        }
        match names {
            Some(names) => self.broadcast_buffers(model, &names),
            None => Ok(()),
        }
    }

    /// Rank 0's buffers (batch-norm statistics) on every rank, unless `broadcast_buffers = false`:
    /// before each training forward, as DDP does, and before a validation pass, so that every
    /// rank's share of the validation runs the same model.
    pub fn sync_buffers(&self, model: &dyn Model) -> Result<()> {
        if !self.dist.config().broadcast_buffers {
            return Ok(());
        }
        let names: HashSet<String> = model.parameters().into_iter().map(|(n, _)| n).collect();
        self.broadcast_buffers(model, &names)
    }

    /// Rank 0's buffers, with the names of the model's parameters already at hand: the buffers
    /// are the rest of its state dict.
    fn broadcast_buffers(&self, model: &dyn Model, parameter_names: &HashSet<String>) -> Result<()> {
        let buffers: Vec<Tensor> =
            model.state_dict().into_iter().filter(|(n, _)| !parameter_names.contains(n)).map(|(_, t)| t).collect();
        self.dist.broadcast_from_main(&buffers)
    }

    /// The loss to run backward from: `loss` plus this rank's decisions on the flags (equal to
    /// `loss`), carrying also the deferred stop requests.
    pub fn with_flags(&mut self, loss: &Tensor, non_finite: bool, skip_step: bool) -> Result<Tensor> {
        let (stop, interrupted) = std::mem::take(&mut self.deferred);
        let non_finite = non_finite || std::mem::take(&mut self.deferred_non_finite);
        let values: Vec<f32> = [non_finite, skip_step, stop, interrupted].iter().map(|&b| b as u8 as f32).collect();
        let values = Tensor::from_slice(&values).f_to_device(self.flags.device())?;
        let grad = self.flags.grad();
        if grad.defined() {
            let _ = grad.shallow_clone().f_zero_()?;
        }
        Ok(loss.f_add(&self.flags.f_mul(&values)?.f_sum(loss.kind())?)?)
    }

    /// After backward: what any rank decided (the flags' averaged gradient).
    pub fn agreed_flags(&self) -> Result<Agreed> {
        let g = Vec::<f32>::try_from(self.flags.grad().f_to_device(tch::Device::Cpu)?)?;
        let any = |i: usize| g.get(i).is_some_and(|v| *v > 0.0);
        Ok(Agreed { non_finite: any(0), skip_step: any(1), stop_after_batch: any(2), interrupted: any(3) })
    }

    /// Keeps a non-finite loss of an inner batch of an accumulation group for the group's last
    /// batch to carry.
    pub fn defer_non_finite(&mut self, non_finite: bool) {
        self.deferred_non_finite |= non_finite;
    }

    /// Logs how many training backwards all-reduced their gradients: one per accumulation
    /// group (all of them without accumulation).
    pub fn log_backwards(&self) {
        let (all, reduced) = self.backwards;
        log::info!("gradient all-reduces: {reduced} of {all} training backwards (the others accumulated locally)");
    }

    /// Keeps a stop after the batch (`stop`) and an interruption for the next step to carry.
    pub fn defer(&mut self, stop: bool, interrupted: bool) {
        self.deferred.0 |= stop;
        self.deferred.1 |= interrupted;
    }

    /// At the end of a training pass, on every rank: whether any rank still holds a deferred
    /// stop (the pass then ends as if the stop was asked after its last batch), and whether any
    /// was interrupted.
    pub fn flush_deferred(&mut self) -> Result<(bool, bool)> {
        let (stop, interrupted) = std::mem::take(&mut self.deferred);
        let any = self.any(&[stop || interrupted, interrupted])?;
        Ok((any[0], any[1]))
    }

    /// Just before backward from `loss`: the gradients of this backward are averaged over the
    /// ranks.
    pub fn before_backward(&self, loss: &Tensor) -> Result<()> {
        match &self.reducer {
            Some((reducer, _)) => {
                reducer.prepare_for_backward(&[loss]).map_err(|e| self.dist.lost("preparing the gradient reduction", e))
            }
            None => Ok(()),
        }
    }

    /// `flags`, each raised when it is raised on any rank.
    pub fn any(&self, flags: &[bool]) -> Result<Vec<bool>> {
        self.dist.any(flags)
    }

    /// The flow every rank follows, the strongest any rank asked (stop after the batch, then
    /// stop after the epoch), and whether any rank's stop flag is raised (`interrupted`: a
    /// signal reached it); the caller raises its own flag then, so every rank ends as
    /// interrupted.
    pub fn agree(&self, flow: Flow, interrupted: bool) -> Result<(Flow, bool)> {
        let asked = self.any(&[flow == Flow::StopAfterBatch, flow.stops(), interrupted])?;
        let flow = match (asked[0], asked[1]) {
            (true, _) => Flow::StopAfterBatch,
            (false, true) => flow.and(Flow::Stop),
            _ => flow,
        };
        Ok((flow, asked[2]))
    }
}
