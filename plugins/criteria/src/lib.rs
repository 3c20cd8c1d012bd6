//! Stock criteria, each the mean loss of `torch.nn`'s class of the same name, with its keys and
//! defaults:
//!
//! | name | PyTorch | keys |
//! |---|---|---|
//! | `cross_entropy` | `CrossEntropyLoss` (logits, class indices) | `weight` (per class), `label_smoothing` = 0.0, `ignore_index` = -100 |
//! | `nll` | `NLLLoss` (log-probabilities, class indices) | `weight` (per class), `ignore_index` = -100 |
//! | `bce_with_logits` | `BCEWithLogitsLoss` (logits, 0/1 targets) | `pos_weight` (per output), `padding` = 0 (per-pixel outputs `[n, c, h, w]`: a border of this many pixels left out, the skorch talk's `BCEWithLogitsLossPadding`) |
//! | `mse` | `MSELoss` | none |
//! | `l1` | `L1Loss` | none |
//! | `smooth_l1` | `SmoothL1Loss` | `beta` = 1.0 |
//! | `huber` | `HuberLoss` | `delta` = 1.0 |
//!
//! Regression-style criteria view the targets with the outputs' shape (a `[n]` target against
//! `[n, 1]` outputs), and `bce_with_logits` converts integer targets to floats, so a binary
//! classifier with one output trains on 0/1 labels.
#![deny(missing_docs)]

use serde::Deserialize;
use torchfit_sdk::tch::{Reduction, Tensor};
use torchfit_sdk::{export_plugin, parse_config, BuildContext, Criterion, Error, Result};

/// Whether a per-output list of one value stands for every output (torch broadcasts
/// `pos_weight`; a class `weight` must name every class).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broadcast {
    No,
    FromOne,
}

