//! The stock checkpoint plugin through the binary, loaded as a library like a third party's:
//! resuming in a new process equals training straight, and checkpoints land in the run directory.

use std::path::Path;
use torchfit_tests::{plugin_library, read_json, temp_dir, torchfit_env, train_digits};

/// Builds the stock plugin into the binary's folder, where the host finds it.
fn stock() {
    plugin_library("torchfit-plugin-checkpoint", "torchfit_plugin_checkpoint");
}

fn train(out: &Path, sets: &[&str]) {
    let mut args = vec!["train", "examples/digits/config.toml", "--out", out.to_str().unwrap()];
    for s in sets {
        args.extend(["--set", s]);
    }
    let o = torchfit_env(&args, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The whole history but the wall times.
fn losses(run: &Path) -> String {
    torchfit_tests::history_without(run, &["dur"])
}

fn params(run: &Path) -> Vec<(String, tch::Tensor)> {
    let mut p = tch::Tensor::read_safetensors(run.join("model.safetensors")).unwrap();
    p.sort_by(|a, b| a.0.cmp(&b.0));
    p
}

#[test]
fn resuming_in_a_new_process_equals_training_straight() {
    stock();
    let root = temp_dir("cp-resume");
    let (straight, first, second) = (root.join("straight"), root.join("first"), root.join("second"));
    train(&straight, &["max_epochs=6"]);
    // The plugins' own folder, apart from the checkpoint every run directory ends with.
    train(
        &first,
        &["max_epochs=3", "callbacks__end__type=train_end_checkpoint", "callbacks__end__dirname=plugin-ckpt"],
    );
    assert!(first.join("plugin-ckpt/train_end_optimizer.safetensors").exists());
    let from = format!("callbacks__load__dirname={}", first.join("plugin-ckpt").display());
    train(
        &second,
        &["max_epochs=3", "callbacks__load__type=load_init_state", &from, "callbacks__load__fn_prefix=train_end_"],
    );
    assert_eq!(losses(&second), losses(&straight));
    for ((na, a), (nb, b)) in params(&second).iter().zip(&params(&straight)) {
        assert_eq!(na, nb);
        assert!(a.equal(b), "{na} differs");
    }
}

#[test]
fn checkpoint_saves_the_best_epochs_into_the_run_directory() {
    stock();
    let run = temp_dir("cp-best").join("run");
    train(&run, &["max_epochs=8", "callbacks__cp__type=checkpoint", "callbacks__cp__dirname=checkpoints"]);
    let history = read_json(&run.join("history.json"));
    let epochs = history.as_array().unwrap();
    for e in epochs {
        assert_eq!(e["event_cp"], e["valid_loss_best"], "saved exactly on best epochs");
    }
    let saved = read_json(&run.join("checkpoints/history.json"));
    let last_best = epochs.iter().rposition(|e| e["valid_loss_best"] == true).unwrap();
    assert_eq!(saved.as_array().unwrap().len(), last_best + 1, "the checkpoint is the last best epoch's");
    let names: Vec<String> = tch::Tensor::read_safetensors(run.join("checkpoints/params.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(names.contains(&"hidden.0.weight".to_string()) && names.contains(&"output.bias".to_string()), "{names:?}");
}

#[test]
fn a_missing_monitor_key_is_an_error_naming_it() {
    stock();
    let run = temp_dir("cp-monitor").join("run");
    let o = train_digits(
        &["max_epochs=1", "callbacks__cp__type=checkpoint", "callbacks__cp__monitor=valid_f1_best"],
        Some(&run),
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("callback `cp`") && err.contains("valid_f1_best"), "{err}");
}

#[test]
fn pytorch_reads_the_checkpointed_params_with_the_models_names() {
    stock();
    let run = temp_dir("cp-python").join("run");
    train(&run, &["max_epochs=2", "callbacks__end__type=train_end_checkpoint"]);
    let file = run.join("train_end_params.safetensors");
    let script = "import json, sys\nfrom safetensors.torch import load_file\nd = load_file(sys.argv[1])\nprint(json.dumps({k: list(v.shape) for k, v in d.items()}))";
    let o = std::process::Command::new(torchfit_tests::python())
        .args(["-c", script, file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let shapes: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(shapes["hidden.0.weight"], serde_json::json!([128, 64]));
    assert_eq!(shapes["hidden.1.weight"], serde_json::json!([64, 128]));
    assert_eq!(shapes["output.weight"], serde_json::json!([10, 64]));
    assert_eq!(shapes["output.bias"], serde_json::json!([10]));
}

#[test]
fn resuming_with_adam_dropout_shuffling_and_a_per_batch_cyclic_rate_is_exact() {
    plugin_library("torchfit-plugin-lr-scheduler", "torchfit_plugin_lr_scheduler");
    let root = temp_dir("cp-cyclic");
    let (straight, resumed) = (root.join("straight"), root.join("resumed"));
    let run = |out: &Path, sets: &[&str]| {
        let mut args = vec!["train", "examples/resume-training/config.toml", "--out", out.to_str().unwrap()];
        args.extend_from_slice(sets);
        let o = torchfit_env(&args, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&straight, &[]);
    run(&resumed, &["--set", "max_epochs=3"]);
    run(&resumed, &["--resume"]);
    assert_eq!(losses(&resumed), losses(&straight));
    // The schedule continued: per-batch rates of epoch 4 are the same in both runs.
    let rates = |run: &Path| {
        read_json(&run.join("history.json"))[3]["batches"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b.get("event_lr").cloned())
            .collect::<Vec<_>>()
    };
    assert_eq!(rates(&resumed), rates(&straight));
    assert_eq!(rates(&straight).len(), 36);
    for ((na, a), (nb, b)) in params(&resumed).iter().zip(&params(&straight)) {
        assert_eq!(na, nb);
        assert!(a.equal(b), "{na} differs");
    }
}

#[test]
fn a_run_killed_mid_epoch_resumes_from_the_last_epoch_checkpoint_and_ends_identical() {
    stock();
    let faulty = plugin_library("torchfit-testplugin-faulty", "torchfit_testplugin_faulty");
    let root = temp_dir("cp-sigkill");
    let (straight, killed, resumed) = (root.join("straight"), root.join("killed"), root.join("resumed"));
    train(&straight, &["max_epochs=6"]);

    // Checkpoint every epoch; hang after the first batch of epoch 4, then SIGKILL.
    let plugins = format!("plugins=[{:?}]", faulty.display().to_string());
    let mut child = std::process::Command::new(torchfit_tests::torchfit_bin())
        .args(["train", "examples/digits/config.toml", "--out", killed.to_str().unwrap()])
        .args([
            "--set",
            "max_epochs=6",
            "--set",
            "callbacks__cp__type=checkpoint",
            "--set",
            "callbacks__cp__monitor=false",
            "--set",
            "callbacks__cp__dirname=ckpt",
        ])
        .args([
            "--set",
            &plugins,
            "--set",
            "callbacks__hang__type=faulty",
            "--set",
            "callbacks__hang__hook=on_batch_end",
            "--set",
            "callbacks__hang__how=sleep",
            "--set",
            "callbacks__hang__epoch=4",
        ])
        .current_dir(torchfit_tests::root())
        .env("TORCHFIT_LOG", "info")
        .env_remove("TORCHFIT_PLUGIN_PATH")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ckpt_history = killed.join("ckpt/history.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let epochs = std::fs::read_to_string(&ckpt_history)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|h| h.as_array().map(Vec::len));
        if epochs == Some(3) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no 3-epoch checkpoint after 120 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The checkpoint of epoch 3 is complete when epoch 4 starts; wait until the run hangs in it.
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert_eq!(read_json(&ckpt_history).as_array().unwrap().len(), 3, "the last epoch checkpoint is intact");
    let leftovers: Vec<_> = std::fs::read_dir(killed.join("ckpt"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let from = format!("callbacks__load__dirname={}", killed.join("ckpt").display());
    train(&resumed, &["max_epochs=3", "callbacks__load__type=load_init_state", &from]);
    let strip = |run: &Path| torchfit_tests::history_without(run, &["dur", "event_cp"]);
    assert_eq!(strip(&resumed), strip(&straight), "epoch 4 re-run and the rest identical");
    for ((na, a), (nb, b)) in params(&resumed).iter().zip(&params(&straight)) {
        assert_eq!(na, nb);
        assert!(a.equal(b), "{na} differs");
    }
}

#[test]
fn a_load_init_state_whose_checkpoint_is_missing_names_the_resolved_folder_unless_missing_ok() {
    stock();
    let root = temp_dir("cp-missing");
    let run = root.join("run");
    let sets = ["max_epochs=1", "callbacks__load__type=load_init_state", "callbacks__load__dirname=pretrained"];
    let o = train_digits(&sets, Some(&run), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let folder = run.join("pretrained");
    assert!(err.contains("callbacks.load.dirname") && err.contains(&folder.display().to_string()), "{err}");
    assert!(err.contains("params.safetensors") && err.contains("missing_ok"), "{err}");
    let ok = train_digits(&[&sets[..], &["callbacks__load__missing_ok=true"]].concat(), Some(&root.join("fresh")), &[]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}

/// The digits of classes 0 to 2 only, as a CSV file in `dir`: a data set whose model needs
/// another head than the ten-class one.
fn three_classes(dir: &Path) -> std::path::PathBuf {
    let gz = torchfit_tests::root().join("examples/digits/digits.csv.gz");
    let text = std::process::Command::new("gzip").arg("-dc").arg(gz).output().unwrap().stdout;
    let rows: String = String::from_utf8(text)
        .unwrap()
        .lines()
        .filter(|l| matches!(l.rsplit(',').next(), Some("0" | "1" | "2")))
        .map(|l| format!("{l}\n"))
        .collect();
    let path = dir.join("three.csv");
    std::fs::write(&path, rows).unwrap();
    path
}

#[test]
fn a_partial_load_keeps_the_pretrained_body_and_leaves_a_head_for_other_classes_as_initialized() {
    stock();
    let root = temp_dir("cp-partial");
    let pre = root.join("pre");
    train(&pre, &["max_epochs=2"]);
    let data = format!("dataset__path={:?}", three_classes(&root).display().to_string());
    let from = format!("callbacks__load__dirname={:?}", pre.display().to_string());
    let base = [
        "max_epochs=0",
        data.as_str(),
        "callbacks__load__type=load_init_state",
        from.as_str(),
        "callbacks__load__fn_prefix=train_end_",
        "callbacks__load__parts=[\"params\"]",
    ];
    let o = train_digits(&base, Some(&root.join("strict")), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("has shape [10] in the state but [3] in the model"),
        "a whole load refuses another head: {err}"
    );
    let pretrained = params(&pre);
    for (name, extra) in
        [("lenient", "callbacks__load__strict=false"), ("excluded", "callbacks__load__exclude=[\"output.*\"]")]
    {
        let run = root.join(name);
        let o = train_digits(&[&base[..], &[extra]].concat(), Some(&run), &[]);
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        for (n, t) in params(&run) {
            let before = pretrained.iter().find(|(k, _)| *k == n).unwrap().1.shallow_clone();
            match n.starts_with("output.") {
                true => assert_eq!(t.size()[0], 3, "{name}: {n} is the new three-class head"),
                false => assert!(t.equal(&before), "{name}: {n} is the pretrained body's"),
            }
        }
    }
}
