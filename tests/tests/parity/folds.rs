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
