//! Run directories (Poutyne's ModelBundle): `--resume` continues up to `max_epochs` in all, and
//! a non-empty directory is never overwritten without it.

use std::path::Path;
use torchfit_tests::{read_json, temp_dir, torchfit_env};

fn train(out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args =
        vec!["train", "examples/digits/config.toml", "--set", "max_epochs=4", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    torchfit_env(&args, &[])
}

fn history_without_dur(out: &Path) -> String {
    torchfit_tests::history_without(out, &["dur"])
}

#[test]
fn a_non_empty_run_directory_is_refused_without_resume() {
    let out = temp_dir("rundir-refuse").join("run");
    assert!(train(&out, &[]).status.success());
    let before = std::fs::read(out.join("history.json")).unwrap();
    let o = train(&out, &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(out.to_str().unwrap()) && err.contains("--resume"), "{err}");
    assert_eq!(std::fs::read(out.join("history.json")).unwrap(), before, "nothing overwritten");
}

#[test]
fn resume_continues_to_max_epochs_in_all_and_equals_one_run() {
    let root = temp_dir("rundir-resume");
    let (straight, resumed) = (root.join("straight"), root.join("resumed"));
    assert!(train(&straight, &[]).status.success());
    assert!(train(&resumed, &["--set", "max_epochs=2"]).status.success());
    assert_eq!(read_json(&resumed.join("history.json")).as_array().unwrap().len(), 2);
    let o = train(&resumed, &["--resume"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(history_without_dur(&resumed), history_without_dur(&straight));
    assert_eq!(read_json(&resumed.join("summary.json"))["test"], read_json(&straight.join("summary.json"))["test"]);

    // Again with the same max_epochs: nothing left to train.
    let o = train(&resumed, &["--resume"]);
    assert!(o.status.success());
    assert_eq!(read_json(&resumed.join("history.json")).as_array().unwrap().len(), 4);
    // A larger max_epochs simply goes on.
    let o = train(&resumed, &["--resume", "--set", "max_epochs=5"]);
    assert!(o.status.success());
    assert_eq!(read_json(&resumed.join("history.json")).as_array().unwrap().len(), 5);
}

#[test]
fn resume_without_a_checkpoint_is_refused() {
    let out = temp_dir("rundir-empty").join("run");
    std::fs::create_dir_all(&out).unwrap();
    let o = train(&out, &["--resume"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no train_end_ checkpoint"));
}
