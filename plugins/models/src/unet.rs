//! `unet`: Ronneberger et al.'s U-Net for per-pixel outputs (segmentation): an encoder of
//! `depth` levels (two 3x3 convolutions each, then a 2x2 max-pool), a centre, and a decoder
//! that doubles the resolution with a 2x2 transposed convolution, joins the encoder's features
//! of that level and convolves twice; a 1x1 convolution gives `n_outputs` channels per pixel.
//! Convolutions pad by 1, so the output has the input's height and width (the talk's variant;
//! the paper's unpadded one loses a border, which the padded loss ignores here instead).
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `depth` | `4` | down-sampling levels: height and width must divide by `2^depth` |
//! | `base_channels` | `16` | channels of the first level, doubled at each level down |
//! | `batch_norm` | `true` | batch normalization after each convolution |
//!
//! Samples are `[channels, height, width]`; outputs `[n_outputs, height, width]` (logits per
//! pixel: one channel for a binary mask with `bce_with_logits`). Parameters: the encoder
//! `conv<level>.<0|1>.*` (levels from 1; with their `conv<level>_bn.<0|1>.*`), so that a Freezer
//! pattern `conv*` holds it; `center.*`; the decoder `up<level>.*` and `dec<level>.<0|1>.*`;
//! `final.*`. Those modules are the layers `Model::forward_inspected` can capture (the encoder's
//! `conv2.1`, the decoder's `up1`, `final`), with guided ReLUs after every convolution.

use crate::budget::Budget;
use crate::norm::{self, BatchNorm};
use crate::probe::{probed_model, Probe};
use crate::{vars_model, Activation, Vars};
use serde::Deserialize;
use torchfit_sdk::tch::nn::{self, Module};
use torchfit_sdk::tch::Tensor;
use torchfit_sdk::{parse_config, BatchNormStats, BuildContext, Error, Model, Result};

/// Settings of the U-Net.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UNetConfig {
    /// Down-sampling levels.
    pub depth: i64,
    /// Channels of the first level.
    pub base_channels: i64,
    /// Batch normalization after each convolution.
    pub batch_norm: bool,
}

impl Default for UNetConfig {
    fn default() -> Self {
        UNetConfig { depth: 4, base_channels: 16, batch_norm: true }
    }
}

/// Two 3x3 convolutions, each followed by batch norm (optional) and ReLU.
#[derive(Debug)]
struct DoubleConv {
    name: String,
    layers: Vec<(nn::Conv2D, Option<BatchNorm>)>,
}

impl DoubleConv {
    fn new(root: &nn::Path<'_>, name: &str, c_in: i64, c_out: i64, batch_norm: bool) -> Self {
        let pad = nn::ConvConfig { padding: 1, ..Default::default() };
        let layers = (0..2)
            .map(|i| {
                let c = if i == 0 { c_in } else { c_out };
                let conv = nn::conv2d(root / name / i, c, c_out, 3, pad);
                let bn = batch_norm.then(|| BatchNorm::new_2d(root / format!("{name}_bn") / i, c_out));
                (conv, bn)
            })
            .collect();
        DoubleConv { name: name.to_owned(), layers }
    }

    fn forward(&self, x: &Tensor, train: bool, probe: &Probe<'_>) -> Result<Tensor> {
        let mut h = x.shallow_clone();
        for (i, (conv, bn)) in self.layers.iter().enumerate() {
            h = probe.layer(|| format!("{}.{i}", self.name), conv.forward(&h));
            if let Some(bn) = bn {
                h = probe.layer(|| format!("{}_bn.{i}", self.name), bn.forward(&h, train)?);
            }
            h = probe.activate(Activation::Relu, &h)?;
        }
        Ok(h)
    }
}

/// The U-Net and its parameters.
#[derive(Debug)]
pub struct UNet {
    vars: Vars,
    down: Vec<DoubleConv>,
    center: DoubleConv,
    /// Decoder levels from the deepest up: the up-sampling and the convolutions after the join.
    up: Vec<(nn::ConvTranspose2D, DoubleConv)>,
    last: nn::Conv2D,
    image: [i64; 3],
}

