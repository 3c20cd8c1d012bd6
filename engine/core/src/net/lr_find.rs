//! The learning-rate finder (fastai's `lr_find`, Lightning's `Tuner.lr_find`): training
//! batches at a learning rate growing exponentially from `start_lr` to `end_lr` over `num_it`
//! batches, the loss smoothed as it goes, stopped when the smoothed loss exceeds `diverge`
//! times its minimum; then the model, the optimizer (its state and rates), the gradient scaler
//! and the history are put back as they were. [`suggest`] reads the curve as fastai does:
//! the steepest descent and the valley.
//!
//! The sweep runs the real loop (`fit_loop::partial_fit`, so the step seam with its precision
//! and accumulation) without validation and with one callback, [`Sweep`], in place of the
//! run's: a finder that checkpointed, logged or stopped early would not measure the rate.

use super::build::Components;
use super::fit_loop::partial_fit;
use super::{EpochCount, NeuralNet, Valid};
use crate::{Error, History, Result};
use tch::Tensor;
use torchfit_sdk::{BatchOutput, Callback, DatasetReader, Flow, Host};

/// How the finder sweeps (fastai's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrFindConfig {
    /// The first batch's learning rate (1e-7).
    pub start_lr: f64,
    /// The rate the sweep ends at, reached at batch `num_it` (10).
    pub end_lr: f64,
    /// Batches in the sweep, over as many epochs as they take (100).
    pub num_it: usize,
    /// The sweep stops when the smoothed loss exceeds this many times its minimum (4).
    pub diverge: f64,
    /// The smoothing: an exponential moving average of the batch losses with this weight on
    /// the past, debiased (0.98).
    pub beta: f64,
}

impl Default for LrFindConfig {
    fn default() -> Self {
        Self { start_lr: 1e-7, end_lr: 10.0, num_it: 100, diverge: 4.0, beta: 0.98 }
    }
}

impl LrFindConfig {
    /// Refuses a sweep that cannot run: rates must be positive and grow, `num_it` at least 2.
    pub fn validated(self) -> std::result::Result<Self, String> {
        if !(self.start_lr > 0.0 && self.end_lr > self.start_lr && self.end_lr.is_finite()) {
            return Err(format!(
                "the rates must satisfy 0 < start_lr < end_lr, got {} and {}",
                self.start_lr, self.end_lr
            ));
        }
        if self.num_it < 2 {
            return Err(format!("num_it must be at least 2, got {}", self.num_it));
        }
        if !(self.diverge > 1.0 && (0.0..1.0).contains(&self.beta)) {
            return Err(format!("diverge must exceed 1 and beta be in [0, 1), got {} and {}", self.diverge, self.beta));
        }
        Ok(self)
    }

    /// The learning rate of batch `i` (from 0): `start_lr * (end_lr / start_lr)^(i / num_it)`.
    pub fn lr(&self, i: usize) -> f64 {
        self.start_lr * (self.end_lr / self.start_lr).powf(i as f64 / self.num_it as f64)
    }
}

/// A suggested learning rate and the curve's point it was read at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Suggestion {
    /// The rate.
    pub lr: f64,
    /// The smoothed loss there.
    pub loss: f64,
}

/// What the sweep found.
#[derive(Debug, Clone, PartialEq)]
pub struct LrFind {
    /// The learning rate of each batch swept.
    pub lrs: Vec<f64>,
    /// Each batch's loss.
    pub losses: Vec<f64>,
    /// The smoothed losses the suggestions read.
    pub smoothed: Vec<f64>,
    /// Where the smoothed loss falls fastest against `log(lr)`.
    pub steepest: Option<Suggestion>,
    /// fastai's valley: a point two thirds into the longest stretch over which the loss keeps
    /// falling.
    pub valley: Option<Suggestion>,
}

