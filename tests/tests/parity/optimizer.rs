//! Each optimizer matches `torch.optim` over 20 steps on the same problem (rtol 1e-5), computed
//! by the venv's PyTorch in a subprocess, in each implementation: SGD, Adam and AdamW also with
//! `implementation = "foreach"` against `foreach=True` and `"fused"` against `fused=True` (CPU
//! kernels of PyTorch 2.11). `TORCHFIT_PARITY_DEVICE=cuda` runs both sides on the GPU
//! (`bench/gpu.sh` does).

use tch::{Device, Kind, Tensor};
use torchfit::optim::{Optimizer, OptimizerConfig};

/// (name, torchfit config, torch.optim class, kwargs, lr factor of the first param group)
const CASES: &[(&str, &str, &str, &str)] = &[
    ("sgd", "name='sgd'\nlr=0.1", "SGD", "{'lr': 0.1}"),
    (
        "sgd_momentum",
        "name='sgd'\nlr=0.05\nmomentum=0.9\ndampening=0.1\nweight_decay=0.01",
        "SGD",
        "{'lr': 0.05, 'momentum': 0.9, 'dampening': 0.1, 'weight_decay': 0.01}",
    ),
    (
        "sgd_nesterov",
        "name='sgd'\nlr=0.05\nmomentum=0.9\nnesterov=true",
        "SGD",
        "{'lr': 0.05, 'momentum': 0.9, 'nesterov': True}",
    ),
    ("adam", "name='adam'\nlr=0.01\nweight_decay=0.01", "Adam", "{'lr': 0.01, 'weight_decay': 0.01}"),
    (
        "adam_betas",
        "name='adam'\nlr=0.02\nbetas=[0.8, 0.99]\neps=1e-6",
        "Adam",
        "{'lr': 0.02, 'betas': (0.8, 0.99), 'eps': 1e-6}",
    ),
    ("adamw", "name='adamw'\nlr=0.01\nweight_decay=0.1", "AdamW", "{'lr': 0.01, 'weight_decay': 0.1}"),
    ("rmsprop", "name='rmsprop'\nlr=0.01", "RMSprop", "{'lr': 0.01}"),
    (
        "rmsprop_centered",
        "name='rmsprop'\nlr=0.01\nmomentum=0.5\ncentered=true\nweight_decay=0.01\nalpha=0.9",
        "RMSprop",
        "{'lr': 0.01, 'momentum': 0.5, 'centered': True, 'weight_decay': 0.01, 'alpha': 0.9}",
    ),
];

const STEPS: usize = 20;

/// The problem both sides solve: least squares `x @ w + b ~ t`, with `w` in a parameter group of
/// its own at half the learning rate.
const PYTHON: &str = r#"
import json, math, sys, torch
request = json.loads(sys.stdin.read())
cases, device = request['cases'], request['device']
def data():
    x = torch.tensor([[math.sin(0.3 * i + 0.1 * j) for j in range(3)] for i in range(5)], dtype=torch.float32)
    t = torch.tensor([[math.cos(0.2 * i - 0.4 * j) for j in range(4)] for i in range(5)], dtype=torch.float32)
    w = torch.tensor([[math.sin(0.37 * (4 * i + j)) for j in range(4)] for i in range(3)], dtype=torch.float32, requires_grad=True)
    b = torch.tensor([math.cos(0.5 * j) for j in range(4)], dtype=torch.float32, requires_grad=True)
    return x.to(device), t.to(device), w.detach().to(device).requires_grad_(), b.detach().to(device).requires_grad_()
out = {}
for name, cls, kwargs in cases:
    x, t, w, b = data()
    kwargs = eval(kwargs)
    opt = getattr(torch.optim, cls)([{'params': [w], 'lr': kwargs['lr'] * 0.5}, {'params': [b]}], **kwargs)
    for _ in range(%STEPS%):
        opt.zero_grad()
        loss = ((x @ w + b - t) ** 2).mean()
        loss.backward()
        opt.step()
    out[name] = {'w': w.detach().cpu().flatten().tolist(), 'b': b.detach().cpu().tolist()}
print(json.dumps(out))
"#;

