//! The scorer components: tensors in, [`crate::metrics`] on plain numbers, a score out.

use crate::metrics::{self, Average, Outputs, Prf};
use torchfit_sdk::metrics as shared;
use torchfit_sdk::tch::{Kind, Tensor};
use torchfit_sdk::{BuildContext, Error, Result, Scorer};

/// The scorers this plugin provides (scikit-learn's names, without the `neg_` of losses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// `accuracy`.
    Accuracy,
    /// `balanced_accuracy`.
    BalancedAccuracy,
    /// `f1`, `precision`, `recall` and their `_macro` / `_micro` variants.
    Prf(Prf, Average),
    /// `roc_auc`.
    RocAuc,
    /// `log_loss`.
    LogLoss,
    /// `r2`.
    R2,
    /// `mse`.
    Mse,
    /// `mae`.
    Mae,
    /// `iou`: the skorch talk's approximate intersection over union of thresholded masks.
    Iou,
}

/// A name that is not one of [`Metric`]'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownScorer;

impl std::str::FromStr for Metric {
    type Err = UnknownScorer;

    fn from_str(s: &str) -> std::result::Result<Self, UnknownScorer> {
        let (base, average) = match s.rsplit_once('_') {
            Some((b, "macro")) => (b, Some(Average::Macro)),
            Some((b, "micro")) => (b, Some(Average::Micro)),
            _ => (s, None),
        };
        let prf = match base {
            "f1" => Some(Prf::F1),
            "precision" => Some(Prf::Precision),
            "recall" => Some(Prf::Recall),
            _ => None,
        };
        Ok(match (s, prf, average) {
            (_, Some(p), a) => Metric::Prf(p, a.unwrap_or(Average::Binary)),
            (_, None, Some(_)) => return Err(UnknownScorer),
            ("accuracy", ..) => Metric::Accuracy,
            ("balanced_accuracy", ..) => Metric::BalancedAccuracy,
            ("roc_auc", ..) => Metric::RocAuc,
            ("log_loss", ..) => Metric::LogLoss,
            ("r2", ..) => Metric::R2,
            ("mse", ..) => Metric::Mse,
            ("mae", ..) => Metric::Mae,
            ("iou", ..) => Metric::Iou,
            _ => return Err(UnknownScorer),
        })
    }
}

fn doubles(t: &Tensor) -> Result<Vec<f64>> {
    Ok(Vec::<f64>::try_from(t.f_to_device(torchfit_sdk::tch::Device::Cpu)?.f_to_kind(Kind::Double)?.f_flatten(0, -1)?)?)
}

fn labels(t: &Tensor) -> Result<Vec<i64>> {
    if t.is_floating_point() {
        return Err(Error::msg("a classification scorer needs integer class labels as targets"));
    }
    Ok(Vec::<i64>::try_from(t.f_to_device(torchfit_sdk::tch::Device::Cpu)?.f_to_kind(Kind::Int64)?.f_flatten(0, -1)?)?)
}

fn outputs(t: &Tensor, n: usize) -> Result<Outputs> {
    let values = doubles(t)?;
    if n == 0 || values.len() % n != 0 {
        return Err(Error::msg(format!("{} outputs do not divide into {n} samples", values.len())));
    }
    Ok(Outputs { width: values.len() / n, values })
}

impl Metric {
    /// Whether a lower score is better (the losses).
    pub fn lower_is_better(self) -> bool {
        matches!(self, Metric::LogLoss | Metric::Mse | Metric::Mae)
    }

    /// The score of outputs `y_pred` (logits for classification) against `y_true`.
    pub fn score(self, y_true: &Tensor, y_pred: &Tensor) -> Result<f64> {
        match self {
            Metric::Accuracy => shared::accuracy(y_true, y_pred),
            Metric::Iou => mask_iou(y_true, y_pred),
            Metric::R2 => shared::r2(y_true, y_pred),
            Metric::Mse | Metric::Mae => {
                let (y, p) = (doubles(y_true)?, doubles(y_pred)?);
                if y.len() != p.len() || y.is_empty() {
                    return Err(Error::msg(format!("{} targets but {} predictions", y.len(), p.len())));
                }
                Ok(if self == Metric::Mse { metrics::mse(&y, &p) } else { metrics::mae(&y, &p) })
            }
            _ => {
                let y = labels(y_true)?;
                let out = outputs(y_pred, y.len())?;
                let pred = || labels(&shared::predicted_classes(y_pred)?);
                match self {
                    Metric::BalancedAccuracy => Ok(metrics::balanced_accuracy(&y, &pred()?)),
                    Metric::Prf(m, a) => metrics::prf(m, a, &y, &pred()?).map_err(Error::msg),
                    Metric::RocAuc => Ok(metrics::roc_auc(&y, &out)),
                    _ => metrics::log_loss(&y, &out).map_err(Error::msg),
                }
            }
        }
    }
}

