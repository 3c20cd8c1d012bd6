//! End-to-end: the README's first command trains the digits demo through the binary.

use torchfit_tests::{read_json, temp_dir, torchfit};

#[test]
fn the_demo_reaches_95_percent_test_accuracy_and_writes_a_complete_run_directory() {
    let out = temp_dir("demo").join("run");
    let o = torchfit(&["train", "examples/digits/config.toml", "--out", out.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));

    // The per-epoch table, with its header and best values marked.
    let header = stdout.lines().next().unwrap();
    for col in ["epoch", "train_loss", "valid_loss", "valid_acc", "dur"] {
        assert!(header.contains(col), "header {header:?} lacks {col}");
    }
    assert!(stdout.lines().nth(2).unwrap().contains('*'), "first epoch is best in every score");

    // The final line and summary.json agree, and clear the bar.
    let printed: f64 = stdout
        .lines()
        .last()
        .unwrap()
        .strip_prefix("test_accuracy=")
        .expect("last line is test_accuracy=")
        .parse()
        .unwrap();
    let summary = read_json(&out.join("summary.json"));
    let acc = summary["test"]["accuracy"].as_f64().unwrap();
    assert!((acc - printed).abs() < 1e-6);
    assert!(acc >= 0.95, "test accuracy {acc} < 0.95");
    assert!(summary["test"]["loss"].as_f64().unwrap() > 0.0);
    assert_eq!(summary["test"]["samples"], 359, "20% of 1797 held out");
    assert_eq!(summary["epochs"], 30);
    assert!(summary["seconds"].as_f64().unwrap() > 0.0);

    // history.json in skorch's shape.
    let history = read_json(&out.join("history.json"));
    let epochs = history.as_array().unwrap();
    assert_eq!(epochs.len(), 30);
    for (i, e) in epochs.iter().enumerate() {
        assert_eq!(e["epoch"], i + 1);
        for key in
            ["dur", "train_loss", "valid_loss", "valid_acc", "train_loss_best", "valid_loss_best", "valid_acc_best"]
        {
            assert!(!e[key].is_null(), "epoch {} lacks {key}", i + 1);
        }
        let batches = e["batches"].as_array().unwrap();
        let train: Vec<_> = batches.iter().filter(|b| b.get("train_loss").is_some()).collect();
        let valid: Vec<_> = batches.iter().filter(|b| b.get("valid_loss").is_some()).collect();
        // 1438 training samples: 1150 train (36 batches of 32) and 288 valid (3 batches of 128).
        assert_eq!((train.len(), valid.len()), (36, 3));
        let sizes: u64 = train.iter().map(|b| b["train_batch_size"].as_u64().unwrap()).sum();
        assert_eq!(sizes, 1150);
    }
    assert_eq!(epochs[0]["train_loss_best"], true);

    // The resolved config parses back, and the parameters are in safetensors.
    let config: toml::Table = std::fs::read_to_string(out.join("config.toml")).unwrap().parse().unwrap();
    assert_eq!(config["module"]["name"].as_str(), Some("mlp"));
    let params = tch::Tensor::read_safetensors(out.join("model.safetensors")).unwrap();
    assert!(params.iter().any(|(n, t)| n == "hidden.0.weight" && t.size() == [128, 64]));
}

