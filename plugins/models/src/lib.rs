//! Stock models: `mlp`, `cnn`, `resnet18`, `small_resnet`, `text_cnn`, `unet` and `torchscript` (a model scripted or
//! traced in PyTorch, trained by torchfit). Parameters carry PyTorch-style dotted names, listed
//! in PyTorch's order, so Freezer patterns and `safetensors.torch.load_file` see the names a
//! PyTorch user expects.
#![deny(missing_docs)]

mod budget;
pub mod cnn;
mod head;
pub mod mlp;
mod norm;
mod probe;
pub mod resnet;
mod shim;
pub mod text_cnn;
pub mod torchscript;
pub mod unet;

use serde::Deserialize;
use torchfit_sdk::tch::{self, nn, Tensor};
use torchfit_sdk::{export_plugin, Error, Result};

/// Activation functions.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// max(0, x)
    #[default]
    Relu,
    /// tanh
    Tanh,
    /// logistic sigmoid
    Sigmoid,
    /// GELU
    Gelu,
    /// SELU (Klambauer et al.'s self-normalizing units, `torch.nn.SELU`)
    Selu,
    /// ELU with alpha 1 (`torch.nn.ELU`)
    Elu,
    /// Leaky ReLU with slope 0.01 below zero (`torch.nn.LeakyReLU`), `"leaky_relu"`
    LeakyRelu,
    /// SiLU, `x * sigmoid(x)` (`torch.nn.SiLU`, also called swish)
    Silu,
}

impl Activation {
    /// Applies the activation.
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Relu => x.f_relu()?,
            Activation::Tanh => x.f_tanh()?,
            Activation::Sigmoid => x.f_sigmoid()?,
            Activation::Gelu => x.f_gelu("none")?,
            Activation::Selu => x.f_selu()?,
            Activation::Elu => x.f_elu()?,
            Activation::LeakyRelu => x.f_leaky_relu()?,
            Activation::Silu => x.f_silu()?,
        })
    }

    /// The activation's config name (`leaky_relu`).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Gelu => "gelu",
            Activation::Selu => "selu",
            Activation::Elu => "elu",
            Activation::LeakyRelu => "leaky_relu",
            Activation::Silu => "silu",
        }
    }
}

/// A model's variables: a `VarStore` and its trainable names in PyTorch's order. Every
/// `VarStore`-based model answers `parameters`, `state_dict` and `load_state_dict` through it.
#[derive(Debug)]
pub struct Vars {
    vs: nn::VarStore,
    trainable: Vec<String>,
}

impl Vars {
    /// Takes `vs` once all layers are created in it.
    pub fn new(vs: nn::VarStore) -> Self {
        let mut trainable: Vec<String> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).map(|(n, _)| n).collect();
        trainable.sort_by(|a, b| natural_cmp(a, b));
        Vars { vs, trainable }
    }

    /// Trainable parameters by name (shallow handles).
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        let vars = self.vs.variables();
        self.trainable.iter().map(|n| (n.clone(), vars[n].shallow_clone())).collect()
    }

    /// Parameters and buffers by name.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut all: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        all.sort_by(|a, b| natural_cmp(&a.0, &b.0));
        all
    }

    /// Copies `state` in (see [`copy_state`]).
    pub fn load_state_dict(&self, state: &[(String, Tensor)]) -> Result<()> {
        copy_state(&self.state_dict(), state)
    }
}

/// Implements [`torchfit_sdk::Model`]'s variable methods through a `vars: Vars` field.
macro_rules! vars_model {
    () => {
        fn parameters(&self) -> Vec<(String, torchfit_sdk::tch::Tensor)> {
            self.vars.parameters()
        }
        fn state_dict(&self) -> Vec<(String, torchfit_sdk::tch::Tensor)> {
            self.vars.state_dict()
        }
        fn load_state_dict(&mut self, state: &[(String, torchfit_sdk::tch::Tensor)]) -> torchfit_sdk::Result<()> {
            self.vars.load_state_dict(state)
        }
    };
}
pub(crate) use vars_model;

/// Copies `state` into `target` (matched by name, shapes checked) without recording gradients.
/// Names of `state` that `target` lacks are ignored; a name of `target` missing from `state` is
/// an error naming it.
pub fn copy_state(target: &[(String, Tensor)], state: &[(String, Tensor)]) -> Result<()> {
    let _guard = tch::no_grad_guard();
    for (name, t) in target {
        let src = state
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
            .ok_or_else(|| Error::msg(format!("state has no tensor `{name}`")))?;
        if src.size() != t.size() {
            return Err(Error::msg(format!(
                "`{name}` has shape {:?} in the state but {:?} in the model",
                src.size(),
                t.size()
            )));
        }
        t.shallow_clone().f_copy_(&src.f_to_kind(t.kind())?)?;
    }
    Ok(())
}

export_plugin! {
    name: "torchfit-plugin-models",
    components: [
        Model("mlp", mlp::build, "fully connected network; keys: hidden, activation, dropout, batch_norm"),
        Model("cnn", cnn::build, "convolution blocks then dense layers; keys: conv (channels, kernel, stride, padding, pool, batch_norm, dropout), dense, activation, dropout"),
        Model("resnet18", resnet::build_resnet18, "torchvision's ResNet-18 (parameter names included); keys: none"),
        Model("small_resnet", resnet::build_small, "a ResNet for small images such as 28x28; keys: widths, blocks"),
        Model("text_cnn", text_cnn::build, "an embedding of token ids, 1-d convolutions, max over the sequence, dense layers; keys: num_embeddings, embedding_dim, conv (channels, kernel, padding, pool), dense, activation, dropout"),
        Model("unet", unet::build, "Ronneberger et al.'s U-Net for per-pixel outputs (segmentation); keys: depth, base_channels, batch_norm"),
        Model("torchscript", torchscript::build, "a model saved by torch.jit.save, trained as it is; keys: path"),
    ],
}

