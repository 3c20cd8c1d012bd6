//! Residual networks: `resnet18` (torchvision's ResNet-18, with its parameter names, so its
//! pretrained weights load by name) and `small_resnet` for small images such as MNIST's 28x28.
//!
//! `resnet18`: a 7x7 stride-2 stem with max-pool, four stages of two basic blocks (64, 128, 256,
//! 512 channels), global average pooling and `fc`. Its one key is torchvision's:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `num_classes` | the data's classes (outputs) | outputs of `fc`; at least the data's, so that every label has its logit |
//!
//! `small_resnet` keeps the resolution in a 3x3 stem and halves it at each later stage:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `widths` | `[16, 32, 64]` | channels of each stage |
//! | `blocks` | `[2, 2, 2]` | basic blocks per stage |
//!
//! Samples are `[channels, height, width]` (or `[height, width]` for one channel). Parameters:
//! `conv1.*`, `bn1.*`, `layer<s>.<b>.{conv1,bn1,conv2,bn2,downsample.0,downsample.1}.*`, `fc.*`.
//! Those modules, and each block `layer<s>.<b>` (its output after the last ReLU, as a forward
//! hook on torchvision's `BasicBlock` sees it), are the layers `Model::forward_inspected` can
//! capture; its guided ReLUs are the stem's and every block's.

use crate::budget::Budget;
use crate::norm::{self, BatchNorm};
use crate::probe::{probed_model, Probe};
use crate::{vars_model, Activation, Vars};
use serde::Deserialize;
use torchfit_sdk::tch::nn::{self, Module};
use torchfit_sdk::tch::Tensor;
use torchfit_sdk::{parse_config, BatchNormStats, BuildContext, Error, Model, Result};

#[derive(Debug)]
struct BasicBlock {
    conv1: nn::Conv2D,
    bn1: BatchNorm,
    conv2: nn::Conv2D,
    bn2: BatchNorm,
    downsample: Option<(nn::Conv2D, BatchNorm)>,
}

fn conv(p: nn::Path<'_>, cin: i64, cout: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    nn::conv2d(p, cin, cout, k, nn::ConvConfig { stride, padding, bias: false, ..Default::default() })
}

impl BasicBlock {
    fn new(p: &nn::Path<'_>, cin: i64, cout: i64, stride: i64) -> Self {
        let downsample = (stride != 1 || cin != cout).then(|| {
            (conv(p / "downsample" / 0, cin, cout, 1, stride, 0), BatchNorm::new_2d(p / "downsample" / 1, cout))
        });
        BasicBlock {
            conv1: conv(p / "conv1", cin, cout, 3, stride, 1),
            bn1: BatchNorm::new_2d(p / "bn1", cout),
            conv2: conv(p / "conv2", cout, cout, 3, 1, 1),
            bn2: BatchNorm::new_2d(p / "bn2", cout),
            downsample,
        }
    }

    /// The block's output; `at` is its module name (`layer2.0`), under which `probe` sees the
    /// block's layers and the block's own output.
    fn forward(&self, x: &Tensor, train: bool, probe: &Probe<'_>, at: &dyn Fn() -> String) -> Result<Tensor> {
        let h = probe.layer(|| format!("{}.conv1", at()), self.conv1.forward(x));
        let h = probe.layer(|| format!("{}.bn1", at()), self.bn1.forward(&h, train)?);
        let h = probe.activate(Activation::Relu, &h)?;
        let h = probe.layer(|| format!("{}.conv2", at()), self.conv2.forward(&h));
        let h = probe.layer(|| format!("{}.bn2", at()), self.bn2.forward(&h, train)?);
        let identity = match &self.downsample {
            Some((c, bn)) => {
                let d = probe.layer(|| format!("{}.downsample.0", at()), c.forward(x));
                probe.layer(|| format!("{}.downsample.1", at()), bn.forward(&d, train)?)
            }
            None => x.shallow_clone(),
        };
        Ok(probe.layer(at, probe.activate(Activation::Relu, &h.f_add(&identity)?)?))
    }
}

