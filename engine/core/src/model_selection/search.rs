//! Hyper-parameter search (scikit-learn's `GridSearchCV`, `RandomizedSearchCV` and
//! `HalvingGridSearchCV`): candidates, combinations of values for double-underscore keys
//! (`module__dropout`, `optimizer__lr`, `callbacks__<name>__<key>`,
//! `iterator_train__batch_size`), each cross-validated ([`NeuralNet::cross_validate`]), ranked
//! by mean score, and the best refitted on all the samples.
//!
//! [`run`] decides which candidates are evaluated, with how many epochs, and ranks them,
//! whoever evaluates them: [`search`] fits them in this process, `torchfit search` in worker
//! processes.

use super::halving::{kept, schedule, top_k, Halving, RESOURCE};
use super::{CrossValidation, Cv};
use crate::net::{NeuralNet, Start};
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

/// A candidate's cross-validation, or why it failed (the search goes on without it, as
/// scikit-learn's `error_score = nan`).
pub type Outcome = std::result::Result<CrossValidation, String>;

/// One evaluated candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The values tried (with halving, `max_epochs` last: the iteration's resource).
    pub params: Candidate,
    /// Its cross-validation.
    pub outcome: Outcome,
    /// Its rank by mean score among all evaluated candidates (1: best; ties share the lowest
    /// rank; failed candidates share the last), as `rank_test_score`.
    pub rank: usize,
    /// The halving iteration it was evaluated in (0 without halving).
    pub iter: usize,
}

impl Scored {
    /// The mean score, NaN for a failed candidate.
    pub fn mean(&self) -> f64 {
        self.outcome.as_ref().map_or(f64::NAN, |cv| cv.mean)
    }
}

/// What a search found.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    /// Every evaluation, in order: iteration by iteration, candidates in the order given (the
    /// first iteration) or from the worst kept to the best (later ones), as `cv_results_`.
    pub scored: Vec<Scored>,
    /// The best: the first of rank 1; with halving, the best of the last iteration
    /// (`best_index_`).
    pub best: usize,
    /// With halving, the epochs of each iteration (`n_resources_`) and its candidates
    /// (`n_candidates_`).
    pub iterations: Vec<(i64, usize)>,
}

impl Search {
    /// The search as scikit-learn reports it: `cv_results_` (`params`, `param_<key>`,
    /// `split<k>_test_score`, `mean_test_score`, `std_test_score`, `rank_test_score`,
    /// `mean_fit_time`, `std_fit_time`, `mean_score_time`, `std_score_time`, with halving `iter`
    /// and `n_resources`, and `error`: null or why the candidate failed), `best_index_`,
    /// `best_params_`, `best_score_`, `n_splits_`, `scoring` and, with halving, `n_resources_` and
    /// `n_candidates_`. A failed candidate's scores and times are null (NaN in scikit-learn).
    pub fn cv_results(&self) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        let folds = self.scored.iter().filter_map(|s| s.outcome.as_ref().ok()).map(|cv| cv.folds.len()).max();
        let n_splits = folds.unwrap_or(0);
        let params = |c: &Candidate| -> Map<String, Value> {
            c.iter().map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or(Value::Null))).collect()
        };
        let mut columns = Map::new();
        let mut column = |name: String, values: Vec<Value>| {
            columns.insert(name, Value::Array(values));
        };
        let mut keys: Vec<&String> = self.scored.iter().flat_map(|s| s.params.iter().map(|(k, _)| k)).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let values = self.scored.iter().map(|s| params(&s.params).remove(key).unwrap_or(Value::Null)).collect();
            column(format!("param_{key}"), values);
        }
        column("params".into(), self.scored.iter().map(|s| Value::Object(params(&s.params))).collect());
        if !self.iterations.is_empty() {
            column("iter".into(), self.scored.iter().map(|s| json!(s.iter)).collect());
            column("n_resources".into(), self.scored.iter().map(|s| json!(self.iterations[s.iter].0)).collect());
        }
        let per_fold = |f: &dyn Fn(&super::FoldResult) -> f64| -> Vec<Vec<f64>> {
            self.scored
                .iter()
                .map(|s| s.outcome.as_ref().map_or(vec![], |cv| cv.folds.iter().map(f).collect()))
                .collect()
        };
        let number = |v: f64| if v.is_finite() { json!(v) } else { Value::Null };
        let scores = per_fold(&|f| f.score);
        for k in 0..n_splits {
            column(
                format!("split{k}_test_score"),
                scores.iter().map(|s| s.get(k).map_or(Value::Null, |v| number(*v))).collect(),
            );
        }
        for (name, values) in [
            ("test_score", scores),
            ("fit_time", per_fold(&|f| f.fit_seconds)),
            ("score_time", per_fold(&|f| f.score_seconds)),
        ] {
            let stats: Vec<(f64, f64)> = values.iter().map(|v| super::mean_std(v.iter().copied())).collect();
            column(format!("mean_{name}"), stats.iter().map(|s| number(s.0)).collect());
            column(format!("std_{name}"), stats.iter().map(|s| number(s.1)).collect());
        }
        column("rank_test_score".into(), self.scored.iter().map(|s| json!(s.rank)).collect());
        column(
            "error".into(),
            self.scored.iter().map(|s| s.outcome.as_ref().err().map_or(Value::Null, |e| json!(e))).collect(),
        );
        let best = &self.scored[self.best];
        let scoring = self.scored.iter().find_map(|s| s.outcome.as_ref().ok()).map(|cv| cv.scoring.clone());
        let mut out = json!({
            "cv_results_": columns,
            "best_index_": self.best,
            "best_params_": params(&best.params),
            "best_score_": number(best.mean()),
            "n_splits_": n_splits,
            "scoring": scoring,
        });
        if !self.iterations.is_empty() {
            out["n_resources_"] = json!(self.iterations.iter().map(|i| i.0).collect::<Vec<_>>());
            out["n_candidates_"] = json!(self.iterations.iter().map(|i| i.1).collect::<Vec<_>>());
        }
        out
    }
}

