//! The criterion and scorer example (`examples/custom-criterion-scorer`), loaded as a third
//! party's library by the binary: its focal loss with `gamma = 0` trains as the stock
//! cross-entropy does, and its top-2 accuracy is recorded beside `valid_acc`, never below it.

use torchfit_tests::{plugin_library, read_json, temp_dir, train_digits};

#[test]
fn a_plugins_criterion_and_scorer_train_and_score_as_their_definitions_say() {
    let lib = plugin_library("custom-criterion-scorer", "custom_criterion_scorer");
    let plugins = format!("plugins=[{:?}]", lib.display().to_string());
    let root = temp_dir("example-criterion");
    let run = |name: &str, sets: &[&str]| {
        let out = root.join(name);
        let all: Vec<&str> = ["max_epochs=3", plugins.as_str()].into_iter().chain(sets.iter().copied()).collect();
        let o = train_digits(&all, Some(&out), &[]);
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        read_json(&out.join("history.json"))
    };
    let stock = run("stock", &[]);
    let focal0 = run(
        "focal0",
        &[
            "criterion={name = \"focal_loss\", gamma = 0.0}",
            "callbacks__top2={type = \"epoch_scoring\", scoring = \"top2_accuracy\"}",
        ],
    );
    let focal2 = run("focal2", &["criterion__name=focal_loss"]);
    for (s, f) in stock.as_array().unwrap().iter().zip(focal0.as_array().unwrap()) {
        let (a, b) = (s["train_loss"].as_f64().unwrap(), f["train_loss"].as_f64().unwrap());
        assert!((a - b).abs() <= 1e-5 * a.abs(), "gamma 0 is cross-entropy: {a} vs {b}");
        let (acc, top2) = (f["valid_acc"].as_f64().unwrap(), f["top2"].as_f64().unwrap());
        assert!(top2 >= acc && top2 <= 1.0, "top-2 {top2} vs accuracy {acc}");
        assert!(f["top2_best"].is_boolean(), "the scorer's direction is known: {f}");
    }
    let (ce, fl) = (stock[0]["train_loss"].as_f64().unwrap(), focal2[0]["train_loss"].as_f64().unwrap());
    assert!(fl < ce, "gamma 2 down-weights every sample: {fl} vs {ce}");
}
