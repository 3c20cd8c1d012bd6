//! `16-mixed`'s gradient scaler against `torch.amp.GradScaler` on CPU: the same gradients,
//! finite, overflowing when scaled, inf and NaN, give the same scale after every step and the
//! same skipped steps, bit for bit, and the same parameters after SGD.

use tch::{Device, Kind, Tensor};
use torchfit::amp::{GradScaler, ScalerConfig};
use torchfit::optim::{Optimizer, OptimizerConfig};

/// Each step's gradients of `w` (4) and `b` (2), as text so JSON carries inf and NaN.
fn steps() -> Vec<[Vec<&'static str>; 2]> {
    let ok = || [vec!["0.5", "-1.25", "2.0", "0.125"], vec!["1.0", "-0.5"]];
    vec![
        ok(),
        ok(),
        ok(),
        ok(), // the fourth good step in a row: the scale grew after the third
        [vec!["1e36", "0.0", "0.0", "0.0"], vec!["0.0", "0.0"]], // finite, but inf once scaled
        ok(),
        [vec!["0.5", "inf", "0.0", "0.0"], vec!["0.0", "0.0"]],
        [vec!["0.5", "0.0", "0.0", "0.0"], vec!["nan", "0.0"]],
        ok(),
        ok(),
        ok(),
        ok(),
        ok(),
    ]
}

const PYTHON: &str = r#"
import json, sys, torch
cfg = json.loads(sys.stdin.read())
w = torch.tensor([0.5, -0.25, 1.0, 2.0], requires_grad=True)
b = torch.tensor([0.1, -0.3], requires_grad=True)
opt = torch.optim.SGD([w, b], lr=0.01)
scaler = torch.amp.GradScaler("cpu", init_scale=cfg["init_scale"], growth_factor=2.0, backoff_factor=0.5,
                              growth_interval=cfg["growth_interval"])
scales, stepped = [], []
for gw, gb in cfg["steps"]:
    opt.zero_grad()
    gw, gb = torch.tensor([float(v) for v in gw]), torch.tensor([float(v) for v in gb])
    before = w.detach().clone()
    loss = (w * gw).sum() + (b * gb).sum()
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    scales.append(scaler.get_scale())
    stepped.append(not torch.equal(before, w.detach()))
print(json.dumps({"scales": scales, "stepped": stepped, "w": w.tolist(), "b": b.tolist()}))
"#;

#[test]
fn the_scale_sequence_and_the_skipped_steps_equal_torch_amp_grad_scalers() {
    let config = ScalerConfig { init_scale: 1024.0, growth_interval: 3, ..ScalerConfig::default() };
    let input = serde_json::json!({"init_scale": 1024.0, "growth_interval": 3, "steps": steps()});
    let reference = super::python_json(PYTHON, &input, "torch.amp.GradScaler failed");

    let w = Tensor::from_slice(&[0.5f32, -0.25, 1.0, 2.0]).set_requires_grad(true);
    let b = Tensor::from_slice(&[0.1f32, -0.3]).set_requires_grad(true);
    let sgd: OptimizerConfig = toml::from_str("name = 'sgd'\nlr = 0.01").unwrap();
    let mut opt = Optimizer::new(&sgd, vec![("w".into(), w.shallow_clone()), ("b".into(), b.shallow_clone())]).unwrap();
    let mut scaler = GradScaler::new(Device::Cpu, config).unwrap();
    let (mut scales, mut stepped) = (Vec::new(), Vec::new());
    let tensor = |v: &[&str]| Tensor::from_slice(&v.iter().map(|s| s.parse::<f32>().unwrap()).collect::<Vec<_>>());
    for [gw, gb] in steps() {
        opt.zero_grad();
        let loss = (&w * tensor(&gw)).sum(Kind::Float) + (&b * tensor(&gb)).sum(Kind::Float);
        scaler.scale(&loss).unwrap().backward();
        let finite = scaler.unscale(&opt).unwrap();
        if finite {
            opt.step().unwrap();
        }
        scaler.update().unwrap();
        scales.push(scaler.state().unwrap().scale);
        stepped.push(finite);
    }
    let theirs: Vec<f64> = reference["scales"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(scales, theirs, "the scale after each step");
    assert_eq!(scales[2], 2048.0, "grown after three good steps");
    assert_eq!(serde_json::json!(stepped), reference["stepped"], "the steps skipped");
    assert_eq!(stepped.iter().filter(|s| !**s).count(), 3, "the overflow, the inf and the NaN");
    for (key, ours) in [("w", &w), ("b", &b)] {
        let ours = Vec::<f32>::try_from(ours.detach()).unwrap();
        let theirs: Vec<f64> = reference[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        for (a, e) in ours.iter().zip(&theirs) {
            assert!((*a as f64 - e).abs() <= 1e-6 * e.abs() + 1e-7, "{key}: {a} vs torch's {e}");
        }
    }
}