/// Builds a U-Net from its config section.
pub fn build(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Model>> {
    let cfg: UNetConfig = parse_config(config)?;
    if !(1..=8).contains(&cfg.depth) {
        return Err(Error::config("depth", format!("must be 1 to 8, got {}", cfg.depth)));
    }
    if !(1..=4096).contains(&cfg.base_channels) {
        return Err(Error::config("base_channels", format!("must be 1 to 4096, got {}", cfg.base_channels)));
    }
    let image = match ctx.input_shape.as_slice() {
        [h, w] => [1, *h, *w],
        [c, h, w] => [*c, *h, *w],
        other => {
            return Err(Error::config(
                "module",
                format!("unet needs samples of shape [channels, height, width], got {other:?}"),
            ))
        }
    };
    let step = 1i64 << cfg.depth;
    if image[1] % step != 0 || image[2] % step != 0 {
        let message = format!("{} levels need height and width divisible by {step}; the samples are {}x{} (choose the patch size or the depth to fit)", cfg.depth, image[1], image[2]);
        return Err(Error::config("depth", message));
    }
    let widths: Vec<i64> = (0..=cfg.depth).map(|i| cfg.base_channels << i).collect();
    let mut budget = Budget::of_machine();
    let mut c_in = image[0];
    for (level, &c) in widths.iter().enumerate() {
        let refuse = |m| Error::config("base_channels", format!("level {level}: {m}"));
        budget.take(&[c, c_in * 9 + 1], refuse)?;
        budget.take(&[c, c * 9 + 1], |m| Error::config("base_channels", m))?;
        c_in = c;
    }
    let vs = nn::VarStore::new(ctx.device);
    let root = vs.root();
    let (mut down, mut c_in) = (Vec::new(), image[0]);
    for (i, &c) in widths[..cfg.depth as usize].iter().enumerate() {
        down.push(DoubleConv::new(&root, &format!("conv{}", i + 1), c_in, c, cfg.batch_norm));
        c_in = c;
    }
    let center = DoubleConv::new(&root, "center", c_in, widths[cfg.depth as usize], cfg.batch_norm);
    let mut up = Vec::new();
    for level in (1..=cfg.depth as usize).rev() {
        let (deeper, c) = (widths[level], widths[level - 1]);
        let stride = nn::ConvTransposeConfig { stride: 2, ..Default::default() };
        let t = nn::conv_transpose2d(&root / format!("up{level}"), deeper, c, 2, stride);
        up.push((t, DoubleConv::new(&root, &format!("dec{level}"), 2 * c, c, cfg.batch_norm)));
    }
    let last = nn::conv2d(&root / "final", widths[0], ctx.n_outputs, 1, Default::default());
    Ok(Box::new(UNet { vars: Vars::new(vs), down, center, up, last, image }))
}

impl UNet {
    fn forward_probed(&self, x: &Tensor, train: bool, probe: &Probe<'_>) -> Result<Tensor> {
        let mut h = x.f_view([-1, self.image[0], self.image[1], self.image[2]])?;
        let mut skips = Vec::with_capacity(self.down.len());
        for level in &self.down {
            let features = level.forward(&h, train, probe)?;
            h = features.f_max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)?;
            skips.push(features);
        }
        h = self.center.forward(&h, train, probe)?;
        for (((t, dec), skip), level) in self.up.iter().zip(skips.iter().rev()).zip((1..=self.up.len()).rev()) {
            let up = probe.layer(|| format!("up{level}"), t.forward(&h));
            h = dec.forward(&Tensor::f_cat(&[skip, &up], 1)?, train, probe)?;
        }
        Ok(probe.layer(|| "final".into(), self.last.forward(&h)))
    }
}

impl Model for UNet {
    probed_model!();

    fn set_batch_norm_stats(&mut self, stats: BatchNormStats) -> Result<bool> {
        let layers = self.down.iter_mut().chain([&mut self.center]).chain(self.up.iter_mut().map(|(_, d)| d));
        norm::set_all(layers.flat_map(|d| d.layers.iter_mut().filter_map(|(_, bn)| bn.as_mut())), stats)
    }

    vars_model!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use torchfit_sdk::tch::{Device, Kind};

    fn ctx(shape: &[i64]) -> BuildContext {
        BuildContext { input_shape: shape.to_vec(), n_outputs: 1, ..torchfit_sdk::testing::context("module") }
    }

    #[test]
    fn outputs_one_logit_per_pixel_at_the_inputs_size() {
        let m = build(&serde_json::json!({"depth": 2, "base_channels": 4}), &ctx(&[3, 16, 24])).unwrap();
        let y = m.forward(&Tensor::zeros([2, 3, 16, 24], (Kind::Float, Device::Cpu)), true).unwrap();
        assert_eq!(y.size(), [2, 1, 16, 24]);
    }

    #[test]
    fn the_encoder_is_named_conv_and_the_parameter_count_is_the_architectures() {
        let m =
            build(&serde_json::json!({"depth": 2, "base_channels": 4, "batch_norm": false}), &ctx(&[1, 8, 8])).unwrap();
        let names: Vec<String> = m.parameters().into_iter().map(|(n, _)| n).collect();
        let encoder: Vec<&String> = names.iter().filter(|n| n.starts_with("conv")).collect();
        assert_eq!(encoder.len(), 8, "two levels of two convolutions, weight and bias: {names:?}");
        for expected in ["center.1.weight", "up2.weight", "dec1.0.bias", "final.weight"] {
            assert!(names.iter().any(|n| n == expected), "{expected} in {names:?}");
        }
        let conv = |i: i64, o: i64, k: i64| i * o * k * k + o;
        // conv1: 1->4, 4->4; conv2: 4->8, 8->8; center: 8->16, 16->16; up2: 16->8 (2x2),
        // dec2: 16->8, 8->8; up1: 8->4, dec1: 8->4, 4->4; final 4->1 (1x1).
        let expected = conv(1, 4, 3)
            + conv(4, 4, 3)
            + conv(4, 8, 3)
            + conv(8, 8, 3)
            + conv(8, 16, 3)
            + conv(16, 16, 3)
            + conv(16, 8, 2)
            + conv(16, 8, 3)
            + conv(8, 8, 3)
            + conv(8, 4, 2)
            + conv(8, 4, 3)
            + conv(4, 4, 3)
            + conv(4, 1, 1);
        let count: i64 = m.parameters().iter().map(|(_, t)| t.numel() as i64).sum();
        assert_eq!(count, expected);
    }

    #[test]
    fn sides_that_do_not_divide_by_two_to_the_depth_are_refused_by_key() {
        let e = build(&serde_json::json!({"depth": 3}), &ctx(&[1, 20, 16])).err().unwrap().to_string();
        assert!(e.contains("depth") && e.contains("8"), "{e}");
        let e = build(&serde_json::json!({"depth": 0}), &ctx(&[1, 16, 16])).err().unwrap().to_string();
        assert!(e.contains("depth"), "{e}");
    }
}
