//! A stop asked on one rank stops every rank at the same epoch or batch; so does a signal that
//! reaches one worker only.

use super::{history, ok, train};
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

#[test]
fn a_stop_asked_on_one_rank_after_a_batch_stops_both_after_that_batch() {
    let out = temp_dir("dist-stop-batch").join("run");
    ok(&with_stop(&["callbacks__stop__epoch=2", "callbacks__stop__batch=3", "callbacks__stop__rank=1"], &out));
    let h = read_json(&out.join("history.json"));
    let epochs = h.as_array().unwrap();
    assert_eq!(epochs.len(), 2);
    let trained = epochs[1]["batches"].as_array().unwrap().iter().filter(|b| b.get("train_loss").is_some()).count();
    assert_eq!(trained, 4, "batches 0..=3 of epoch 2 ran, on both ranks (losses reduced over both)");
}