use std::cmp::Ordering;

/// Orders dotted parameter names as PyTorch lists them: numeric segments by value
/// (`layers.2` before `layers.10`), others alphabetically.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.split('.'), b.split('.'));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => {
                let o = match (p.parse::<u64>(), q.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    _ => p.cmp(q),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::natural_cmp;
    use serde_json::json;
    use torchfit_sdk::tch::{Device, Kind, Tensor};
    use torchfit_sdk::{BatchNormStats, BuildContext, Model};

    #[test]
    fn selu_is_torchs_scaled_exponential_linear_unit() {
        let x = Tensor::from_slice(&[-2.0f32, -0.5, 0.0, 1.5]);
        let got = Vec::<f32>::try_from(crate::Activation::Selu.apply(&x).unwrap()).unwrap();
        // torch.nn.SELU: scale * (max(0, x) + min(0, alpha * (exp(x) - 1))).
        let (alpha, scale) = (1.673_263_2_f64, 1.050_701_f64);
        for (g, v) in got.iter().zip([-2.0f64, -0.5, 0.0, 1.5]) {
            let want = scale * (v.max(0.0) + (alpha * (v.exp() - 1.0)).min(0.0));
            assert!((*g as f64 - want).abs() < 1e-6, "{g} vs {want}");
        }
    }

    #[test]
    fn elu_leaky_relu_and_silu_are_torchs() {
        let xs = [-2.0f64, -0.5, 0.0, 1.5];
        let x = Tensor::from_slice(&xs.map(|v| v as f32));
        type Definition = fn(f64) -> f64;
        let cases: [(&str, Definition); 3] = [
            ("elu", |v| if v > 0.0 { v } else { v.exp() - 1.0 }),
            ("leaky_relu", |v| if v > 0.0 { v } else { 0.01 * v }),
            ("silu", |v| v / (1.0 + (-v).exp())),
        ];
        for (name, want) in cases {
            let activation: crate::Activation = serde_json::from_value(json!(name)).unwrap();
            let got = Vec::<f32>::try_from(activation.apply(&x).unwrap()).unwrap();
            for (g, v) in got.iter().zip(xs) {
                assert!((*g as f64 - want(v)).abs() < 1e-6, "{name}({v}) = {g}, torch's {}", want(v));
            }
        }
    }

    #[test]
    fn every_batch_norm_layer_of_a_stock_model_switches_to_cumulative_statistics() {
        let ctx = |shape: &[i64]| BuildContext {
            input_shape: shape.to_vec(),
            n_outputs: 3,
            ..torchfit_sdk::testing::context("module")
        };
        let cases: Vec<(Box<dyn Model>, Vec<i64>, usize)> = vec![
            (crate::mlp::build(&json!({"hidden": [4, 4], "batch_norm": true}), &ctx(&[5])).unwrap(), vec![8, 5], 2),
            (
                crate::cnn::build(&json!({"conv": [{"channels": 2, "batch_norm": true}]}), &ctx(&[1, 6, 6])).unwrap(),
                vec![8, 1, 6, 6],
                1,
            ),
            (
                crate::resnet::build_small(&json!({"widths": [2, 4], "blocks": [1, 1]}), &ctx(&[1, 8, 8])).unwrap(),
                vec![8, 1, 8, 8],
                6,
            ),
        ];
        for (mut model, shape, layers) in cases {
            let running = |m: &dyn Model| -> Vec<Tensor> {
                m.state_dict().into_iter().filter(|(n, _)| n.ends_with("running_mean")).map(|(_, t)| t).collect()
            };
            assert_eq!(running(model.as_ref()).len(), layers);
            assert!(model.set_batch_norm_stats(BatchNormStats::Cumulative).unwrap());
            let x = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu));
            let _ = model.forward(&x, true).unwrap();
            // One batch averaged cumulatively gives that batch's means; one batch with the
            // momentum (0.1), from the reset statistics, a tenth of them.
            let cumulative = running(model.as_ref()).iter().map(|t| t.copy()).collect::<Vec<_>>();
            model.set_batch_norm_stats(BatchNormStats::Cumulative).unwrap();
            model.set_batch_norm_stats(BatchNormStats::Momentum).unwrap();
            let _ = model.forward(&x, true).unwrap();
            for (c, m) in cumulative.iter().zip(running(model.as_ref())) {
                let tenfold = m * 10.0;
                assert!(c.allclose(&tenfold, 1e-4, 1e-6, false), "{c} against {tenfold}");
            }
        }
        let plain = crate::mlp::build(&json!({"hidden": [4]}), &ctx(&[5]));
        assert!(!plain.unwrap().set_batch_norm_stats(BatchNormStats::Cumulative).unwrap(), "no batch norm");
    }

    #[test]
    fn numeric_segments_sort_by_value() {
        let mut names = vec!["hidden.10.weight", "hidden.2.weight", "hidden.2.bias", "output.weight"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, vec!["hidden.2.bias", "hidden.2.weight", "hidden.10.weight", "output.weight"]);
    }
}
