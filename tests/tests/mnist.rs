//! The MNIST results of the Python anchors (Poutyne's, skorch's tutorial and its grid search),
//! reproduced with the example configs in `examples/mnist/` (skipped, loudly, without
//! `../shared/data/mnist`).

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

/// The grid search that ends skorch's first talk (`examples/mnist/skorch-grid-search.toml`):
/// "best score: 0.9651, best_params {'net__module__dropout': 0.2}".
#[test]
fn skorchs_grid_search_picks_dropout_0_2_within_0_005_of_the_talks_score() {
    if shared_data().map(|d| d.join("mnist/train-images.idx3-ubyte.gz").exists()) != Some(true) {
        eprintln!("SKIPPED: MNIST not found in ../shared/data/mnist; the grid search did not run");
        return;
    }
    let out = temp_dir("mnist-grid-search").join("search");
    let o = torchfit_env(
        &[
            "search",
            "examples/mnist/skorch-grid-search.toml",
            "--grid",
            "module__dropout=0.2,0.5,0.8",
            "--cv",
            "3",
            "--jobs",
            "2",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = read_json(&out.join("search.json"));
    assert_eq!(s["best_params_"]["module__dropout"], 0.2, "{s}");
    let best = s["best_score_"].as_f64().unwrap();
    assert!((best - 0.9651).abs() <= 0.005, "{best}");
    let test = read_json(&out.join("refit/summary.json"))["test"]["accuracy"].as_f64().unwrap();
    eprintln!("grid search: best 0.2 at {best:.4}, refit test accuracy {test:.4}");
    assert!(test >= 0.96, "{test}");
}

/// The course notebook's SELU LeNet (`examples/mnist/selu-lenet.toml`): the stock `cnn` with
/// SELU has the notebook's 233,578 parameters for MNIST's 1x28x28 images and 10 classes. Built
/// from the config alone, so it runs without the data.
#[test]
fn the_selu_lenet_config_has_the_notebooks_233_578_parameters() {
    let _serial = torchfit_tests::serial();
    let mut net = torchfit::from_file(&torchfit_tests::root().join("examples/mnist/selu-lenet.toml")).unwrap();
    net.initialize(&[1, 28, 28], 10).unwrap();
    let params = net.model().unwrap().parameters();
    let count: i64 = params.iter().map(|(_, t)| t.numel() as i64).sum();
    assert_eq!(count, 233_578);
    assert!(params.iter().any(|(n, _)| n == "conv.1.weight"));
}
