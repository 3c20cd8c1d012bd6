//! Bad input to the `torchfit` binary: a one-line error naming the file and the key, exit code 2,
//! and nothing written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (this package is `engine/cli`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).unwrap().to_path_buf()
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("torchfit-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn torchfit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_torchfit")).args(args).current_dir(root()).output().unwrap()
}

/// A copy of the demo config with `edit` applied, in a fresh folder (data path made absolute).
fn config(name: &str, edit: impl Fn(String) -> String) -> (PathBuf, PathBuf) {
    let d = dir(name);
    let demo = std::fs::read_to_string(root().join("examples/digits/config.toml")).unwrap();
    let data = root().join("examples/digits/digits.csv.gz");
    let text = edit(demo.replace("\"digits.csv.gz\"", &format!("{:?}", data.display().to_string())));
    let path = d.join("bad.toml");
    std::fs::write(&path, text).unwrap();
    (path, d.join("out"))
}

/// Asserts a bad-input failure: exit 2, one line on stderr containing every `needle`, no output.
fn assert_refused(o: &Output, out: &Path, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line expected: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{n:?} not in {stderr:?}");
    }
    assert!(!out.exists(), "nothing may be written on bad input");
    assert!(o.stdout.is_empty(), "no training output expected: {}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn an_unknown_key_names_the_file_and_the_key() {
    let (cfg, out) = config("unknown", |t| t.replace("lr = 0.1", "lr = 0.1\nlearning_rate = 0.1"));
    let o = torchfit(&["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_refused(&o, &out, &["bad.toml", "optimizer.learning_rate", "unknown field"]);
}

#[test]
fn a_wrong_type_names_the_nested_key() {
    let (cfg, out) = config("type", |t| t.replace("hidden = [128, 64]", "hidden = [128, \"wide\"]"));
    let o = torchfit(&["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_refused(&o, &out, &["bad.toml", "module.hidden[1]"]);
}

#[test]
fn a_bad_set_names_the_set_argument_and_the_key() {
    let (cfg, out) = config("set", |t| t);
    let o = torchfit(&["train", cfg.to_str().unwrap(), "--set", "optimizer__lr=fast", "--out", out.to_str().unwrap()]);
    assert_refused(&o, &out, &["--set optimizer__lr=fast", "optimizer.lr"]);
}

#[test]
fn a_missing_config_file_is_named() {
    let out = dir("missing").join("out");
    let o = torchfit(&["train", "no/such/config.toml", "--out", out.to_str().unwrap()]);
    assert_refused(&o, &out, &["no/such/config.toml"]);
}

#[test]
fn a_missing_data_file_is_named() {
    let (cfg, out) = config("data", |t| t.replace("digits.csv.gz", "nothing-here.csv.gz"));
    let o = torchfit(&["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_refused(&o, &out, &["nothing-here.csv.gz"]);
}

#[test]
fn a_syntax_error_names_the_line() {
    let (cfg, out) = config("syntax", |t| t.replace("max_epochs = 30", "max_epochs = = 30"));
    let o = torchfit(&["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_refused(&o, &out, &["bad.toml", "line 3"]);
}

#[test]
fn an_unknown_component_lists_the_known_ones() {
    let (cfg, out) = config("component", |t| t.replace("name = \"mlp\"", "name = \"transformer\""));
    let o = torchfit(&["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_refused(&o, &out, &["transformer", "mlp"]);
}

#[test]
fn an_option_that_does_not_apply_to_the_optimizer_is_refused() {
    let (cfg, out) = config("adam", |t| t.replace("name = \"sgd\"", "name = \"adam\""));
    let o = torchfit(&["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_refused(&o, &out, &["bad.toml", "optimizer.momentum", "adam"]);
}

#[test]
fn a_closed_stdout_does_not_crash_the_run() {
    use std::process::Stdio;
    let out = dir("pipe").join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_torchfit"))
        .args(["train", "examples/digits/config.toml", "--set", "max_epochs=5", "--out", out.to_str().unwrap()])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away, as `| head` does
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
    assert!(out.join("summary.json").exists(), "the run completed");
}
