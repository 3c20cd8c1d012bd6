//! The MNIST results of issue 5, reproduced from the Python anchors with the example configs in
//! `examples/mnist/` (skipped, loudly, without `../shared/data/mnist`).

use torchfit_tests::{read_json, shared_data, temp_dir, torchfit_env};

/// Trains `examples/mnist/<config>` and returns its test accuracy.
fn test_accuracy(config: &str) -> Option<f64> {
    if shared_data().map(|d| d.join("mnist/train-images.idx3-ubyte.gz").exists()) != Some(true) {
        eprintln!("SKIPPED: MNIST not found in ../shared/data/mnist; {config} was not trained");
        return None;
    }
    let out = temp_dir(&format!("mnist-{config}")).join("run");
    let o = torchfit_env(&["train", &format!("examples/mnist/{config}"), "--out", out.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = read_json(&out.join("summary.json"));
    assert_eq!(summary["test"]["samples"], 10_000, "evaluated on the 10k test images");
    let acc = summary["test"]["accuracy"].as_f64().unwrap();
    eprintln!("{config}: test accuracy {acc:.4} in {:.0} s", summary["seconds"].as_f64().unwrap());
    Some(acc)
}

#[test]
fn poutynes_fully_connected_network_reaches_97_2_percent() {
    if let Some(acc) = test_accuracy("poutyne-mlp.toml") {
        assert!(acc >= 0.972, "{acc}");
    }
}

#[test]
fn poutynes_convolutional_network_reaches_98_5_percent() {
    if let Some(acc) = test_accuracy("poutyne-cnn.toml") {
        assert!(acc >= 0.985, "{acc}");
    }
}

#[test]
fn skorchs_tutorial_mlp_reaches_0_958() {
    if let Some(acc) = test_accuracy("skorch-mlp.toml") {
        assert!(acc >= 0.958, "{acc}");
    }
}
