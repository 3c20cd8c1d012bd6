//! Stock callback `early_stopping` (skorch's `EarlyStopping`): stops training when `monitor` has
//! not improved by `threshold` for `patience` epochs; `load_best` restores the best epoch's
//! parameters at train end.
#![deny(missing_docs)]

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use torchfit_sdk::{export_plugin, parse_config, BuildContext, Callback, Error, Flow, Host, Parts, Result};

/// How `threshold` is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThresholdMode {
    /// Relative to the score.
    #[default]
    Rel,
    /// Absolute.
    Abs,
}

/// Settings (skorch's names and defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// History key to watch.
    pub monitor: String,
    /// Epochs without improvement before stopping.
    pub patience: u64,
    /// Required improvement.
    pub threshold: f64,
    /// `rel` or `abs`.
    pub threshold_mode: ThresholdMode,
    /// Direction of improvement.
    pub lower_is_better: bool,
    /// Restore the best epoch's parameters at train end.
    pub load_best: bool,
    /// Where `load_best` keeps the best parameters (relative to the run directory).
    pub dirname: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            monitor: "valid_loss".into(),
            patience: 5,
            threshold: 1e-4,
            threshold_mode: Default::default(),
            lower_is_better: true,
            load_best: Default::default(),
            dirname: "early_stopping".into(),
        }
    }
}

/// Run state (checkpointed): skorch's `misses_`, `dynamic_threshold_`, `best_epoch_`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Epochs since the last improvement.
    pub misses: u64,
    /// Score to beat (`None` before the first epoch).
    pub threshold: Option<f64>,
    /// Epoch of the best score.
    pub best_epoch: usize,
    /// The best score.
    pub best: Option<f64>,
}

/// What an epoch's score means for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A new best.
    Improved,
    /// No improvement, still patient.
    Missed,
    /// No improvement for `patience` epochs: stop.
    Stop,
}

/// Updates `state` with epoch `epoch`'s `score` and decides (pure; skorch's rules).
pub fn judge(cfg: &Config, state: &mut State, epoch: usize, score: f64) -> Verdict {
    let improved = match state.threshold {
        None => true,
        Some(t) if cfg.lower_is_better => score < t,
        Some(t) => score > t,
    };
    if improved {
        let change = match cfg.threshold_mode {
            ThresholdMode::Rel => cfg.threshold * score,
            ThresholdMode::Abs => cfg.threshold,
        };
        state.threshold = Some(if cfg.lower_is_better { score - change } else { score + change });
        state.misses = 0;
        state.best_epoch = epoch;
        state.best = Some(score);
        return Verdict::Improved;
    }
    state.misses += 1;
    if state.misses >= cfg.patience {
        Verdict::Stop
    } else {
        Verdict::Missed
    }
}

/// The `early_stopping` callback: its settings and its counters.
pub struct EarlyStopping {
    cfg: Config,
    state: State,
}

fn fresh() -> State {
    State { misses: 0, threshold: None, best_epoch: 0, best: None }
}

fn build(config: &serde_json::Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let cfg: Config = parse_config(config)?;
    if cfg.patience == 0 {
        return Err(Error::config("patience", "must be at least 1"));
    }
    Ok(Box::new(EarlyStopping { cfg, state: fresh() }))
}

impl EarlyStopping {
    fn snapshot(&self) -> PathBuf {
        PathBuf::from(&self.cfg.dirname)
    }
}

impl Callback for EarlyStopping {
    fn initialize(&mut self) -> Result<()> {
        self.state = fresh();
        Ok(())
    }

    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        let epoch = host.epochs();
        let score =
            host.history_number(&self.cfg.monitor, "its scoring callback (valid_loss needs validation data)")?;
        match judge(&self.cfg, &mut self.state, epoch, score) {
            Verdict::Improved if self.cfg.load_best => {
                host.save_checkpoint(&self.snapshot(), "best_", Parts::PARAMS).map(|()| Flow::Continue)
            }
            Verdict::Improved | Verdict::Missed => Ok(Flow::Continue),
            Verdict::Stop => {
                torchfit_sdk::log::info!(
                    "Stopping since {} has not improved in the last {} epochs. The best score {:.4} was observed at epoch {}.",
                    self.cfg.monitor, self.cfg.patience, self.state.best.unwrap_or(f64::NAN), self.state.best_epoch
                );
                Ok(Flow::Stop)
            }
        }
    }

    fn on_train_end(&mut self, host: &mut dyn Host) -> Result<()> {
        if self.cfg.load_best && self.state.best_epoch > 0 && self.state.best_epoch != host.epochs() {
            host.load_checkpoint(&self.snapshot(), "best_", Parts::PARAMS)?;
        }
        Ok(())
    }

    fn state(&self) -> Result<serde_json::Value> {
        serde_json::to_value(&self.state).map_err(Error::msg)
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        self.state = serde_json::from_value(state).map_err(|e| Error::msg(format!("early_stopping state: {e}")))?;
        Ok(())
    }
}

export_plugin! {
    name: "torchfit-plugin-early-stopping",
    components: [Callback("early_stopping", build, "stops when `monitor` has not improved for `patience` epochs; keys: monitor, patience, threshold, threshold_mode, lower_is_better, load_best, dirname")],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: serde_json::Value) -> Config {
        let mut c = serde_json::json!({"patience": 3});
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        parse_config(&c).unwrap()
    }

    fn run(cfg: &Config, scores: &[f64]) -> Vec<Verdict> {
        let mut s = fresh();
        scores.iter().enumerate().map(|(i, &v)| judge(cfg, &mut s, i + 1, v)).collect()
    }

    #[test]
    fn never_stops_while_it_is_improving() {
        let v = run(&cfg(serde_json::json!({})), &[1.0, 0.9, 0.8, 0.7, 0.6, 0.5]);
        assert!(v.iter().all(|&x| x == Verdict::Improved));
    }

    #[test]
    fn stops_after_patience_epochs_without_improvement() {
        let v = run(&cfg(serde_json::json!({})), &[1.0, 0.9, 0.95, 0.91, 0.92]);
        assert_eq!(v, [Verdict::Improved, Verdict::Improved, Verdict::Missed, Verdict::Missed, Verdict::Stop]);
    }

    #[test]
    fn an_improvement_below_the_relative_threshold_is_a_miss() {
        // 0.9 * (1 - 0.1) = 0.81 must be beaten.
        let v = run(&cfg(serde_json::json!({"threshold": 0.1})), &[0.9, 0.85, 0.8]);
        assert_eq!(v, [Verdict::Improved, Verdict::Missed, Verdict::Improved]);
    }

    #[test]
    fn higher_is_better_with_an_absolute_threshold() {
        let c = cfg(serde_json::json!({"lower_is_better": false, "threshold_mode": "abs", "threshold": 0.05}));
        let v = run(&c, &[0.5, 0.54, 0.56, 0.6]);
        assert_eq!(v, [Verdict::Improved, Verdict::Missed, Verdict::Improved, Verdict::Missed]);
    }
}
