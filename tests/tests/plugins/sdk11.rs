//! A plugin built with SDK 1.1 runs in the current host with everything 1.1 added: a loss term,
//! skipped steps, a stop after the batch, a replaced batch with soft targets, the optimizer and
//! model services, tensor state that resumes exactly, a scorer's own direction, and errors that
//! keep their kind (`tests/plugins/sdk11`).

use std::path::{Path, PathBuf};
use tch::Tensor;
use torchfit_tests::{plugin_library, read_json, temp_dir, train_digits};

fn sdk11() -> PathBuf {
    plugin_library("torchfit-testplugin-sdk11", "torchfit_testplugin_sdk11")
}

/// `train_digits` with the SDK 1.1 test plugin loaded, `max_epochs` epochs, and `sets`.
fn train(max_epochs: usize, sets: &[&str], out: Option<&Path>) -> std::process::Output {
    let plugins = format!("plugins=[{:?}]", sdk11().display().to_string());
    let epochs = format!("max_epochs={max_epochs}");
    let all: Vec<&str> = [epochs.as_str(), plugins.as_str()].into_iter().chain(sets.iter().copied()).collect();
    train_digits(&all, out, &[])
}

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A run's model tensors, by name in name order.
fn model(run: &Path) -> Vec<(String, Tensor)> {
    let mut tensors = Tensor::read_safetensors(run.join("model.safetensors")).unwrap();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

/// The sum of |w| over the weight matrices of a run's model.
fn weights_l1(run: &Path) -> f64 {
    Tensor::read_safetensors(run.join("model.safetensors"))
        .unwrap()
        .iter()
        .filter(|(n, _)| n.ends_with("weight"))
        .map(|(_, t)| t.abs().sum(tch::Kind::Double).double_value(&[]))
        .sum()
}

#[test]
fn a_loss_term_from_a_plugin_is_differentiated_and_recorded_in_the_loss() {
    let dir = temp_dir("sdk11-l1");
    let (plain, penalized) = (dir.join("plain"), dir.join("penalized"));
    ok(&train(3, &[], Some(&plain)));
    ok(&train(3, &["callbacks__l1__type=l1_penalty", "callbacks__l1__coef=0.001"], Some(&penalized)));
    let (a, b) = (weights_l1(&plain), weights_l1(&penalized));
    assert!(b < 0.8 * a, "an L1 penalty shrinks the weights: {b} against {a}");
    let history = read_json(&penalized.join("history.json"));
    let batch = &history[0]["batches"][0];
    let term = batch["l1_term"].as_f64().unwrap();
    assert!(term > 0.0 && batch["train_loss"].as_f64().unwrap() > term, "the recorded loss includes the term: {batch}");
}

#[test]
fn skipped_steps_leave_the_parameters_as_initialized() {
    let dir = temp_dir("sdk11-skip");
    let init = dir.join("init");
    ok(&train(0, &[], Some(&init)));
    for (name, early) in [("late", "false"), ("early", "true")] {
        let run = dir.join(name);
        let early = format!("callbacks__skip__early={early}");
        ok(&train(2, &["callbacks__skip__type=skip_steps", &early], Some(&run)));
        let (a, b) = (model(&init), model(&run));
        assert_eq!(a.len(), 6);
        for ((n, x), (m, y)) in a.iter().zip(&b) {
            assert_eq!(n, m);
            assert!(x.equal(y), "{name}: {n} changed although every step was skipped");
        }
    }
}

#[test]
fn a_stop_after_the_batch_cuts_the_epoch_there_and_still_ends_the_run() {
    let run = temp_dir("sdk11-stop").join("run");
    let o = train(
        5,
        &["callbacks__stop__type=stop_now", "callbacks__stop__epoch=2", "callbacks__stop__batch=3"],
        Some(&run),
    );
    ok(&o);
    let history = read_json(&run.join("history.json"));
    let epochs = history.as_array().unwrap();
    assert_eq!(epochs.len(), 2, "no epoch after the stop");
    let cut = &epochs[1];
    let batches = cut["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 4, "training batches 0..=3 ran, no validation batch");
    assert!(batches.iter().all(|b| b.get("train_loss").is_some() && b.get("valid_loss").is_none()));
    assert!(cut.get("valid_loss").is_none() && cut.get("dur").is_none(), "no on_epoch_end for the cut epoch: {cut}");
    assert_eq!(cut["train_end_ran"], true, "on_train_end ran");
    assert!(run.join("train_end_params.safetensors").exists(), "the run directory is complete");
}

#[test]
fn a_run_stopped_after_a_batch_resumes_from_the_epoch_boundary_before_the_cut() {
    // A time-budget callback stops in epoch 3; --resume must replay epoch 3 whole, not take the
    // cut epoch (counted in the history of the mid-epoch state) as done.
    let dir = temp_dir("sdk11-stop-resume");
    let (straight, cut) = (dir.join("straight"), dir.join("cut"));
    let never = ["callbacks__stop__type=stop_now", "callbacks__stop__epoch=99"];
    ok(&train(5, &never, Some(&straight)));
    ok(&train(
        5,
        &["callbacks__stop__type=stop_now", "callbacks__stop__epoch=3", "callbacks__stop__batch=4"],
        Some(&cut),
    ));
    assert_eq!(
        read_json(&cut.join("train_end_history.json")).as_array().unwrap().len(),
        2,
        "the boundary before the cut"
    );
    let plugins = format!("plugins=[{:?}]", sdk11().display().to_string());
    let mut args = vec!["train", "examples/digits/config.toml", "--out", cut.to_str().unwrap(), "--resume"];
    for s in ["max_epochs=5", plugins.as_str(), never[0], never[1]] {
        args.extend(["--set", s]);
    }
    ok(&torchfit_tests::torchfit_env(&args, &[]));
    assert_eq!(torchfit_tests::history_without(&cut, &["dur"]), torchfit_tests::history_without(&straight, &["dur"]));
    assert_eq!(
        std::fs::read(cut.join("model.safetensors")).unwrap(),
        std::fs::read(straight.join("model.safetensors")).unwrap()
    );
}

#[test]
fn a_replaced_batch_trains_on_soft_targets() {
    let run = temp_dir("sdk11-mixup").join("run");
    ok(&train(2, &["callbacks__mix__type=mixup", "callbacks__mix__lam=0.7"], Some(&run)));
    let history = read_json(&run.join("history.json"));
    let batches = history[1]["batches"].as_array().unwrap();
    assert!(batches.iter().filter(|b| b.get("train_loss").is_some()).all(|b| b["soft_targets"] == true));
    let loss = history[1]["train_loss"].as_f64().unwrap();
    assert!(loss.is_finite() && loss > 0.0 && loss < 2.3, "train_loss {loss}");
}

#[test]
fn the_services_read_and_set_the_optimizer_and_run_the_model() {
    let run = temp_dir("sdk11-probe").join("run");
    ok(&train(1, &["callbacks__probe={}"], Some(&run)));
    let e = &read_json(&run.join("history.json"))[0];
    assert_eq!(e["probe_momentum"], 0.5, "set at train begin, read at epoch end");
    let names: Vec<&str> =
        e["probe_group_parameters"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(names.len(), 6, "three layers of weight and bias: {names:?}");
    assert!(names.iter().all(|n| n.ends_with("weight") || n.ends_with("bias")));
    assert!(e["probe_optimizer_state"].as_u64().unwrap() >= 6, "momentum buffers and steps: {e}");
    assert_eq!(e["probe_buffers"], 0);
    assert_eq!(e["probe_state_dict"], 6);
    assert_eq!(e["probe_device"], "Cpu");
    assert_eq!(e["probe_process"], serde_json::json!({"rank": 0, "world_size": 1, "local_rank": 0}), "SDK 1.2");
    assert_eq!(e["probe_forward_repeats"], true);
    assert_eq!(e["probe_forward_grad"], true);
    assert!(e["probe_betas_error"].as_str().unwrap().contains("betas"));
    // The momentum the callback set is the optimizer's, so the checkpoint keeps it.
    let state = Tensor::read_safetensors(run.join("train_end_optimizer.safetensors")).unwrap();
    let (_, momentum) = state.iter().find(|(n, _)| n == "group0.momentum").expect("group0.momentum saved");
    assert_eq!(momentum.double_value(&[]), 0.5);
    // SDK 1.4 in full precision without accumulation: no scaler, no `stepped` records.
    assert_eq!(e["probe_grad_scaler"], serde_json::Value::Null);
    assert_eq!(e["probe_first_batch_size"], 32);
    assert_eq!(e["probe_first_stepped"], serde_json::Value::Null);
}

#[test]
fn a_plugin_reads_the_gradient_scaler_and_which_batches_stepped_across_the_boundary() {
    let run = temp_dir("sdk14-probe").join("run");
    ok(&train(1, &["callbacks__probe={}", "precision=\"16-mixed\"", "accumulate_grad_batches=2"], Some(&run)));
    let e = &read_json(&run.join("history.json"))[0];
    let stepped = e["batches"].as_array().unwrap().iter().filter(|b| b["stepped"] == true).count() as i64;
    assert_eq!(e["probe_grad_scaler"], serde_json::json!({"scale": 65536.0, "growth_tracker": stepped}), "SDK 1.4");
    assert_eq!(e["probe_first_stepped"], false, "the first batch of a group of two only accumulates");
    assert_eq!(e["probe_first_batch_size"], 32);
}

#[test]
fn tensor_state_resumes_exactly() {
    let dir = temp_dir("sdk11-resume");
    let (straight, resumed) = (dir.join("straight"), dir.join("resumed"));
    let sets = ["callbacks__avg__type=running_mean"];
    ok(&train(4, &sets, Some(&straight)));
    ok(&train(2, &sets, Some(&resumed)));
    assert!(resumed.join("train_end_callbacks.safetensors").exists());
    let plugins = format!("plugins=[{:?}]", sdk11().display().to_string());
    let o = torchfit_tests::torchfit_env(
        &[
            "train",
            "examples/digits/config.toml",
            "--set",
            "max_epochs=4",
            "--set",
            &plugins,
            "--set",
            sets[0],
            "--out",
            resumed.to_str().unwrap(),
            "--resume",
        ],
        &[],
    );
    ok(&o);
    let column = |run: &Path| -> Vec<String> {
        read_json(&run.join("history.json")).as_array().unwrap().iter().map(|e| e["ema_l1"].to_string()).collect()
    };
    assert_eq!(column(&resumed), column(&straight), "the moving average continues bit for bit");
}

#[test]
fn a_scorer_that_declares_its_direction_needs_no_lower_is_better() {
    let scoring = plugin_library("torchfit-plugin-scoring", "torchfit_plugin_scoring");
    let run = temp_dir("sdk11-scorer").join("run");
    let plugins = format!("plugins=[{:?}, {:?}]", sdk11().display().to_string(), scoring.display().to_string());
    let o = train_digits(
        &["max_epochs=4", &plugins, "callbacks__mae__type=epoch_scoring", "callbacks__mae__scoring=mean_abs_error"],
        Some(&run),
        &[],
    );
    ok(&o);
    let history = read_json(&run.join("history.json"));
    let (mut best, mut seen) = (f64::INFINITY, 0);
    for e in history.as_array().unwrap() {
        let v = e["mae"].as_f64().unwrap();
        assert_eq!(e["mae_best"], v < best, "lower is better: {e}");
        best = best.min(v);
        seen += 1;
    }
    assert_eq!(seen, 4);
}

#[test]
fn a_missing_file_in_a_plugin_reader_exits_2_as_in_a_stock_reader() {
    let dir = temp_dir("sdk11-reader");
    let plugins = format!("plugins=[{:?}]", sdk11().display().to_string());
    let missing = dir.join("missing.txt");
    let plugin = train_digits(&[&plugins, "dataset={name = \"lines\", path = \"/no/such/lines.txt\"}"], None, &[]);
    let stock = train_digits(&[&format!("dataset__path={:?}", missing.display().to_string())], None, &[]);
    for (what, o) in [("plugin", &plugin), ("stock", &stock)] {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{what}: {err}");
    }
    assert!(String::from_utf8_lossy(&plugin.stderr).contains("/no/such/lines.txt"));
}

#[test]
fn a_plugin_reader_is_told_each_passs_stage_and_names_its_samples_across_the_boundary() {
    let dir = temp_dir("sdk13-reader");
    let data = dir.join("lines.txt");
    let text: String = (0..200).map(|i| format!("{},{}\n", i as f32 / 200.0, (i >= 100) as i64)).collect();
    std::fs::write(&data, text).unwrap();
    let run = dir.join("run");
    let dataset = format!("dataset={{name = \"lines\", path = {:?}}}", data.display().to_string());
    ok(&train(2, &[&dataset], Some(&run)));
    let predict = |sets: &[&str]| {
        let mut args = vec!["predict", run.to_str().unwrap(), "--logits"];
        sets.iter().for_each(|s| args.extend(["--set", s]));
        let o = torchfit_tests::torchfit_env(&args, &[]);
        ok(&o);
        String::from_utf8(o.stdout).unwrap()
    };
    let plain = predict(&[]);
    assert!(plain.lines().nth(1).unwrap().starts_with("line 1,"), "the reader's names are the ids: {plain}");
    assert_eq!(plain.lines().count(), 201);
    // Prediction is an evaluation pass: the plugin's shift of evaluation samples applies.
    assert_ne!(predict(&["dataset__eval_offset=1000.0"]), plain, "the stage reached the plugin");
    // Training on the shifted reader: the validation loss sees the shift, the training loss not.
    let shifted = dir.join("shifted");
    let eval_shifted =
        format!("dataset={{name = \"lines\", path = {:?}, eval_offset = 1000.0}}", data.display().to_string());
    ok(&train(1, &[&eval_shifted], Some(&shifted)));
    let (a, b) = (read_json(&run.join("history.json")), read_json(&shifted.join("history.json")));
    assert_eq!(a[0]["train_loss"], b[0]["train_loss"], "training samples are not shifted");
    assert_ne!(a[0]["valid_loss"], b[0]["valid_loss"], "validation samples are");
}

#[test]
fn a_libtorch_error_in_a_plugin_criterion_is_one_line_naming_the_component() {
    let plugins = format!("plugins=[{:?}]", sdk11().display().to_string());
    let o = train_digits(&["max_epochs=1", &plugins, "criterion__name=bad_shape"], None, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.trim_end().lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("criterion `bad_shape`") && lines[0].contains("is invalid"), "{err}");
}