/// A residual network.
#[derive(Debug)]
pub struct ResNet {
    vars: Vars,
    conv1: nn::Conv2D,
    bn1: BatchNorm,
    max_pool: bool,
    stages: Vec<Vec<BasicBlock>>,
    fc: nn::Linear,
    image: [i64; 3],
}

/// What differs between the two networks.
struct Spec {
    stem_kernel: i64,
    stem_stride: i64,
    max_pool: bool,
    widths: Vec<i64>,
    blocks: Vec<usize>,
}

fn image(ctx: &BuildContext) -> Result<[i64; 3]> {
    match ctx.input_shape.as_slice() {
        [h, w] => Ok([1, *h, *w]),
        [c, h, w] => Ok([*c, *h, *w]),
        other => Err(Error::config("module", format!("a ResNet needs samples of shape [channels, height, width] or [height, width], got {other:?}; set the reader's `shape`"))),
    }
}

fn build(spec: Spec, ctx: &BuildContext, outputs: i64) -> Result<Box<dyn Model>> {
    let image = image(ctx)?;
    let vs = nn::VarStore::new(ctx.device);
    let root = vs.root();
    let conv1 =
        conv(&root / "conv1", image[0], spec.widths[0], spec.stem_kernel, spec.stem_stride, spec.stem_kernel / 2);
    let bn1 = BatchNorm::new_2d(&root / "bn1", spec.widths[0]);
    let mut stages = Vec::new();
    let mut cin = spec.widths[0];
    for (s, (&width, &n)) in spec.widths.iter().zip(&spec.blocks).enumerate() {
        let p = &root / format!("layer{}", s + 1);
        let stride = if s == 0 { 1 } else { 2 };
        stages.push(
            (0..n)
                .map(|b| {
                    BasicBlock::new(&(&p / b), if b == 0 { cin } else { width }, width, if b == 0 { stride } else { 1 })
                })
                .collect(),
        );
        cin = width;
    }
    Budget::of_machine().output(cin, outputs)?;
    let fc = nn::linear(&root / "fc", cin, outputs, Default::default());
    Ok(Box::new(ResNet { vars: Vars::new(vs), conv1, bn1, max_pool: spec.max_pool, stages, fc, image }))
}

/// Settings of `resnet18`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNet18Config {
    /// Outputs of `fc`; the data's when absent.
    pub num_classes: Option<i64>,
}

/// Builds `resnet18`.
pub fn build_resnet18(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Model>> {
    let c: ResNet18Config = parse_config(config)?;
    let outputs = match c.num_classes {
        None => ctx.n_outputs,
        Some(n) if n >= ctx.n_outputs.max(1) => n,
        Some(n) => {
            let data = ctx.n_outputs;
            return Err(Error::config("num_classes", format!("{n} is fewer than the {data} outputs the data needs")));
        }
    };
    let spec =
        Spec { stem_kernel: 7, stem_stride: 2, max_pool: true, widths: vec![64, 128, 256, 512], blocks: vec![2; 4] };
    build(spec, ctx, outputs)
}

/// Settings of `small_resnet`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmallConfig {
    /// Channels per stage.
    pub widths: Vec<i64>,
    /// Blocks per stage.
    pub blocks: Vec<usize>,
}

impl Default for SmallConfig {
    fn default() -> Self {
        SmallConfig { widths: vec![16, 32, 64], blocks: vec![2, 2, 2] }
    }
}

