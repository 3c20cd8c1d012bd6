//! EpochScoring and BatchScoring through the binary, loaded from the scoring plugin's library,
//! on the digits data.

use std::path::Path;
use torchfit_tests::{plugin_library, read_json, temp_dir, torchfit_env};

fn train(out: &Path, sets: &[&str]) -> serde_json::Value {
    plugin_library("torchfit-plugin-scoring", "torchfit_plugin_scoring");
    let mut args =
        vec!["train", "examples/digits/config.toml", "--out", out.to_str().unwrap(), "--set", "max_epochs=4"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let o = torchfit_env(&args, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    read_json(&out.join("history.json"))
}

fn column(h: &serde_json::Value, key: &str) -> Vec<f64> {
    h.as_array().unwrap().iter().map(|e| e[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {e}"))).collect()
}

#[test]
fn epoch_scoring_agrees_with_the_builtin_accuracy_and_records_other_scores_with_their_direction() {
    let h = train(
        &temp_dir("epoch-scoring").join("run"),
        &[
            "callbacks__acc__type=epoch_scoring",
            "callbacks__acc__scoring=accuracy",
            "callbacks__valid_f1__type=epoch_scoring",
            "callbacks__valid_f1__scoring=f1_macro",
            "callbacks__valid_nll__type=epoch_scoring",
            "callbacks__valid_nll__scoring=log_loss",
            "callbacks__train_auc__type=epoch_scoring",
            "callbacks__train_auc__scoring=roc_auc",
            "callbacks__train_auc__on_train=true",
        ],
    );
    // The plugin's accuracy is the builtin valid_acc, bit for bit, computed another way.
    assert_eq!(column(&h, "acc"), column(&h, "valid_acc"));
    let (f1, nll, auc) = (column(&h, "valid_f1"), column(&h, "valid_nll"), column(&h, "train_auc"));
    assert!(f1.iter().all(|v| (0.5..=1.0).contains(v)), "{f1:?}");
    assert!(auc.iter().all(|v| (0.8..=1.0).contains(v)) && auc[3] > auc[0], "{auc:?}");
    // log_loss is lower-is-better without saying so: its _best flags follow the running minimum.
    let flags: Vec<bool> = h.as_array().unwrap().iter().map(|e| e["valid_nll_best"].as_bool().unwrap()).collect();
    let expected: Vec<bool> = (0..nll.len()).map(|i| nll[..i].iter().all(|p| nll[i] < *p)).collect();
    assert_eq!(flags, expected, "{nll:?}");
    // The validation log loss is the validation loss the criterion computed (both are the mean
    // cross-entropy), up to float32 summation.
    for (a, b) in nll.iter().zip(column(&h, "valid_loss")) {
        assert!((a - b).abs() < 1e-5 * b.max(1.0), "{a} vs {b}");
    }
}

#[test]
fn batch_scoring_records_every_batch_and_their_size_weighted_mean() {
    let h = train(
        &temp_dir("batch-scoring").join("run"),
        &[
            "callbacks__train_acc__type=batch_scoring",
            "callbacks__train_acc__scoring=accuracy",
            "callbacks__train_acc__on_train=true",
        ],
    );
    for e in h.as_array().unwrap() {
        let batches = e["batches"].as_array().unwrap();
        let scored: Vec<(f64, f64)> =
            batches.iter().filter_map(|b| Some((b["train_acc"].as_f64()?, b["train_batch_size"].as_f64()?))).collect();
        assert_eq!(
            scored.len(),
            batches.iter().filter(|b| b.get("train_loss").is_some()).count(),
            "one score per training batch"
        );
        assert!(scored.iter().all(|(s, _)| (0.0..=1.0).contains(s)));
        let n: f64 = scored.iter().map(|(_, k)| k).sum();
        let mean = scored.iter().map(|(s, k)| s * k).sum::<f64>() / n;
        assert!((e["train_acc"].as_f64().unwrap() - mean).abs() < 1e-12);
    }
}

#[test]
fn a_scorer_of_another_plugin_needs_its_direction_and_then_scores() {
    let faulty = plugin_library("torchfit-testplugin-faulty", "torchfit_testplugin_faulty");
    let plugins = format!("plugins=[{:?}]", faulty.display().to_string());
    let base = ["callbacks__half__type=epoch_scoring", "callbacks__half__scoring=constant_half", plugins.as_str()];
    plugin_library("torchfit-plugin-scoring", "torchfit_plugin_scoring");
    let out = temp_dir("foreign-scorer").join("run");
    let mut args = vec!["train", "examples/digits/config.toml", "--out", out.to_str().unwrap()];
    base.iter().for_each(|s| args.extend(["--set", s]));
    let o = torchfit_env(&args, &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("callbacks.half") && err.contains("lower_is_better") && err.contains("constant_half"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written");
    let h = train(
        &temp_dir("foreign-scorer-ok").join("run"),
        &[base[0], base[1], base[2], "callbacks__half__lower_is_better=false"],
    );
    assert_eq!(column(&h, "half"), [0.5; 4]);
}