#[test]
fn predict_reads_the_run_directory_and_labels_every_sample() {
    let out = temp_dir("predict").join("run");
    let o =
        torchfit(&["train", "examples/digits/config.toml", "--set", "max_epochs=10", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let preds_file = out.parent().unwrap().join("preds.csv");
    let o = torchfit(&["predict", out.to_str().unwrap(), "--out", preds_file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&preds_file).unwrap();
    assert_eq!(text.lines().next(), Some("id,label"));
    let preds: Vec<i64> = text
        .lines()
        .skip(1)
        .enumerate()
        .map(|(i, l)| {
            let (id, label) = l.split_once(',').unwrap();
            assert_eq!(id, i.to_string(), "each row names its sample");
            label.parse().unwrap()
        })
        .collect();
    assert_eq!(preds.len(), 1797);
    // Labels of the embedded data set: the last CSV column.
    let csv = std::process::Command::new("gzip")
        .args(["-dc", "examples/digits/digits.csv.gz"])
        .current_dir(torchfit_tests::root())
        .output()
        .unwrap();
    let labels: Vec<i64> = String::from_utf8(csv.stdout)
        .unwrap()
        .lines()
        .map(|l| l.rsplit(',').next().unwrap().trim().parse().unwrap())
        .collect();
    let correct = preds.iter().zip(&labels).filter(|(p, l)| p == l).count();
    assert!(correct as f64 / 1797.0 > 0.93, "{correct}/1797 correct");
}

#[test]
fn predict_gives_probabilities_and_logits_as_csv_or_numpy_as_skorch_s_predict_proba() {
    let run = temp_dir("predict-proba").join("run");
    let o =
        torchfit(&["train", "examples/digits/config.toml", "--set", "max_epochs=3", "--out", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = torchfit(&["predict", run.to_str().unwrap(), "--proba"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[..3], ["id", "label", "proba_0"]);
    assert_eq!(header.len(), 12);
    let rows: Vec<Vec<f64>> = lines.map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    assert_eq!(rows.len(), 1797);
    for row in &rows {
        let p = &row[2..];
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{row:?}");
        let best = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert_eq!(best as f64, row[1], "the label is the most probable class");
    }
    // The same probabilities, and the logits in their shape, as NumPy files.
    let dir = run.parent().unwrap();
    for (flag, file) in [("--proba", "proba.npy"), ("--logits", "logits.npy")] {
        let o = torchfit(&["predict", run.to_str().unwrap(), flag, "--out", dir.join(file).to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let script = "import numpy, sys, json\n\
        p = numpy.load(sys.argv[1]); l = numpy.load(sys.argv[2])\n\
        e = numpy.exp(l - l.max(1, keepdims=True))\n\
        print(json.dumps([list(p.shape), list(l.shape), float(abs(e / e.sum(1, keepdims=True) - p).max()), p[5].tolist()]))";
    let o = std::process::Command::new(torchfit_tests::python())
        .args(["-c", script])
        .arg(dir.join("proba.npy"))
        .arg(dir.join("logits.npy"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((got[0].clone(), got[1].clone()), (serde_json::json!([1797, 10]), serde_json::json!([1797, 10])));
    assert!(got[2].as_f64().unwrap() < 1e-6, "the probabilities are the logits' softmax: {got}");
    let csv_row5: Vec<f64> = rows[5][2..].to_vec();
    for (a, b) in got[3].as_array().unwrap().iter().zip(&csv_row5) {
        assert!((a.as_f64().unwrap() - b).abs() < 1e-6, "the CSV and the .npy agree");
    }
}

#[test]
fn predict_refuses_a_model_json_no_model_can_be_built_for_in_one_line() {
    let run = temp_dir("predict-meta").join("run");
    let o =
        torchfit(&["train", "examples/digits/config.toml", "--set", "max_epochs=1", "--out", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let meta_path = run.join("model.json");
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    for (key, value, needle) in
        [("n_outputs", serde_json::json!(-1), "-1 outputs"), ("input_shape", serde_json::json!([0]), "dimension of 0")]
    {
        let mut bad = meta.clone();
        bad[key] = value;
        std::fs::write(&meta_path, bad.to_string()).unwrap();
        let o = torchfit(&["predict", run.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{key}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{key}: {stderr}");
        assert!(stderr.contains("model.json") && stderr.contains(needle), "{key}: {stderr}");
    }
}

#[test]
fn plugins_lists_every_builtin_component_with_kind_version_and_origin() {
    let o = torchfit(&["plugins"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    let stock = [
        ("model", "mlp", "torchfit-plugin-models"),
        ("model", "cnn", "torchfit-plugin-models"),
        ("criterion", "huber", "torchfit-plugin-criteria"),
        ("reader", "idx", "torchfit-plugin-readers"),
    ];
    for (kind, name, origin) in
        [("callback", "print_log", "builtin"), ("callback", "accuracy_scoring", "builtin")].into_iter().chain(stock)
    {
        assert!(
            text.lines().any(|l| l.starts_with(kind) && l.contains(name) && l.contains(origin) && l.contains("0.1.0")),
            "{kind} {name} missing:\n{text}"
        );
    }
}

#[test]
fn a_diverged_loss_is_kept_in_history_as_python_writes_nan() {
    let run = temp_dir("diverged").join("run");
    let sets = ["max_epochs=2", "optimizer__lr=1e6", "on_nan=\"continue\""];
    let o = torchfit_tests::train_digits(&sets, Some(&run), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(run.join("history.json")).unwrap();
    assert!(text.contains("\"train_loss\":NaN"), "the NaN loss is in the history, not dropped");
    let script = "import json, math, sys; h = json.load(open(sys.argv[1])); \
                  print(all(math.isnan(e['train_loss']) for e in h[1:]), type(h[0]['batches'][0]['train_loss']).__name__)";
    let py = std::process::Command::new(torchfit_tests::python())
        .args(["-c", script, run.join("history.json").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&py.stdout).trim(), "True float", "{}", String::from_utf8_lossy(&py.stderr));
}

#[test]
fn summary_counts_each_parameter_as_pytorch_counts_the_same_network() {
    let o = torchfit(&["summary", "examples/digits/config.toml", "--set", "module__batch_norm=true"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.lines().next().unwrap().starts_with("parameter"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("hidden.0.weight") && l.contains("[128, 64]") && l.ends_with("8,192")),
        "{text}"
    );
    // The same layers in PyTorch: Linear(64, 128), BatchNorm1d(128), Linear(128, 64), BatchNorm1d(64), Linear(64, 10).
    let script = "import torch.nn as nn\n\
        m = nn.Sequential(nn.Linear(64, 128), nn.BatchNorm1d(128), nn.Linear(128, 64), nn.BatchNorm1d(64), nn.Linear(64, 10))\n\
        print(f'{sum(p.numel() for p in m.parameters()):,}')";
    let py = std::process::Command::new(torchfit_tests::python()).args(["-c", script]).output().unwrap();
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    let total = String::from_utf8_lossy(&py.stdout).trim().to_owned();
    assert!(
        text.contains(&format!("total parameters: {total} (input [64], 10 outputs)")),
        "PyTorch counts {total}:\n{text}"
    );
    assert!(text.contains("buffers (not parameters):"), "batch norm's statistics are shown apart: {text}");
}

#[test]
fn the_progress_bar_shows_the_running_loss_and_named_keys_on_a_terminal_and_nothing_in_a_pipe() {
    let Ok(script) = which("script") else {
        eprintln!("SKIPPED: `script` (util-linux) is not installed; the terminal side of the progress bar is untested");
        return;
    };
    let dir = temp_dir("progress");
    // Epochs of one-sample batches last long enough for the bar to be redrawn with a loss.
    let command = format!(
        "{} train examples/digits/config.toml --set max_epochs=2 --set iterator_train__batch_size=1 \
         --set 'callbacks__progress_bar__keys=[\"train_batch_size\"]' --out {}",
        torchfit_tests::torchfit_bin().display(),
        dir.join("tty").display()
    );
    let o = std::process::Command::new(script)
        .args(["-qec", &command, "/dev/null"])
        .current_dir(torchfit_tests::root())
        .env("TORCHFIT_LOG", "warn")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{shown}");
    assert!(shown.contains("train_loss=") && shown.contains("train_batch_size=1"), "{shown}");
    let piped = torchfit_tests::train_digits(&["max_epochs=2"], Some(&dir.join("pipe")), &[]);
    assert!(piped.status.success());
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("batches"), "no bar in a pipe");
}

/// The path of `program` on `PATH`.
fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file()).ok_or(())
}

#[test]
fn an_unknown_callback_is_named_by_the_type_key_it_was_read_from() {
    let o = torchfit(&["train", "examples/digits/config.toml", "--set", "callbacks__x__type=nonexist"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--set callbacks__x__type=nonexist") && err.contains("`callbacks.x.type`"), "{err}");
    let o = torchfit(&["train", "examples/digits/config.toml", "--set", "callbacks__nonexist__k=1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("`callbacks.nonexist.type`") && err.contains("defaults to its name"), "{err}");
}

#[test]
fn the_demo_in_bf16_mixed_precision_clears_the_same_bar() {
    let out = temp_dir("demo-bf16").join("run");
    let o = torchfit(&[
        "train",
        "examples/digits/config.toml",
        "--set",
        "precision=\"bf16-mixed\"",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    let acc = read_json(&out.join("summary.json"))["test"]["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.95, "test accuracy {acc} < 0.95 in bf16-mixed");
}
