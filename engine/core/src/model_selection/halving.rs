//! Successive halving (scikit-learn's `HalvingGridSearchCV`) with epochs as the resource: every
//! candidate is cross-validated with few epochs, the best `1 / factor` of them go on with
//! `factor` times as many, until one iteration is left. Pure decisions: which resources each
//! iteration gets ([`schedule`]) and which candidates survive one ([`top_k`]).

/// The key that carries the resource of an iteration.
pub const RESOURCE: &str = "max_epochs";

/// How candidates are eliminated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Halving {
    /// Candidates kept per iteration: `ceil(n / factor)`; resources grow by `factor` (scikit-learn's
    /// default 3).
    pub factor: f64,
    /// Epochs of the first iteration; `None`: scikit-learn's `min_resources = "exhaust"`, as many
    /// as let the last required iteration reach `max_resources`.
    pub min_resources: Option<i64>,
    /// Epochs no iteration exceeds: the config's `max_epochs`.
    pub max_resources: i64,
}

impl Halving {
    /// Scikit-learn's defaults (factor 3, `min_resources = "exhaust"`) up to `max_resources` epochs.
    pub fn new(max_resources: i64) -> Self {
        Halving { factor: 3.0, min_resources: None, max_resources }
    }

    /// Refuses settings scikit-learn refuses, naming the one at fault.
    pub fn check(&self) -> Result<(), String> {
        if !(self.factor > 1.0 && self.factor.is_finite()) {
            return Err(format!("factor must be a number above 1, got {}", self.factor));
        }
        if self.max_resources < 1 {
            return Err(format!("max_epochs must be at least 1, got {}", self.max_resources));
        }
        match self.min_resources {
            Some(m) if m < 1 || m > self.max_resources => {
                Err(format!("min_epochs must be between 1 and max_epochs ({}), got {m}", self.max_resources))
            }
            _ => Ok(()),
        }
    }
}

/// The epochs of each iteration for `n_candidates` candidates (`n_resources_`; its length is
/// `n_iterations_`): `min(n_required, n_possible)` iterations without aggressive elimination,
/// with scikit-learn's floating-point logarithms so that the counts agree with its own.
pub fn schedule(n_candidates: usize, halving: &Halving) -> Vec<i64> {
    let log = |x: f64| (x.ln() / halving.factor.ln()).floor() as i64;
    let n_required = 1 + log(n_candidates.max(1) as f64);
    let min_resources = match halving.min_resources {
        Some(m) => m,
        // `max(1, max_resources // factor ** last_iteration)`, in floats as Python computes it.
        None => 1.max((halving.max_resources as f64 / halving.factor.powi(n_required as i32 - 1)).floor() as i64),
    };
    let n_possible = 1 + log((halving.max_resources / min_resources) as f64);
    (0..n_required.min(n_possible))
        .map(|i| ((halving.factor.powi(i as i32) * min_resources as f64) as i64).min(halving.max_resources))
        .collect()
}

/// The positions of the `k` best of `scores` (higher is better; NaN, a failed candidate, worst),
/// from the worst kept to the best, as scikit-learn's `_top_k` orders the next iteration.
pub fn top_k(scores: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // Ascending, NaN first; ties keep their order (NumPy's argsort is not stable here, so tied
    // candidates may be ordered otherwise in scikit-learn).
    order.sort_by(|&a, &b| match (scores[a].is_nan(), scores[b].is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (false, false) => scores[a].total_cmp(&scores[b]),
    });
    order.split_off(order.len() - k.min(order.len()))
}

/// Candidates kept after an iteration of `n`: `ceil(n / factor)`.
pub fn kept(n: usize, factor: f64) -> usize {
    (n as f64 / factor).ceil() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nine_candidates_and_nine_epochs_go_one_three_nine() {
        assert_eq!(schedule(9, &Halving::new(9)), [1, 3, 9]);
        assert_eq!(kept(9, 3.0), 3);
        assert_eq!(kept(3, 3.0), 1);
    }

    #[test]
    fn exhausting_starts_as_high_as_the_last_iteration_allows() {
        // 3 candidates need 2 iterations: max 10 epochs // 3 = 3, then 9.
        assert_eq!(schedule(3, &Halving::new(10)), [3, 9]);
    }

    #[test]
    fn too_few_epochs_cut_the_iterations_short() {
        // 27 candidates would need 4 iterations; 2 epochs allow 1 (then 2 would exceed factor).
        assert_eq!(schedule(27, &Halving::new(2)), [1]);
        let fixed = Halving { min_resources: Some(2), ..Halving::new(20) };
        assert_eq!(schedule(27, &fixed), [2, 6, 18]);
    }

    #[test]
    fn the_best_survive_and_failures_never_before_a_score() {
        assert_eq!(top_k(&[0.5, f64::NAN, 0.9, 0.7], 2), [3, 2]);
        assert_eq!(top_k(&[f64::NAN, f64::NAN, 0.1], 2), [1, 2]);
    }

    #[test]
    fn a_factor_of_one_or_an_epoch_outside_the_budget_is_refused() {
        assert!(Halving { factor: 1.0, ..Halving::new(9) }.check().is_err());
        assert!(Halving { min_resources: Some(10), ..Halving::new(9) }.check().unwrap_err().contains("min_epochs"));
        assert!(Halving::new(9).check().is_ok());
    }
}
