//! Stock callback `gradient_norm_clipping` (skorch's `GradientNormClipping`): after `backward`,
//! scales the gradients so that their total `norm_type`-norm is at most `max_norm`, as
//! `torch.nn.utils.clip_grad_norm_` does, on the device and without a host synchronisation.
#![deny(missing_docs)]

use serde::Deserialize;
use torchfit_sdk::tch::{Kind, Tensor};
use torchfit_sdk::{export_plugin, parse_config, Batch, BuildContext, Callback, Error, Flow, Host, Result};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    max_norm: f64,
    #[serde(default = "two", deserialize_with = "norm_type")]
    norm_type: f64,
}

fn two() -> f64 {
    2.0
}

/// A number, or `"inf"` (configs reach plugins as JSON, which has no infinity).
fn norm_type<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Norm {
        Number(f64),
        Name(String),
    }
    match Norm::deserialize(d)? {
        Norm::Number(p) if p > 0.0 => Ok(p),
        Norm::Name(s) if s == "inf" => Ok(f64::INFINITY),
        _ => Err(serde::de::Error::custom("a positive number or \"inf\"")),
    }
}

/// The `p`-norm of all entries of `t` (`p = inf`: the largest absolute value), in `f32`.
fn vector_norm(t: &Tensor, p: f64) -> Result<Tensor> {
    let a = t.f_abs()?.f_to_kind(Kind::Float)?;
    Ok(if p.is_infinite() {
        a.f_max()?
    } else {
        a.f_pow_tensor_scalar(p)?.f_sum(Kind::Float)?.f_pow_tensor_scalar(1.0 / p)?
    })
}

/// Clips `grads` in place to a total `norm_type`-norm of `max_norm` (`f64::INFINITY` for the
/// max norm); returns the total norm before clipping, as a device scalar.
pub fn clip_grad_norm(grads: &[Tensor], max_norm: f64, norm_type: f64) -> Result<Tensor> {
    let norms: Vec<Tensor> = grads.iter().map(|g| vector_norm(g, norm_type)).collect::<Result<_>>()?;
    let total = vector_norm(&Tensor::f_stack(&norms, 0)?, norm_type)?;
    let coef = total.f_add_scalar(1e-6)?.f_reciprocal()?.f_mul_scalar(max_norm)?.f_clamp_max(1.0)?;
    for g in grads {
        let _ = g.shallow_clone().f_mul_(&coef.f_to_device(g.device())?)?;
    }
    Ok(total)
}

struct Clipping(Config);

fn build(config: &serde_json::Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: Config = parse_config(config)?;
    if c.max_norm.is_nan() || c.max_norm <= 0.0 {
        return Err(Error::config("max_norm", "must be > 0"));
    }
    Ok(Box::new(Clipping(c)))
}

impl Callback for Clipping {
    fn on_grad_computed(&mut self, host: &mut dyn Host, _batch: &Batch<'_>) -> Result<Flow> {
        let grads: Vec<Tensor> = host.parameters().into_iter().map(|(_, p)| p.grad()).filter(Tensor::defined).collect();
        if !grads.is_empty() {
            let _ = clip_grad_norm(&grads, self.0.max_norm, self.0.norm_type)?;
        }
        Ok(Flow::Continue)
    }
}

export_plugin! {
    name: "torchfit-plugin-clipping",
    components: [Callback("gradient_norm_clipping", build, "clips the total gradient norm to `max_norm` (norm_type = 2) after backward")],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradients_above_the_limit_are_scaled_to_it_and_others_are_kept() {
        let g = [Tensor::from_slice(&[3f32, 0.0]), Tensor::from_slice(&[0f32, 4.0])];
        let total = clip_grad_norm(&g, 1.0, 2.0).unwrap();
        assert!((total.double_value(&[]) - 5.0).abs() < 1e-6);
        let after: f64 = g.iter().map(|t| t.square().sum(Kind::Float).double_value(&[])).sum::<f64>().sqrt();
        assert!((after - 1.0).abs() < 1e-5, "{after}");
        let small = [Tensor::from_slice(&[0.3f32, 0.4])];
        let _ = clip_grad_norm(&small, 1.0, 2.0).unwrap();
        assert!((small[0].double_value(&[1]) - 0.4).abs() < 1e-6, "below the limit: unchanged (up to 1e-6)");
    }

    #[test]
    fn norm_type_takes_numbers_and_inf() {
        let ctx = BuildContext { input_shape: vec![], n_outputs: 1, ..torchfit_sdk::testing::context("c") };
        assert!(build(&serde_json::json!({"max_norm": 1.0, "norm_type": "inf"}), &ctx).is_ok());
        assert!(build(&serde_json::json!({"max_norm": 1.0, "norm_type": 1}), &ctx).is_ok());
        assert!(build(&serde_json::json!({"max_norm": 1.0, "norm_type": "max"}), &ctx).is_err());
    }

    #[test]
    fn the_max_norm_uses_the_largest_entry() {
        let g = [Tensor::from_slice(&[-6f32, 2.0])];
        let total = clip_grad_norm(&g, 3.0, f64::INFINITY).unwrap();
        assert_eq!(total.double_value(&[]), 6.0);
        assert!((g[0].double_value(&[0]) + 3.0).abs() < 1e-5);
    }
}
