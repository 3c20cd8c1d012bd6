//! `torch.amp.GradScaler`'s semantics over its own ATen kernels: the loss is multiplied by the
//! scale before backward; before the optimizer step the gradients are divided by it and checked
//! (`_amp_foreach_non_finite_check_and_unscale_`); a step whose gradients hold an inf or a NaN
//! is skipped; then the scale is updated (`_amp_update_scale_`): halved after a skipped step,
//! doubled after `growth_interval` steps in a row without one.

use crate::{Error, Optimizer, Result};
use tch::{Device, Kind, Tensor};
use torchfit_sdk::ScalerState;

/// How a scaler moves its scale, with `torch.amp.GradScaler`'s defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalerConfig {
    /// The scale before the first step (65536).
    pub init_scale: f64,
    /// What the scale is multiplied by after `growth_interval` good steps in a row (2).
    pub growth_factor: f64,
    /// What the scale is multiplied by after a step with an inf or a NaN (0.5).
    pub backoff_factor: f64,
    /// Good steps in a row before the scale grows (2000).
    pub growth_interval: i64,
}

impl Default for ScalerConfig {
    fn default() -> Self {
        Self { init_scale: 65536.0, growth_factor: 2.0, backoff_factor: 0.5, growth_interval: 2000 }
    }
}

/// The names of the scaler's tensors in a checkpoint's optimizer file.
const SCALE_KEY: &str = "grad_scaler.scale";
const TRACKER_KEY: &str = "grad_scaler.growth_tracker";

/// The scaler of a `16-mixed` run: its scale, and the optimizer steps since it last changed.
pub struct GradScaler {
    /// float32, 0-dim, on the run's device.
    scale: Tensor,
    /// int32, 0-dim: good steps in a row since the scale last changed.
    growth_tracker: Tensor,
    /// float32, 0-dim: 1 when the last unscaled gradients held an inf or a NaN.
    found_inf: Tensor,
    config: ScalerConfig,
}

fn torch(e: tch::TchError) -> Error {
    Error::Data(format!("grad scaler: {e}"))
}

impl GradScaler {
    /// A scaler on `device` at `config`'s initial scale.
    pub fn new(device: Device, config: ScalerConfig) -> Result<Self> {
        Ok(Self {
            config,
            scale: Tensor::f_full([0i64; 0], config.init_scale, (Kind::Float, device)).map_err(torch)?,
            growth_tracker: Tensor::f_full([0i64; 0], 0, (Kind::Int, device)).map_err(torch)?,
            found_inf: Tensor::f_full([0i64; 0], 0.0, (Kind::Float, device)).map_err(torch)?,
        })
    }

    /// `loss` times the scale.
    pub fn scale(&self, loss: &Tensor) -> Result<Tensor> {
        loss.f_mul(&self.scale).map_err(torch)
    }

    /// Divides the gradients of `optimizer`'s parameters by the scale, in place, and returns
    /// whether they are all finite (one read from the device, as `GradScaler.step` makes).
    pub fn unscale(&mut self, optimizer: &Optimizer) -> Result<bool> {
        let _guard = tch::no_grad_guard();
        let _ = self.found_inf.f_zero_().map_err(torch)?;
        let inv_scale = self.scale.f_to_kind(Kind::Double).and_then(|s| s.f_reciprocal()).map_err(torch)?;
        let inv_scale = inv_scale.f_to_kind(Kind::Float).map_err(torch)?;
        // One call per dtype, as PyTorch groups them (every gradient is on the run's device).
        let mut by_kind: Vec<(Kind, Vec<Tensor>)> = Vec::new();
        for g in optimizer.parameters().map(Tensor::grad).filter(Tensor::defined) {
            match by_kind.iter_mut().find(|(k, _)| *k == g.kind()) {
                Some((_, grads)) => grads.push(g),
                None => by_kind.push((g.kind(), vec![g])),
            }
        }
        for (_, grads) in &by_kind {
            let refs: Vec<&Tensor> = grads.iter().collect();
            torchfit_amp::unscale(&refs, &mut self.found_inf, &inv_scale)
                .map_err(|e| Error::Data(format!("grad scaler: {e}")))?;
        }
        Ok(self.found_inf.f_double_value(&[]).map_err(torch)? == 0.0)
    }

    /// After an optimizer step (taken or skipped) whose gradients [`GradScaler::unscale`]
    /// checked: backs off after an inf or a NaN, grows after `growth_interval` good steps.
    pub fn update(&mut self) -> Result<()> {
        let _ = self
            .scale
            .f_internal_amp_update_scale_(
                &self.growth_tracker,
                &self.found_inf,
                self.config.growth_factor,
                self.config.backoff_factor,
                self.config.growth_interval,
            )
            .map_err(torch)?;
        Ok(())
    }

    /// The scale and the growth tracker, read from the device.
    pub fn state(&self) -> Result<ScalerState> {
        Ok(ScalerState {
            scale: self.scale.f_double_value(&[]).map_err(torch)?,
            growth_tracker: self.growth_tracker.f_int64_value(&[]).map_err(torch)?,
        })
    }

    /// The scaler's tensors for a checkpoint's optimizer file (they share its storage).
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        vec![(SCALE_KEY.into(), self.scale.shallow_clone()), (TRACKER_KEY.into(), self.growth_tracker.shallow_clone())]
    }

    /// Restores what [`GradScaler::state_dict`] saved; a checkpoint without it (saved in
    /// another precision) leaves the scaler as it is.
    pub fn load_state_dict(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let find = |key: &str| state.iter().find(|(k, _)| k == key).map(|(_, t)| t);
        let _guard = tch::no_grad_guard();
        if let (Some(scale), Some(tracker)) = (find(SCALE_KEY), find(TRACKER_KEY)) {
            self.scale.f_copy_(scale).map_err(torch)?;
            self.growth_tracker.f_copy_(tracker).map_err(torch)?;
        }
        Ok(())
    }
}