/// fastai's suggestions on the curve `(lrs, smoothed)`: both read it without its first tenth
/// (`num_it / 10` points: the flat start) and its last five (the divergence).
pub fn suggest(lrs: &[f64], smoothed: &[f64], num_it: usize) -> (Option<Suggestion>, Option<Suggestion>) {
    let end = lrs.len().min(smoothed.len()).saturating_sub(5);
    let start = (num_it / 10).min(end);
    let (lrs, losses) = (&lrs[start..end], &smoothed[start..end]);
    if lrs.len() < 2 {
        return (None, None);
    }
    let at = |i: usize| Suggestion { lr: lrs[i], loss: losses[i] };
    // Steepest: the most negative slope of the loss against log(lr), at the segment's start.
    let slope = |i: usize| (losses[i + 1] - losses[i]) / (lrs[i + 1].ln() - lrs[i].ln());
    let steepest = (0..lrs.len() - 1).filter(|&i| slope(i).is_finite()).min_by(|&a, &b| slope(a).total_cmp(&slope(b)));
    // Valley: the longest decreasing run of losses (a longest decreasing subsequence, ending
    // at each point in turn), and in it, as fastai reads it, the point half a third past its
    // first third.
    let n = losses.len();
    let mut longest = vec![1usize; n];
    let (mut best_end, mut best_start) = (0usize, 0usize);
    for i in 1..n {
        for j in 0..i {
            if losses[i] < losses[j] && longest[i] < longest[j] + 1 {
                longest[i] = longest[j] + 1;
            }
        }
        if longest[best_end] < longest[i] {
            best_end = i;
            best_start = best_end - longest[best_end];
        }
    }
    let third = (best_end - best_start) as f64 / 3.0;
    let valley = (best_start + third as usize + (third / 2.0) as usize).min(n - 1);
    (steepest.map(at), Some(at(valley)))
}

/// The callback of the sweep: sets each batch's rate, records it, the loss and the smoothed
/// loss, stops at `num_it` batches or when the smoothed loss diverges.
struct Sweep {
    config: LrFindConfig,
    batches: usize,
    mean: f64,
    best: f64,
}

/// The batch keys the sweep records.
const LR_KEY: &str = "lr_find_lr";
const SMOOTHED_KEY: &str = "lr_find_smoothed";
const LOSS_KEY: &str = "lr_find_loss";

impl Sweep {
    fn set_lr(&self, host: &mut dyn Host, lr: f64) -> torchfit_sdk::Result<()> {
        (0..host.param_groups()).try_for_each(|g| host.set_lr(g, lr))
    }
}

impl Callback for Sweep {
    fn on_train_begin(&mut self, host: &mut dyn Host) -> torchfit_sdk::Result<Flow> {
        self.set_lr(host, self.config.lr(0))?;
        Ok(Flow::Continue)
    }

    fn on_batch_end(&mut self, host: &mut dyn Host, out: &BatchOutput<'_>) -> torchfit_sdk::Result<Flow> {
        if !out.batch.training {
            return Ok(Flow::Continue);
        }
        let loss = out.loss.f_double_value(&[]).map_err(|e| torchfit_sdk::Error::msg(e.to_string()))?;
        let i = self.batches;
        self.batches += 1;
        let beta = self.config.beta;
        self.mean = beta * self.mean + (1.0 - beta) * loss;
        let smoothed = self.mean / (1.0 - beta.powi(self.batches as i32));
        host.record_batch(LR_KEY, self.config.lr(i).into())?;
        host.record_batch(LOSS_KEY, torchfit_sdk::values::number(loss))?;
        host.record_batch(SMOOTHED_KEY, torchfit_sdk::values::number(smoothed))?;
        self.best = if i == 0 { smoothed } else { self.best.min(smoothed) };
        let diverged = !smoothed.is_finite() || (i > 0 && smoothed > self.config.diverge * self.best);
        if diverged || self.batches >= self.config.num_it {
            return Ok(Flow::StopAfterBatch);
        }
        self.set_lr(host, self.config.lr(self.batches))?;
        Ok(Flow::Continue)
    }
}

/// The model's and the optimizer's state, copied, and the history: what the finder puts back.
struct Kept {
    params: Vec<(String, Tensor)>,
    optimizer: Vec<(String, Tensor)>,
    history: History,
}

impl Kept {
    fn take(c: &Components, history: &History) -> Result<Self> {
        let copy = |state: Vec<(String, Tensor)>| -> Result<Vec<(String, Tensor)>> {
            state.into_iter().map(|(n, t)| Ok((n, t.f_detach_copy()?))).collect()
        };
        Ok(Kept {
            params: copy(c.model.state_dict())?,
            optimizer: copy(c.optimizer_state())?,
            history: history.clone(),
        })
    }

