//! Every learning-rate policy gives `torch.optim.lr_scheduler`'s sequence for the same settings
//! (computed by the venv's PyTorch), over 60 steps, and so does the momentum (or Adam's beta1)
//! that `CyclicLR` and `OneCycleLR` cycle; through the binary, the stock `lr_scheduler` sets them
//! on the optimizer at every step of a run.

use torchfit_plugin_lr_scheduler::plateau::{Plateau, PlateauConfig};
use torchfit_plugin_lr_scheduler::policy::Policy;

const STEPS: usize = 60;
const BASE: f64 = 0.1;

/// (name, torchfit policy as JSON, torch scheduler constructor call on `opt`)
const CASES: &[(&str, &str, &str)] = &[
    ("step", r#"{"policy": "StepLR", "step_size": 7, "gamma": 0.5}"#, "StepLR(opt, step_size=7, gamma=0.5)"),
    ("multistep", r#"{"policy": "MultiStepLR", "milestones": [5, 17, 40]}"#, "MultiStepLR(opt, milestones=[5, 17, 40])"),
    ("exponential", r#"{"policy": "ExponentialLR", "gamma": 0.93}"#, "ExponentialLR(opt, gamma=0.93)"),
    ("cosine", r#"{"policy": "CosineAnnealingLR", "t_max": 25, "eta_min": 0.001}"#, "CosineAnnealingLR(opt, T_max=25, eta_min=0.001)"),
    ("warm_restart", r#"{"policy": "WarmRestart", "t_0": 5, "t_mult": 2, "eta_min": 0.002}"#, "CosineAnnealingWarmRestarts(opt, T_0=5, T_mult=2, eta_min=0.002)"),
    ("cyclic", r#"{"policy": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1, "step_size_up": 6}"#, "CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=6, cycle_momentum=False)"),
    ("cyclic2", r#"{"policy": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1, "step_size_up": 4, "step_size_down": 7, "mode": "triangular2"}"#, "CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=4, step_size_down=7, mode='triangular2', cycle_momentum=False)"),
    ("cyclic_exp", r#"{"policy": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1, "step_size_up": 5, "mode": "exp_range", "gamma": 0.97}"#, "CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=5, mode='exp_range', gamma=0.97, cycle_momentum=False)"),
    ("onecycle", r#"{"policy": "OneCycleLR", "max_lr": 0.5, "total_steps": 61}"#, "OneCycleLR(opt, max_lr=0.5, total_steps=61, cycle_momentum=False)"),
    ("onecycle_linear3", r#"{"policy": "OneCycleLR", "max_lr": 0.5, "total_steps": 61, "anneal_strategy": "linear", "three_phase": true, "pct_start": 0.25}"#, "OneCycleLR(opt, max_lr=0.5, total_steps=61, anneal_strategy='linear', three_phase=True, pct_start=0.25, cycle_momentum=False)"),
];

/// A validation loss that improves, then stalls, then improves a little.
fn metric(i: usize) -> f64 {
    if i < 10 {
        1.0 - 0.05 * i as f64
    } else if i < 30 {
        0.55 + 0.01 * ((i % 3) as f64)
    } else {
        0.55 - 0.00001 * i as f64
    }
}

const PYTHON: &str = r#"
import json, sys, torch
from torch.optim.lr_scheduler import *
req = json.loads(sys.stdin.read())
out = {}
for name, ctor in req["cases"]:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=req["base"])
    sched = eval(ctor)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(req["steps"]):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    out[name] = lrs
p = torch.nn.Parameter(torch.zeros(1))
opt = torch.optim.SGD([p], lr=req["base"])
sched = ReduceLROnPlateau(opt, patience=3, factor=0.5, cooldown=2, min_lr=0.004)
lrs = []
for m in req["metric"]:
    opt.step()
    sched.step(m)
    lrs.append(opt.param_groups[0]["lr"])
out["plateau"] = lrs
for name, opt_ctor, ctor in req["momentum_cases"]:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = eval(opt_ctor)
    sched = eval(ctor)
    group = opt.param_groups[0]
    seen = []
    for _ in range(req["steps"] + 1):
        seen.append([group["lr"], group["betas"][0] if "betas" in group else group["momentum"]])
        opt.step()
        sched.step()
    out[name] = seen
print(json.dumps(out))
"#;

/// (name, torchfit policy as JSON, torch optimizer on `p`, torch scheduler on `opt`): policies
/// that cycle the momentum (SGD's) or beta1 (Adam's, AdamW's), torch's default.
const MOMENTUM_CASES: &[(&str, &str, &str, &str)] = &[
    (
        "cyclic_sgd",
        r#"{"policy": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1, "step_size_up": 6}"#,
        "torch.optim.SGD([p], lr=0.1, momentum=0.9)",
        "CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=6)",
    ),
    (
        "cyclic2_adam",
        r#"{"policy": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1, "step_size_up": 4, "step_size_down": 7, "mode": "triangular2", "base_momentum": 0.7, "max_momentum": 0.95}"#,
        "torch.optim.Adam([p], lr=0.1)",
        "CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=4, step_size_down=7, mode='triangular2', base_momentum=0.7, max_momentum=0.95)",
    ),
    (
        "onecycle_adamw",
        r#"{"policy": "OneCycleLR", "max_lr": 0.01, "total_steps": 61}"#,
        "torch.optim.AdamW([p], lr=0.001)",
        "OneCycleLR(opt, max_lr=0.01, total_steps=61)",
    ),
    (
        "onecycle3_sgd",
        r#"{"policy": "OneCycleLR", "max_lr": 0.5, "total_steps": 61, "anneal_strategy": "linear", "three_phase": true, "pct_start": 0.25}"#,
        "torch.optim.SGD([p], lr=0.1, momentum=0.9)",
        "OneCycleLR(opt, max_lr=0.5, total_steps=61, anneal_strategy='linear', three_phase=True, pct_start=0.25)",
    ),
];

#[test]
fn every_policy_matches_torch_optim_lr_scheduler() {
    let cases: Vec<(&str, &str)> = CASES.iter().map(|(n, _, c)| (*n, *c)).collect();
    let metrics: Vec<f64> = (0..STEPS).map(metric).collect();
    let momentum_cases: Vec<(&str, &str, &str)> = MOMENTUM_CASES.iter().map(|(n, _, o, c)| (*n, *o, *c)).collect();
    let request = serde_json::json!({"cases": cases, "momentum_cases": momentum_cases, "base": BASE, "steps": STEPS, "metric": metrics});
    let reference = super::python_json(PYTHON, &request, "torch.optim.lr_scheduler");
    let close = |a: f64, e: f64| (a - e).abs() <= 1e-9 * e.abs() + 1e-12;

    for (name, json, _) in CASES {
        let policy: Policy = serde_json::from_str(json).unwrap();
        let base = policy.overrides_base().unwrap_or(BASE);
        let theirs: Vec<f64> = reference[name].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(theirs.len(), STEPS + 1);
        for (step, &e) in theirs.iter().enumerate() {
            let a = policy.lr(base, step as u64);
            assert!(close(a, e), "{name}: step {step}: torchfit {a}, torch {e}");
        }
    }

    for (name, json, _, _) in MOMENTUM_CASES {
        let policy: Policy = serde_json::from_str(json).unwrap();
        let base = policy.overrides_base().unwrap();
        let theirs = reference[name].as_array().unwrap();
        for (step, pair) in theirs.iter().enumerate() {
            let (lr, momentum) = (pair[0].as_f64().unwrap(), pair[1].as_f64().unwrap());
            let (a, m) = (policy.lr(base, step as u64), policy.momentum(step as u64).unwrap());
            assert!(close(a, lr), "{name}: step {step}: lr torchfit {a}, torch {lr}");
            assert!(close(m, momentum), "{name}: step {step}: momentum torchfit {m}, torch {momentum}");
        }
    }

    let cfg: PlateauConfig =
        serde_json::from_value(serde_json::json!({"patience": 3, "factor": 0.5, "cooldown": 2, "min_lr": 0.004}))
            .unwrap();
    let mut plateau = Plateau::default();
    let mut lr = BASE;
    let theirs: Vec<f64> = reference["plateau"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let mut reductions = 0;
    for (i, &e) in theirs.iter().enumerate() {
        let next = plateau.step(&cfg, metric(i), &[lr])[0];
        reductions += (next < lr) as usize;
        lr = next;
        assert!(close(lr, e), "plateau: epoch {i}: torchfit {lr}, torch {e}");
    }
    assert!(reductions >= 2, "the metric should trigger several reductions, got {reductions}");
}

#[test]
fn one_cycle_on_adamw_sets_torchs_lr_and_beta1_at_every_step_of_a_run() {
    // 2 epochs of 36 training batches: 72 steps, given as torch's total_steps, as its epochs and
    // steps_per_epoch, or not at all (the run's own length).
    let script = "import json, torch\n\
        p = torch.nn.Parameter(torch.zeros(1))\n\
        opt = torch.optim.AdamW([p], lr=0.001)\n\
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, epochs=2, steps_per_epoch=36)\n\
        seen = []\n\
        for i in range(73):\n    g = opt.param_groups[0]\n    seen.append([g['lr'], g['betas'][0]])\n    if i < 72:\n        opt.step()\n        sched.step()\n\
        print(json.dumps(seen))";
    let py = super::python_json(script, &serde_json::Value::Null, "torch.optim.lr_scheduler.OneCycleLR");
    let torch: Vec<(f64, f64)> =
        serde_json::from_value::<Vec<[f64; 2]>>(py).unwrap().into_iter().map(|[a, b]| (a, b)).collect();
    let lib = torchfit_tests::plugin_library("torchfit-plugin-lr-scheduler", "torchfit_plugin_lr_scheduler");
    let plugins = format!("plugins=[{:?}]", lib.display().to_string());
    for (i, length) in ["total_steps = 72, ", "epochs = 2, steps_per_epoch = 36, ", ""].into_iter().enumerate() {
        let run = torchfit_tests::temp_dir(&format!("onecycle-adamw-{i}")).join("run");
        let sched = format!(
            "callbacks__sched={{type = \"lr_scheduler\", policy = \"OneCycleLR\", max_lr = 0.01, {length}step_every = \"batch\"}}"
        );
        let sets = ["max_epochs=2", &plugins, "optimizer={name = \"adamw\", lr = 0.001}", &sched];
        let o = torchfit_tests::train_digits(&sets, Some(&run), &[]);
        assert!(o.status.success(), "{length}: {}", String::from_utf8_lossy(&o.stderr));
        let history = torchfit_tests::read_json(&run.join("history.json"));
        let used: Vec<(f64, f64)> = history
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|e| e["batches"].as_array().unwrap().clone())
            .filter(|b| b.get("event_lr").is_some())
            .map(|b| (b["event_lr"].as_f64().unwrap(), b["event_momentum"].as_f64().unwrap()))
            .collect();
        assert_eq!(used.len(), 72, "{length}");
        for (step, ((lr, beta1), (t_lr, t_beta1))) in used.iter().zip(&torch).enumerate() {
            assert!(
                (lr - t_lr).abs() < 1e-12 && (beta1 - t_beta1).abs() < 1e-12,
                "{length}step {step}: ({lr}, {beta1}) against torch's ({t_lr}, {t_beta1})"
            );
        }
        // The optimizer trained with them: its checkpoint holds the beta1 set after the last step.
        let state = tch::Tensor::read_safetensors(run.join("train_end_optimizer.safetensors")).unwrap();
        let (_, betas) = state.iter().find(|(n, _)| n == "group0.betas").expect("group0.betas saved");
        assert!((betas.double_value(&[0]) - torch[72].1).abs() < 1e-12, "{length}");
    }
}

#[test]
fn one_cycle_under_gradient_accumulation_steps_once_per_optimizer_step() {
    // 2 epochs of 36 training batches in groups of 2: 36 optimizer steps, the run's own length.
    let script = "import json, torch\n\
        p = torch.nn.Parameter(torch.zeros(1))\n\
        opt = torch.optim.SGD([p], lr=0.001)\n\
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=36, cycle_momentum=False)\n\
        seen = []\n\
        for i in range(36):\n    seen.append(opt.param_groups[0]['lr'])\n    opt.step()\n    sched.step()\n\
        print(json.dumps(seen))";
    let torch: Vec<f64> =
        serde_json::from_value(super::python_json(script, &serde_json::Value::Null, "OneCycleLR")).unwrap();
    let lib = torchfit_tests::plugin_library("torchfit-plugin-lr-scheduler", "torchfit_plugin_lr_scheduler");
    let plugins = format!("plugins=[{:?}]", lib.display().to_string());
    let run = torchfit_tests::temp_dir("onecycle-accumulated").join("run");
    let sched = "callbacks__sched={type = \"lr_scheduler\", policy = \"OneCycleLR\", max_lr = 0.01, \
                 cycle_momentum = false, step_every = \"batch\"}";
    let sets = ["max_epochs=2", &plugins, "optimizer={name = \"sgd\", lr = 0.001}", "accumulate_grad_batches=2", sched];
    let o = torchfit_tests::train_digits(&sets, Some(&run), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let history = torchfit_tests::read_json(&run.join("history.json"));
    let batches: Vec<serde_json::Value> =
        history.as_array().unwrap().iter().flat_map(|e| e["batches"].as_array().unwrap().clone()).collect();
    // The learning rate of each optimizer step: the one recorded at the group's last batch.
    let stepped: Vec<f64> =
        batches.iter().filter(|b| b["stepped"] == true).map(|b| b["event_lr"].as_f64().unwrap()).collect();
    assert_eq!(stepped.len(), 36);
    for (step, (lr, t)) in stepped.iter().zip(&torch).enumerate() {
        assert!((lr - t).abs() < 1e-12, "step {step}: {lr} against torch's {t}");
    }
    // Both batches of a group train at the same rate.
    let inner: Vec<f64> =
        batches.iter().filter(|b| b["stepped"] == false).map(|b| b["event_lr"].as_f64().unwrap()).collect();
    assert_eq!(inner, stepped);
}
