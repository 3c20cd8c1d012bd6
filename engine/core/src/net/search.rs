//! Grid search (scikit-learn's `GridSearchCV`): every combination of the values given for
//! double-underscore keys (`module__dropout`, `optimizer__lr`, `callbacks__<name>__<key>`,
//! `iterator_train__batch_size`), each cross-validated ([`NeuralNet::cross_validate`]), ranked
//! by mean score, and the best refitted on all the samples.

use super::{CrossValidation, Cv, NeuralNet, Start};
use crate::{Error, Result};
use torchfit_sdk::DatasetReader;

/// One combination of values: `(key, value)` pairs in key order.
pub type Candidate = Vec<(String, toml::Value)>;

/// The combinations of `space` (`key -> values`) in scikit-learn's `ParameterGrid` order: keys
/// sorted, the last key's values varying fastest.
pub fn grid(space: &[(String, Vec<toml::Value>)]) -> Vec<Candidate> {
    let mut keys: Vec<&(String, Vec<toml::Value>)> = space.iter().collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<Candidate> = vec![Vec::new()];
    for (key, values) in keys {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut c = prefix.clone();
                    c.push((key.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    out
}

/// One candidate's cross-validation and its rank (1: best; ties share the lowest rank, as
/// `rank_test_score`).
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The values tried.
    pub params: Candidate,
    /// Its cross-validation.
    pub cv: CrossValidation,
    /// Its rank by mean score.
    pub rank: usize,
}

/// The ranks of `means` (higher is better), ties sharing the lowest (SciPy's `rankdata(method="min")`).
pub fn ranks(means: &[f64]) -> Vec<usize> {
    means.iter().map(|m| 1 + means.iter().filter(|o| *o > m).count()).collect()
}

/// Cross-validates each of `candidates` on a net from `make` with the candidate's values set,
/// ranks them, and refits a net with the best values on all the samples (`indices` of
/// `reader`, all when `None`). Returns the scored candidates, in the given order, and the
/// refitted net.
pub fn search(
    mut make: impl FnMut() -> NeuralNet,
    reader: &mut dyn DatasetReader,
    indices: Option<&[i64]>,
    candidates: &[Candidate],
    cv: Cv,
) -> Result<(Vec<Scored>, NeuralNet)> {
    if candidates.is_empty() {
        return Err(Error::Config { origin: "search".into(), key: "grid".into(), message: "no candidate".into() });
    }
    let mut results = Vec::with_capacity(candidates.len());
    for (i, candidate) in candidates.iter().enumerate() {
        let mut net = configured(&mut make, candidate)?;
        let result = net.cross_validate(reader, indices, cv)?;
        log::info!("candidate {} of {} {candidate:?}: {:.6} ± {:.6}", i + 1, candidates.len(), result.mean, result.std);
        results.push(result);
    }
    let means: Vec<f64> = results.iter().map(|r| r.mean).collect();
    let ranks = ranks(&means);
    let best = (0..ranks.len()).find(|&i| ranks[i] == 1).unwrap_or(0);
    let mut refit = configured(&mut make, &candidates[best])?;
    refit.fit_dataset(reader, indices, Start::Fresh)?;
    let scored = candidates
        .iter()
        .zip(results)
        .zip(ranks)
        .map(|((params, cv), rank)| Scored { params: params.clone(), cv, rank })
        .collect();
    Ok((scored, refit))
}

fn configured(make: &mut impl FnMut() -> NeuralNet, candidate: &Candidate) -> Result<NeuralNet> {
    let mut net = make();
    for (key, value) in candidate {
        net.set_param(key, value.clone())?;
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_varies_the_last_sorted_key_fastest() {
        let v = |xs: &[i64]| xs.iter().map(|&x| toml::Value::Integer(x)).collect::<Vec<_>>();
        let g = grid(&[("b".into(), v(&[1, 2])), ("a".into(), v(&[10, 20, 30]))]);
        let flat: Vec<(i64, i64)> =
            g.iter().map(|c| (c[0].1.as_integer().unwrap(), c[1].1.as_integer().unwrap())).collect();
        // list(ParameterGrid({"b": [1, 2], "a": [10, 20, 30]})) in (a, b) order.
        assert_eq!(flat, [(10, 1), (10, 2), (20, 1), (20, 2), (30, 1), (30, 2)]);
        assert_eq!(g[0][0].0, "a");
    }

    #[test]
    fn ties_share_the_best_rank() {
        assert_eq!(ranks(&[0.9, 0.95, 0.9, 0.8]), [2, 1, 2, 4]);
    }
}
