//! `passthrough_scoring`: the epoch value of a batch-level key (skorch's `PassthroughScoring`).
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `name` | the callback's name | the batch key to average and the epoch key to write |
//! | `on_train` | `false` | weight by `train_batch_size` (else `valid_batch_size`) |
//! | `lower_is_better` | `true` | direction of `<name>_best` |
//!
//! Reads batch keys `<name>` and `{train,valid}_batch_size`; writes `<name>` and `<name>_best`.
//! The mean is over the batches that recorded both (a batch skipped for a non-finite loss has no
//! loss); epochs without such batches (no validation data) record nothing.

use super::ScoringConfig;
use torchfit_sdk::metrics::weighted_mean;
use torchfit_sdk::{parse_config, scoring::record_with_best, BuildContext, Callback, Flow, Host, Result};

/// The key averaged and written, and the batch-size key that weighs it.
pub(crate) struct Passthrough {
    key: String,
    size_key: &'static str,
    lower_is_better: bool,
}

/// Builds it.
pub(crate) fn build(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: ScoringConfig = parse_config(config)?;
    Ok(Box::new(Passthrough {
        key: c.key(ctx),
        size_key: if c.on_train { "train_batch_size" } else { "valid_batch_size" },
        lower_is_better: c.lower_is_better.unwrap_or(true),
    }))
}

impl Callback for Passthrough {
    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        // Batches that recorded both the value and its size (a skipped batch has no loss).
        let batches = host.history_get(-1, "batches");
        let (values, sizes): (Vec<f64>, Vec<f64>) = batches
            .as_ref()
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|b| {
                let number = |key: &str| b.get(key).and_then(torchfit_sdk::values::as_number);
                Some((number(&self.key)?, number(self.size_key)?))
            })
            .unzip();
        let Some(score) = weighted_mean(&values, &sizes) else { return Ok(Flow::Continue) };
        record_with_best(host, &self.key, score, self.lower_is_better)?;
        Ok(Flow::Continue)
    }
}
