//! Successive halving decides as scikit-learn's `HalvingGridSearchCV` with a custom resource:
//! the same epochs per iteration, the same candidates kept, the same rows in the same order, the
//! same ranks and best candidate, computed by the venv's scikit-learn on an estimator whose
//! score is a known function of its parameters.

use torchfit::model_selection::halving::{Halving, RESOURCE};
use torchfit::model_selection::search::{grid, run, Candidate};
use torchfit::model_selection::{CrossValidation, FoldResult};

/// (candidates, factor, max_epochs, min_epochs or 0 for "exhaust").
const CASES: [(i64, f64, i64, i64); 7] = [
    (9, 3.0, 9, 0),
    (10, 3.0, 20, 0),
    (27, 3.0, 2, 0),
    (5, 2.0, 16, 0),
    (20, 3.0, 100, 0),
    (7, 2.5, 40, 4),
    (30, 4.0, 64, 2),
];

/// A candidate's score: `x`, a permutation of the candidates, plus its epochs / 1000.
fn score(c: &Candidate) -> f64 {
    let get = |k: &str| c.iter().find(|(key, _)| key == k).map_or(0.0, |(_, v)| v.as_integer().unwrap() as f64);
    get("x") + get(RESOURCE) / 1000.0
}

#[test]
fn halving_iterations_survivors_ranks_and_best_equal_scikit_learns() {
    let script = r#"
import json, sys, warnings
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import HalvingGridSearchCV

class Known(ClassifierMixin, BaseEstimator):
    def __init__(self, x=0, max_epochs=1):
        self.x, self.max_epochs = x, max_epochs
    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self
    def score(self, X, y):
        return self.x + self.max_epochs / 1000

warnings.simplefilter("ignore")
X, y = np.zeros((12, 1)), np.array([0, 1] * 6)
out = []
for n, factor, max_epochs, min_epochs in json.load(sys.stdin):
    xs = [(i * 7) % n for i in range(n)]
    s = HalvingGridSearchCV(Known(), {"x": xs}, resource="max_epochs", max_resources=max_epochs,
                            min_resources=min_epochs or "exhaust", factor=factor, cv=2, refit=False)
    s.fit(X, y)
    r = s.cv_results_
    out.append({
        "n_resources": [int(v) for v in s.n_resources_],
        "n_candidates": [int(v) for v in s.n_candidates_],
        "rows": [[int(p["x"]), int(p["max_epochs"]), int(i)] for p, i in zip(r["params"], r["iter"])],
        "ranks": [int(v) for v in r["rank_test_score"]],
        "best": int(s.best_index_),
    })
print(json.dumps(out))
"#;
    let expected: Vec<serde_json::Value> =
        serde_json::from_value(super::python_json(script, &serde_json::json!(CASES), "scikit-learn")).unwrap();
    for ((n, factor, max_epochs, min_epochs), want) in CASES.iter().zip(&expected) {
        let xs: Vec<toml::Value> = (0..*n).map(|i| toml::Value::Integer(i * 7 % n)).collect();
        let halving = Halving {
            factor: *factor,
            min_resources: (*min_epochs > 0).then_some(*min_epochs),
            max_resources: *max_epochs,
        };
        let found = run(&grid(&[("x".into(), xs)]), Some(&halving), |_, round| {
            let fold =
                |s| FoldResult { score: s, fit_seconds: 0.0, score_seconds: 0.0, train_samples: 6, test_samples: 6 };
            Ok(round
                .iter()
                .map(|c| Ok(CrossValidation::of("score".into(), vec![fold(score(c)), fold(score(c))])))
                .collect())
        })
        .unwrap();
        let get = |c: &Candidate, k: &str| c.iter().find(|(key, _)| key == k).unwrap().1.as_integer().unwrap();
        let ours = serde_json::json!({
            "n_resources": found.iterations.iter().map(|(r, _)| r).collect::<Vec<_>>(),
            "n_candidates": found.iterations.iter().map(|(_, c)| c).collect::<Vec<_>>(),
            "rows": found.scored.iter().map(|s| [get(&s.params, "x"), get(&s.params, RESOURCE), s.iter as i64]).collect::<Vec<_>>(),
            "ranks": found.scored.iter().map(|s| s.rank).collect::<Vec<_>>(),
            "best": found.best,
        });
        assert_eq!(&ours, want, "{n} candidates, factor {factor}, max_epochs {max_epochs}, min_epochs {min_epochs}");
    }
}
