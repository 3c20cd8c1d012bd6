//! The [`Host`] the loop lends to a callback during a hook: the run's history, model, optimizer
//! and scorers, and the requests the callback makes (checkpoints, stops, a loss term, a skipped
//! step, a replaced batch), which the loop carries out once the event has reached every callback.

use super::events::Event;
use super::update_bn::{update_batch_norm, TrainData};
use crate::{History, Optimizer};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};
use torchfit_sdk::checkpoint::Action;
use torchfit_sdk::glob::Glob;
use torchfit_sdk::{Error, Forward, Host, Model, Parts, Result, SdkVersion};

/// What one callback asked for during one event.
#[derive(Default)]
pub(super) struct Requests {
    /// Stop after the current epoch (`request_stop`).
    pub stop: bool,
    /// Checkpoints to save or restore.
    pub actions: Vec<Action>,
    /// Terms to add to the loss (`on_loss_computed`).
    pub loss_terms: Vec<Tensor>,
    /// Skip the optimizer step (`on_loss_computed`, `on_grad_computed`).
    pub skip_step: bool,
    /// The batch to train on instead (`on_batch_begin`).
    pub batch: Option<(Tensor, Tensor)>,
}

pub(super) struct RunHost<'a> {
    pub history: &'a mut History,
    pub model: &'a mut dyn Model,
    pub optimizer: &'a mut Optimizer,
    pub device: Device,
    pub max_epochs: usize,
    pub batch_counts: (usize, usize),
    /// The hook running: requests that belong to another hook are refused.
    pub event: &'a Event<'a>,
    pub requests: &'a mut Requests,
    pub run_dir: Option<&'a Path>,
    pub scorers: &'a mut Scorers,
    /// The training data, in the hooks that may pass over it.
    pub train_data: Option<TrainData<'a>>,
    /// This process's place in a distributed job.
    pub process: torchfit_sdk::Process,
    /// The gradient scaler of a `16-mixed` run.
    pub scaler: Option<&'a crate::amp::GradScaler>,
    /// Training batches per optimizer step.
    pub accumulate_grad_batches: usize,
}

/// Scorer components built on first use in a run, by name.
pub(crate) struct Scorers {
    registry: crate::Registry,
    ctx: torchfit_sdk::BuildContext,
    built: std::collections::HashMap<String, Box<dyn torchfit_sdk::Scorer>>,
}

impl Scorers {
    /// Builds scorers from `registry`, each with `ctx` under its own name.
    pub fn new(registry: crate::Registry, ctx: torchfit_sdk::BuildContext) -> Self {
        Self { registry, ctx, built: Default::default() }
    }

    pub(crate) fn get(&mut self, name: &str) -> Result<&dyn torchfit_sdk::Scorer> {
        if !self.built.contains_key(name) {
            let ctx = torchfit_sdk::BuildContext { name: name.into(), ..self.ctx.clone() };
            let scorer = self.registry.scorer(name, &serde_json::json!({}), &ctx).map_err(Error::msg)?;
            self.built.insert(name.to_owned(), scorer);
        }
        Ok(self.built[name].as_ref())
    }
}

impl RunHost<'_> {
    /// Refuses a request made outside the hooks it belongs to.
    fn during(&self, what: &str, hooks: &[&str]) -> Result<()> {
        let hook = self.event.name();
        if hooks.contains(&hook) {
            Ok(())
        } else {
            Err(Error::msg(format!("{what} is possible in {} only, not in {hook}", hooks.join(" and "))))
        }
    }
}

