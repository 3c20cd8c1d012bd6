//! A stop asked on one rank stops every rank at the same epoch or batch; so does a signal that
//! reaches one worker only.

use super::{history, ok, spawn, train, wait_for_row, workers};
use torchfit_tests::{plugin_library, read_json, temp_dir};

fn with_stop(sets: &[&str], out: &std::path::Path) -> std::process::Output {
    let lib = plugin_library("torchfit-testplugin-sdk11", "torchfit_testplugin_sdk11");
    let plugin = format!("plugins=[\"{}\"]", lib.display());
    let mut all = vec![plugin.as_str(), "callbacks__stop__type=\"stop_now\"", "max_epochs=6"];
    all.extend(sets);
    train(&all, &["--nproc", "2", "--out", out.to_str().unwrap()], &[])
}

#[test]
fn a_stop_asked_on_one_rank_after_an_epoch_stops_both_there() {
    let out = temp_dir("dist-stop-epoch").join("run");
    ok(&with_stop(&["callbacks__stop__epoch=2", "callbacks__stop__rank=1"], &out));
    let h = read_json(&out.join("history.json"));
    assert_eq!(h.as_array().unwrap().len(), 2, "{}", history(&out));
}

/// The training and validation batches of epoch `epoch` (from 1) in a run's history.
fn batches_of(out: &std::path::Path, epoch: usize) -> (usize, usize) {
    let h = read_json(&out.join("history.json"));
    let batches = h[epoch - 1]["batches"].as_array().unwrap().clone();
    let count = |key: &str| batches.iter().filter(|b| b.get(key).is_some()).count();
    (count("train_loss"), count("valid_loss"))
}

#[test]
fn a_stop_asked_on_one_rank_after_a_batch_stops_both_after_the_next_batch() {
    // The request rides on the next step's gradient reduction: every rank stops after batch 4.
    let out = temp_dir("dist-stop-batch").join("run");
    ok(&with_stop(&["callbacks__stop__epoch=2", "callbacks__stop__batch=3", "callbacks__stop__rank=1"], &out));
    assert_eq!(read_json(&out.join("history.json")).as_array().unwrap().len(), 2);
    assert_eq!(batches_of(&out, 2), (5, 0), "batches 0..=4 of epoch 2 trained, no validation");
}

#[test]
fn a_stop_asked_on_one_rank_after_the_last_batch_skips_the_validation_on_both() {
    // 1150 training samples: 575 per rank, 36 batches of 16; the last is batch 35.
    let out = temp_dir("dist-stop-last").join("run");
    let sets = [
        "callbacks__stop__epoch=2",
        "callbacks__stop__batch=35",
        "callbacks__stop__rank=0",
        "iterator_train__batch_size=16",
    ];
    ok(&with_stop(&sets, &out));
    assert_eq!(batches_of(&out, 1), (36, 3));
    assert_eq!(batches_of(&out, 2), (36, 0));
}

#[test]
fn a_non_finite_loss_on_one_rank_skips_the_step_on_both_or_stops_both() {
    // One pixel of one digit is NaN: only the rank whose batch holds it sees a NaN loss.
    let dir = temp_dir("dist-nan");
    let gz = torchfit_tests::root().join("examples/digits/digits.csv.gz");
    let text = std::process::Command::new("gzip").arg("-dc").arg(gz).output().unwrap().stdout;
    let mut lines: Vec<String> = String::from_utf8(text).unwrap().lines().map(str::to_owned).collect();
    lines[10] = lines[10].replacen("0", "nan", 1);
    let csv = dir.join("digits.csv");
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();
    // Every sample trains (no test or validation split), so the NaN is in one training batch.
    let data = [
        format!("dataset__path=\"{}\"", csv.display()),
        "dataset__allow_non_finite=true".to_owned(),
        "test_split__kind=\"none\"".to_owned(),
        "train_split__kind=\"none\"".to_owned(),
    ];
    let sets = |policy: &str| -> Vec<String> { data.iter().cloned().chain([format!("on_nan=\"{policy}\"")]).collect() };
    let run = |policy: &str, out: &std::path::Path| {
        let sets = sets(policy);
        let sets: Vec<&str> =
            sets.iter().map(String::as_str).chain(["max_epochs=2", "iterator_train__batch_size=16"]).collect();
        super::train(&sets, &["--nproc", "2", "--out", out.to_str().unwrap()], &[])
    };
    let skipped = dir.join("skip");
    let o = run("skip_batch", &skipped);
    ok(&o);
    let h = read_json(&skipped.join("history.json"));
    let counts: Vec<u64> = h.as_array().unwrap().iter().filter_map(|e| e["skipped_batches"].as_u64()).collect();
    assert_eq!(counts, [1, 1], "one batch skipped in each epoch, on both ranks");
    let o = run("stop", &dir.join("stop"));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the training loss is"), "{stderr}");
}

#[test]
fn ctrl_c_to_one_worker_stops_every_rank_and_resume_equals_the_uninterrupted_run() {
    let root = temp_dir("dist-interrupt");
    let (straight, stopped) = (root.join("straight"), root.join("stopped"));
    let epochs = ["max_epochs=12"];
    ok(&train(&epochs, &["--nproc", "2", "--out", straight.to_str().unwrap()], &[]));
    let mut launcher = spawn(&epochs, &["--nproc", "2", "--out", stopped.to_str().unwrap()], &[]);
    let rows = wait_for_row(&mut launcher, "3 ");
    let rank1 = &workers(&launcher)[1];
    assert!(std::process::Command::new("kill").args(["-INT", rank1]).status().unwrap().success());
    rows.for_each(drop);
    let o = launcher.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = read_json(&stopped.join("summary.json"));
    assert!(summary["interrupted"]["epochs"].as_u64().is_some(), "rank 0 wrote the interrupted run: {summary}");
    ok(&train(&epochs, &["--nproc", "2", "--out", stopped.to_str().unwrap(), "--resume"], &[]));
    assert_eq!(history(&stopped), history(&straight));
    let model = |d: &std::path::Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert_eq!(model(&stopped), model(&straight));
}
