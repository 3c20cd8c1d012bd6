//! The kill harness (`tests/kill_harness.py`) with a few trials: `torchfit train` SIGKILLed at
//! random moments, resumed, ends bit-identical to an uninterrupted run. Run the script alone for
//! more trials.

use torchfit_tests::{python, root, torchfit_bin};

#[test]
fn runs_killed_at_random_moments_resume_to_the_uninterrupted_result() {
    let o = std::process::Command::new(python())
        .arg(root().join("tests/kill_harness.py"))
        .args(["--torchfit", torchfit_bin().to_str().unwrap(), "--trials", "3", "--seed", "1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("3/3 trials ended bit-identical"), "{text}");
}