/// Builds `small_resnet`.
pub fn build_small(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Model>> {
    let c: SmallConfig = parse_config(config)?;
    if c.widths.is_empty() || c.widths.len() != c.blocks.len() {
        return Err(Error::config(
            "widths",
            format!("needs one entry per stage, like `blocks` ({} vs {})", c.widths.len(), c.blocks.len()),
        ));
    }
    if let Some(i) = c.widths.iter().position(|&w| w < 1) {
        return Err(Error::config(format!("widths[{i}]"), "must be at least 1"));
    }
    if let Some(i) = c.blocks.iter().position(|&b| b < 1) {
        return Err(Error::config(format!("blocks[{i}]"), "must be at least 1"));
    }
    build(
        Spec { stem_kernel: 3, stem_stride: 1, max_pool: false, widths: c.widths, blocks: c.blocks },
        ctx,
        ctx.n_outputs,
    )
}

impl ResNet {
    fn forward_probed(&self, x: &Tensor, train: bool, probe: &Probe<'_>) -> Result<Tensor> {
        let x = x.f_view([-1, self.image[0], self.image[1], self.image[2]])?;
        let h = probe.layer(|| "conv1".into(), self.conv1.forward(&x));
        let h = probe.layer(|| "bn1".into(), self.bn1.forward(&h, train)?);
        let mut h = probe.activate(Activation::Relu, &h)?;
        if self.max_pool {
            h = h.f_max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)?;
        }
        for (s, stage) in self.stages.iter().enumerate() {
            for (b, block) in stage.iter().enumerate() {
                h = block.forward(&h, train, probe, &|| format!("layer{}.{b}", s + 1))?;
            }
        }
        let h = h.f_adaptive_avg_pool2d([1, 1])?.f_flatten(1, -1)?;
        Ok(probe.layer(|| "fc".into(), self.fc.forward(&h)))
    }
}

impl Model for ResNet {
    probed_model!();

    fn set_batch_norm_stats(&mut self, stats: BatchNormStats) -> Result<bool> {
        let blocks = self.stages.iter_mut().flatten().flat_map(|b| {
            [Some(&mut b.bn1), Some(&mut b.bn2), b.downsample.as_mut().map(|(_, bn)| bn)].into_iter().flatten()
        });
        norm::set_all(std::iter::once(&mut self.bn1).chain(blocks), stats)
    }

    vars_model!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use torchfit_sdk::tch::{Device, Kind};

    fn ctx(shape: &[i64], n: i64) -> BuildContext {
        BuildContext { input_shape: shape.to_vec(), n_outputs: n, ..torchfit_sdk::testing::context("module") }
    }

    #[test]
    fn resnet18_has_torchvisions_parameter_count_and_names() {
        let m = build_resnet18(&serde_json::json!({}), &ctx(&[3, 64, 64], 1000)).unwrap();
        let count: i64 = m.parameters().iter().map(|(_, t)| t.numel() as i64).sum();
        assert_eq!(count, 11_689_512, "torchvision.models.resnet18().parameters()");
        let names: Vec<String> = m.state_dict().into_iter().map(|(n, _)| n).collect();
        for n in [
            "conv1.weight",
            "bn1.running_mean",
            "layer1.0.conv1.weight",
            "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.running_var",
            "layer4.1.bn2.bias",
            "fc.weight",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} missing");
        }
        assert_eq!(
            m.forward(&Tensor::zeros([2, 3, 64, 64], (Kind::Float, Device::Cpu)), false).unwrap().size(),
            [2, 1000]
        );
    }

    #[test]
    fn resnet18_sizes_fc_to_num_classes_and_refuses_fewer_than_the_data_needs() {
        let m = build_resnet18(&serde_json::json!({"num_classes": 7}), &ctx(&[3, 32, 32], 5)).unwrap();
        let fc = m.parameters().into_iter().find(|(n, _)| n == "fc.weight").unwrap().1;
        assert_eq!(fc.size(), [7, 512]);
        let e = build_resnet18(&serde_json::json!({"num_classes": 3}), &ctx(&[3, 32, 32], 5)).err().unwrap();
        assert!(e.to_string().contains("num_classes") && e.to_string().contains("5 outputs"), "{e}");
    }

    #[test]
    fn a_small_resnet_takes_mnist_images_and_checks_its_stages() {
        let m = build_small(&serde_json::json!({"widths": [8, 16], "blocks": [1, 1]}), &ctx(&[28, 28], 10)).unwrap();
        assert_eq!(m.forward(&Tensor::zeros([2, 784], (Kind::Float, Device::Cpu)), true).unwrap().size(), [2, 10]);
        let e = build_small(&serde_json::json!({"widths": [8], "blocks": [1, 1]}), &ctx(&[28, 28], 10))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("widths"), "{e}");
    }
}
