//! The config fuzzer (`tests/config_fuzz.py`) with a bounded number of mutations: no panic, no
//! signal, no hang, and one error line with a documented exit code. Run the script alone for
//! more; each failure it finds becomes a regression test in `engine/cli/tests/cli.rs`.

use torchfit_tests::{python, root, torchfit_bin};

#[test]
fn mutated_configs_end_with_a_documented_exit_code_and_one_error_line() {
    let o = std::process::Command::new(python())
        .arg(root().join("tests/config_fuzz.py"))
        .args(["--torchfit", torchfit_bin().to_str().unwrap(), "--runs", "40", "--seed", "7", "--timeout", "120"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("40/40 mutated configs kept the contract"), "{text}");
}
