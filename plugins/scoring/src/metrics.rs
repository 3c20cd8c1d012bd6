//! The metrics, as pure functions over plain numbers (scikit-learn's definitions). Accuracy, R²
//! and the class a row of outputs predicts are the SDK's ([`torchfit_sdk::metrics`]), which the
//! engine uses too.
//!
//! Classification metrics take the true class of each sample and, where they need more than the
//! predicted classes, the model's raw outputs ([`Outputs`]: one row of logits per sample, or one
//! logit per sample for a binary model); regression metrics take targets and predictions of
//! equal length.

use std::collections::BTreeSet;

/// A model's outputs for `n` samples: `n × classes` values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    /// Values per sample: the number of classes, or 1 for a single binary logit.
    pub width: usize,
    /// The values, row by row.
    pub values: Vec<f64>,
}

impl Outputs {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.values.len() / self.width.max(1)
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.width..(i + 1) * self.width]
    }

    /// Log-probabilities of each class per sample (log-softmax, or log-sigmoid for one logit).
    pub fn log_probs(&self) -> Vec<Vec<f64>> {
        (0..self.len())
            .map(|i| match self.row(i) {
                [z] => vec![log_sigmoid(-z), log_sigmoid(*z)],
                row => {
                    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
                    row.iter().map(|v| v - lse).collect()
                }
            })
            .collect()
    }
}

fn log_sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        -(-z).exp().ln_1p()
    } else {
        z - z.exp().ln_1p()
    }
}

/// How per-class precision, recall and F1 are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Average {
    /// Only class 1 of a binary problem (scikit-learn's `average="binary"`).
    Binary,
    /// The unweighted mean over the classes in targets or predictions.
    Macro,
    /// From the total true positives, false positives and false negatives.
    Micro,
}

/// Precision, recall or F1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prf {
    /// tp / (tp + fp).
    Precision,
    /// tp / (tp + fn).
    Recall,
    /// The harmonic mean of both.
    F1,
}

/// The mean recall over the classes present in `y`.
pub fn balanced_accuracy(y: &[i64], pred: &[i64]) -> f64 {
    let classes: BTreeSet<i64> = y.iter().copied().collect();
    let recalls = classes.iter().map(|&c| {
        let (hit, all) =
            y.iter().zip(pred).filter(|(t, _)| **t == c).fold((0, 0), |(h, a), (_, p)| (h + (*p == c) as usize, a + 1));
        hit as f64 / all as f64
    });
    recalls.sum::<f64>() / classes.len() as f64
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0 // scikit-learn's zero_division default, without the warning
    } else {
        num as f64 / den as f64
    }
}

fn prf_of(metric: Prf, tp: usize, fp: usize, fn_: usize) -> f64 {
    match metric {
        Prf::Precision => ratio(tp, tp + fp),
        Prf::Recall => ratio(tp, tp + fn_),
        Prf::F1 => ratio(2 * tp, 2 * tp + fp + fn_),
    }
}

/// Precision, recall or F1 averaged as `average`. `Binary` fails on labels other than 0 and 1.
pub fn prf(metric: Prf, average: Average, y: &[i64], pred: &[i64]) -> Result<f64, String> {
    let counts = |c: i64| {
        y.iter().zip(pred).fold((0, 0, 0), |(tp, fp, fn_), (&t, &p)| {
            (tp + (t == c && p == c) as usize, fp + (t != c && p == c) as usize, fn_ + (t == c && p != c) as usize)
        })
    };
    let labels: BTreeSet<i64> = y.iter().chain(pred).copied().collect();
    match average {
        Average::Binary => {
            if let Some(l) = labels.iter().find(|l| **l != 0 && **l != 1) {
                return Err(format!(
                    "is binary (positive class 1) but label {l} occurs; use the _macro or _micro variant"
                ));
            }
            let (tp, fp, fn_) = counts(1);
            Ok(prf_of(metric, tp, fp, fn_))
        }
        Average::Macro => Ok(labels
            .iter()
            .map(|&c| {
                let (tp, fp, fn_) = counts(c);
                prf_of(metric, tp, fp, fn_)
            })
            .sum::<f64>()
            / labels.len().max(1) as f64),
        Average::Micro => {
            let (tp, fp, fn_) =
                labels.iter().map(|&c| counts(c)).fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
            Ok(prf_of(metric, tp, fp, fn_))
        }
    }
}

/// The area under the ROC curve of `scores` for the positive samples: the probability that a
/// positive scores higher than a negative, ties counting half. NaN when one side is empty.
pub fn binary_auc(positive: &[bool], scores: &[f64]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks (1-based) over ties.
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        order[i..=j].iter().for_each(|&k| ranks[k] = r);
        i = j + 1;
    }
    let n_pos = positive.iter().filter(|p| **p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return f64::NAN;
    }
    let rank_sum: f64 = positive.iter().zip(&ranks).filter(|(p, _)| **p).map(|(_, r)| r).sum();
    (rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)
}

/// ROC AUC: of class 1's probability for a binary model; for more classes the unweighted mean
/// of one-vs-rest AUCs of each class's probability (scikit-learn's `multi_class="ovr"`).
pub fn roc_auc(y: &[i64], out: &Outputs) -> f64 {
    let probs: Vec<Vec<f64>> = out.log_probs().into_iter().map(|r| r.into_iter().map(f64::exp).collect()).collect();
    let classes = probs.first().map_or(0, |r| r.len());
    let auc_of = |c: usize| {
        binary_auc(
            &y.iter().map(|&t| t == c as i64).collect::<Vec<_>>(),
            &probs.iter().map(|r| r[c]).collect::<Vec<_>>(),
        )
    };
    if classes <= 2 {
        return auc_of(1);
    }
    (0..classes).map(auc_of).sum::<f64>() / classes as f64
}

