//! `mlp`: a fully connected network.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `hidden` | `[100]` | sizes of the hidden layers |
//! | `activation` | `"relu"` | `relu`, `tanh`, `sigmoid`, `gelu`, `selu`, `elu`, `leaky_relu`, `silu` |
//! | `dropout` | `0.0` | dropout probability after each hidden activation |
//! | `batch_norm` | `false` | batch normalization after each hidden linear layer |
//!
//! Inputs are flattened; the input size and the number of outputs come from the data.
//! Parameters are named `hidden.<i>.weight`, `hidden.<i>.bias`, `bn.<i>.*`, `output.weight`,
//! `output.bias`; `hidden.<i>`, `bn.<i>` and `output` are the layers `Model::forward_inspected`
//! can capture.

use crate::budget::Budget;
use crate::norm::{self, BatchNorm};
use crate::probe::{probed_model, Probe};
use crate::{vars_model, Activation, Vars};
use serde::Deserialize;
use torchfit_sdk::tch::nn::{self, Module};
use torchfit_sdk::tch::Tensor;
use torchfit_sdk::{parse_config, BatchNormStats, BuildContext, Error, Model, Result};

/// Settings of the MLP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlpConfig {
    /// Hidden layer sizes.
    pub hidden: Vec<i64>,
    /// Activation function.
    pub activation: Activation,
    /// Dropout probability.
    pub dropout: f64,
    /// Batch normalization.
    pub batch_norm: bool,
}

impl Default for MlpConfig {
    fn default() -> Self {
        MlpConfig {
            hidden: vec![100],
            activation: Default::default(),
            dropout: Default::default(),
            batch_norm: Default::default(),
        }
    }
}

/// The multi-layer perceptron and its parameters.
#[derive(Debug)]
pub struct Mlp {
    vars: Vars,
    hidden: Vec<nn::Linear>,
    norms: Vec<BatchNorm>,
    output: nn::Linear,
    config: MlpConfig,
}

/// Builds an MLP from its config section.
pub fn build(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Model>> {
    let cfg: MlpConfig = parse_config(config)?;
    if !(0.0..1.0).contains(&cfg.dropout) {
        return Err(Error::config("dropout", format!("must be in [0, 1), got {}", cfg.dropout)));
    }
    if let Some(i) = cfg.hidden.iter().position(|&h| h < 1) {
        return Err(Error::config(format!("hidden[{i}]"), "layer sizes must be at least 1"));
    }
    let mut width: i64 = ctx.input_shape.iter().product();
    if width < 1 {
        return Err(torchfit_sdk::Error::data(format!("samples of shape {:?} hold no values", ctx.input_shape)));
    }
    let mut budget = Budget::of_machine();
    for (i, &h) in cfg.hidden.iter().enumerate() {
        budget
            .linear(if i == 0 { width } else { cfg.hidden[i - 1] }, h, |m| Error::config(format!("hidden[{i}]"), m))?;
    }
    budget.output(cfg.hidden.last().copied().unwrap_or(width), ctx.n_outputs)?;
    let vs = nn::VarStore::new(ctx.device);
    let root = vs.root();
    let (mut hidden, mut norms) = (Vec::new(), Vec::new());
    for (i, &h) in cfg.hidden.iter().enumerate() {
        hidden.push(nn::linear(&root / "hidden" / i, width, h, Default::default()));
        if cfg.batch_norm {
            norms.push(BatchNorm::new_1d(&root / "bn" / i, h));
        }
        width = h;
    }
    let output = nn::linear(&root / "output", width, ctx.n_outputs, Default::default());
    Ok(Box::new(Mlp { vars: Vars::new(vs), hidden, norms, output, config: cfg }))
}

impl Mlp {
    fn forward_probed(&self, x: &Tensor, train: bool, probe: &Probe<'_>) -> Result<Tensor> {
        let mut h = x.f_flatten(1, -1)?;
        for (i, layer) in self.hidden.iter().enumerate() {
            h = probe.layer(|| format!("hidden.{i}"), layer.forward(&h));
            if let Some(bn) = self.norms.get(i) {
                h = probe.layer(|| format!("bn.{i}"), bn.forward(&h, train)?);
            }
            h = probe.activate(self.config.activation, &h)?;
            if self.config.dropout > 0.0 {
                h = h.f_dropout(self.config.dropout, train)?;
            }
        }
        Ok(probe.layer(|| "output".into(), self.output.forward(&h)))
    }
}

impl Model for Mlp {
    probed_model!();

    fn set_batch_norm_stats(&mut self, stats: BatchNormStats) -> Result<bool> {
        norm::set_all(&mut self.norms, stats)
    }

    vars_model!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use torchfit_sdk::tch::{Device, Kind};

    fn ctx() -> BuildContext {
        BuildContext { input_shape: vec![8, 8], n_outputs: 10, ..torchfit_sdk::testing::context("module") }
    }

    #[test]
    fn an_mlp_maps_flattened_inputs_to_one_logit_per_class() {
        let m = build(&serde_json::json!({"hidden": [32, 16], "dropout": 0.2, "batch_norm": true}), &ctx()).unwrap();
        let y = m.forward(&Tensor::zeros([4, 8, 8], (Kind::Float, Device::Cpu)), true).unwrap();
        assert_eq!(y.size(), vec![4, 10]);
        let names: Vec<String> = m.parameters().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names[..2], ["bn.0.bias".to_string(), "bn.0.weight".to_string()]);
        assert!(names.contains(&"hidden.1.weight".to_string()) && names.last().unwrap() == "output.weight");
        assert!(m.state_dict().iter().any(|(n, _)| n == "bn.0.running_mean"), "buffers are in the state dict");
    }

    #[test]
    fn a_state_dict_restores_another_instance() {
        torchfit_sdk::tch::manual_seed(1);
        let a = build(&serde_json::json!({"hidden": [4]}), &ctx()).unwrap();
        let mut b = build(&serde_json::json!({"hidden": [4]}), &ctx()).unwrap();
        b.load_state_dict(&a.state_dict()).unwrap();
        let x = Tensor::ones([1, 64], (Kind::Float, Device::Cpu));
        assert!(a.forward(&x, false).unwrap().equal(&b.forward(&x, false).unwrap()));
    }

    #[test]
    fn bad_settings_name_their_key() {
        let e = build(&serde_json::json!({"hidden": [4, 0]}), &ctx()).err().unwrap();
        assert!(e.to_string().contains("hidden[1]"), "{e}");
        let e = build(&serde_json::json!({"dropout": 1.5}), &ctx()).err().unwrap();
        assert!(e.to_string().contains("dropout"), "{e}");
    }
}
