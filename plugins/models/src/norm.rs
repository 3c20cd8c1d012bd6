//! Batch normalization whose running statistics follow either the layer's momentum or a
//! cumulative average of the batches seen ([`BatchNormStats`]), as PyTorch's `BatchNorm` does
//! with `momentum=None`: what `update_bn` needs to recompute the statistics of averaged weights.
//! Its variables are tch's `BatchNorm`'s, under the same names.

use std::cell::Cell;
use torchfit_sdk::tch::nn::{self, BatchNormConfig};
use torchfit_sdk::tch::{self, Tensor};
use torchfit_sdk::{BatchNormStats, Result};

/// A batch-normalization layer (PyTorch's defaults: momentum 0.1, eps 1e-5, affine).
#[derive(Debug)]
pub struct BatchNorm {
    layer: nn::BatchNorm,
    momentum: f64,
    eps: f64,
    cudnn_enabled: bool,
    /// Training-mode batches seen since the statistics were reset, while averaging them
    /// cumulatively; `None` while following the momentum.
    cumulative: Cell<Option<u64>>,
}

impl BatchNorm {
    fn new(layer: nn::BatchNorm, config: BatchNormConfig) -> Self {
        BatchNorm {
            layer,
            momentum: config.momentum,
            eps: config.eps,
            cudnn_enabled: config.cudnn_enabled,
            cumulative: Cell::new(None),
        }
    }

    /// Over the features of `[batch, features]` (or `[batch, features, length]`) inputs.
    pub fn new_1d(path: nn::Path<'_>, features: i64) -> Self {
        let config = BatchNormConfig::default();
        BatchNorm::new(nn::batch_norm1d(path, features, config), config)
    }

    /// Over the channels of `[batch, channels, height, width]` inputs.
    pub fn new_2d(path: nn::Path<'_>, channels: i64) -> Self {
        let config = BatchNormConfig::default();
        BatchNorm::new(nn::batch_norm2d(path, channels, config), config)
    }

    /// Normalizes `x` with the batch's statistics when `train` (and updates the running ones:
    /// by the momentum, or with factor `1 / batches seen` while averaging cumulatively), else
    /// with the running statistics.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let factor = match self.cumulative.get() {
            Some(seen) if train => {
                self.cumulative.set(Some(seen + 1));
                1.0 / (seen + 1) as f64
            }
            _ => self.momentum,
        };
        let l = &self.layer;
        Ok(Tensor::f_batch_norm(
            x,
            l.ws.as_ref(),
            l.bs.as_ref(),
            Some(&l.running_mean),
            Some(&l.running_var),
            train,
            factor,
            self.eps,
            self.cudnn_enabled,
        )?)
    }

    /// Follows `stats` from now on; [`BatchNormStats::Cumulative`] resets the statistics
    /// (mean 0, variance 1) first, as `reset_running_stats` does.
    pub fn set_stats(&mut self, stats: BatchNormStats) -> Result<()> {
        match stats {
            BatchNormStats::Momentum => self.cumulative.set(None),
            BatchNormStats::Cumulative => {
                let _guard = tch::no_grad_guard();
                drop(self.layer.running_mean.f_zero_()?);
                drop(self.layer.running_var.f_fill_(1.0)?);
                self.cumulative.set(Some(0));
            }
        }
        Ok(())
    }
}

/// Sets every layer of `layers` to `stats`; returns whether there was any.
pub fn set_all<'a>(layers: impl IntoIterator<Item = &'a mut BatchNorm>, stats: BatchNormStats) -> Result<bool> {
    let mut any = false;
    for layer in layers {
        layer.set_stats(stats)?;
        any = true;
    }
    Ok(any)
}

#[cfg(test)]
mod tests {
    use super::*;
    use torchfit_sdk::tch::{Device, Kind};

    #[test]
    fn cumulative_statistics_are_the_mean_of_the_batches_statistics() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut bn = BatchNorm::new_1d(vs.root() / "bn", 2);
        let batches: Vec<Tensor> =
            (0..3).map(|i| Tensor::from_slice(&[1.0f32, 2.0, 3.0, 5.0, i as f32, 7.0]).reshape([3, 2])).collect();
        let _ = bn.forward(&batches[0], true).unwrap();
        bn.set_stats(BatchNormStats::Cumulative).unwrap();
        for b in &batches {
            let _ = bn.forward(b, true).unwrap();
        }
        let means: Vec<Tensor> = batches.iter().map(|b| b.mean_dim(0, false, Kind::Float)).collect();
        let vars: Vec<Tensor> = batches.iter().map(|b| b.var_dim(0, true, false)).collect();
        let expect_mean = Tensor::stack(&means, 0).mean_dim(0, false, Kind::Float);
        let expect_var = Tensor::stack(&vars, 0).mean_dim(0, false, Kind::Float);
        assert!(bn.layer.running_mean.allclose(&expect_mean, 1e-6, 1e-6, false), "{}", bn.layer.running_mean);
        assert!(bn.layer.running_var.allclose(&expect_var, 1e-6, 1e-6, false), "{}", bn.layer.running_var);
        // Evaluation leaves the count alone; back on the momentum, a batch moves them by 0.1.
        let _ = bn.forward(&batches[0], false).unwrap();
        assert_eq!(bn.cumulative.get(), Some(3));
        bn.set_stats(BatchNormStats::Momentum).unwrap();
        let before = bn.layer.running_mean.copy();
        let _ = bn.forward(&batches[1], true).unwrap();
        let expect = &before * 0.9 + &means[1] * 0.1;
        assert!(bn.layer.running_mean.allclose(&expect, 1e-6, 1e-6, false));
    }
}
