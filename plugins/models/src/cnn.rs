//! `cnn`: convolution blocks, then dense layers.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `conv` | required | the blocks, in order (below) |
//! | `dense` | `[]` | sizes of the hidden dense layers after the blocks |
//! | `activation` | `"relu"` | `relu`, `tanh`, `sigmoid`, `gelu`, `selu`, `elu`, `leaky_relu`, `silu`, after every convolution and hidden dense layer |
//! | `dropout` | `0.0` | dropout after each hidden dense activation |
//!
//! A block is convolution → batch norm (optional) → activation → max-pool (optional) → dropout
//! (optional):
//!
//! | block key | default | meaning |
//! |---|---|---|
//! | `channels` | required | output channels |
//! | `kernel` | `3` | square kernel size |
//! | `stride` | `1` | convolution stride |
//! | `padding` | `0` | zero padding on each side |
//! | `pool` | `0` | max-pool kernel and stride (0 = none) |
//! | `batch_norm` | `false` | batch normalization after the convolution |
//! | `dropout` | `0.0` | dropout at the end of the block |
//!
//! Samples are `[channels, height, width]`, or `[height, width]` for one channel (a reader's
//! `shape` makes flat rows images). Parameters: `conv.<i>.*`, `conv_bn.<i>.*`, `dense.<i>.*`,
//! `output.*`. Poutyne's MNIST network is `conv = [{channels = 16, padding = 1, pool = 2},
//! {channels = 32, padding = 1, pool = 2, dropout = 0.25}]`, `dense = [128]`, `dropout = 0.5`.

use crate::budget::Budget;
use crate::head::DenseHead;
use crate::norm::{self, BatchNorm};
use crate::probe::{probed_model, Probe};
use crate::{vars_model, Activation, Vars};
use serde::Deserialize;
use torchfit_sdk::tch::nn::{self, Module};
use torchfit_sdk::tch::Tensor;
use torchfit_sdk::{parse_config, BatchNormStats, BuildContext, Error, Model, Result};

/// One convolution block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    /// Output channels.
    pub channels: i64,
    /// Kernel size.
    #[serde(default = "three")]
    pub kernel: i64,
    /// Stride.
    #[serde(default = "one")]
    pub stride: i64,
    /// Padding.
    #[serde(default)]
    pub padding: i64,
    /// Max-pool size (0 = none).
    #[serde(default)]
    pub pool: i64,
    /// Batch normalization.
    #[serde(default)]
    pub batch_norm: bool,
    /// Dropout probability.
    #[serde(default)]
    pub dropout: f64,
}

/// Settings of the CNN.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CnnConfig {
    /// Convolution blocks.
    pub conv: Vec<Block>,
    /// Hidden dense sizes.
    #[serde(default)]
    pub dense: Vec<i64>,
    /// Activation.
    #[serde(default)]
    pub activation: Activation,
    /// Dense dropout.
    #[serde(default)]
    pub dropout: f64,
}

fn three() -> i64 {
    3
}
fn one() -> i64 {
    1
}

/// The convolutional network and its parameters.
#[derive(Debug)]
pub struct Cnn {
    vars: Vars,
    convs: Vec<(nn::Conv2D, Option<BatchNorm>)>,
    head: DenseHead,
    cfg: CnnConfig,
    image: Vec<i64>,
}

fn check(cfg: &CnnConfig) -> Result<()> {
    let p = |key: String, v: f64| {
        if (0.0..1.0).contains(&v) {
            Ok(())
        } else {
            Err(Error::config(key, format!("must be in [0, 1), got {v}")))
        }
    };
    p("dropout".into(), cfg.dropout)?;
    if cfg.conv.is_empty() {
        return Err(Error::config("conv", "needs at least one block"));
    }
    for (i, b) in cfg.conv.iter().enumerate() {
        p(format!("conv[{i}].dropout"), b.dropout)?;
        for (k, v, min) in [
            ("channels", b.channels, 1),
            ("kernel", b.kernel, 1),
            ("stride", b.stride, 1),
            ("padding", b.padding, 0),
            ("pool", b.pool, 0),
        ] {
            if v < min {
                return Err(Error::config(format!("conv[{i}].{k}"), format!("must be at least {min}, got {v}")));
            }
        }
    }
    DenseHead::check(&cfg.dense)?;
    Ok(())
}