/// The ranks of `means` (higher is better), ties sharing the lowest (SciPy's
/// `rankdata(method="min")`); NaN (a failed candidate) ranks last, and all NaN rank 1.
pub fn ranks(means: &[f64]) -> Vec<usize> {
    let floor = means.iter().copied().filter(|m| !m.is_nan()).fold(f64::INFINITY, f64::min) - 1.0;
    let filled: Vec<f64> = means.iter().map(|m| if m.is_nan() { floor } else { *m }).collect();
    filled.iter().map(|m| 1 + filled.iter().filter(|o| *o > m).count()).collect()
}

/// Refuses a search [`run`] cannot run: no candidate, halving settings out of range, or the
/// resource of halving among the searched keys.
pub fn check(candidates: &[Candidate], halving: Option<&Halving>) -> Result<()> {
    let refuse = |key: &str, message: String| Error::Config { origin: "search".into(), key: key.into(), message };
    if candidates.is_empty() {
        return Err(refuse("grid", "no candidate".into()));
    }
    if let Some(h) = halving {
        h.check().map_err(|m| refuse("halving", m))?;
        if candidates.iter().any(|c| c.iter().any(|(k, _)| k == RESOURCE)) {
            return Err(refuse(RESOURCE, "is the resource of halving: it cannot be searched too".into()));
        }
    }
    Ok(())
}

/// Runs a search over `candidates`: all of them once, or in halving iterations with `halving`
/// (each gets `max_epochs` set to its iteration's resource). `evaluate(iter, candidates)`
/// cross-validates one iteration's candidates and returns their outcomes in order; an error it
/// returns (an interruption) ends the search. Fails when every candidate failed, with the
/// first one's error.
pub fn run(
    candidates: &[Candidate],
    halving: Option<&Halving>,
    mut evaluate: impl FnMut(usize, &[Candidate]) -> Result<Vec<Outcome>>,
) -> Result<Search> {
    check(candidates, halving)?;
    let mut scored = Vec::new();
    let mut iterations = Vec::new();
    match halving {
        None => {
            let outcomes = evaluate(0, candidates)?;
            scored.extend(candidates.iter().zip(outcomes).map(|(c, o)| row(c.clone(), o, 0)));
        }
        Some(h) => {
            let mut current = candidates.to_vec();
            for (iter, epochs) in schedule(candidates.len(), h).into_iter().enumerate() {
                iterations.push((epochs, current.len()));
                let round: Vec<Candidate> = current
                    .iter()
                    .map(|c| [c.clone(), vec![(RESOURCE.to_owned(), toml::Value::Integer(epochs))]].concat())
                    .collect();
                let outcomes = evaluate(iter, &round)?;
                let means: Vec<f64> = outcomes.iter().map(|o| o.as_ref().map_or(f64::NAN, |cv| cv.mean)).collect();
                current =
                    top_k(&means, kept(current.len(), h.factor)).into_iter().map(|i| current[i].clone()).collect();
                scored.extend(round.into_iter().zip(outcomes).map(|(c, o)| row(c, o, iter)));
            }
        }
    }
    if let Some(Err(first)) = scored.iter().all(|s| s.outcome.is_err()).then(|| scored[0].outcome.clone()) {
        return Err(Error::Data(format!("all {} candidates failed; the first: {first}", scored.len())));
    }
    let means: Vec<f64> = scored.iter().map(Scored::mean).collect();
    for (s, rank) in scored.iter_mut().zip(ranks(&means)) {
        s.rank = rank;
    }
    let last = scored.last().map_or(0, |s| s.iter);
    let best = (0..scored.len())
        .filter(|&i| scored[i].iter == last && !scored[i].mean().is_nan())
        .fold(None, |best: Option<usize>, i| match best {
            Some(b) if means[b] >= means[i] => Some(b),
            _ => Some(i),
        })
        .unwrap_or(0);
    Ok(Search { scored, best, iterations })
}

fn row(params: Candidate, outcome: Outcome, iter: usize) -> Scored {
    Scored { params, outcome, rank: 0, iter }
}

