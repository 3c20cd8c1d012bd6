//! Every stock criterion equals its `torch.nn` loss on the same inputs (rtol 1e-6), computed by
//! the venv's PyTorch in a subprocess from the tensors this test writes.

use tch::{Device, Kind, Tensor};
use torchfit::Registry;
use torchfit_sdk::{BuildContext, Task};

/// (criterion, its config, the PyTorch expression over the saved tensors)
const CASES: &[(&str, &str, &str)] = &[
    ("cross_entropy", "{}", "nn.CrossEntropyLoss()(t['logits'], t['classes'])"),
    ("cross_entropy", r#"{"weight": [0.5, 1.0, 2.0, 0.25], "label_smoothing": 0.1, "ignore_index": 3}"#, "nn.CrossEntropyLoss(weight=torch.tensor([0.5, 1.0, 2.0, 0.25]), label_smoothing=0.1, ignore_index=3)(t['logits'], t['classes'])"),
    ("nll", r#"{"weight": [1.0, 2.0, 3.0, 4.0]}"#, "nn.NLLLoss(weight=torch.tensor([1.0, 2.0, 3.0, 4.0]))(t['log_probs'], t['classes'])"),
    ("bce_with_logits", "{}", "nn.BCEWithLogitsLoss()(t['multi'], t['bits'])"),
    ("bce_with_logits", r#"{"pos_weight": [1.0, 3.0, 0.5]}"#, "nn.BCEWithLogitsLoss(pos_weight=torch.tensor([1.0, 3.0, 0.5]))(t['multi'], t['bits'])"),
    ("mse", "{}", "nn.MSELoss()(t['pred'], t['target'])"),
    ("l1", "{}", "nn.L1Loss()(t['pred'], t['target'])"),
    ("smooth_l1", r#"{"beta": 0.5}"#, "nn.SmoothL1Loss(beta=0.5)(t['pred'], t['target'])"),
    ("huber", r#"{"delta": 0.7}"#, "nn.HuberLoss(delta=0.7)(t['pred'], t['target'])"),
];

fn inputs() -> Vec<(String, Tensor)> {
    let wave =
        |n: i64, f: f64| Tensor::from_slice(&(0..n).map(|i| (f * i as f64).sin() as f32 * 2.0).collect::<Vec<_>>());
    let logits = wave(32, 0.7).view([8, 4]);
    let classes = Tensor::from_slice(&[0i64, 1, 2, 3, 3, 2, 1, 0]);
    vec![
        ("log_probs".into(), logits.log_softmax(-1, Kind::Float)),
        ("logits".into(), logits),
        ("classes".into(), classes),
        ("multi".into(), wave(24, 1.3).view([8, 3])),
        ("bits".into(), wave(24, 2.1).gt(0.0).to_kind(Kind::Float).view([8, 3])),
        ("pred".into(), wave(16, 0.9).view([8, 2])),
        ("target".into(), wave(16, 0.45).view([8, 2])),
    ]
}

#[test]
fn every_criterion_equals_pytorchs_loss() {
    let dir = torchfit_tests::temp_dir("criteria");
    let file = dir.join("inputs.safetensors");
    let t = inputs();
    Tensor::write_safetensors(&t, &file).unwrap();
    let exprs: Vec<&str> = CASES.iter().map(|c| c.2).collect();
    let script = format!(
        "import json, torch\nfrom torch import nn\nfrom safetensors.torch import load_file\nt = load_file({:?})\nprint(json.dumps([float(e) for e in [{}]]))",
        file.display().to_string(),
        exprs.join(", ")
    );
    let expected: Vec<f64> =
        serde_json::from_value(super::python_json(&script, &serde_json::Value::Null, "torch.nn")).unwrap();
    let get = |n: &str| t.iter().find(|(k, _)| k == n).unwrap().1.shallow_clone();
    let registry = Registry::builtin();
    for ((name, config, expr), want) in CASES.iter().zip(expected) {
        let (pred, y, task) = match *name {
            "cross_entropy" => (get("logits"), get("classes"), Task::Classification),
            "nll" => (get("log_probs"), get("classes"), Task::Classification),
            "bce_with_logits" => (get("multi"), get("bits"), Task::Classification),
            _ => (get("pred"), get("target"), Task::Regression),
        };
        // Built for a model with as many outputs as the predictions have columns.
        let n_outputs = pred.size()[1];
        let ctx = BuildContext { input_shape: vec![4], n_outputs, task, ..torchfit_sdk::testing::context("criterion") };
        let c = registry.criterion(name, &serde_json::from_str(config).unwrap(), &ctx).unwrap();
        let got = c.loss(&pred, &y).unwrap().double_value(&[]);
        assert!((got - want).abs() <= 1e-6 * want.abs(), "{name} {config}: {got} vs PyTorch's {want} ({expr})");
    }
}

#[test]
fn integer_labels_train_a_single_logit_binary_classifier() {
    let registry = Registry::builtin();
    let ctx = BuildContext { input_shape: vec![1], n_outputs: 1, ..torchfit_sdk::testing::context("criterion") };
    let c = registry.criterion("bce_with_logits", &serde_json::json!({}), &ctx).unwrap();
    let l = c.loss(&Tensor::zeros([4, 1], (Kind::Float, Device::Cpu)), &Tensor::from_slice(&[0i64, 1, 1, 0])).unwrap();
    assert!((l.double_value(&[]) - 2f64.ln()).abs() < 1e-6);
}
