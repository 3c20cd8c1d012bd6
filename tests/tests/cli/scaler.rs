//! `scaler` through the binary on the digits: fitted on the training samples as
//! scikit-learn's `MinMaxScaler` / `StandardScaler` fit (compared with the venv's scikit-learn),
//! kept in the run directory, applied by `torchfit predict`, whose file is checked like the model's.

use torchfit_tests::{python, read_json, temp_dir, torchfit_env};

/// scikit-learn's statistics for the digits' 64 pixels (scaled by 1/16 as the demo's reader
/// reads them), as `offset` and `scale` (`x' = (x - offset) * scale`).
const SKLEARN: &str = r#"
import gzip, json, sys, numpy as np
from sklearn.preprocessing import MinMaxScaler, StandardScaler
data = np.loadtxt(gzip.open('examples/digits/digits.csv.gz'), delimiter=',')
x = data[:, :-1].astype(np.float32) / 16.0
out = {'labels': data[:, -1].astype(int).tolist()}
s = MinMaxScaler().fit(x); out['minmax'] = [s.data_min_.tolist(), s.scale_.tolist()]
s = StandardScaler().fit(x); out['standard'] = [s.mean_.tolist(), (1.0 / s.scale_).tolist()]
print(json.dumps(out))
"#;

fn train(run: &std::path::Path, scaler: &str) {
    let scaler = format!("scaler=\"{scaler}\"");
    let args = ["train", "examples/digits/config.toml", "--out", run.to_str().unwrap(), "--set", &scaler];
    // Every sample trains, so the scaler is fitted on the whole file, as scikit-learn is here.
    let sets = ["max_epochs=3", "optimizer__lr=0.02", "train_split__kind=\"none\"", "test_split__kind=\"none\""];
    let o = torchfit_env(&[&args[..], &sets.iter().flat_map(|s| ["--set", s]).collect::<Vec<_>>()].concat(), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn the_fitted_scaler_is_scikit_learns_and_predict_applies_it() {
    let o = std::process::Command::new(python())
        .current_dir(torchfit_tests::root())
        .args(["-c", SKLEARN])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reference: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for scaler in ["minmax", "standard"] {
        let run = temp_dir(&format!("scaler-{scaler}")).join("run");
        train(&run, scaler);
        let saved = tch::Tensor::read_safetensors(run.join("feature_scaler.safetensors")).unwrap();
        for (i, name) in ["offset", "scale"].iter().enumerate() {
            let ours = Vec::<f32>::try_from(&saved.iter().find(|(n, _)| n == name).unwrap().1).unwrap();
            let theirs: Vec<f64> =
                reference[scaler][i].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(ours.len(), 64);
            for (j, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                assert!(
                    (*a as f64 - b).abs() <= 1e-5 * b.abs().max(1.0),
                    "{scaler} {name}[{j}]: {a} vs scikit-learn's {b}"
                );
            }
        }
        let meta = read_json(&run.join("model.json"));
        assert!(meta["feature_scaler"]["crc32"].is_string(), "{meta}");
        // Predicting on the training file gives the training accuracy only through the scaler.
        let o = torchfit_env(&["predict", run.to_str().unwrap()], &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = String::from_utf8_lossy(&o.stdout);
        let labels: Vec<i64> = text.lines().skip(1).map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect();
        let truth: Vec<i64> = reference["labels"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        let right = labels.iter().zip(&truth).filter(|(a, b)| a == b).count() as f64 / truth.len() as f64;
        let trained = read_json(&run.join("history.json")).as_array().unwrap().len();
        assert!(right > 0.9, "{scaler}: predict's accuracy on the training data {right} after {trained} epochs");
    }
}

#[test]
fn predict_refuses_a_scaler_file_that_changed() {
    let run = temp_dir("scaler-damaged").join("run");
    train(&run, "minmax");
    let path = run.join("feature_scaler.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let o = torchfit_env(&["predict", run.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("feature_scaler.safetensors"), "{err}");
}
