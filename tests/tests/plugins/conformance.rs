//! Every plugin library shipped in this repository: loads, reports metadata, accepts every event
//! with a fake host, and survives `state()`/`load_state()` round trips.

use torchfit::plugins::Library;
use torchfit::registry::Registry;
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
    ("torchfit-plugin-weight-averaging", "torchfit_plugin_weight_averaging"),
];

/// A config for components that have required keys; `{}` for the rest.
fn sample_config(name: &str) -> serde_json::Value {
    match name {
        "lr_scheduler" => serde_json::json!({"policy": "StepLR", "step_size": 1, "step_every": "batch"}),
        "freezer" | "unfreezer" => serde_json::json!({"patterns": "*.bias"}),
        "epoch_scoring" | "batch_scoring" => serde_json::json!({"scoring": "f1_macro"}),
        "gradient_norm_clipping" => serde_json::json!({"max_norm": 1.0}),
        // No checkpoint to restore in the fake run.
        "load_init_state" => serde_json::json!({"missing_ok": true}),
        "csv_logger" => {
            serde_json::json!({"filename": std::env::temp_dir().join(format!("conformance-{}.csv", std::process::id())), "batches": std::env::temp_dir().join(format!("conformance-b-{}.csv", std::process::id()))})
        }
        "plot_history" => {
            serde_json::json!({"filename": std::env::temp_dir().join(format!("conformance-{}.svg", std::process::id()))})
        }
        "tensorboard" => serde_json::json!({
            "logdir": std::env::temp_dir().join(format!("conformance-tb-{}", std::process::id())),
            "batches": true,
            "histograms": true,
        }),
        _ => serde_json::json!({}),
    }
}

#[test]
fn every_shipped_plugin_conforms() {
    for (package, stem) in SHIPPED {
        let lib =
            Library::load(&torchfit_tests::plugin_library(package, stem)).unwrap_or_else(|e| panic!("{package}: {e}"));
        assert_eq!(lib.name(), *package);
        assert!(!lib.version().is_empty());
        assert!(!lib.components().is_empty(), "{package} provides nothing");
        let mut registry = Registry::default();
        registry.add_library(&lib).unwrap();
        for c in registry.components() {
            assert!(!c.summary.is_empty(), "{}: no summary", c.name);
            let ctx = torchfit_sdk::testing::context(&c.name);
            if c.kind == ComponentKind::Callback {
                let mut cb = registry
                    .callback(&c.name, &sample_config(&c.name), &ctx)
                    .unwrap_or_else(|e| panic!("{}: {e}", c.name));
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
    let ctx = torchfit_sdk::testing::context("gn");
    let mut cb = registry.callback("grad_norm", &serde_json::json!({"key": "gn"}), &ctx).unwrap();
    let mut host = FakeHost::default();
    drive_one_epoch(cb.as_mut(), &mut host).unwrap();
    // FakeHost's gradients are ones over 6 + 3 values: norm 3.
    assert_eq!(host.history[0]["gn"], serde_json::json!(3.0));
    assert!(
        registry.callback("grad_norm", &serde_json::json!({"nope": 1}), &ctx).is_err(),
        "config errors cross the ABI"
    );
}

/// The stock models, criteria and readers the `torchfit` package links in-process also work as loaded
/// libraries, through the ABI, like a third party's.
#[test]
fn the_linked_stock_components_work_through_the_abi() {
    let device = tch::Device::Cpu;
    let ctx = |shape: &[i64], n: i64| BuildContext {
        input_shape: shape.to_vec(),
        n_outputs: n,
        device,
        base_dir: torchfit_tests::root(),
        ..torchfit_sdk::testing::context("c")
    };
    let mut registry = Registry::default();
    let lib = Library::load(&torchfit_tests::plugin_library("torchfit-testplugin-stock", "torchfit_testplugin_stock"))
        .unwrap();
    registry.add_library(&lib).unwrap();
    let names: Vec<&str> = lib.components().iter().map(|c| c.name.as_str()).collect();
    for n in [
        "mlp",
        "cnn",
        "resnet18",
        "small_resnet",
        "torchscript",
        "cross_entropy",
        "nll",
        "bce_with_logits",
        "mse",
        "l1",
        "smooth_l1",
        "huber",
        "csv",
        "idx",
    ] {
        assert!(names.contains(&n), "{n} not exported: {names:?}");
    }
    let models = [
        ("mlp", serde_json::json!({"hidden": [8], "batch_norm": true})),
        ("cnn", serde_json::json!({"conv": [{"channels": 4, "pool": 2}]})),
        ("small_resnet", serde_json::json!({"widths": [4], "blocks": [1]})),
    ];
    for (name, config) in models {
        let mut m = registry.model(name, &config, &ctx(&[1, 8, 8], 3)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let y = m.forward(&tch::Tensor::ones([2, 1, 8, 8], (tch::Kind::Float, device)), true).unwrap();
        assert_eq!(y.size(), [2, 3], "{name}");
        let state = m.state_dict();
        m.load_state_dict(&state).unwrap();
        assert!(!m.parameters().is_empty());
        let has_batch_norm = m.set_batch_norm_stats(torchfit_sdk::BatchNormStats::Cumulative).unwrap();
        assert_eq!(has_batch_norm, name != "cnn", "{name}: the model's answer crosses the ABI");
        m.set_batch_norm_stats(torchfit_sdk::BatchNormStats::Momentum).unwrap();
        // SDK 1.5: a look inside the forward pass crosses the ABI with its tensors and errors,
        // and guided gradients flow back through the plugin's ReLU hooks.
        let last = if name == "small_resnet" { "fc" } else { "output" };
        let x = tch::Tensor::randn([1, 1, 8, 8], (tch::Kind::Float, device)).set_requires_grad(true);
        let inspection = torchfit_sdk::Inspection { guided_relu: true, capture: Some(last.into()) };
        let seen = m.forward_inspected(&x, &inspection).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(seen.captured.expect("the last layer kept").allclose(&seen.output, 0.0, 0.0, false), "{name}");
        let g = tch::Tensor::run_backward(&[seen.output.sum(tch::Kind::Float)], &[&x], false, false);
        assert_eq!(g[0].size(), x.size(), "{name}");
        let missing = torchfit_sdk::Inspection { guided_relu: false, capture: Some("nope".into()) };
        let e = m.forward_inspected(&x, &missing).unwrap_err().to_string();
        assert!(e.contains("`nope`") && e.contains(last), "{name}: {e}");
    }
    let logits = tch::Tensor::zeros([2, 3], (tch::Kind::Float, device));
    let loss = registry
        .criterion("cross_entropy", &serde_json::json!({}), &ctx(&[3], 3))
        .unwrap()
        .loss(&logits, &tch::Tensor::from_slice(&[0i64, 2]))
        .unwrap();
    assert!((loss.double_value(&[]) - 3f64.ln()).abs() < 1e-6);
    let mut reader = registry
        .reader("csv", &serde_json::json!({"path": "examples/digits/digits.csv.gz", "scale": 16.0}), &ctx(&[], 0))
        .unwrap();
    assert_eq!((reader.len(), reader.sample_shape()), (1797, vec![64]));
    assert_eq!(reader.get(&[0, 5]).unwrap().0.size(), [2, 64]);
}
