//! The plugin ABI grows by appending only: a plugin built against the first released SDK ABI
//! still loads and runs in the current host.
//!
//! The old plugin is built in the test from the repository's own history: `git archive` of the
//! commit that released ABI v1 gives its `sdk/` and `examples/custom-callback/`, built here
//! (renamed, so that its library does not replace the current example's) and loaded by the
//! current `torchfit`.

use std::path::Path;
use std::process::Command;
use torchfit_tests::{read_json, root, temp_dir, train_digits};

/// The commit whose `sdk/` is torchfit's first released plugin ABI (`ABI_VERSION` 1).
const ABI_V1: &str = "938d1c7c9671434ff14c57b0e230cdf34232897e";

fn git(args: &[&str]) -> Option<std::process::Output> {
    Command::new("git").args(args).current_dir(root()).output().ok().filter(|o| o.status.success())
}

#[test]
fn a_plugin_built_against_the_first_released_abi_loads_and_runs() {
    if git(&["cat-file", "-e", &format!("{ABI_V1}^{{commit}}")]).is_none() {
        eprintln!("SKIP a_plugin_built_against_the_first_released_abi_loads_and_runs: commit {ABI_V1} is not in this checkout (shallow clone or no git)");
        return;
    }
    let src = temp_dir("abi-v1-src");
    let archive =
        git(&["archive", "--format=tar", ABI_V1, "Cargo.toml", "Cargo.lock", "sdk", "examples/custom-callback"])
            .expect("git archive");
    let mut tar = Command::new("tar")
        .args(["-x", "-C", src.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("tar");
    std::io::Write::write_all(tar.stdin.as_mut().unwrap(), &archive.stdout).unwrap();
    assert!(tar.wait().unwrap().success());

    // A workspace of just the old SDK and the old example. Both get other paths and the example
    // another name: cargo keys artifacts in a shared target dir by workspace-relative path and
    // name, and the old crates must not replace the current ones.
    std::fs::rename(src.join("sdk"), src.join("sdk-abi-v1")).unwrap();
    let manifest = src.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap().replace("path = \"sdk\"", "path = \"sdk-abi-v1\"");
    let start = text.find("members = [").unwrap();
    let end = start + text[start..].find(']').unwrap() + 1;
    std::fs::write(
        &manifest,
        format!("{}members = [\"sdk-abi-v1\", \"examples/custom-callback\"]{}", &text[..start], &text[end..]),
    )
    .unwrap();
    let example = src.join("examples/custom-callback/Cargo.toml");
    let text = std::fs::read_to_string(&example)
        .unwrap()
        .replace("name = \"custom-callback\"", "name = \"custom-callback-abi-v1\"")
        .replace("../../sdk\"", "../../sdk-abi-v1\"");
    std::fs::write(&example, text).unwrap();

    // Same target dir and the same libtorch as the current build, so libtorch's bindings are reused.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "--quiet",
        "--offline",
        "-p",
        "custom-callback-abi-v1",
        "--manifest-path",
        manifest.to_str().unwrap(),
    ])
    .env("CARGO_TARGET_DIR", profile_dir.parent().unwrap())
    .env("LIBTORCH", root().join(".venv/torch"))
    .env("LIBTORCH_CXX11_ABI", "1");
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "building the ABI v1 plugin failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let lib = profile_dir.join("libcustom_callback_abi_v1.so");

    let dir = torchfit_tests::plugin_dir("abi-v1", &lib, "libcustom_callback_abi_v1.so");
    let run = temp_dir("abi-v1-run").join("run");
    let o = train_digits(
        &["max_epochs=2", "callbacks__grad_norm__key=grad_norm"],
        Some(&run),
        &[("TORCHFIT_PLUGIN_PATH", dir.to_str().unwrap())],
    );
    assert!(o.status.success(), "the current host refused the ABI v1 plugin: {}", String::from_utf8_lossy(&o.stderr));
    let history = read_json(&run.join("history.json"));
    assert!(history[1]["grad_norm"].as_f64().unwrap() > 0.0);
}
