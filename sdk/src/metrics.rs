//! Metrics that the engine and plugins share, so that a net's `score`, the default `valid_acc`,
//! the loss columns and the scoring plugin compute them one way: scikit-learn's definitions.

use crate::{Error, Result};
use tch::{Device, Kind, Tensor};

/// The class each sample's outputs predict: the arg-max of its logits (the first of equal
/// values, as `torch.argmax`), or `logit > 0` when there is one logit per sample (a binary
/// model with `bce_with_logits`). An `Int64` tensor of one class per sample.
pub fn predicted_classes(y_pred: &Tensor) -> Result<Tensor> {
    match y_pred.size().as_slice() {
        [] => Err(Error::msg("model outputs need a batch dimension")),
        [_] | [_, 1] => Ok(y_pred.f_flatten(0, -1)?.f_gt(0.0)?.f_to_kind(Kind::Int64)?),
        _ => Ok(y_pred.f_argmax(-1, false)?),
    }
}

/// Class probabilities from a classifier's outputs `y_pred` (skorch's `predict_proba`): the
/// softmax of each sample's logits, or, for one logit per sample (a binary model with
/// `bce_with_logits`), its sigmoid as the probability of class 1 beside that of class 0.
pub fn class_probabilities(y_pred: &Tensor) -> Result<Tensor> {
    match y_pred.size().as_slice() {
        [] => Err(Error::msg("model outputs need a batch dimension")),
        [n] | [n, 1] => {
            let p1 = y_pred.f_sigmoid()?.f_view([*n, 1])?;
            Ok(Tensor::f_cat(&[p1.f_neg()?.f_add_scalar(1.0)?, p1], 1)?)
        }
        _ => Ok(y_pred.f_softmax(-1, Kind::Float)?),
    }
}

/// How many samples the outputs `y_pred` predict right ([`predicted_classes`] against the class
/// labels `y_true`), as an `Int64` scalar on their device: summing it over batches costs no
/// synchronisation with the device.
pub fn correct(y_true: &Tensor, y_pred: &Tensor) -> Result<Tensor> {
    if y_true.is_floating_point() {
        return Err(Error::msg("a classification metric needs integer class labels as targets"));
    }
    let classes = predicted_classes(y_pred)?;
    let labels = y_true.f_flatten(0, -1)?;
    if labels.numel() != classes.numel() {
        return Err(Error::msg(format!("{} targets but outputs for {} samples", labels.numel(), classes.numel())));
    }
    Ok(classes.f_eq_tensor(&labels.f_to_kind(Kind::Int64)?)?.f_sum(Kind::Int64)?)
}

/// The fraction of samples predicted right (scikit-learn's `accuracy_score`); NaN for none.
pub fn accuracy(y_true: &Tensor, y_pred: &Tensor) -> Result<f64> {
    let n = y_true.numel();
    Ok(correct(y_true, y_pred)?.f_int64_value(&[])? as f64 / n as f64)
}

/// The coefficient of determination of the predictions `y_pred` for the targets `y_true`
/// (scikit-learn's `r2_score`): with several target columns, the mean over the columns
/// (`uniform_average`); a constant column scores 1 if predicted exactly, else 0.
pub fn r2(y_true: &Tensor, y_pred: &Tensor) -> Result<f64> {
    let doubles = |t: &Tensor| -> Result<Vec<f64>> {
        Ok(Vec::<f64>::try_from(t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?.f_flatten(0, -1)?)?)
    };
    let (y, p) = (doubles(y_true)?, doubles(y_pred)?);
    if y.len() != p.len() || y.is_empty() {
        return Err(Error::msg(format!("{} targets but {} predictions", y.len(), p.len())));
    }
    let samples = y_true.size().first().copied().unwrap_or(1).max(1) as usize;
    Ok(r2_of_columns(&y, &p, y.len() / samples))
}

/// [`r2`] over `outputs` interleaved columns (row-major values).
fn r2_of_columns(y: &[f64], pred: &[f64], outputs: usize) -> f64 {
    let k = outputs.max(1);
    let column = |c: usize| {
        let t: Vec<f64> = y.iter().skip(c).step_by(k).copied().collect();
        let p: Vec<f64> = pred.iter().skip(c).step_by(k).copied().collect();
        let mean = t.iter().sum::<f64>() / t.len() as f64;
        let ss_res: f64 = t.iter().zip(&p).map(|(a, b)| (a - b) * (a - b)).sum();
        let ss_tot: f64 = t.iter().map(|a| (a - mean) * (a - mean)).sum();
        match (ss_tot == 0.0, ss_res == 0.0) {
            (true, true) => 1.0,
            (true, false) => 0.0,
            _ => 1.0 - ss_res / ss_tot,
        }
    };
    (0..k).map(column).sum::<f64>() / k as f64
}

