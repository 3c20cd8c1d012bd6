//! `ReduceLROnPlateau`, as `torch.optim.lr_scheduler.ReduceLROnPlateau` decides.

use serde::{Deserialize, Serialize};

/// Settings (torch's names and defaults; `monitor` is the history key, skorch's default).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlateauConfig {
    /// History key to watch.
    pub monitor: String,
    /// Whether the monitored value should fall (`min`) or rise (`max`).
    pub mode: Mode,
    /// Multiplier on a reduction.
    pub factor: f64,
    /// Epochs without improvement tolerated.
    pub patience: u64,
    /// Improvement threshold.
    pub threshold: f64,
    /// Whether `threshold` is relative to the best value (`rel`) or absolute (`abs`).
    pub threshold_mode: ThresholdMode,
    /// Epochs to wait after a reduction.
    pub cooldown: u64,
    /// Lowest rate.
    pub min_lr: f64,
    /// Smallest change applied.
    pub eps: f64,
}

impl Default for PlateauConfig {
    fn default() -> Self {
        PlateauConfig {
            monitor: "valid_loss".into(),
            mode: Default::default(),
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: Default::default(),
            cooldown: Default::default(),
            min_lr: Default::default(),
            eps: 1e-8,
        }
    }
}

/// The direction of improvement (torch's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Lower is better (a loss).
    #[default]
    Min,
    /// Higher is better (an accuracy).
    Max,
}

/// How `threshold` measures an improvement (torch's `threshold_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThresholdMode {
    /// Better than `best * (1 ∓ threshold)`.
    #[default]
    Rel,
    /// Better than `best ∓ threshold`.
    Abs,
}

impl PlateauConfig {
    /// Checks settings torch would refuse (a `factor` not below 1: "Factor should be < 1.0");
    /// `(key, message)` on error.
    pub fn validate(&self) -> Result<(), (String, String)> {
        match self.factor < 1.0 {
            true => Ok(()),
            false => Err(("factor".into(), format!("must be below 1, got {:?}", self.factor))),
        }
    }
}

/// Counters, checkpointed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plateau {
    /// Best value so far (`None` before the first).
    pub best: Option<f64>,
    /// Epochs since the last improvement.
    pub num_bad_epochs: u64,
    /// Cooldown epochs left.
    pub cooldown_counter: u64,
}

impl Plateau {
    fn better(cfg: &PlateauConfig, a: f64, best: Option<f64>) -> bool {
        let Some(best) = best else { return true };
        match (cfg.mode, cfg.threshold_mode) {
            (Mode::Min, ThresholdMode::Rel) => a < best * (1.0 - cfg.threshold),
            (Mode::Min, ThresholdMode::Abs) => a < best - cfg.threshold,
            (Mode::Max, ThresholdMode::Rel) => a > best * (cfg.threshold + 1.0),
            (Mode::Max, ThresholdMode::Abs) => a > best + cfg.threshold,
        }
    }

    /// One step with the epoch's `value`; returns the new rate of each group.
    pub fn step(&mut self, cfg: &PlateauConfig, value: f64, lrs: &[f64]) -> Vec<f64> {
        if Self::better(cfg, value, self.best) {
            self.best = Some(value);
            self.num_bad_epochs = 0;
        } else {
            self.num_bad_epochs += 1;
        }
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.num_bad_epochs = 0;
        }
        if self.num_bad_epochs > cfg.patience {
            self.cooldown_counter = cfg.cooldown;
            self.num_bad_epochs = 0;
            return lrs
                .iter()
                .map(|&old| {
                    let new = (old * cfg.factor).max(cfg.min_lr);
                    if old - new > cfg.eps {
                        new
                    } else {
                        old
                    }
                })
                .collect();
        }
        lrs.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> PlateauConfig {
        torchfit_sdk::parse_config(&json).unwrap()
    }

    #[test]
    fn a_misspelt_mode_is_refused_by_name() {
        for (key, value) in [("mode", "mni"), ("threshold_mode", "relative")] {
            let err = torchfit_sdk::parse_config::<PlateauConfig>(&serde_json::json!({ key: value })).unwrap_err();
            match err {
                torchfit_sdk::Error::Config { key: k, message } => {
                    assert_eq!(k, key);
                    assert!(message.contains(value), "{message}");
                }
                other => panic!("{other}"),
            }
        }
        assert_eq!(config(serde_json::json!({})).mode, Mode::Min);
        assert_eq!(
            config(serde_json::json!({"mode": "max", "threshold_mode": "abs"})).threshold_mode,
            ThresholdMode::Abs
        );
    }

    #[test]
    fn a_factor_that_would_not_cut_the_rate_is_refused_as_torch_refuses_it() {
        assert!(config(serde_json::json!({"factor": 0.5})).validate().is_ok());
        for factor in [1.0, 2.0] {
            let (key, message) = config(serde_json::json!({ "factor": factor })).validate().unwrap_err();
            assert_eq!(key, "factor");
            assert!(message.contains("must be below 1"), "{message}");
        }
    }

    #[test]
    fn the_rate_is_cut_once_patience_runs_out_then_cools_down() {
        let cfg = config(serde_json::json!({"patience": 1, "factor": 0.5, "cooldown": 1}));
        let mut p = Plateau::default();
        let mut lr = vec![1.0];
        let mut seen = Vec::new();
        for value in [1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5] {
            lr = p.step(&cfg, value, &lr);
            seen.push(lr[0]);
        }
        // Two epochs without improvement (more than patience 1) cut the rate; the epoch after a
        // cut is cooldown, so counting starts again after it.
        assert_eq!(seen, [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]);
    }

    #[test]
    fn max_mode_counts_a_rise_as_an_improvement() {
        let cfg = config(serde_json::json!({"mode": "max", "patience": 0, "factor": 0.1}));
        let mut p = Plateau::default();
        assert_eq!(p.step(&cfg, 0.5, &[1.0]), [1.0]);
        assert_eq!(p.step(&cfg, 0.6, &[1.0]), [1.0], "a rise is an improvement");
        assert_eq!(p.step(&cfg, 0.55, &[1.0]), [0.1], "a fall is not");
    }
}