/// The mean over samples of `|p & t| / |p | t|`, with `p` the pixels whose logit is above 0
/// (sigmoid above 0.5) and `t` those whose target is above 0.5; a sample with both empty
/// scores 1.
fn mask_iou(y_true: &Tensor, y_pred: &Tensor) -> Result<f64> {
    if y_true.numel() != y_pred.numel() || y_pred.numel() == 0 {
        let message =
            format!("iou needs one 0/1 target per output: outputs {:?}, targets {:?}", y_pred.size(), y_true.size());
        return Err(Error::msg(message));
    }
    let n = y_pred.size()[0];
    let pred = y_pred.f_gt(0.0)?.f_reshape([n, -1])?;
    let truth = y_true.f_to_kind(Kind::Float)?.f_gt(0.5)?.f_reshape([n, -1])?;
    let inter = doubles(&pred.f_logical_and(&truth)?.f_sum_dim_intlist(1, false, Kind::Double)?)?;
    let union = doubles(&pred.f_logical_or(&truth)?.f_sum_dim_intlist(1, false, Kind::Double)?)?;
    let per_sample = inter.iter().zip(&union).map(|(i, u)| if *u == 0.0 { 1.0 } else { i / u });
    Ok(per_sample.sum::<f64>() / n as f64)
}

struct Component(Metric);

impl Scorer for Component {
    fn score(&self, y_true: &Tensor, y_pred: &Tensor) -> Result<f64> {
        self.0.score(y_true, y_pred)
    }
    fn lower_is_better(&self) -> Option<bool> {
        Some(self.0.lower_is_better())
    }
}

macro_rules! constructors {
    ($($f:ident = $m:expr),* $(,)?) => {
        $(
            pub(crate) fn $f(_config: &torchfit_sdk::Value, _ctx: &BuildContext) -> Result<Box<dyn Scorer>> {
                Ok(Box::new(Component($m)))
            }
        )*
    };
}

constructors! {
    accuracy = Metric::Accuracy,
    balanced_accuracy = Metric::BalancedAccuracy,
    f1 = Metric::Prf(Prf::F1, Average::Binary),
    f1_macro = Metric::Prf(Prf::F1, Average::Macro),
    f1_micro = Metric::Prf(Prf::F1, Average::Micro),
    precision = Metric::Prf(Prf::Precision, Average::Binary),
    precision_macro = Metric::Prf(Prf::Precision, Average::Macro),
    precision_micro = Metric::Prf(Prf::Precision, Average::Micro),
    recall = Metric::Prf(Prf::Recall, Average::Binary),
    recall_macro = Metric::Prf(Prf::Recall, Average::Macro),
    recall_micro = Metric::Prf(Prf::Recall, Average::Micro),
    roc_auc = Metric::RocAuc,
    log_loss = Metric::LogLoss,
    r2 = Metric::R2,
    iou = Metric::Iou,
    mse = Metric::Mse,
    mae = Metric::Mae,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exported_name_parses_to_its_metric_and_others_do_not() {
        for name in [
            "accuracy",
            "balanced_accuracy",
            "f1",
            "f1_macro",
            "f1_micro",
            "precision",
            "precision_macro",
            "precision_micro",
            "recall",
            "recall_macro",
            "recall_micro",
            "roc_auc",
            "log_loss",
            "r2",
            "mse",
            "mae",
        ] {
            assert!(name.parse::<Metric>().is_ok(), "{name}");
        }
        for name in ["accuracy_macro", "f1_weighted", "neg_log_loss", ""] {
            assert_eq!(name.parse::<Metric>(), Err(UnknownScorer), "{name}");
        }
    }

    #[test]
    fn regression_scorers_accept_column_or_flat_predictions() {
        let y = Tensor::from_slice(&[3.0f32, -0.5, 2.0, 7.0]);
        let p = Tensor::from_slice(&[2.5f32, 0.0, 2.0, 8.0]).view([4, 1]);
        assert!((Metric::Mse.score(&y, &p).unwrap() - 0.375).abs() < 1e-12);
        assert!(Metric::Mae.score(&y, &Tensor::from_slice(&[1.0f32])).is_err());
    }

    #[test]
    fn classification_scorers_refuse_real_valued_targets() {
        let e =
            Metric::Accuracy.score(&Tensor::from_slice(&[0.5f32]), &Tensor::from_slice(&[1.0f32, 0.0])).unwrap_err();
        assert!(e.to_string().contains("integer class labels"), "{e}");
    }

    #[test]
    fn iou_is_the_mean_overlap_of_thresholded_masks() {
        let t = |v: &[f32]| Tensor::from_slice(v).view([2, 1, 2, 2]);
        // Sample 0: predicted {0, 1}, true {1, 2}: 1 / 3. Sample 1: both empty: 1.
        let logits = t(&[3.0, 2.0, -1.0, -4.0, -1.0, -1.0, -1.0, -1.0]);
        let masks = t(&[0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        let score = Metric::Iou.score(&masks, &logits).unwrap();
        assert!((score - (1.0 / 3.0 + 1.0) / 2.0).abs() < 1e-12, "{score}");
        assert!(Metric::Iou.score(&masks, &logits.view([8])).is_ok(), "only the counts matter");
        assert!(Metric::Iou.score(&masks.narrow(0, 0, 1), &logits).is_err());
        assert_eq!("iou".parse::<Metric>(), Ok(Metric::Iou));
        assert!(!Metric::Iou.lower_is_better());
    }
}
