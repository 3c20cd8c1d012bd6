//! `epoch_scoring`: scores the predictions of an epoch (skorch's `EpochScoring`).
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `scoring` | `"accuracy"` | the scorer: `accuracy` |
//! | `name` | the callback's name | the history key written |
//! | `on_train` | `false` | score training batches instead of validation batches |
//! | `lower_is_better` | `false` | direction of `<name>_best` |
//!
//! Predictions are cached from `on_batch_end` (no second inference pass) and scored at epoch end
//! with one device synchronisation. Writes `<name>` and `<name>_best`; an epoch without batches
//! of its phase (no validation data) records nothing.

use serde::Deserialize;
use tch::{Kind, Tensor};
use torchfit_sdk::{parse_config, scoring::record_with_best, BatchOutput, BuildContext, Callback, Flow, Host, Result};

/// Scorers.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Scoring {
    /// Fraction of samples whose arg-max prediction equals the label.
    Accuracy,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "accuracy")]
    scoring: Scoring,
    name: Option<String>,
    #[serde(default)]
    on_train: bool,
    #[serde(default)]
    lower_is_better: bool,
}

fn accuracy() -> Scoring {
    Scoring::Accuracy
}

/// The callback.
pub struct EpochScoring {
    key: String,
    on_train: bool,
    lower_is_better: bool,
    /// Per batch: number of correct predictions (a device scalar) and batch size.
    cache: Vec<(Tensor, i64)>,
}

/// Builds it.
pub fn build(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: Config = parse_config(config)?;
    let Scoring::Accuracy = c.scoring;
    Ok(Box::new(EpochScoring { key: c.name.unwrap_or_else(|| ctx.name.clone()), on_train: c.on_train, lower_is_better: c.lower_is_better, cache: Vec::new() }))
}

impl Callback for EpochScoring {
    fn on_epoch_begin(&mut self, _host: &mut dyn Host) -> Result<Flow> {
        self.cache.clear();
        Ok(Flow::Continue)
    }

    fn on_batch_end(&mut self, _host: &mut dyn Host, out: &BatchOutput<'_>) -> Result<Flow> {
        if out.batch.training == self.on_train {
            let correct = out.y_pred.f_argmax(-1, false)?.f_eq_tensor(out.batch.y)?.f_sum(Kind::Int64)?;
            self.cache.push((correct, out.batch.y.size()[0]));
        }
        Ok(Flow::Continue)
    }

    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        if self.cache.is_empty() {
            return Ok(Flow::Continue);
        }
        let correct: Vec<Tensor> = self.cache.iter().map(|(c, _)| c.shallow_clone()).collect();
        let total: i64 = self.cache.iter().map(|(_, n)| n).sum();
        let score = Tensor::f_stack(&correct, 0)?.f_sum(Kind::Int64)?.f_int64_value(&[])? as f64 / total as f64;
        self.cache.clear();
        record_with_best(host, &self.key, score, self.lower_is_better)?;
        Ok(Flow::Continue)
    }
}
