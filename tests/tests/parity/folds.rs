//! Cross-validation folds equal scikit-learn's `KFold` and `StratifiedKFold` (without
//! shuffling) index for index, computed by the venv's scikit-learn (installed by
//! `.cargo/setup.sh`) in a subprocess.

use torchfit::model_selection::{k_fold, stratified_k_fold};

/// Label sets: the digits' labels, an imbalanced one with a class rarer than the folds, one
/// whose classes first appear out of order.
fn label_sets() -> Vec<Vec<i64>> {
    let (_, y) = torchfit_tests::digits();
    let digits = Vec::<i64>::try_from(y).unwrap();
    let imbalanced: Vec<i64> = (0..97).map(|i| if i % 31 == 0 { 2 } else { (i % 3 != 0) as i64 }).collect();
    let shuffled: Vec<i64> = (0..50).map(|i| [7, 3, 3, 9, 7, 1][i * 5 % 6]).collect();
    vec![digits, imbalanced, shuffled]
}

#[test]
fn folds_equal_scikit_learns() {
    let sets = label_sets();
    let script = r#"
import json, sys
import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold
out = []
for labels in json.load(sys.stdin):
    y = np.array(labels)
    for k in (2, 3, 5, 10):
        out.append([t.tolist() for _, t in KFold(k).split(y)])
        out.append([t.tolist() for _, t in StratifiedKFold(k).split(np.zeros(len(y)), y)])
print(json.dumps(out))
"#;
    let expected: Vec<Vec<Vec<i64>>> =
        serde_json::from_value(super::python_json(script, &serde_json::json!(sets), "scikit-learn")).unwrap();
    let mut ours = Vec::new();
    for labels in &sets {
        for k in [2, 3, 5, 10] {
            ours.push(k_fold(labels.len(), k, None).unwrap().into_iter().map(|f| f.test).collect::<Vec<_>>());
            ours.push(stratified_k_fold(labels, k, None).unwrap().into_iter().map(|f| f.test).collect::<Vec<_>>());
        }
    }
    assert_eq!(ours.len(), expected.len());
    for (i, (a, b)) in ours.iter().zip(&expected).enumerate() {
        assert!(
            a == b,
            "case {i} ({}): ours {:?}... scikit-learn {:?}...",
            if i % 2 == 0 { "KFold" } else { "StratifiedKFold" },
            &a[0][..a[0].len().min(12)],
            &b[0][..b[0].len().min(12)]
        );
    }
}

#[test]
fn the_grid_is_scikit_learns_parameter_grid() {
    use torchfit::model_selection::search::grid;
    let space: Vec<(String, Vec<toml::Value>)> = vec![
        ("optimizer__lr".into(), vec![0.1.into(), 0.01.into()]),
        ("module__dropout".into(), vec![0.2.into(), 0.5.into(), 0.8.into()]),
        ("iterator_train__batch_size".into(), vec![32.into(), 128.into()]),
    ];
    let script = r#"
import json
from sklearn.model_selection import ParameterGrid
g = {"optimizer__lr": [0.1, 0.01], "module__dropout": [0.2, 0.5, 0.8], "iterator_train__batch_size": [32, 128]}
print(json.dumps([sorted(p.items()) for p in ParameterGrid(g)]))
"#;
    let expected: Vec<Vec<(String, serde_json::Value)>> =
        serde_json::from_value(super::python_json(script, &serde_json::Value::Null, "scikit-learn")).unwrap();
    let ours: Vec<Vec<(String, serde_json::Value)>> = grid(&space)
        .into_iter()
        .map(|c| c.into_iter().map(|(k, v)| (k, serde_json::to_value(v).unwrap())).collect())
        .collect();
    assert_eq!(ours, expected);
}