/// Per-pixel outputs or targets `t` (`[n, channels, height, width]`) without a border of `p`
/// pixels: the context around a segmentation patch that a padded loss and score leave out. An
/// [`Error::Config`] of key `padding` when `t` is not that shape or not larger than the border.
pub fn without_border(t: &Tensor, p: i64) -> Result<Tensor> {
    let size = t.size();
    match size.as_slice() {
        [_, _, h, w] if *h > 2 * p && *w > 2 * p && p >= 0 => {
            Ok(t.f_narrow(2, p, h - 2 * p)?.f_narrow(3, p, w - 2 * p)?)
        }
        _ => Err(Error::config(
            "padding",
            format!("{p} needs per-pixel outputs [n, channels, height, width] larger than twice it, got {size:?}"),
        )),
    }
}

/// The mean of `values` weighted by `weights` (batch values weighted by batch sizes: skorch's
/// epoch `train_loss`); `None` when there are none, when the two differ in length, or when the
/// weights sum to zero. A NaN value makes the mean NaN: leave such values out first where that
/// is the rule.
pub fn weighted_mean(values: &[f64], weights: &[f64]) -> Option<f64> {
    let total: f64 = weights.iter().sum();
    (!values.is_empty() && values.len() == weights.len() && total > 0.0)
        .then(|| values.iter().zip(weights).map(|(v, w)| v * w).sum::<f64>() / total)
}

#[cfg(test)]
mod tests {
    //! Expected values are scikit-learn's documented examples and hand counts.
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    /// One-hot logits predicting `classes` out of `k`.
    fn logits(classes: &[i64], k: i64) -> Tensor {
        Tensor::from_slice(classes).one_hot(k).to_kind(Kind::Float)
    }

    #[test]
    fn accuracy_matches_scikit_learn() {
        // accuracy_score([0, 1, 2, 3], [0, 2, 1, 3]) = 0.5
        close(accuracy(&Tensor::from_slice(&[0i64, 1, 2, 3]), &logits(&[0, 2, 1, 3], 4)).unwrap(), 0.5);
    }

    #[test]
    fn arg_max_takes_the_first_of_equal_values_and_one_logit_means_binary() {
        let rows = Tensor::from_slice(&[1.0f32, 3.0, 3.0, 0.0, 0.0, 0.0]).view([2, 3]);
        assert_eq!(Vec::<i64>::try_from(predicted_classes(&rows).unwrap()).unwrap(), [1, 0]);
        let single = Tensor::from_slice(&[0.0f32, 2.0, -1.0]).view([3, 1]);
        assert_eq!(Vec::<i64>::try_from(predicted_classes(&single).unwrap()).unwrap(), [0, 1, 0]);
    }

    #[test]
    fn accuracy_refuses_real_valued_targets_and_misaligned_outputs() {
        let e = accuracy(&Tensor::from_slice(&[0.5f32]), &logits(&[1], 2)).unwrap_err();
        assert!(e.to_string().contains("integer class labels"), "{e}");
        assert!(accuracy(&Tensor::from_slice(&[0i64, 1]), &logits(&[1], 2)).is_err());
    }

    #[test]
    fn correct_counts_on_the_outputs_device_without_reading_them() {
        let c = correct(&Tensor::from_slice(&[0i64, 1, 1]), &logits(&[0, 1, 0], 2)).unwrap();
        assert_eq!((c.kind(), c.dim(), c.int64_value(&[])), (Kind::Int64, 0, 2));
    }

    #[test]
    fn r2_matches_scikit_learn() {
        let t = |v: &[f64], shape: &[i64]| Tensor::from_slice(v).view(shape);
        // r2_score([3, -0.5, 2, 7], [2.5, 0.0, 2, 8]) = 0.948...
        close(r2(&t(&[3.0, -0.5, 2.0, 7.0], &[4]), &t(&[2.5, 0.0, 2.0, 8.0], &[4, 1])).unwrap(), 0.9486081370449679);
        // r2_score([[0.5, 1], [-1, 1], [7, -6]], [[0, 2], [-1, 2], [8, -5]]) = 0.936...
        let (y, p) = (t(&[0.5, 1.0, -1.0, 1.0, 7.0, -6.0], &[3, 2]), t(&[0.0, 2.0, -1.0, 2.0, 8.0, -5.0], &[3, 2]));
        close(r2(&y, &p).unwrap(), 0.9368005266622779);
        // A constant target: 1 when predicted exactly, else 0 (force_finite).
        close(r2(&t(&[1.0, 1.0], &[2]), &t(&[1.0, 1.0], &[2])).unwrap(), 1.0);
        close(r2(&t(&[1.0, 1.0], &[2]), &t(&[1.0, 2.0], &[2])).unwrap(), 0.0);
        assert!(r2(&t(&[1.0, 2.0], &[2]), &t(&[1.0], &[1])).is_err());
    }

    #[test]
    fn a_short_last_batch_weighs_less() {
        assert_eq!(weighted_mean(&[1.0, 4.0], &[3.0, 1.0]), Some(1.75));
        assert_eq!(weighted_mean(&[], &[]), None);
        assert_eq!(weighted_mean(&[1.0], &[1.0, 2.0]), None, "misaligned keys are not averaged");
        assert!(weighted_mean(&[f64::NAN, 1.0], &[1.0, 1.0]).unwrap().is_nan(), "a NaN value is not hidden");
    }
}