/// The mean negative log-likelihood of the true classes.
pub fn log_loss(y: &[i64], out: &Outputs) -> Result<f64, String> {
    let lp = out.log_probs();
    let mut total = 0.0;
    for (row, &t) in lp.iter().zip(y) {
        total -= row.get(t as usize).ok_or_else(|| format!("label {t} is out of range for {} classes", row.len()))?;
    }
    Ok(total / y.len() as f64)
}

/// Mean squared error.
pub fn mse(y: &[f64], pred: &[f64]) -> f64 {
    y.iter().zip(pred).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / y.len() as f64
}

/// Mean absolute error.
pub fn mae(y: &[f64], pred: &[f64]) -> f64 {
    y.iter().zip(pred).map(|(a, b)| (a - b).abs()).sum::<f64>() / y.len() as f64
}

#[cfg(test)]
mod tests {
    //! Expected values are scikit-learn's documented examples and hand counts.
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    fn probs_as_logits(rows: &[&[f64]]) -> Outputs {
        Outputs { width: rows[0].len(), values: rows.iter().flat_map(|r| r.iter().map(|p| p.ln())).collect() }
    }

    #[test]
    fn balanced_accuracy_matches_scikit_learn() {
        close(balanced_accuracy(&[0, 1, 0, 0, 1, 0], &[0, 1, 0, 0, 0, 1]), 0.625);
    }

    #[test]
    fn f1_precision_and_recall_average_as_scikit_learn_does() {
        let (y, p) = ([0, 1, 2, 0, 1, 2], [0, 2, 1, 0, 0, 1]);
        close(prf(Prf::F1, Average::Macro, &y, &p).unwrap(), 0.26666666666666666);
        close(prf(Prf::F1, Average::Micro, &y, &p).unwrap(), 1.0 / 3.0);
        close(prf(Prf::Precision, Average::Macro, &y, &p).unwrap(), 0.2222222222222222);
        close(prf(Prf::Recall, Average::Macro, &y, &p).unwrap(), 1.0 / 3.0);
        // Binary: class 1 only. tp = 2, fp = 1, fn = 1.
        let (y, p) = ([1, 1, 0, 1, 0, 0], [1, 1, 1, 0, 0, 0]);
        close(prf(Prf::Precision, Average::Binary, &y, &p).unwrap(), 2.0 / 3.0);
        close(prf(Prf::Recall, Average::Binary, &y, &p).unwrap(), 2.0 / 3.0);
        close(prf(Prf::F1, Average::Binary, &y, &p).unwrap(), 2.0 / 3.0);
    }

    #[test]
    fn binary_scores_refuse_a_third_class_and_empty_classes_score_zero() {
        let e = prf(Prf::F1, Average::Binary, &[0, 1, 2], &[0, 1, 2]).unwrap_err();
        assert!(e.contains("label 2"), "{e}");
        close(prf(Prf::Precision, Average::Binary, &[1, 1], &[0, 0]).unwrap(), 0.0);
    }

    #[test]
    fn roc_auc_ranks_with_ties_counted_half() {
        close(binary_auc(&[false, false, true, true], &[0.1, 0.4, 0.35, 0.8]), 0.75);
        close(binary_auc(&[false, true], &[0.5, 0.5]), 0.5);
        assert!(binary_auc(&[true, true], &[0.1, 0.2]).is_nan());
        // The same through two-class probabilities.
        let out = probs_as_logits(&[&[0.9, 0.1], &[0.6, 0.4], &[0.65, 0.35], &[0.2, 0.8]]);
        close(roc_auc(&[0, 0, 1, 1], &out), 0.75);
    }

    #[test]
    fn roc_auc_of_three_classes_is_the_mean_one_vs_rest_auc() {
        // No ties across rows: equal probabilities in different rows need not survive the
        // round trip through logits exactly.
        let out = probs_as_logits(&[
            &[0.8, 0.1, 0.1],
            &[0.3, 0.4, 0.3],
            &[0.2, 0.2, 0.6],
            &[0.5, 0.3, 0.2],
            &[0.05, 0.35, 0.6],
        ]);
        let y = [0, 1, 2, 1, 2];
        // Class 0: 0.8 beats all four negatives: 1. Class 1: positives 0.4 and 0.3 against
        // 0.1, 0.2, 0.35: 5 of 6 pairs. Class 2: 0.6 and 0.6 beat 0.1, 0.3, 0.2: 1.
        close(roc_auc(&y, &out), (1.0 + 5.0 / 6.0 + 1.0) / 3.0);
    }

    #[test]
    fn log_loss_matches_scikit_learn_on_its_example() {
        let out = probs_as_logits(&[&[0.1, 0.9], &[0.9, 0.1], &[0.8, 0.2], &[0.35, 0.65]]);
        close(log_loss(&[1, 0, 0, 1], &out).unwrap(), 0.21616187468057912);
        assert!(log_loss(&[2], &out).is_err());
        // One logit per sample: sigmoid.
        let single = Outputs { width: 1, values: vec![0.0, 2.0] };
        close(log_loss(&[1, 1], &single).unwrap(), (2f64.ln() + (1.0 + (-2f64).exp()).ln()) / 2.0);
    }

    #[test]
    fn regression_metrics_match_scikit_learn() {
        let (y, p) = ([3.0, -0.5, 2.0, 7.0], [2.5, 0.0, 2.0, 8.0]);
        close(mse(&y, &p), 0.375);
        close(mae(&y, &p), 0.5);
    }
}