/// Builds a CNN from its config section.
pub fn build(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Model>> {
    let cfg: CnnConfig = parse_config(config)?;
    check(&cfg)?;
    let image = match ctx.input_shape.as_slice() {
        [h, w] => vec![1, *h, *w],
        [c, h, w] => vec![*c, *h, *w],
        other => return Err(Error::config("module", format!("cnn needs samples of shape [channels, height, width] or [height, width], got {other:?}; set the reader's `shape`"))),
    };
    let (_, h, w) = output_size(&cfg.conv, &image)
        .map_err(|m| Error::config("conv", format!("the blocks do not fit a {image:?} image: {m}")))?;
    let mut budget = Budget::of_machine();
    let mut channels = image[0];
    for (i, b) in cfg.conv.iter().enumerate() {
        budget
            .take(&[b.channels, channels.saturating_mul(b.kernel).saturating_mul(b.kernel).saturating_add(1)], |m| {
                Error::config(format!("conv[{i}].channels"), m)
            })?;
        channels = b.channels;
    }
    DenseHead::budget(&mut budget, channels.saturating_mul(h).saturating_mul(w), &cfg.dense, ctx.n_outputs)?;
    let vs = nn::VarStore::new(ctx.device);
    let root = vs.root();
    let mut convs = Vec::new();
    let mut channels = image[0];
    for (i, b) in cfg.conv.iter().enumerate() {
        let conv = nn::conv2d(
            &root / "conv" / i,
            channels,
            b.channels,
            b.kernel,
            nn::ConvConfig { stride: b.stride, padding: b.padding, ..Default::default() },
        );
        let bn = b.batch_norm.then(|| BatchNorm::new_2d(&root / "conv_bn" / i, b.channels));
        convs.push((conv, bn));
        channels = b.channels;
    }
    let head = DenseHead::new(&root, channels * h * w, &cfg.dense, ctx.n_outputs);
    Ok(Box::new(Cnn { vars: Vars::new(vs), convs, head, cfg, image }))
}

/// The `[channels, height, width]` after `blocks` applied to an `image` (pure): convolutions
/// give `(n + 2 padding - kernel) / stride + 1`, pools `n / pool`; an error when a side vanishes.
pub fn output_size(blocks: &[Block], image: &[i64]) -> std::result::Result<(i64, i64, i64), String> {
    let (mut c, mut h, mut w) = (image[0], image[1], image[2]);
    for (i, b) in blocks.iter().enumerate() {
        let conv = |n: i64| (n + 2 * b.padding - b.kernel).div_euclid(b.stride) + 1;
        (c, h, w) = (b.channels, conv(h), conv(w));
        if b.pool > 0 {
            (h, w) = (h.div_euclid(b.pool), w.div_euclid(b.pool));
        }
        if h < 1 || w < 1 {
            return Err(format!("block {i} leaves {h}x{w}"));
        }
    }
    Ok((c, h, w))
}

impl Cnn {
    fn features(&self, x: &Tensor, train: bool, probe: &Probe<'_>) -> Result<Tensor> {
        let mut h = x.f_view([-1, self.image[0], self.image[1], self.image[2]])?;
        for (i, ((conv, bn), b)) in self.convs.iter().zip(&self.cfg.conv).enumerate() {
            h = probe.layer(|| format!("conv.{i}"), conv.forward(&h));
            if let Some(bn) = bn {
                h = probe.layer(|| format!("conv_bn.{i}"), bn.forward(&h, train)?);
            }
            h = probe.activate(self.cfg.activation, &h)?;
            if b.pool > 0 {
                h = h.f_max_pool2d([b.pool, b.pool], [b.pool, b.pool], [0, 0], [1, 1], false)?;
            }
            if b.dropout > 0.0 {
                h = h.f_dropout(b.dropout, train)?;
            }
        }
        Ok(h.f_flatten(1, -1)?)
    }

    fn forward_probed(&self, x: &Tensor, train: bool, probe: &Probe<'_>) -> Result<Tensor> {
        self.head.forward(self.features(x, train, probe)?, self.cfg.activation, self.cfg.dropout, train, probe)
    }
}

impl Model for Cnn {
    probed_model!();

    fn set_batch_norm_stats(&mut self, stats: BatchNormStats) -> Result<bool> {
        norm::set_all(self.convs.iter_mut().filter_map(|(_, bn)| bn.as_mut()), stats)
    }

    vars_model!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use torchfit_sdk::tch::{Device, Kind};

    fn ctx(shape: &[i64]) -> BuildContext {
        BuildContext { input_shape: shape.to_vec(), n_outputs: 10, ..torchfit_sdk::testing::context("module") }
    }

    fn poutyne() -> serde_json::Value {
        serde_json::json!({"conv": [{"channels": 16, "padding": 1, "pool": 2}, {"channels": 32, "padding": 1, "pool": 2, "dropout": 0.25}], "dense": [128], "dropout": 0.5})
    }

    #[test]
    fn poutynes_mnist_network_has_its_parameter_count_and_names() {
        let m = build(&poutyne(), &ctx(&[1, 28, 28])).unwrap();
        let count: i64 = m.parameters().iter().map(|(_, t)| t.numel() as i64).sum();
        assert_eq!(count, 206_922, "Poutyne's documented total");
        let names: Vec<String> = m.parameters().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "conv.0.bias",
                "conv.0.weight",
                "conv.1.bias",
                "conv.1.weight",
                "dense.0.bias",
                "dense.0.weight",
                "output.bias",
                "output.weight"
            ]
        );
        let y = m.forward(&Tensor::zeros([3, 1, 28, 28], (Kind::Float, Device::Cpu)), true).unwrap();
        assert_eq!(y.size(), [3, 10]);
    }

    #[test]
    fn flat_or_two_dimensional_samples_are_viewed_as_images_when_the_shape_says_so() {
        let m = build(&serde_json::json!({"conv": [{"channels": 4, "batch_norm": true}]}), &ctx(&[8, 8])).unwrap();
        assert_eq!(m.forward(&Tensor::zeros([2, 64], (Kind::Float, Device::Cpu)), false).unwrap().size(), [2, 10]);
        assert!(m.state_dict().iter().any(|(n, _)| n == "conv_bn.0.running_var"));
        let e = build(&poutyne(), &ctx(&[784])).err().unwrap().to_string();
        assert!(e.contains("shape"), "{e}");
    }

    #[test]
    fn output_sizes_follow_pytorchs_formulas() {
        let block = |v: serde_json::Value| -> Block { serde_json::from_value(v).unwrap() };
        let b = [
            block(serde_json::json!({"channels": 16, "padding": 1, "pool": 2})),
            block(serde_json::json!({"channels": 32, "kernel": 5, "stride": 2})),
        ];
        assert_eq!(output_size(&b, &[1, 28, 28]), Ok((32, 5, 5))); // 28 -> 28 -> 14 -> (14 - 5) / 2 + 1 = 5
        assert_eq!(output_size(&b[..1], &[3, 7, 9]), Ok((16, 3, 4)));
    }

    #[test]
    fn blocks_that_shrink_the_image_away_name_the_problem() {
        let e = build(&serde_json::json!({"conv": [{"channels": 4, "kernel": 9}]}), &ctx(&[1, 4, 4]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("conv") && e.contains("[1, 4, 4]"), "{e}");
        let e = build(&serde_json::json!({"conv": [{"channels": 4, "stride": 0}]}), &ctx(&[1, 4, 4]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("conv[0].stride"), "{e}");
    }
}
