//! Ctrl-C and SIGTERM: the run ends after its batch, `on_train_end` runs, the run directory is
//! written, the exit code is the shell's (130, 143) with one line saying how to resume, and
//! `--resume` ends bit-identical to an uninterrupted run.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use torchfit_tests::{history_without, read_json, root, temp_dir, torchfit_bin, train_digits};

const EPOCHS: &str = "max_epochs=40";

/// Starts a run, waits until the table shows epoch 3, sends `signal`, and returns the exit code
/// and the lines printed on standard error.
fn interrupt(out: &Path, signal: &str) -> (Option<i32>, Vec<String>) {
    interrupt_at(out, &[EPOCHS], "3 ", Duration::ZERO, &[signal])
}

/// Starts a run with `sets`, waits for the table row starting with `row` and then `settle`, sends
/// `signals` 50 ms apart, and returns the exit code and the lines printed on standard error.
fn interrupt_at(
    out: &Path,
    sets: &[&str],
    row: &str,
    settle: Duration,
    signals: &[&str],
) -> (Option<i32>, Vec<String>) {
    let mut args = vec!["train", "examples/digits/config.toml", "--out", out.to_str().unwrap()];
    for s in sets {
        args.extend(["--set", s]);
    }
    let mut child = Command::new(torchfit_bin())
        .args(&args)
        .current_dir(root())
        .env("TORCHFIT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut rows = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in rows.by_ref() {
        if line.unwrap().trim_start().starts_with(row) {
            break;
        }
    }
    std::thread::sleep(settle);
    for signal in signals {
        let sent = Command::new("kill").args([*signal, &child.id().to_string()]).status().unwrap();
        assert!(sent.success());
        std::thread::sleep(Duration::from_millis(50));
    }
    rows.for_each(drop);
    let o = child.wait_with_output().unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stderr).lines().map(str::to_owned).collect())
}

#[test]
fn ctrl_c_writes_the_run_directory_exits_130_and_resume_equals_an_uninterrupted_run() {
    let root = temp_dir("interrupt-int");
    let (straight, stopped) = (root.join("straight"), root.join("stopped"));
    assert!(train_digits(&[EPOCHS], Some(&straight), &[]).status.success());
    let (code, after) = interrupt(&stopped, "-INT");
    assert_eq!(code, Some(130), "{after:?}");
    assert_eq!(after.len(), 1, "one line: {after:?}");
    assert!(after[0].contains("interrupted by SIGINT") && after[0].contains("--resume"), "{after:?}");
    let summary = read_json(&stopped.join("summary.json"));
    let kept = summary["interrupted"]["epochs"].as_u64().unwrap();
    assert!((3..40).contains(&kept), "{summary}");
    for f in ["history.json", "model.safetensors", "config.toml", "train_end_params.safetensors"] {
        assert!(stopped.join(f).exists(), "{f}");
    }
    assert_eq!(read_json(&stopped.join("train_end_history.json")).as_array().unwrap().len() as u64, kept);
    let o = train_digits(&[EPOCHS], Some(&stopped), &[]);
    assert_eq!(o.status.code(), Some(2), "a plain rerun is refused");
    resume_equals(&stopped, &straight, &[EPOCHS]);
}

/// Resumes the run in `stopped` with `sets` and asserts it ends as the uninterrupted `straight`:
/// the same history (but the timings) and the same model, byte for byte.
fn resume_equals(stopped: &Path, straight: &Path, sets: &[&str]) {
    let mut args = vec!["train", "examples/digits/config.toml"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let dir = stopped.to_str().unwrap().to_owned();
    args.extend(["--out", &dir, "--resume"]);
    let o = torchfit_tests::torchfit_env(&args, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(history_without(stopped, &["dur"]), history_without(straight, &["dur"]));
    assert_eq!(
        std::fs::read(stopped.join("model.safetensors")).unwrap(),
        std::fs::read(straight.join("model.safetensors")).unwrap()
    );
}

#[test]
fn ctrl_c_mid_epoch_resumes_from_the_boundary_and_not_from_a_callbacks_train_end_checkpoint() {
    // The callback's set is saved in on_train_end, after batch k of the cut epoch: it is marked as
    // saved during an epoch and never taken as the point --resume continues from. Epochs of 1437
    // one-sample batches, and the signal a quarter of a second after epoch 3's row: it lands in
    // epoch 4 even when the row is printed before the epoch's other callbacks have run.
    let root = temp_dir("interrupt-cb-end");
    let (straight, stopped) = (root.join("straight"), root.join("stopped"));
    let sets = [
        "max_epochs=12",
        "iterator_train__batch_size=1",
        "callbacks__end__type=train_end_checkpoint",
        "callbacks__end__fn_prefix=cb_end_",
    ];
    assert!(train_digits(&sets, Some(&straight), &[]).status.success());
    let (code, after) = interrupt_at(&stopped, &sets, "3 ", Duration::from_millis(250), &["-INT"]);
    assert_eq!(code, Some(130), "{after:?}");
    let summary = read_json(&stopped.join("summary.json"));
    assert!(summary["interrupted"]["batches"].as_u64().unwrap() > 0, "the signal came during an epoch: {summary}");
    let record = read_json(&stopped.join("cb_end_checkpoint.json"));
    assert_eq!(record["boundary"], false, "{record}");
    resume_equals(&stopped, &straight, &sets);
}

#[test]
fn sigterm_ends_the_run_the_same_way_with_143() {
    let out = temp_dir("interrupt-term").join("run");
    let (code, after) = interrupt(&out, "-TERM");
    assert_eq!(code, Some(143), "{after:?}");
    assert!(after.len() == 1 && after[0].contains("SIGTERM"), "{after:?}");
    assert!(read_json(&out.join("summary.json"))["interrupted"].is_object());
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    let out = temp_dir("interrupt-twice").join("run");
    // One batch of a second or so per epoch: both signals arrive while it runs.
    let slow = ["module__hidden=[2000, 2000]", "iterator_train__batch_size=1400", "max_epochs=20"];
    let (code, after) = interrupt_at(&out, &slow, "1 ", Duration::ZERO, &["-INT", "-INT"]);
    assert_eq!(code, Some(130), "{after:?}");
    assert!(after.iter().all(|l| !l.contains("interrupted by")), "it did not wait for the batch: {after:?}");
    assert!(!out.join("summary.json").exists());
}