impl Host for RunHost<'_> {
    fn epochs(&self) -> usize {
        self.history.len()
    }

    fn history_get(&self, epoch: isize, key: &str) -> Option<Value> {
        self.history.get(epoch, key).cloned()
    }

    fn history_epoch(&self, epoch: isize) -> Option<Map<String, Value>> {
        self.history.epoch(epoch)
    }

    fn history_batch_values(&self, epoch: isize, key: &str) -> Vec<Value> {
        self.history.batch_values(epoch, key).into_iter().cloned().collect()
    }

    fn history_batch_value(&self, epoch: isize, batch: isize, key: &str) -> Option<Value> {
        self.history.batch_value(epoch, batch, key).cloned()
    }

    fn accumulate_grad_batches(&self) -> usize {
        self.accumulate_grad_batches
    }

    fn grad_scaler(&self) -> Result<Option<torchfit_sdk::ScalerState>> {
        self.scaler.map(|s| s.state().map_err(|e| Error::msg(e.to_string()))).transpose()
    }

    fn record(&mut self, key: &str, value: Value) -> Result<()> {
        self.history.record(key, value).map_err(Error::msg)
    }

    fn record_batch(&mut self, key: &str, value: Value) -> Result<()> {
        self.history.record_batch(key, value).map_err(Error::msg)
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.model.parameters()
    }

    fn set_requires_grad(&mut self, pattern: &str, requires_grad: bool) -> Result<usize> {
        let glob = Glob::new(pattern).map_err(Error::msg)?;
        let mut n = 0;
        for (name, p) in self.model.parameters() {
            if glob.matches(&name) {
                let _ = p.set_requires_grad(requires_grad);
                n += 1;
            }
        }
        Ok(n)
    }

    fn param_groups(&self) -> usize {
        self.optimizer.groups().len()
    }

    fn lr(&self, group: usize) -> Result<f64> {
        self.optimizer.lr(group).ok_or_else(|| Error::msg(format!("no parameter group {group}")))
    }

    fn set_lr(&mut self, group: usize, lr: f64) -> Result<()> {
        if self.optimizer.set_lr(group, lr) {
            Ok(())
        } else {
            Err(Error::msg(format!("no parameter group {group}")))
        }
    }

    fn max_epochs(&self) -> usize {
        self.max_epochs
    }

    fn batch_counts(&self) -> (usize, usize) {
        self.batch_counts
    }

    fn request_stop(&mut self) {
        self.requests.stop = true;
    }

    fn save_checkpoint(&mut self, dir: &Path, prefix: &str, parts: Parts) -> Result<()> {
        let dir = torchfit_sdk::host::in_run_dir(self, dir);
        self.requests.actions.push(Action::Save { dir, prefix: prefix.into(), parts });
        Ok(())
    }

    fn load_checkpoint(&mut self, dir: &Path, prefix: &str, parts: Parts) -> Result<()> {
        let dir = torchfit_sdk::host::in_run_dir(self, dir);
        self.requests.actions.push(Action::Load { dir, prefix: prefix.into(), parts });
        Ok(())
    }

    fn run_dir(&self) -> Option<PathBuf> {
        self.run_dir.map(Path::to_path_buf)
    }

    fn score(&mut self, name: &str, y_true: &Tensor, y_pred: &Tensor) -> Result<f64> {
        self.scorers.get(name)?.score(y_true, y_pred)
    }

    fn sdk_version(&self) -> SdkVersion {
        SdkVersion::CURRENT
    }

    fn add_to_loss(&mut self, term: &Tensor) -> Result<()> {
        self.during("add_to_loss", &["on_loss_computed"])?;
        if term.numel() != 1 {
            return Err(Error::msg(format!("a loss term must be a single value; it has shape {:?}", term.size())));
        }
        self.requests.loss_terms.push(term.shallow_clone());
        Ok(())
    }

    fn skip_step(&mut self) -> Result<()> {
        self.during("skip_step", &["on_loss_computed", "on_grad_computed"])?;
        self.requests.skip_step = true;
        Ok(())
    }

    fn replace_batch(&mut self, x: &Tensor, y: &Tensor) -> Result<()> {
        self.during("replace_batch", &["on_batch_begin"])?;
        let (n, m) = (x.size().first().copied(), y.size().first().copied());
        if n.is_none() || n != m {
            return Err(Error::msg(format!("replace_batch: {:?} inputs but {:?} targets", x.size(), y.size())));
        }
        self.requests.batch = Some((x.f_to_device(self.device)?, y.f_to_device(self.device)?));
        Ok(())
    }

    fn group_parameters(&self, group: usize) -> Result<Vec<String>> {
        self.optimizer.group_parameters(group).ok_or_else(|| Error::msg(format!("no parameter group {group}")))
    }

    fn hyper(&self, group: usize, name: &str) -> Result<Value> {
        self.optimizer.hyper(group, name).map_err(Error::msg)
    }

    fn set_hyper(&mut self, group: usize, name: &str, value: Value) -> Result<()> {
        self.optimizer.set_hyper(group, name, &value).map_err(Error::msg)
    }

    fn optimizer_state(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(self.optimizer.state_dict())
    }

    fn buffers(&self) -> Result<Vec<(String, Tensor)>> {
        let params: Vec<String> = self.model.parameters().into_iter().map(|(n, _)| n).collect();
        Ok(self.model.state_dict().into_iter().filter(|(n, _)| !params.contains(n)).collect())
    }

    fn state_dict(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(self.model.state_dict())
    }

    fn load_state_dict(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        self.model.load_state_dict(state)
    }

    fn forward(&mut self, x: &Tensor, mode: Forward) -> Result<Tensor> {
        let x = x.f_to_device(self.device)?;
        let run = || self.model.forward(&x, mode.train);
        if mode.grad {
            tch::with_grad(run)
        } else {
            tch::no_grad(run)
        }
    }

    fn update_batch_norm(&mut self) -> Result<bool> {
        let hook = self.event.name();
        let data = self.train_data.as_mut().ok_or_else(|| {
            Error::msg(format!("update_batch_norm is possible in on_epoch_end and on_train_end only, not in {hook}"))
        })?;
        update_batch_norm(self.model, self.device, data.reborrow())
    }

    fn device(&self) -> Result<Device> {
        Ok(self.device)
    }

    /// Rank 0 of 1 unless the net trains in a distributed job.
    fn process(&self) -> Result<torchfit_sdk::Process> {
        Ok(self.process)
    }

    fn scorer_lower_is_better(&mut self, name: &str) -> Result<Option<bool>> {
        Ok(self.scorers.get(name)?.lower_is_better())
    }
}
