//! A torchfit plugin with a criterion and a scorer, the two component kinds besides callbacks
//! that a team most often brings.
//!
//! - `focal_loss` (criterion): Lin et al.'s focal loss for classification,
//!   `mean(-(1 - p_t)^gamma * log p_t)` over the batch, where `p_t` is the softmax probability of
//!   the target class. With `gamma = 0` it is cross-entropy.
//! - `top2_accuracy` (scorer): scikit-learn's `top_k_accuracy_score` with `k = 2`, the share of
//!   samples whose target is among the two highest logits; higher is better.
use serde::Deserialize;
use torchfit_sdk::tch::{Kind, Tensor};
use torchfit_sdk::{export_plugin, parse_config, BuildContext, Criterion, Error, Result, Scorer, Task};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FocalConfig {
    /// The focusing exponent: 0 is cross-entropy, larger values down-weight easy samples.
    gamma: f64,
}

impl Default for FocalConfig {
    fn default() -> Self {
        FocalConfig { gamma: 2.0 }
    }
}

struct FocalLoss {
    gamma: f64,
}

fn build_focal(config: &torchfit_sdk::Value, ctx: &BuildContext) -> Result<Box<dyn Criterion>> {
    let c: FocalConfig = parse_config(config)?;
    if !(c.gamma.is_finite() && c.gamma >= 0.0) {
        return Err(Error::config("gamma", format!("must be 0 or more, not {}", c.gamma)));
    }
    if ctx.task != Task::Classification {
        return Err(Error::config("name", "focal_loss is for classification"));
    }
    Ok(Box::new(FocalLoss { gamma: c.gamma }))
}

impl Criterion for FocalLoss {
    fn loss(&self, y_pred: &Tensor, y: &Tensor) -> Result<Tensor> {
        // log p_t of each sample: the log-softmax at its target.
        let log_pt = y_pred.f_log_softmax(-1, Kind::Float)?.f_gather(1, &y.f_unsqueeze(1)?, false)?.f_squeeze_dim(1)?;
        let weight = log_pt.f_exp()?.f_neg()?.f_add_scalar(1.0)?.f_pow_tensor_scalar(self.gamma)?;
        Ok(weight.f_mul(&log_pt)?.f_neg()?.f_mean(Kind::Float)?)
    }
}

struct Top2Accuracy;

fn build_top2(config: &torchfit_sdk::Value, _ctx: &BuildContext) -> Result<Box<dyn Scorer>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoKeys {}
    let _: NoKeys = parse_config(config)?;
    Ok(Box::new(Top2Accuracy))
}

impl Scorer for Top2Accuracy {
    fn score(&self, y_true: &Tensor, y_pred: &Tensor) -> Result<f64> {
        let classes = y_pred.size().last().copied().unwrap_or(0);
        if y_pred.dim() != 2 || classes < 2 {
            return Err(Error::data(format!(
                "top2_accuracy needs a row of logits per sample, got {:?}",
                y_pred.size()
            )));
        }
        let (_, top) = y_pred.f_topk(2, -1, true, true)?;
        let hit = top.f_eq_tensor(&y_true.f_unsqueeze(1)?.f_to_kind(Kind::Int64)?)?.f_any_dim(1, false)?;
        Ok(hit.f_to_kind(Kind::Double)?.f_mean(Kind::Double)?.f_double_value(&[])?)
    }

    fn lower_is_better(&self) -> Option<bool> {
        Some(false)
    }
}

export_plugin! {
    name: "custom-criterion-scorer",
    components: [
        Criterion("focal_loss", build_focal, "focal loss for classification (gamma = 2.0; 0 is cross-entropy)"),
        Scorer("top2_accuracy", build_top2, "share of samples whose target is among the two highest logits"),
    ],
}