fn data() -> (Tensor, Tensor, Tensor, Tensor) {
    let grid = |rows: i64, cols: i64, f: &dyn Fn(i64, i64) -> f64| {
        let v: Vec<f32> = (0..rows).flat_map(|i| (0..cols).map(move |j| (i, j))).map(|(i, j)| f(i, j) as f32).collect();
        Tensor::from_slice(&v).view([rows, cols])
    };
    let x = grid(5, 3, &|i, j| (0.3 * i as f64 + 0.1 * j as f64).sin());
    let t = grid(5, 4, &|i, j| (0.2 * i as f64 - 0.4 * j as f64).cos());
    let w = grid(3, 4, &|i, j| (0.37 * (4 * i + j) as f64).sin()).set_requires_grad(true);
    let b =
        Tensor::from_slice(&(0..4).map(|j| (0.5 * j as f64).cos() as f32).collect::<Vec<_>>()).set_requires_grad(true);
    (x, t, w, b)
}

/// The device both sides run on: `TORCHFIT_PARITY_DEVICE` (`cpu` unless set), by its PyTorch name.
fn device() -> (Device, String) {
    let name = std::env::var("TORCHFIT_PARITY_DEVICE").unwrap_or_else(|_| "cpu".into());
    let device = match name.as_str() {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        other => panic!("TORCHFIT_PARITY_DEVICE={other}: cpu or cuda"),
    };
    (device, name)
}

fn torchfit_run(config: &str) -> (Vec<f32>, Vec<f32>) {
    let (x, t, w, b) = data();
    let d = device().0;
    let (x, t) = (x.to_device(d), t.to_device(d));
    let (w, b) = (w.detach().to_device(d).set_requires_grad(true), b.detach().to_device(d).set_requires_grad(true));
    let base: toml::Table = config.parse().unwrap();
    let lr = base["lr"].as_float().unwrap();
    let cfg: OptimizerConfig =
        toml::from_str(&format!("{config}\n[[param_groups]]\nparams='w'\nlr={}", lr * 0.5)).unwrap();
    let mut opt = Optimizer::new(&cfg, vec![("w".into(), w.shallow_clone()), ("b".into(), b.shallow_clone())]).unwrap();
    for _ in 0..STEPS {
        opt.zero_grad();
        let loss = (x.matmul(&w) + &b - &t).square().mean(Kind::Float);
        loss.backward();
        opt.step().unwrap();
    }
    let flat = |p: &Tensor| Vec::<f32>::try_from(p.detach().flatten(0, -1).to_device(Device::Cpu)).unwrap();
    (flat(&w), flat(&b))
}

/// Every case, and the SGD, Adam and AdamW ones again with each multi-tensor implementation:
/// (name, torchfit config, torch.optim class, kwargs).
fn cases() -> Vec<(String, String, String, String)> {
    let mut all = Vec::new();
    for (name, config, class, kwargs) in CASES {
        let owned = |n: &str, c: &str, k: &str| (n.to_string(), c.to_string(), class.to_string(), k.to_string());
        all.push(owned(name, config, kwargs));
        if *class == "RMSprop" {
            continue;
        }
        for flag in ["foreach", "fused"] {
            let config = format!("{config}\nimplementation='{flag}'");
            let kwargs = format!("{}, '{flag}': True}}", kwargs.trim_end_matches('}'));
            all.push(owned(&format!("{name}_{flag}"), &config, &kwargs));
        }
    }
    all
}

#[test]
fn every_optimizer_matches_torch_optim_over_20_steps() {
    let cases = cases();
    assert_eq!(cases.len(), CASES.len() * 3 - 4, "two RMSprop cases, the rest three times");
    let python: Vec<(&str, &str, &str)> =
        cases.iter().map(|(n, _, c, k)| (n.as_str(), c.as_str(), k.as_str())).collect();
    let script = PYTHON.replace("%STEPS%", &STEPS.to_string());
    let request = serde_json::json!({"cases": python, "device": device().1});
    let reference = super::python_json(&script, &request, "python failed");
    for (name, config, _, _) in &cases {
        let name = name.as_str();
        let (w, b) = torchfit_run(config);
        for (key, ours) in [("w", &w), ("b", &b)] {
            let theirs: Vec<f64> =
                reference[name][key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(theirs.len(), ours.len());
            let start: Vec<f32> = if key == "w" {
                (0..12).map(|i| (0.37 * i as f64).sin() as f32).collect()
            } else {
                (0..4).map(|j| (0.5 * j as f64).cos() as f32).collect()
            };
            assert!(ours.iter().zip(&start).any(|(a, s)| a != s), "{name}: {key} did not move");
            for (i, (&a, &e)) in ours.iter().zip(&theirs).enumerate() {
                let tol = 1e-5 * e.abs() + 1e-7;
                assert!((a as f64 - e).abs() <= tol, "{name}: {key}[{i}] = {a}, torch.optim gives {e}");
            }
        }
    }
}
