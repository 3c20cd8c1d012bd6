//! `ReduceLROnPlateau`, as `torch.optim.lr_scheduler.ReduceLROnPlateau` decides.

use serde::{Deserialize, Serialize};

/// Settings (torch's names and defaults; `monitor` is the history key, skorch's default).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlateauConfig {
    /// History key to watch.
    #[serde(default = "valid_loss")]
    pub monitor: String,
    /// `min` or `max`.
    #[serde(default = "min")]
    pub mode: String,
    /// Multiplier on a reduction.
    #[serde(default = "tenth")]
    pub factor: f64,
    /// Epochs without improvement tolerated.
    #[serde(default = "ten")]
    pub patience: u64,
    /// Improvement threshold.
    #[serde(default = "threshold")]
    pub threshold: f64,
    /// `rel` or `abs`.
    #[serde(default = "rel")]
    pub threshold_mode: String,
    /// Epochs to wait after a reduction.
    #[serde(default)]
    pub cooldown: u64,
    /// Lowest rate.
    #[serde(default)]
    pub min_lr: f64,
    /// Smallest change applied.
    #[serde(default = "eps")]
    pub eps: f64,
}

fn valid_loss() -> String {
    "valid_loss".into()
}
fn min() -> String {
    "min".into()
}
fn rel() -> String {
    "rel".into()
}
fn tenth() -> f64 {
    0.1
}
fn ten() -> u64 {
    10
}
fn threshold() -> f64 {
    1e-4
}
fn eps() -> f64 {
    1e-8
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
        match (cfg.mode.as_str(), cfg.threshold_mode.as_str()) {
            ("min", "rel") => a < best * (1.0 - cfg.threshold),
            ("min", _) => a < best - cfg.threshold,
            (_, "rel") => a > best * (cfg.threshold + 1.0),
            _ => a > best + cfg.threshold,
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
