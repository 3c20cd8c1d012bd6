//! The `tensorboard` callback's event files, read by TensorBoard's own `EventAccumulator` (the
//! venv's `tensorboard`, installed by `.cargo/setup.sh`): every epoch scalar equals the run's
//! `history.json`, the rates, histograms, per-batch scalars and hyper-parameters are there, and
//! a resumed run reads as one run (the resume point's epoch once, not twice).

use std::path::Path;
use torchfit_tests::{python, read_json, temp_dir, torchfit_env, train_digits};

/// What the event files under `logdir` hold, as JSON, read by TensorBoard's reader.
const READ: &str = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
def load(path):
    ea = EventAccumulator(path, size_guidance={'scalars': 0, 'histograms': 0})
    ea.Reload()
    return ea
ea = load(sys.argv[1])
tags = ea.Tags()
out = {'scalars': {t: [[s.step, s.value] for s in ea.Scalars(t)] for t in tags['scalars']},
       'histograms': {t: [[h.step, h.histogram_value.num] for h in ea.Histograms(t)] for t in tags['histograms']},
       'hparams': {}}
for tag, content in ea.PluginTagToContent('hparams').items():
    d = plugin_data_pb2.HParamsPluginData.FromString(content)
    if d.HasField('session_start_info'):
        out['hparams'] = {k: v.WhichOneof('kind') and getattr(v, v.WhichOneof('kind')) for k, v in d.session_start_info.hparams.items()}
if len(sys.argv) > 2:
    b = load(sys.argv[2])
    out['batches'] = [[s.step, s.value] for s in b.Scalars('train_loss')]
print(json.dumps(out))
"#;

fn read_events(run: &Path) -> serde_json::Value {
    let logdir = run.join("tensorboard");
    let o = std::process::Command::new(python())
        .args(["-W", "ignore", "-c", READ])
        .arg(&logdir)
        .arg(logdir.join("batches"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

const CALLBACK: [&str; 5] = [
    "callbacks__tb__type=tensorboard",
    "callbacks__tb__batches=true",
    "callbacks__tb__histograms=true",
    "callbacks__tb__hparams__hidden=\"64-64\"",
    "callbacks__tb__metrics=[\"valid_loss\", \"valid_acc\"]",
];

fn train(run: &Path, extra: &[&str], resume: bool) {
    let mut args = vec!["train", "examples/digits/config.toml", "--out", run.to_str().unwrap()];
    for s in [&CALLBACK[..], extra].concat() {
        args.extend(["--set", s]);
    }
    if resume {
        args.push("--resume");
    }
    let o = torchfit_env(&args, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Every epoch key of the history equals the event files' scalar at that epoch's step, once.
fn assert_scalars_are_the_history(run: &Path, events: &serde_json::Value) {
    let history = read_json(&run.join("history.json"));
    let epochs = history.as_array().unwrap();
    for key in ["train_loss", "valid_loss", "valid_acc", "dur"] {
        let scalars = events["scalars"][key].as_array().unwrap_or_else(|| panic!("no {key} in {events}"));
        let steps: Vec<i64> = scalars.iter().map(|s| s[0].as_i64().unwrap()).collect();
        assert_eq!(steps, (1..=epochs.len() as i64).collect::<Vec<_>>(), "{key}: one value per epoch");
        for (s, e) in scalars.iter().zip(epochs) {
            let (ours, history) = (s[1].as_f64().unwrap(), e[key].as_f64().unwrap());
            assert_eq!(ours as f32, history as f32, "{key} at epoch {}", s[0]);
        }
    }
}

#[test]
fn tensorboard_reads_the_histories_scalars_rates_histograms_batches_and_hyper_parameters() {
    let run = temp_dir("tensorboard").join("run");
    train(&run, &["max_epochs=3"], false);
    let events = read_events(&run);
    assert_scalars_are_the_history(&run, &events);
    let lr: Vec<f64> =
        events["scalars"]["lr/group0"].as_array().unwrap().iter().map(|s| s[1].as_f64().unwrap()).collect();
    assert_eq!(lr.len(), 3);
    assert!(lr.iter().all(|v| (*v - 0.1).abs() < 1e-7), "the demo's rate: {lr:?}");
    assert!(events["scalars"]["momentum/group0"].as_array().is_some_and(|m| m.len() == 3));
    let weights = &events["histograms"]["parameters/output.weight"];
    let counts: Vec<f64> = weights.as_array().unwrap().iter().map(|h| h[1].as_f64().unwrap()).collect();
    assert_eq!(counts, [640.0; 3], "every weight of the 64 x 10 output layer, each epoch: {weights}");
    let history = read_json(&run.join("history.json"));
    let batch_losses: Vec<f64> = history
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["batches"].as_array().unwrap().iter().filter_map(|b| b["train_loss"].as_f64()))
        .collect();
    let batches = events["batches"].as_array().unwrap();
    assert_eq!(batches.len(), batch_losses.len());
    for (i, (b, h)) in batches.iter().zip(&batch_losses).enumerate() {
        assert_eq!(b[0].as_i64(), Some(i as i64 + 1));
        assert_eq!(b[1].as_f64().unwrap() as f32, *h as f32);
    }
    let hparams = &events["hparams"];
    assert_eq!(hparams["optimizer.lr"].as_f64(), Some(0.1), "{hparams}");
    assert_eq!(hparams["max_epochs"].as_f64(), Some(3.0));
    assert_eq!(hparams["hidden"].as_str(), Some("64-64"));
}

#[test]
fn a_resumed_run_reads_as_one_run_with_its_resume_points_epoch_once() {
    let run = temp_dir("tensorboard-resume").join("run");
    train(&run, &["max_epochs=2"], false);
    train(&run, &["max_epochs=4"], true);
    let events = read_events(&run);
    assert_scalars_are_the_history(&run, &events);
    let lr = events["scalars"]["lr/group0"].as_array().unwrap();
    assert_eq!(lr.len(), 4, "the rates of epoch 2 were kept in the checkpoint: {lr:?}");
    let batches = events["batches"].as_array().unwrap();
    let steps: Vec<i64> = batches.iter().map(|b| b[0].as_i64().unwrap()).collect();
    assert_eq!(steps, (1..=steps.len() as i64).collect::<Vec<_>>(), "each training batch once");
}

#[test]
fn a_bad_setting_is_refused_by_its_key() {
    let run = temp_dir("tensorboard-bad").join("run");
    let o =
        train_digits(&["callbacks__tb__type=tensorboard", "callbacks__tb__hparams__layers=[1, 2]"], Some(&run), &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("hparams.layers"), "{err}");
}