/// Cross-validates `candidates` on nets from `make` with each candidate's values set (see
/// [`run`]) on the samples `indices` of `reader` (all when `None`), and refits a net with the
/// best values on all of them. Returns the search and the refitted net.
pub fn search(
    mut make: impl FnMut() -> NeuralNet,
    reader: &mut dyn DatasetReader,
    indices: Option<&[i64]>,
    candidates: &[Candidate],
    cv: &Cv,
    halving: Option<&Halving>,
) -> Result<(Search, NeuralNet)> {
    let found = run(candidates, halving, |iter, round| {
        let mut outcomes = Vec::with_capacity(round.len());
        for (i, candidate) in round.iter().enumerate() {
            let outcome = configured(&mut make, candidate).and_then(|mut net| net.cross_validate(reader, indices, cv));
            match &outcome {
                Ok(r) => {
                    log::info!("iteration {iter}, candidate {} of {}: {:.6} ± {:.6}", i + 1, round.len(), r.mean, r.std)
                }
                Err(e) => log::warn!("iteration {iter}, candidate {} of {} failed: {e}", i + 1, round.len()),
            }
            outcomes.push(outcome.map_err(|e| e.to_string()));
        }
        Ok(outcomes)
    })?;
    let mut refit = configured(&mut make, &found.scored[found.best].params)?;
    refit.fit_dataset(reader, indices, Start::Fresh)?;
    Ok((found, refit))
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
    fn ties_share_the_best_rank_and_failures_the_last() {
        assert_eq!(ranks(&[0.9, 0.95, 0.9, 0.8]), [2, 1, 2, 4]);
        assert_eq!(ranks(&[f64::NAN, 0.5, f64::NAN, 0.7]), [3, 2, 3, 1]);
        assert_eq!(ranks(&[f64::NAN, f64::NAN]), [1, 1]);
    }

    fn scored(mean: f64) -> Outcome {
        Ok(CrossValidation::of(
            "accuracy".into(),
            vec![super::super::FoldResult {
                score: mean,
                fit_seconds: 0.0,
                score_seconds: 0.0,
                train_samples: 2,
                test_samples: 1,
            }],
        ))
    }

    /// A candidate's score: its `x` plus its epochs over 100.
    fn score_of(c: &Candidate) -> f64 {
        let get = |k: &str| c.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_integer().unwrap() as f64);
        get("x").unwrap() + get(RESOURCE).unwrap_or(0.0) / 100.0
    }

    #[test]
    fn halving_evaluates_the_survivors_with_more_epochs_and_picks_from_the_last_iteration() {
        let v = |xs: &[i64]| xs.iter().map(|&x| toml::Value::Integer(x)).collect::<Vec<_>>();
        let candidates = grid(&[("x".into(), v(&[3, 1, 4, 1, 5, 9, 2, 6, 5]))]);
        let mut seen = Vec::new();
        let found = run(&candidates, Some(&Halving::new(9)), |iter, round| {
            seen.push((iter, round.len()));
            Ok(round.iter().map(|c| scored(score_of(c))).collect())
        })
        .unwrap();
        assert_eq!(seen, [(0, 9), (1, 3), (2, 1)]);
        assert_eq!(found.iterations, [(1, 9), (3, 3), (9, 1)]);
        let best = &found.scored[found.best];
        assert_eq!((best.iter, score_of(&best.params)), (2, 9.09));
        // The second iteration holds the three best of the first, the worst kept first.
        let second: Vec<f64> = found.scored.iter().filter(|s| s.iter == 1).map(|s| score_of(&s.params)).collect();
        assert_eq!(second, [5.03, 6.03, 9.03]);
        assert_eq!(best.rank, 1);
    }

    #[test]
    fn a_failed_candidate_ranks_last_and_the_search_goes_on_until_all_fail() {
        let v = |xs: &[i64]| xs.iter().map(|&x| toml::Value::Integer(x)).collect::<Vec<_>>();
        let candidates = grid(&[("x".into(), v(&[1, 2, 3]))]);
        let found = run(&candidates, None, |_, round| {
            Ok(round
                .iter()
                .map(|c| if score_of(c) == 3.0 { Err("boom".into()) } else { scored(score_of(c)) })
                .collect())
        })
        .unwrap();
        assert_eq!(found.scored.iter().map(|s| s.rank).collect::<Vec<_>>(), [2, 1, 3]);
        assert_eq!(found.best, 1);
        let all = run(&candidates, None, |_, round| Ok(round.iter().map(|_| Err("boom".into())).collect()));
        assert!(all.unwrap_err().to_string().contains("all 3 candidates failed; the first: boom"));
    }

    #[test]
    fn the_resource_cannot_be_searched_as_well() {
        let candidates = grid(&[(RESOURCE.into(), vec![toml::Value::Integer(2)])]);
        let e = run(&candidates, Some(&Halving::new(9)), |_, _| unreachable!()).unwrap_err();
        assert!(e.to_string().contains("max_epochs"), "{e}");
    }
}
