//! Cross-validation folds equal scikit-learn's `KFold` and `StratifiedKFold` (without
//! shuffling) index for index, computed by the venv's scikit-learn (installed by
//! `.cargo/setup.sh`) in a subprocess.

use std::process::Command;
use torchfit::data::{k_fold, stratified_k_fold};

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
    let mut child = Command::new(torchfit_tests::python())
        .args(["-W", "ignore", "-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), &sets).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "scikit-learn (bash .cargo/setup.sh installs it): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let expected: Vec<Vec<Vec<i64>>> = serde_json::from_slice(&o.stdout).unwrap();
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
    use torchfit::net::search::grid;
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
    let o = Command::new(torchfit_tests::python()).args(["-c", script]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let expected: Vec<Vec<(String, serde_json::Value)>> = serde_json::from_slice(&o.stdout).unwrap();
    let ours: Vec<Vec<(String, serde_json::Value)>> = grid(&space)
        .into_iter()
        .map(|c| c.into_iter().map(|(k, v)| (k, serde_json::to_value(v).unwrap())).collect())
        .collect();
    assert_eq!(ours, expected);
}
