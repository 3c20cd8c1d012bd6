//! The loop's side of data-parallel training (PyTorch's `DistributedDataParallel`): the same
//! start on every rank, DDP's Reducer around each backward, buffers from rank 0, and decisions
//! every rank agrees on. What each step means is in [`crate::distributed`].

use crate::distributed::Distributed;
use crate::Result;
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
}

impl Ddp {
    pub fn new(dist: Arc<Distributed>) -> Self {
        Self { dist, reducer: None }
    }

    /// Makes every rank start from rank 0's model: checks that the ranks built the same
    /// parameters, then broadcasts parameters and buffers.
    pub fn sync_from_main(&self, model: &dyn Model) -> Result<()> {
        self.dist.check_same_parameters(&model.parameters())?;
        let state: Vec<Tensor> = model.state_dict().into_iter().map(|(_, t)| t).collect();
        self.dist.broadcast_from_main(&state)
    }

    /// Before a training forward: the Reducer of the parameters that require grad now (one is
    /// built when that set changed), DDP's `prepare_for_forward`, and rank 0's buffers.
    pub fn before_forward(&mut self, model: &dyn Model) -> Result<()> {
        let params = model.parameters();
        let trained: Vec<bool> = params.iter().map(|(_, t)| t.requires_grad()).collect();
        if self.reducer.as_ref().is_none_or(|(_, was)| *was != trained) {
            let live: Vec<(String, Tensor)> = params.into_iter().filter(|(_, t)| t.requires_grad()).collect();
            self.reducer = None; // the old Reducer's hooks go before the new one's are placed
            self.reducer = match live.is_empty() {
                true => None,
                false => Some((self.dist.reducer(&live)?, trained)),
            };
        }
        if let Some((reducer, _)) = &self.reducer {
            reducer.prepare_for_forward().map_err(|e| self.dist.lost("preparing the gradient reduction", e))?;
        }
        if self.dist.config().broadcast_buffers {
            let names: std::collections::HashSet<String> = model.parameters().into_iter().map(|(n, _)| n).collect();
            let buffers: Vec<Tensor> =
                model.state_dict().into_iter().filter(|(n, _)| !names.contains(n)).map(|(_, t)| t).collect();
            self.dist.broadcast_from_main(&buffers)?;
        }
        Ok(())
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

/// Whether this process writes files: rank 0 of a job, or a process of its own.
pub(super) fn writes_files(ddp: Option<&Ddp>) -> bool {
    ddp.is_none_or(|d| d.dist.is_main())
}