/// The tensor of a per-output list `key`, refused by its key unless it has one value per output
/// of the model (`ctx.n_outputs`), or one value where `broadcast` allows: libtorch would refuse
/// it only at the first batch.
fn per_output(key: &str, values: Option<Vec<f32>>, ctx: &BuildContext, broadcast: Broadcast) -> Result<Option<Tensor>> {
    let Some(values) = values else { return Ok(None) };
    let n = values.len() as i64;
    if n != ctx.n_outputs && !(broadcast == Broadcast::FromOne && n == 1) {
        let one = if broadcast == Broadcast::FromOne { " (or 1 for all)" } else { "" };
        let message =
            format!("has {n} values; the model has {} outputs, so it needs {}{one}", ctx.n_outputs, ctx.n_outputs);
        return Err(Error::config(key, message));
    }
    Ok(Some(Tensor::from_slice(&values).f_to_device(ctx.device)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CrossEntropyConfig {
    weight: Option<Vec<f32>>,
    label_smoothing: f64,
    ignore_index: i64,
}

impl Default for CrossEntropyConfig {
    fn default() -> Self {
        CrossEntropyConfig { weight: Default::default(), label_smoothing: Default::default(), ignore_index: -100 }
    }
}

struct CrossEntropy {
    weight: Option<Tensor>,
    label_smoothing: f64,
    ignore_index: i64,
}

/// Builds `cross_entropy`.
pub fn cross_entropy(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Criterion>> {
    let c: CrossEntropyConfig = parse_config(config)?;
    if !(0.0..=1.0).contains(&c.label_smoothing) {
        let message =
            format!("must be between 0.0 and 1.0 (as in torch.nn.CrossEntropyLoss), got {}", c.label_smoothing);
        return Err(Error::config("label_smoothing", message));
    }
    let weight = per_output("weight", c.weight, ctx, Broadcast::No)?;
    Ok(Box::new(CrossEntropy { weight, label_smoothing: c.label_smoothing, ignore_index: c.ignore_index }))
}

impl Criterion for CrossEntropy {
    fn loss(&self, y_pred: &Tensor, y: &Tensor) -> Result<Tensor> {
        Ok(y_pred.f_cross_entropy_loss(
            y,
            self.weight.as_ref(),
            Reduction::Mean,
            self.ignore_index,
            self.label_smoothing,
        )?)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct NllConfig {
    weight: Option<Vec<f32>>,
    ignore_index: i64,
}

impl Default for NllConfig {
    fn default() -> Self {
        NllConfig { weight: Default::default(), ignore_index: -100 }
    }
}

struct Nll {
    weight: Option<Tensor>,
    ignore_index: i64,
}

/// Builds `nll`.
pub fn nll(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Criterion>> {
    let c: NllConfig = parse_config(config)?;
    let weight = per_output("weight", c.weight, ctx, Broadcast::No)?;
    Ok(Box::new(Nll { weight, ignore_index: c.ignore_index }))
}

impl Criterion for Nll {
    fn loss(&self, y_pred: &Tensor, y: &Tensor) -> Result<Tensor> {
        Ok(y_pred.f_nll_loss(y, self.weight.as_ref(), Reduction::Mean, self.ignore_index)?)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BceConfig {
    #[serde(default)]
    pos_weight: Option<Vec<f32>>,
    #[serde(default)]
    padding: i64,
}

struct BceWithLogits {
    pos_weight: Option<Tensor>,
    /// Border of per-pixel outputs (`[n, c, h, w]`) left out of the loss.
    padding: i64,
}

/// Builds `bce_with_logits`.
pub fn bce_with_logits(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Criterion>> {
    let c: BceConfig = parse_config(config)?;
    let pos_weight = per_output("pos_weight", c.pos_weight, ctx, Broadcast::FromOne)?;
    if c.padding < 0 {
        return Err(Error::config("padding", format!("must be at least 0, got {}", c.padding)));
    }
    let pos_weight = match (pos_weight, c.padding) {
        // Per-pixel outputs: one weight per channel, broadcast over height and width.
        (Some(w), p) if p > 0 => Some(w.f_view([-1, 1, 1])?),
        (w, _) => w,
    };
    Ok(Box::new(BceWithLogits { pos_weight, padding: c.padding }))
}

impl Criterion for BceWithLogits {
    fn loss(&self, y_pred: &Tensor, y: &Tensor) -> Result<Tensor> {
        if y.numel() != y_pred.numel() {
            let message = format!(
                "needs one 0/1 target per output, but the outputs are {:?} and the targets {:?} (class indices with one output per class: use cross_entropy)",
                y_pred.size(),
                y.size()
            );
            return Err(Error::config("name", message));
        }
        let y = y.f_to_kind(y_pred.kind())?.f_view_as(y_pred)?;
        let (y_pred, y) = match self.padding {
            0 => (y_pred.shallow_clone(), y),
            p => (torchfit_sdk::metrics::without_border(y_pred, p)?, torchfit_sdk::metrics::without_border(&y, p)?),
        };
        Ok(y_pred.f_binary_cross_entropy_with_logits(&y, None::<&Tensor>, self.pos_weight.as_ref(), Reduction::Mean)?)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

/// A loss between outputs and targets of the same shape.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pointwise {
    Mse,
    L1,
    SmoothL1(f64),
    Huber(f64),
}

impl Criterion for Pointwise {
    fn loss(&self, y_pred: &Tensor, y: &Tensor) -> Result<Tensor> {
        let y = y.f_to_kind(y_pred.kind())?.f_view_as(y_pred)?;
        Ok(match *self {
            Pointwise::Mse => y_pred.f_mse_loss(&y, Reduction::Mean)?,
            Pointwise::L1 => y_pred.f_l1_loss(&y, Reduction::Mean)?,
            Pointwise::SmoothL1(beta) => y_pred.f_smooth_l1_loss(&y, Reduction::Mean, beta)?,
            Pointwise::Huber(delta) => y_pred.f_huber_loss(&y, Reduction::Mean, delta)?,
        })
    }
}

/// Refuses a loss between outputs and targets of the same shape for a classifier, whose targets
/// are class indices (one per sample, not one per output).
fn regression_only(name: &str, ctx: &BuildContext) -> Result<()> {
    match ctx.task {
        torchfit_sdk::Task::Regression => Ok(()),
        torchfit_sdk::Task::Classification => Err(Error::config(
            "name",
            format!(
                "`{name}` compares each output with a target of its own, but a classifier's targets are class indices: use cross_entropy, or set task = \"regression\""
            ),
        )),
    }
}

/// Builds `mse`.
pub fn mse(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Criterion>> {
    let _: NoConfig = parse_config(config)?;
    regression_only("mse", ctx)?;
    Ok(Box::new(Pointwise::Mse))
}

/// Builds `l1`.
pub fn l1(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Criterion>> {
    let _: NoConfig = parse_config(config)?;
    regression_only("l1", ctx)?;
    Ok(Box::new(Pointwise::L1))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct BetaConfig {
    beta: f64,
}

impl Default for BetaConfig {
    fn default() -> Self {
        BetaConfig { beta: 1.0 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct DeltaConfig {
    delta: f64,
}

impl Default for DeltaConfig {
    fn default() -> Self {
        DeltaConfig { delta: 1.0 }
    }
}

/// Builds `smooth_l1`.
pub fn smooth_l1(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Criterion>> {
    let c: BetaConfig = parse_config(config)?;
    regression_only("smooth_l1", ctx)?;
    Ok(Box::new(Pointwise::SmoothL1(c.beta)))
}

/// Builds `huber`.
pub fn huber(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Criterion>> {
    let c: DeltaConfig = parse_config(config)?;
    regression_only("huber", ctx)?;
    if c.delta <= 0.0 {
        return Err(torchfit_sdk::Error::config("delta", format!("must be positive, got {}", c.delta)));
    }
    Ok(Box::new(Pointwise::Huber(c.delta)))
}

export_plugin! {
    name: "torchfit-plugin-criteria",
    components: [
        Criterion("cross_entropy", cross_entropy, "CrossEntropyLoss over logits; keys: weight, label_smoothing, ignore_index"),
        Criterion("nll", nll, "NLLLoss over log-probabilities; keys: weight, ignore_index"),
        Criterion("bce_with_logits", bce_with_logits, "BCEWithLogitsLoss; keys: pos_weight, padding"),
        Criterion("mse", mse, "MSELoss"),
        Criterion("l1", l1, "L1Loss"),
        Criterion("smooth_l1", smooth_l1, "SmoothL1Loss; keys: beta"),
        Criterion("huber", huber, "HuberLoss; keys: delta"),
    ],
}

#[cfg(test)]
mod tests {
    use super::*;
    use torchfit_sdk::tch::{Device, Kind};

    fn ctx() -> BuildContext {
        BuildContext { input_shape: vec![], ..torchfit_sdk::testing::context("criterion") }
    }

    fn regression() -> BuildContext {
        BuildContext { task: torchfit_sdk::Task::Regression, ..ctx() }
    }

    #[test]
    fn a_pointwise_loss_is_refused_for_a_classifier_when_built() {
        for build in [mse, l1, smooth_l1, huber] {
            match build(&serde_json::json!({}), &ctx()) {
                Err(Error::Config { key, message }) => {
                    assert!(key == "name" && message.contains("cross_entropy"), "{message}")
                }
                _ => panic!("a classifier's pointwise loss is refused"),
            }
            assert!(build(&serde_json::json!({}), &regression()).is_ok());
        }
    }

    #[test]
    fn cross_entropy_of_uniform_logits_is_log_of_the_class_count() {
        let c = cross_entropy(&serde_json::json!({}), &ctx()).unwrap();
        let l =
            c.loss(&Tensor::zeros([4, 3], (Kind::Float, Device::Cpu)), &Tensor::from_slice(&[0i64, 1, 2, 0])).unwrap();
        assert!((l.double_value(&[]) - 3f64.ln()).abs() < 1e-6);
    }

    #[test]
    fn per_output_lists_must_match_the_outputs_as_libtorch_requires() {
        let three = BuildContext { n_outputs: 3, ..ctx() };
        let key = |r: Result<Box<dyn Criterion>>| match r {
            Err(Error::Config { key, message }) => format!("{key}: {message}"),
            Err(e) => panic!("not a config error: {e}"),
            Ok(_) => "accepted".into(),
        };
        assert_eq!(key(cross_entropy(&serde_json::json!({"weight": [1.0, 2.0, 1.0]}), &three)), "accepted");
        let wrong = key(cross_entropy(&serde_json::json!({"weight": [1.0, 2.0]}), &three));
        assert!(wrong.starts_with("weight: has 2 values") && wrong.contains("needs 3"), "{wrong}");
        assert!(key(nll(&serde_json::json!({"weight": [1.0]}), &three)).starts_with("weight: has 1 values"));
        assert_eq!(key(bce_with_logits(&serde_json::json!({"pos_weight": [2.0]}), &three)), "accepted");
        assert_eq!(key(bce_with_logits(&serde_json::json!({"pos_weight": [1.0, 2.0, 3.0]}), &three)), "accepted");
        let wrong = key(bce_with_logits(&serde_json::json!({"pos_weight": [1.0, 2.0]}), &three));
        assert!(wrong.starts_with("pos_weight: has 2 values") && wrong.contains("(or 1 for all)"), "{wrong}");
    }

    #[test]
    fn a_padded_loss_ignores_the_border_of_per_pixel_outputs() {
        let one = BuildContext { n_outputs: 1, ..torchfit_sdk::testing::context("criterion") };
        let padded = bce_with_logits(&serde_json::json!({"padding": 1}), &one).unwrap();
        let plain = bce_with_logits(&serde_json::json!({}), &one).unwrap();
        // 4x4 logits whose border is wildly wrong and whose centre is right.
        let y = Tensor::zeros([1, 1, 4, 4], (Kind::Float, Device::Cpu));
        let logits = Tensor::full([1, 1, 4, 4], 50.0, (Kind::Float, Device::Cpu));
        let _ = logits.narrow(2, 1, 2).narrow(3, 1, 2).fill_(-50.0);
        let centre = y.narrow(2, 1, 2).narrow(3, 1, 2);
        let expected = plain.loss(&logits.narrow(2, 1, 2).narrow(3, 1, 2), &centre).unwrap();
        let got = padded.loss(&logits, &y).unwrap();
        assert_eq!(got.double_value(&[]), expected.double_value(&[]));
        assert!(got.double_value(&[]) < 1e-6 && plain.loss(&logits, &y).unwrap().double_value(&[]) > 10.0);
        let e = padded.loss(
            &Tensor::zeros([2, 1], (Kind::Float, Device::Cpu)),
            &Tensor::zeros([2, 1], (Kind::Float, Device::Cpu)),
        );
        assert!(e.err().unwrap().to_string().contains("padding"));
    }

    #[test]
    fn mse_is_the_mean_squared_difference() {
        let c = mse(&serde_json::json!({}), &regression()).unwrap();
        let l = c.loss(&Tensor::from_slice(&[1f32, 3.0]).view([2, 1]), &Tensor::from_slice(&[0f32, 1.0])).unwrap();
        assert!((l.double_value(&[]) - 2.5).abs() < 1e-6);
    }
}
