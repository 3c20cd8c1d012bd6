//! Criteria built into the engine.
//!
//! `cross_entropy` (over logits; keys `weight` = per-class weights, `label_smoothing` = 0.0,
//! `ignore_index` = -100, as `torch.nn.CrossEntropyLoss`) and `mse` (no keys).

use serde::Deserialize;
use tch::{Reduction, Tensor};
use torchfit_sdk::{parse_config, BuildContext, Criterion, Result};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CrossEntropyConfig {
    #[serde(default)]
    weight: Option<Vec<f32>>,
    #[serde(default)]
    label_smoothing: f64,
    #[serde(default = "default_ignore_index")]
    ignore_index: i64,
}

fn default_ignore_index() -> i64 {
    -100
}

struct CrossEntropy {
    weight: Option<Tensor>,
    label_smoothing: f64,
    ignore_index: i64,
}

/// Builds `cross_entropy`.
pub fn cross_entropy(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Criterion>> {
    let c: CrossEntropyConfig = parse_config(config)?;
    let weight = c.weight.map(|w| Tensor::from_slice(&w).f_to_device(ctx.device)).transpose()?;
    Ok(Box::new(CrossEntropy { weight, label_smoothing: c.label_smoothing, ignore_index: c.ignore_index }))
}

impl Criterion for CrossEntropy {
    fn loss(&self, y_pred: &Tensor, y: &Tensor) -> Result<Tensor> {
        Ok(y_pred.f_cross_entropy_loss(y, self.weight.as_ref(), Reduction::Mean, self.ignore_index, self.label_smoothing)?)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

struct Mse;

/// Builds `mse`.
pub fn mse(config: &serde_json::Value, _ctx: &BuildContext) -> Result<Box<dyn Criterion>> {
    let _: NoConfig = parse_config(config)?;
    Ok(Box::new(Mse))
}

impl Criterion for Mse {
    fn loss(&self, y_pred: &Tensor, y: &Tensor) -> Result<Tensor> {
        Ok(y_pred.f_mse_loss(&y.f_view_as(y_pred)?, Reduction::Mean)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn ctx() -> BuildContext {
        BuildContext { name: "criterion".into(), input_shape: vec![], n_outputs: 3, task: torchfit_sdk::Task::Classification, device: Device::Cpu, base_dir: ".".into(), seed: 0 }
    }

    #[test]
    fn cross_entropy_of_uniform_logits_is_log_of_the_class_count() {
        let c = cross_entropy(&serde_json::json!({}), &ctx()).unwrap();
        let l = c.loss(&Tensor::zeros([4, 3], (Kind::Float, Device::Cpu)), &Tensor::from_slice(&[0i64, 1, 2, 0])).unwrap();
        assert!((l.double_value(&[]) - 3f64.ln()).abs() < 1e-6);
    }

    #[test]
    fn mse_is_the_mean_squared_difference() {
        let c = mse(&serde_json::json!({}), &ctx()).unwrap();
        let l = c.loss(&Tensor::from_slice(&[1f32, 3.0]).view([2, 1]), &Tensor::from_slice(&[0f32, 1.0])).unwrap();
        assert!((l.double_value(&[]) - 2.5).abs() < 1e-6);
    }
}