    fn restore(self, c: &mut Components, history: &mut History) -> Result<()> {
        c.model.load_state_dict(&self.params).map_err(|e| Error::Data(format!("restoring the model: {e}")))?;
        c.optimizer.zero_grad();
        // The rates and the state buffers as they were (buffers the sweep made are dropped).
        c.load_optimizer_state(&self.optimizer)?;
        *history = self.history;
        c.mid_epoch = false; // the sweep's last epoch was cut: the net is between epochs again
        Ok(())
    }
}

impl NeuralNet {
    /// Sweeps the learning rate over the training samples `train` of `reader` (all of them
    /// when `None`), then puts the net back as it was (initializing it first if it was not):
    /// see the module documentation.
    pub fn lr_find(
        &mut self,
        reader: &mut dyn DatasetReader,
        train: Option<&[i64]>,
        config: LrFindConfig,
    ) -> Result<LrFind> {
        let config = config.validated().map_err(Error::Data)?;
        let train: Vec<i64> = train.map(<[i64]>::to_vec).unwrap_or_else(|| (0..reader.len() as i64).collect());
        if train.is_empty() {
            return Err(Error::Data("no training samples".into()));
        }
        if self.components.is_none() {
            self.initialize_for(reader, &train)?;
        }
        let c = self.components.as_mut().ok_or(Error::NotInitialized)?;
        let kept = Kept::take(c, &self.history)?;
        let batches_per_epoch = train.len().div_ceil(c.settings.iterator_train.batch_size.max(1));
        let epochs = config.num_it.div_ceil(batches_per_epoch);
        let own = std::mem::replace(
            &mut c.callbacks,
            vec![("lr_find".into(), Box::new(Sweep { config, batches: 0, mean: 0.0, best: f64::INFINITY }))],
        );
        let max_epochs = std::mem::replace(&mut c.settings.max_epochs, epochs);
        self.history = History::new();
        let swept = partial_fit(c, &mut self.history, None, EpochCount::PerCall, reader, &train, Valid::None);
        let values = |key: &str| -> Vec<f64> {
            (0..self.history.len() as isize)
                .flat_map(|e| self.history.batch_values(e, key))
                .filter_map(torchfit_sdk::values::as_number)
                .collect()
        };
        let (lrs, losses, smoothed) = (values(LR_KEY), values(LOSS_KEY), values(SMOOTHED_KEY));
        c.callbacks = own;
        c.settings.max_epochs = max_epochs;
        kept.restore(c, &mut self.history)?;
        swept?;
        let (steepest, valley) = suggest(&lrs, &smoothed, config.num_it);
        Ok(LrFind { lrs, losses, smoothed, steepest, valley })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_grows_exponentially_from_start_to_end() {
        let c = LrFindConfig { start_lr: 1e-4, end_lr: 1.0, num_it: 4, ..LrFindConfig::default() };
        let rates: Vec<f64> = (0..=4).map(|i| c.lr(i)).collect();
        for (r, e) in rates.iter().zip([1e-4, 1e-3, 1e-2, 1e-1, 1.0]) {
            assert!((r / e - 1.0).abs() < 1e-12, "{rates:?}");
        }
        assert!(LrFindConfig { start_lr: 1.0, end_lr: 0.1, ..c }.validated().is_err());
        assert!(LrFindConfig { num_it: 1, ..c }.validated().is_err());
    }

    #[test]
    fn the_suggestions_sit_on_the_falling_part_of_the_curve() {
        // A loss flat at 2 for small rates, falling from 1e-4 to 1e-2 (steepest near 1e-3),
        // rising after.
        let lrs: Vec<f64> = (0..100).map(|i| 1e-7 * 10f64.powf(i as f64 * 8.0 / 100.0)).collect();
        let loss = |lr: f64| {
            let x = lr.log10();
            if x < -4.0 {
                2.0
            } else if x < -2.0 {
                1.0 + (-(x + 3.0) * 2.0).tanh()
            } else {
                0.04 + (x + 2.0).powi(2)
            }
        };
        let losses: Vec<f64> = lrs.iter().map(|&lr| loss(lr)).collect();
        let (steepest, valley) = suggest(&lrs, &losses, 100);
        let (s, v) = (steepest.unwrap().lr, valley.unwrap().lr);
        assert!((1e-4..1e-2).contains(&s), "steepest {s}");
        assert!((1e-4..1e-1).contains(&v), "valley {v}");
        assert_eq!(suggest(&lrs[..6], &losses[..6], 100), (None, None), "too short a curve suggests nothing");
    }
}
