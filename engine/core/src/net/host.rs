//! The [`Host`] the loop lends to callbacks: history, parameters and learning rates of the run.

use crate::glob::Glob;
use crate::{History, Optimizer};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use tch::Tensor;
use torchfit_sdk::checkpoint::Action;
use torchfit_sdk::{Error, Host, Model, Parts, Result};

pub(crate) struct RunHost<'a> {
    pub history: &'a mut History,
    pub model: &'a dyn Model,
    pub optimizer: &'a mut Optimizer,
    pub max_epochs: usize,
    pub batch_counts: (usize, usize),
    pub stop: &'a mut bool,
    pub actions: &'a mut Vec<Action>,
    pub run_dir: Option<&'a Path>,
    pub scorers: &'a mut Scorers,
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
        *self.stop = true;
    }

    fn save_checkpoint(&mut self, dir: &Path, prefix: &str, parts: Parts) -> Result<()> {
        self.actions.push(Action::Save {
            dir: torchfit_sdk::host::in_run_dir(self, dir),
            prefix: prefix.into(),
            parts,
        });
        Ok(())
    }

    fn load_checkpoint(&mut self, dir: &Path, prefix: &str, parts: Parts) -> Result<()> {
        self.actions.push(Action::Load {
            dir: torchfit_sdk::host::in_run_dir(self, dir),
            prefix: prefix.into(),
            parts,
        });
        Ok(())
    }

    fn run_dir(&self) -> Option<PathBuf> {
        self.run_dir.map(Path::to_path_buf)
    }

    fn score(&mut self, name: &str, y_true: &Tensor, y_pred: &Tensor) -> Result<f64> {
        let s = &mut *self.scorers;
        if !s.built.contains_key(name) {
            let ctx = torchfit_sdk::BuildContext { name: name.into(), ..s.ctx.clone() };
            let scorer = s.registry.scorer(name, &serde_json::json!({}), &ctx).map_err(Error::msg)?;
            s.built.insert(name.to_owned(), scorer);
        }
        s.built[name].score(y_true, y_pred)
    }
}
