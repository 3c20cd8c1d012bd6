//! Stock callbacks through the binary, loaded from their libraries: early stopping, freezing,
//! gradient clipping (observed by the third-party grad_norm plugin).

use std::path::Path;
use torchfit_tests::{plugin_dir, plugin_library, read_json, temp_dir, torchfit_env};

fn train(out: &Path, sets: &[&str], env: &[(&str, &str)]) {
    let mut args = vec!["train", "examples/digits/config.toml", "--out", out.to_str().unwrap()];
    for s in sets {
        args.extend(["--set", s]);
    }
    let o = torchfit_env(&args, env);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn early_stopping_ends_the_run_when_the_validation_loss_stalls() {
    plugin_library("torchfit-plugin-early-stopping", "torchfit_plugin_early_stopping");
    let out = temp_dir("es").join("run");
    train(&out, &["max_epochs=60", "callbacks__es__type=early_stopping", "callbacks__es__patience=3"], &[]);
    let h = read_json(&out.join("history.json"));
    let epochs = h.as_array().unwrap();
    assert!(epochs.len() < 60, "stopped early");
    // The last `patience` epochs did not improve on the best by the threshold.
    let best =
        epochs[..epochs.len() - 3].iter().map(|e| e["valid_loss"].as_f64().unwrap()).fold(f64::INFINITY, f64::min);
    for e in &epochs[epochs.len() - 3..] {
        assert!(e["valid_loss"].as_f64().unwrap() >= best * (1.0 - 1e-4));
    }
}

#[test]
fn frozen_parameters_keep_their_initial_values() {
    plugin_library("torchfit-plugin-freezer", "torchfit_plugin_freezer");
    let root = temp_dir("freeze");
    let (init, trained) = (root.join("init"), root.join("trained"));
    train(&init, &["max_epochs=0"], &[]);
    train(&trained, &["max_epochs=3", "callbacks__fr__type=freezer", "callbacks__fr__patterns=[\"hidden.0.*\"]"], &[]);
    let load = |run: &Path| tch::Tensor::read_safetensors(run.join("model.safetensors")).unwrap();
    let (a, b) = (load(&init), load(&trained));
    let get = |v: &[(String, tch::Tensor)], n: &str| v.iter().find(|(k, _)| k == n).unwrap().1.shallow_clone();
    assert!(get(&a, "hidden.0.weight").equal(&get(&b, "hidden.0.weight")), "frozen layer changed");
    assert!(get(&a, "hidden.0.bias").equal(&get(&b, "hidden.0.bias")));
    assert!(!get(&a, "hidden.1.weight").equal(&get(&b, "hidden.1.weight")), "other layers train");
}

#[test]
fn clipping_bounds_the_gradient_norm_seen_by_later_callbacks() {
    plugin_library("torchfit-plugin-clipping", "torchfit_plugin_clipping");
    let dir =
        plugin_dir("clip-grad-norm", &plugin_library("custom-callback", "custom_callback"), "libcustom_callback.so");
    let out = temp_dir("clip").join("run");
    let env = [("TORCHFIT_PLUGIN_PATH", dir.to_str().unwrap())];
    train(
        &out,
        &[
            "max_epochs=2",
            "callbacks__clip__type=gradient_norm_clipping",
            "callbacks__clip__max_norm=0.05",
            "callbacks__grad_norm__key=grad_norm",
        ],
        &env,
    );
    let h = read_json(&out.join("history.json"));
    let norms: Vec<f64> = h
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| {
            e["batches"].as_array().unwrap().iter().filter_map(|b| b["grad_norm"].as_f64()).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(norms.len(), 72);
    assert!(norms.iter().all(|&n| n <= 0.05 * (1.0 + 1e-4)), "max {:?}", norms.iter().cloned().fold(0.0, f64::max));
    assert!(norms.iter().any(|&n| n > 0.049), "the limit is reached, not undershot");
}

#[test]
fn the_csv_logger_and_the_plot_write_into_the_run_directory() {
    for (package, stem) in [
        ("torchfit-plugin-logging", "torchfit_plugin_logging"),
        ("torchfit-plugin-checkpoint", "torchfit_plugin_checkpoint"),
    ] {
        plugin_library(package, stem);
    }
    let dir =
        plugin_dir("csv-grad-norm", &plugin_library("custom-callback", "custom_callback"), "libcustom_callback.so");
    let out = temp_dir("logging").join("run");
    // The logger comes before the checkpoint, which records `event_cp` in the same on_epoch_end.
    train(
        &out,
        &[
            "max_epochs=3",
            "callbacks__csv__type=csv_logger",
            "callbacks__csv__batches=batches.csv",
            "callbacks__csv__separator=;",
            "callbacks__cp__type=checkpoint",
            "callbacks__grad_norm__key=grad_norm",
            "callbacks__plot__type=plot_history",
        ],
        &[("TORCHFIT_PLUGIN_PATH", dir.to_str().unwrap())],
    );
    let csv = std::fs::read_to_string(out.join("history.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "a header and one row per epoch");
    assert!(
        lines[0].starts_with("epoch;") && lines[0].contains("valid_acc") && !lines[0].contains("batches"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("event_cp"), "a key recorded after the logger's turn: {}", lines[0]);
    let batches = std::fs::read_to_string(out.join("batches.csv")).unwrap();
    assert_eq!(batches.lines().count(), 1 + 3 * (36 + 3));
    let header = batches.lines().next().unwrap();
    assert!(header.starts_with("epoch;phase;batch;") && header.contains("grad_norm"), "{header}");
    // The curves, written at every epoch's end: an SVG that names its series, a PNG that decodes.
    let svg = std::fs::read_to_string(out.join("training_curves.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for label in ["train_loss (batch)", "train_loss (moving average)", "valid_loss", "valid_acc", "event_cp"] {
        assert!(svg.contains(label), "the legend names {label}");
    }
    let png = image::open(out.join("training_curves.png")).unwrap();
    assert!(png.width() >= 1000 && png.height() >= 500, "{}x{}", png.width(), png.height());
}

#[test]
fn the_transfer_learning_example_gives_a_body_pretrained_on_other_digits_a_new_head() {
    for (package, stem) in [
        ("torchfit-plugin-checkpoint", "torchfit_plugin_checkpoint"),
        ("torchfit-plugin-freezer", "torchfit_plugin_freezer"),
        ("torchfit-plugin-lr-scheduler", "torchfit_plugin_lr_scheduler"),
    ] {
        plugin_library(package, stem);
    }
    let root = temp_dir("transfer");
    let (pre, fine, random) = (root.join("pretrained"), root.join("finetuned"), root.join("random"));
    let run = |config: &str, sets: &[&str], out: &Path| {
        let mut args = vec!["train", config, "--out", out.to_str().unwrap()];
        sets.iter().for_each(|s| args.extend(["--set", s]));
        let o = torchfit_env(&args, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        read_json(&out.join("history.json"))
    };
    run("examples/transfer-learning/pretrain.toml", &[], &pre);
    let config = "examples/transfer-learning/config.toml";
    let from = format!("callbacks__pretrained__dirname={}", pre.display());
    let h = run(config, &[from.as_str()], &fine);
    let load = |run: &Path| tch::Tensor::read_safetensors(run.join("model.safetensors")).unwrap();
    let get = |v: &[(String, tch::Tensor)], n: &str| v.iter().find(|(k, _)| k == n).unwrap().1.shallow_clone();
    let (a, b) = (load(&pre), load(&fine));
    assert!(get(&a, "hidden.0.weight").equal(&get(&b, "hidden.0.weight")), "the body stays pretrained");
    assert_eq!(get(&a, "output.weight").size(), [6, 64], "pretrained on six digits");
    assert_eq!(get(&b, "output.weight").size(), [4, 64], "a new head for the four others");
    let epochs = h.as_array().unwrap();
    assert_eq!(epochs.len(), 10);
    assert!((epochs[7]["event_lr"].as_f64().unwrap() - 0.01).abs() < 1e-12, "StepLR decayed after 7 epochs");
    assert!(epochs.iter().any(|e| e["event_cp"] == true));
    // The same run on a random frozen body starts lower: the pretrained features carry over.
    let r = run(config, &["callbacks__pretrained=false"], &random);
    let first = |h: &serde_json::Value| h[0]["valid_acc"].as_f64().unwrap();
    assert!(first(&h) > first(&r), "pretrained {} vs random {}", first(&h), first(&r));
}

#[test]
fn one_cycle_past_its_total_steps_ends_the_run_naming_the_key_and_keeps_its_epochs() {
    plugin_library("torchfit-plugin-lr-scheduler", "torchfit_plugin_lr_scheduler");
    let out = temp_dir("onecycle-past").join("run");
    let sched = "callbacks__lr={type = \"lr_scheduler\", policy = \"OneCycleLR\", max_lr = 0.1, total_steps = 2}";
    let args = ["train", "examples/digits/config.toml", "--set", "max_epochs=4", "--set", sched];
    let o = torchfit_env(&[&args[..], &["--out", out.to_str().unwrap()]].concat(), &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("total_steps") && stderr.contains("stepped 3 times"), "{stderr}");
    // As torch raises in the third epoch's scheduler.step(), after its training: the three
    // epochs trained are in the run directory.
    let epochs = read_json(&out.join("history.json")).as_array().unwrap().len();
    assert_eq!(epochs, 3, "{stderr}");
}

/// `torchfit train` on the digits with the weight-averaging plugin and `sets`, into `out`, with
/// `--resume` when asked.
#[test]
fn clipping_and_ema_act_once_per_optimizer_step_under_gradient_accumulation() {
    plugin_library("torchfit-plugin-clipping", "torchfit_plugin_clipping");
    let averaging = plugin_library("torchfit-plugin-weight-averaging", "torchfit_plugin_weight_averaging");
    let norm = plugin_library("custom-callback", "custom_callback");
    let out = temp_dir("clip-accumulated").join("run");
    let plugins = format!("plugins=[{:?}, {:?}]", averaging.display().to_string(), norm.display().to_string());
    let sets = [
        "max_epochs=2",
        "accumulate_grad_batches=4",
        "callbacks__clip__type=gradient_norm_clipping",
        "callbacks__clip__max_norm=0.05",
        "callbacks__grad_norm__key=grad_norm",
        "callbacks__ema__type=ema",
        &plugins,
    ];
    train(&out, &sets, &[]);
    let h = read_json(&out.join("history.json"));
    let batches: Vec<&serde_json::Value> =
        h.as_array().unwrap().iter().flat_map(|e| e["batches"].as_array().unwrap()).collect();
    let stepped: Vec<bool> = batches.iter().filter_map(|b| b["stepped"].as_bool()).collect();
    assert_eq!(stepped.len(), 72);
    let steps = stepped.iter().filter(|s| **s).count();
    assert_eq!(steps, 2 * 9, "36 batches an epoch in groups of 4");
    // on_grad_computed (clipping, then the example's norm) once per step, after the group's last batch.
    for (b, s) in batches.iter().filter(|b| b.get("stepped").is_some()).zip(&stepped) {
        assert_eq!(b.get("grad_norm").is_some(), *s, "{b}");
    }
    let norms: Vec<f64> = batches.iter().filter_map(|b| b["grad_norm"].as_f64()).collect();
    assert!(norms.iter().all(|&n| n <= 0.05 * (1.0 + 1e-4)), "the group's gradient clipped: {norms:?}");
    assert_eq!(h[1]["averaged"], steps, "EMA updated once per optimizer step");
}

fn train_averaged(out: &Path, sets: &[&str], resume: bool) {
    let lib = plugin_library("torchfit-plugin-weight-averaging", "torchfit_plugin_weight_averaging");
    let plugins = format!("plugins=[{:?}]", lib.display().to_string());
    let mut args = vec!["train", "examples/digits/config.toml", "--set", &plugins, "--out", out.to_str().unwrap()];
    sets.iter().for_each(|s| args.extend(["--set", s]));
    if resume {
        args.push("--resume");
    }
    let o = torchfit_env(&args, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A run's model tensors, by name in name order.
fn model(run: &Path, file: &str) -> Vec<(String, tch::Tensor)> {
    let mut v = tch::Tensor::read_safetensors(run.join(file)).unwrap();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn ema_validates_on_its_average_becomes_the_model_and_resumes_exactly() {
    let dir = temp_dir("ema");
    let (straight, resumed, plain) = (dir.join("straight"), dir.join("resumed"), dir.join("plain"));
    let ema = ["callbacks__ema={type = \"ema\", decay = 0.9, validate = true}"];
    train_averaged(&straight, &[&["max_epochs=4"], &ema[..]].concat(), false);
    train_averaged(&resumed, &[&["max_epochs=2"], &ema[..]].concat(), false);
    train_averaged(&resumed, &[&["max_epochs=4"], &ema[..]].concat(), true);
    train_averaged(&plain, &["max_epochs=4"], false);
    let without_dur = |run: &Path| torchfit_tests::history_without(run, &["dur"]);
    assert_eq!(without_dur(&resumed), without_dur(&straight), "history, validation on the average included");
    let (a, b) = (model(&straight, "model.safetensors"), model(&resumed, "model.safetensors"));
    for ((n, x), (_, y)) in a.iter().zip(&b) {
        assert!(x.equal(y), "{n} differs after resuming");
    }
    // The model is the average: the checkpoint's `average/` tensors.
    let state = model(&straight, "train_end_callbacks.safetensors");
    for (n, x) in &a {
        let (_, avg) =
            state.iter().find(|(k, _)| *k == format!("ema/average/{n}")).expect("the average is checkpointed");
        assert!(x.equal(avg), "{n} is not the average");
    }
    // Validating on the average differs from validating on the model.
    let valid = |run: &Path| read_json(&run.join("history.json"))[3]["valid_loss"].as_f64().unwrap();
    assert_ne!(valid(&straight), valid(&plain));
}

#[test]
fn swa_averages_the_epochs_from_swa_start() {
    let run = temp_dir("swa").join("run");
    train_averaged(&run, &["max_epochs=5", "callbacks__swa={type = \"swa\", swa_start = 3}"], false);
    let history = read_json(&run.join("history.json"));
    let averaged: Vec<u64> = history.as_array().unwrap().iter().map(|e| e["averaged"].as_u64().unwrap()).collect();
    assert_eq!(averaged, [0, 0, 1, 2, 3], "epochs 3, 4 and 5 are averaged");
}
