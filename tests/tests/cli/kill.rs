//! The kill harness (`tests/kill_harness.py`) with a few trials: `torchfit train` SIGKILLed, or
//! interrupted with Ctrl-C (SIGINT to its process group, with a callback's own train-end
//! checkpoint), or stopped after a batch by a callback, at random moments, resumed, ends
//! bit-identical to an uninterrupted run; so does a `--nproc 2` job interrupted with Ctrl-C. Run
//! the script alone for more trials.

use torchfit_tests::{plugin_library, python, root, torchfit_bin};

fn harness(args: &[&str], trials: usize) {
    let trials = trials.to_string();
    let o = std::process::Command::new(python())
        .arg(root().join("tests/kill_harness.py"))
        .args(["--torchfit", torchfit_bin().to_str().unwrap(), "--trials", &trials, "--seed", "1"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{args:?}: {text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains(&format!("{trials}/{trials} trials ended bit-identical")), "{args:?}: {text}");
}

#[test]
fn runs_killed_at_random_moments_resume_to_the_uninterrupted_result() {
    harness(&[], 3);
}

#[test]
fn runs_interrupted_with_ctrl_c_resume_from_the_boundary_not_from_a_callbacks_train_end_set() {
    harness(&["--signal", "INT"], 3);
}

#[test]
fn runs_a_callback_stops_after_a_batch_resume_from_the_boundary_before_the_cut() {
    let lib = plugin_library("torchfit-testplugin-sdk11", "torchfit_testplugin_sdk11");
    harness(&["--stop-plugin", lib.to_str().unwrap()], 3);
}

#[test]
fn data_parallel_jobs_interrupted_with_ctrl_c_resume_to_the_uninterrupted_result() {
    let mut args = vec!["--signal", "INT", "--nproc", "2"];
    for s in [
        "max_epochs=4",
        "threads=1",
        "callbacks__cp__type=checkpoint",
        "callbacks__cp__monitor=false",
        "callbacks__end__type=train_end_checkpoint",
        "callbacks__end__fn_prefix=cb_end_",
    ] {
        args.extend(["--set", s]);
    }
    harness(&args, 2);
}
