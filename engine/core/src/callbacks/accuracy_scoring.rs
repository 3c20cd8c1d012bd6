//! `accuracy_scoring`: the accuracy of an epoch's predictions, the default `valid_acc`.
//!
//! A narrow builtin, so that a classifier reports `valid_acc` in programs that link no plugin.
//! skorch's `EpochScoring` with every other scorer (f1, roc_auc, log_loss, r2, user scorers) is
//! the `epoch_scoring` callback of the `torchfit-plugin-scoring` plugin.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `name` | the callback's name | the history key written |
//! | `on_train` | `false` | score training batches instead of validation batches |
//! | `lower_is_better` | `false` | direction of `<name>_best` |
//!
//! Predictions are cached from `on_batch_end` (no second inference pass) and scored at epoch end
//! with one device synchronisation. Writes `<name>` and `<name>_best`; an epoch without batches
//! of its phase (no validation data) records nothing.

use super::ScoringConfig;
use tch::{Kind, Tensor};
use torchfit_sdk::metrics::correct;
use torchfit_sdk::{parse_config, scoring::record_with_best, BatchOutput, BuildContext, Callback, Flow, Host, Result};

/// Its settings, and per batch of its phase the count of right predictions (a device scalar) and
/// the batch size.
pub(crate) struct AccuracyScoring {
    key: String,
    on_train: bool,
    lower_is_better: bool,
    cache: Vec<(Tensor, i64)>,
}

/// Builds it.
pub(crate) fn build(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: ScoringConfig = parse_config(config)?;
    Ok(Box::new(AccuracyScoring {
        key: c.key(ctx),
        on_train: c.on_train,
        lower_is_better: c.lower_is_better.unwrap_or(false),
        cache: Vec::new(),
    }))
}

impl Callback for AccuracyScoring {
    fn on_epoch_begin(&mut self, _host: &mut dyn Host) -> Result<Flow> {
        self.cache.clear();
        Ok(Flow::Continue)
    }

    fn on_batch_end(&mut self, _host: &mut dyn Host, out: &BatchOutput<'_>) -> Result<Flow> {
        if out.batch.training == self.on_train {
            self.cache.push((correct(out.batch.y, out.y_pred)?, out.batch.y.size()[0]));
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
