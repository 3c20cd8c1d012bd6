//! Every plugin library shipped in this repository: loads, reports metadata, accepts every event
//! with a fake host, and survives `state()`/`load_state()` round trips.

use torchfit_engine::plugins::Library;
use torchfit_engine::registry::Registry;
use torchfit_sdk::testing::{drive_one_epoch, FakeHost};
use torchfit_sdk::{BuildContext, ComponentKind};

/// (package, library stem) of every plugin crate that ships.
const SHIPPED: &[(&str, &str)] = &[
    ("custom-callback", "custom_callback"),
    ("torchfit-plugin-checkpoint", "torchfit_plugin_checkpoint"),
    ("torchfit-plugin-lr-scheduler", "torchfit_plugin_lr_scheduler"),
    ("torchfit-plugin-early-stopping", "torchfit_plugin_early_stopping"),
    ("torchfit-plugin-freezer", "torchfit_plugin_freezer"),
    ("torchfit-plugin-clipping", "torchfit_plugin_clipping"),
    ("torchfit-plugin-logging", "torchfit_plugin_logging"),
    ("torchfit-plugin-scoring", "torchfit_plugin_scoring"),
];

/// A config for components that have required keys; `{}` for the rest.
fn sample_config(name: &str) -> serde_json::Value {
    match name {
        "lr_scheduler" => serde_json::json!({"policy": "StepLR", "step_size": 1, "step_every": "batch"}),
        "freezer" | "unfreezer" => serde_json::json!({"patterns": "*.bias"}),
        "epoch_scoring" | "batch_scoring" => serde_json::json!({"scoring": "f1_macro"}),
        "gradient_norm_clipping" => serde_json::json!({"max_norm": 1.0}),
        "csv_logger" => serde_json::json!({"filename": std::env::temp_dir().join(format!("conformance-{}.csv", std::process::id())), "batches": std::env::temp_dir().join(format!("conformance-b-{}.csv", std::process::id()))}),
        "plot_history" => serde_json::json!({"filename": std::env::temp_dir().join(format!("conformance-{}.svg", std::process::id()))}),
        _ => serde_json::json!({}),
    }
}

#[test]
fn every_shipped_plugin_conforms() {
    for (package, stem) in SHIPPED {
        let lib = Library::load(&torchfit_tests::plugin_library(package, stem)).unwrap_or_else(|e| panic!("{package}: {e}"));
        assert_eq!(lib.name(), *package);
        assert!(!lib.version().is_empty());
        assert!(!lib.components().is_empty(), "{package} provides nothing");
        let mut registry = Registry::default();
        registry.add_library(&lib).unwrap();
        for c in registry.components() {
            assert!(!c.summary.is_empty(), "{}: no summary", c.name);
            let ctx = BuildContext { name: c.name.clone(), input_shape: vec![2], n_outputs: 3, task: Default::default(), device: tch::Device::Cpu, base_dir: ".".into(), seed: 0 };
            if c.kind == ComponentKind::Callback {
                let mut cb = registry.callback(&c.name, &sample_config(&c.name), &ctx).unwrap_or_else(|e| panic!("{}: {e}", c.name));
                let mut host = FakeHost::default();
                drive_one_epoch(cb.as_mut(), &mut host).unwrap_or_else(|e| panic!("{}: {e}", c.name));
                drive_one_epoch(cb.as_mut(), &mut host).unwrap_or_else(|e| panic!("{} (second epoch): {e}", c.name));
                let state = cb.state().unwrap();
                cb.load_state(state.clone()).unwrap();
                assert_eq!(cb.state().unwrap(), state, "{}: state changes in a round trip", c.name);
            }
        }
    }
}

#[test]
fn the_example_records_a_gradient_norm_through_the_abi() {
    let lib = Library::load(&torchfit_tests::plugin_library("custom-callback", "custom_callback")).unwrap();
    let mut registry = Registry::default();
    registry.add_library(&lib).unwrap();
    let ctx = BuildContext { name: "gn".into(), input_shape: vec![2], n_outputs: 3, task: Default::default(), device: tch::Device::Cpu, base_dir: ".".into(), seed: 0 };
    let mut cb = registry.callback("grad_norm", &serde_json::json!({"key": "gn"}), &ctx).unwrap();
    let mut host = FakeHost::default();
    drive_one_epoch(cb.as_mut(), &mut host).unwrap();
    // FakeHost's gradients are ones over 6 + 3 values: norm 3.
    assert_eq!(host.history[0]["gn"], serde_json::json!(3.0));
    assert!(registry.callback("grad_norm", &serde_json::json!({"nope": 1}), &ctx).is_err(), "config errors cross the ABI");
}
