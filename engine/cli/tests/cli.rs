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

/// A config over small CSV files written beside it: `train.csv` with `rows`, and more `files`.
fn csv_config(name: &str, rows: &str, files: &[(&str, &str)], extra: &str) -> (PathBuf, PathBuf) {
    let d = dir(name);
    std::fs::write(d.join("train.csv"), rows).unwrap();
    for (file, text) in files {
        std::fs::write(d.join(file), text).unwrap();
    }
    let text = format!("[dataset]\nname = \"csv\"\npath = \"train.csv\"\n[module]\nname = \"mlp\"\n{extra}");
    std::fs::write(d.join("bad.toml"), text).unwrap();
    (d.join("bad.toml"), d.join("out"))
}

const ROWS: &str = "1,2,0\n3,4,1\n5,6,0\n7,8,1\n2,2,0\n4,4,1\n6,6,0\n8,8,1\n1,1,0\n3,3,1\n";

#[test]
fn sizes_that_cannot_fit_are_refused_before_allocating() {
    let (cfg, out) = config("huge-layer", |t| t.replace("hidden = [128, 64]", "hidden = [4000000000]"));
    let o = torchfit(&["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_refused(&o, &out, &["bad.toml", "module.hidden[0]", "GB of parameters"]);
    let (cfg, out) = csv_config("huge-label", &format!("{ROWS}9,9,1000000000\n"), &[], "");
    let o = torchfit(&["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_refused(&o, &out, &["1000000001 outputs", "class label"]);
}

#[test]
fn a_thread_count_beyond_the_machine_is_refused_before_any_thread_starts() {
    // 100,000 threads on a small machine never finished and used up its processes.
    let (cfg, out) = config("threads", |t| t);
    let o = torchfit(&["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap(), "--set", "threads=100000"]);
    assert_refused(&o, &out, &["--set threads=100000", "`threads`", "at most"]);
}

#[test]
fn validation_and_test_data_the_model_cannot_take_are_refused_before_training() {
    let predefined = "[train_split]\nkind = \"predefined\"\n[valid_dataset]\nname = \"csv\"\npath = \"valid.csv\"\n";
    let (cfg, out) = csv_config("valid-width", ROWS, &[("valid.csv", "1,2,3,0\n")], predefined);
    let o = torchfit(&["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_refused(&o, &out, &["validation samples have shape [3]", "[2]"]);
    let (cfg, out) = csv_config("valid-label", ROWS, &[("valid.csv", "1,2,7\n")], predefined);
    let o = torchfit(&["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_refused(&o, &out, &["validation data has class label 7", "0..=1"]);
    let test = "[test_dataset]\nname = \"csv\"\npath = \"test.csv\"\n";
    let (cfg, out) = csv_config("test-label", ROWS, &[("test.csv", "1,2,0\n1,2,5\n")], test);
    let o = torchfit(&["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_refused(&o, &out, &["[test_dataset] has class label 5"]);
}

#[test]
fn a_negative_momentum_is_refused_as_torch_refuses_it() {
    let (cfg, out) = config("momentum", |t| t.replace("momentum = 0.9", "momentum = -1"));
    let o = torchfit(&["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_refused(&o, &out, &["bad.toml", "optimizer.momentum", ">= 0"]);
}

#[test]
fn criterion_settings_libtorch_would_refuse_are_bad_input_in_one_line() {
    let smoothing = |t: String| t + "\n[criterion]\nname = \"cross_entropy\"\nlabel_smoothing = 2\n";
    let (cfg, out) = config("smoothing", smoothing);
    let o = torchfit(&["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_refused(&o, &out, &["bad.toml", "criterion.label_smoothing", "between 0.0 and 1.0"]);
    let (cfg, out) = config("bce", |t| t + "\n[criterion]\nname = \"bce_with_logits\"\n");
    let o = torchfit(&["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_refused(&o, &out, &["bce_with_logits", "one 0/1 target per output", "cross_entropy"]);
    // Ten digit classes, two class weights: refused when the criterion is built, not at a batch.
    let weights = |t: String| t + "\n[criterion]\nname = \"cross_entropy\"\nweight = [1.0, 2.0]\n";
    let (cfg, out) = config("weights", weights);
    let o = torchfit(&["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_refused(&o, &out, &["bad.toml", "criterion.weight", "has 2 values", "10 outputs"]);
}

#[test]
fn a_pointwise_criterion_for_a_classifier_is_refused_when_it_is_built() {
    let (cfg, out) = config("mse", |t| t + "\n[criterion]\nname = \"mse\"\n");
    let o = torchfit(&["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_refused(&o, &out, &["bad.toml", "criterion.name", "`mse`", "class indices", "cross_entropy"]);
}

#[test]
fn a_torchscript_path_to_another_kind_of_file_is_bad_input_in_one_line() {
    let (cfg, out) = config("not-script", |t| {
        t.replace("name = \"mlp\"\nhidden = [128, 64]\ndropout = 0.1", "name = \"torchscript\"\npath = \"bad.toml\"")
    });
    let o = torchfit(&["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_refused(&o, &out, &["bad.toml: not a TorchScript module"]);
}

#[test]
fn cuda_without_a_gpu_is_the_environment_s_refusal_exit_3() {
    if std::env::var_os("CUDA_VISIBLE_DEVICES").is_none() && Path::new("/dev/nvidia0").exists() {
        eprintln!("SKIPPED: this machine has a GPU");
        return;
    }
    let (cfg, out) = config("cuda", |t| t.replace("threads = 2", "threads = 2\ndevice = \"cuda\""));
    let o = torchfit(&["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(stderr.trim_end().lines().count() == 1 && stderr.contains("CUDA"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn a_value_beyond_float32s_range_is_bad_input_naming_the_line() {
    let (cfg, out) = csv_config("huge-value", &format!("{ROWS}9,4e38,1\n"), &[], "");
    let o = torchfit(&["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_refused(&o, &out, &["train.csv:11", "field 2 is beyond float32's range"]);
}

#[test]
fn one_sample_trains_with_a_warning_that_nothing_is_held_out() {
    let extra = "[train_split]\nfraction = 0.2\n[test_split]\nfraction = 0.2\n";
    let (cfg, out) = csv_config("one-sample", "1,2,0\n", &[], extra);
    let o = Command::new(env!("CARGO_BIN_EXE_torchfit"))
        .args(["train", cfg.to_str().unwrap(), "--set", "max_epochs=2", "--out", out.to_str().unwrap()])
        .env("TORCHFIT_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("test_split.fraction = 0.2 of 1 samples holds none out"), "{stderr}");
    assert!(stderr.contains("trains without validation"), "{stderr}");
}
