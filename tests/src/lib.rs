//! Helpers shared by the workspace-level integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The `torchfit` binary built beside this test executable (`cargo test --workspace` builds it,
/// because the engine package has integration tests of its own).
pub fn torchfit_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps");
    let bin = dir.join("torchfit");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace` (or `cargo build --bin torchfit` first)",
        bin.display()
    );
    bin
}

/// Runs `torchfit` with `args` from the repository root.
pub fn torchfit(args: &[&str]) -> Output {
    Command::new(torchfit_bin())
        .args(args)
        .current_dir(root())
        .env("TORCHFIT_LOG", "warn")
        .output()
        .expect("run torchfit")
}

/// The venv's Python (with torch), installed by `.cargo/setup.sh`.
pub fn python() -> PathBuf {
    let p = root().join(".venv/bin/python");
    assert!(p.exists(), "{} is missing: run `bash .cargo/setup.sh`", p.display());
    p
}

/// A fresh, empty temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("torchfit-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

/// The embedded digits (`examples/digits/digits.csv.gz`): `[1797, 64]` pixels scaled to [0, 1]
/// and the labels.
pub fn digits() -> (tch::Tensor, tch::Tensor) {
    use torchfit_sdk::DatasetReader;
    let cfg: torchfit::readers::csv::CsvConfig =
        torchfit_sdk::parse_config(&serde_json::json!({"path": "x", "scale": 16.0})).expect("csv config");
    let path = root().join("examples/digits/digits.csv.gz");
    let mut ds = torchfit::readers::csv::read(&path, &cfg, torchfit_sdk::Task::Classification).expect("the digits");
    let all: Vec<i64> = (0..ds.len() as i64).collect();
    ds.get(&all).expect("every digit")
}

/// The shared data folder (`../shared/data`), if present.
pub fn shared_data() -> Option<PathBuf> {
    let d = root().parent()?.join("shared/data");
    d.is_dir().then_some(d)
}

/// Reads and parses a JSON file.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Builds workspace package `package` (a plugin, or another cdylib) with the profile of this
/// test executable and returns its shared library, `lib<stem>.so`.
pub fn plugin_library(package: &str, stem: &str) -> PathBuf {
    build_plugin(package, stem, &[])
}

fn build_plugin(package: &str, stem: &str, extra: &[&str]) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps").to_path_buf();
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "-p", package]).args(extra).current_dir(root());
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo build");
    assert!(out.status.success(), "cargo build -p {package} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let lib = profile_dir.join(format!("lib{stem}.so"));
    assert!(lib.exists(), "{} not built", lib.display());
    lib
}

/// Copies `lib` into a fresh folder `name` (a plugin directory of its own) as `file`.
pub fn plugin_dir(name: &str, lib: &Path, file: &str) -> PathBuf {
    let d = temp_dir(name);
    std::fs::copy(lib, d.join(file)).expect("copy plugin");
    d
}

/// Runs `torchfit` with extra environment variables.
pub fn torchfit_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(torchfit_bin());
    cmd.args(args).current_dir(root()).env("TORCHFIT_LOG", "warn").env_remove("TORCHFIT_PLUGIN_PATH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run torchfit")
}

/// Runs `torchfit train examples/digits/config.toml` with each of `sets` as a `--set KEY=VALUE`,
/// into the run directory `out` when given, with extra environment variables.
pub fn train_digits(sets: &[&str], out: Option<&Path>, env: &[(&str, &str)]) -> Output {
    let mut args = vec!["train", "examples/digits/config.toml"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let out = out.map(|p| p.to_str().expect("a UTF-8 path"));
    if let Some(out) = out {
        args.extend(["--out", out]);
    }
    torchfit_env(&args, env)
}

/// libtorch has one random generator per process, reseeded by every `fit`: nets trained at the
/// same time in threads of one process perturb each other's dropout. Tests that train in-process
/// hold this lock.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A run directory's whole history as JSON text, without `keys` (e.g. `dur`, which differs
/// between runs): every other epoch and batch value, bit for bit.
pub fn history_without(run: &Path, keys: &[&str]) -> String {
    let mut h = read_json(&run.join("history.json"));
    for e in h.as_array_mut().expect("a history is a list") {
        let e = e.as_object_mut().expect("an epoch is an object");
        for k in keys {
            e.remove(*k);
        }
    }
    h.to_string()
}
