//! Where PyTorch defines the semantics, torchfit is compared with the venv's PyTorch: the
//! optimizers against `torch.optim`, the criteria against `torch.nn`, the learning-rate policies
//! against `torch.optim.lr_scheduler`, SWA's `update_bn` against `torch.optim.swa_utils`; and where
//! scikit-learn does, against scikit-learn: cross-validation folds, the search grid and successive
//! halving.

mod criteria;
mod folds;
mod grad_scaler;
mod halving;
mod lr_scheduler;
mod optimizer;
mod update_bn;

use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `script` in the venv's Python (`bash .cargo/setup.sh` installs torch and scikit-learn)
/// with `input` as JSON on its standard input, and returns what it prints as JSON. A failing
/// script fails the test with `hint` and Python's standard error.
fn python_json(script: &str, input: &serde_json::Value, hint: &str) -> serde_json::Value {
    let mut child = Command::new(torchfit_tests::python())
        .args(["-W", "ignore", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the venv's python");
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{hint}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}
