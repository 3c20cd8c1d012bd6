//! The plugin template builds, passes its tests and runs in `torchfit` from a copy outside the
//! repository, with the three commands of its README.

use std::process::Command;
use torchfit_tests::{read_json, root, temp_dir, torchfit_env};

#[test]
fn the_plugin_template_builds_tests_and_runs_outside_the_repository() {
    let dir = temp_dir("plugin-template");
    let copy = dir.join("my-plugin");
    std::fs::create_dir_all(copy.join("src")).unwrap();
    for f in ["Cargo.toml", "build.rs", "src/lib.rs", "config.toml"] {
        std::fs::copy(root().join("examples/plugin-template").join(f), copy.join(f)).unwrap();
    }
    // As a team would: the SDK by its path in this checkout, another package name (the shared
    // target folder keeps the repository's own `libmy_plugin.so`), the workspace's lock file.
    let sdk = root().join("sdk");
    let manifest = std::fs::read_to_string(copy.join("Cargo.toml"))
        .unwrap()
        .replace("name = \"my-plugin\"", "name = \"my-plugin-copy\"")
        .replace("path = \"../../sdk\"", &format!("path = {:?}", sdk.display().to_string()));
    std::fs::write(copy.join("Cargo.toml"), manifest).unwrap();
    std::fs::copy(root().join("Cargo.lock"), copy.join("Cargo.lock")).unwrap();

    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(std::path::Path::parent).unwrap().to_path_buf();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = |verb: &str| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args([verb, "--quiet", "--offline"])
            .current_dir(&copy)
            .env("CARGO_TARGET_DIR", profile_dir.parent().unwrap())
            .env("LIBTORCH", root().join(".venv/torch"))
            .env("LIBTORCH_CXX11_ABI", "1");
        if release {
            cmd.arg("--release");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "cargo {verb} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    cargo("build");
    let tests = cargo("test");
    assert!(tests.contains("test result: ok. 2 passed"), "{tests}");

    let lib = profile_dir.join("libmy_plugin_copy.so");
    let config = std::fs::read_to_string(copy.join("config.toml"))
        .unwrap()
        .replace("../../target/release/libmy_plugin.so", lib.to_str().unwrap())
        .replace("../digits/digits.csv.gz", root().join("examples/digits/digits.csv.gz").to_str().unwrap());
    std::fs::write(copy.join("config.toml"), config).unwrap();
    let run = dir.join("run");
    let o = torchfit_env(
        &["train", copy.join("config.toml").to_str().unwrap(), "--set", "max_epochs=1", "--out", run.to_str().unwrap()],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let history = read_json(&run.join("history.json"));
    assert!(history[0]["batches"][0]["l2_term"].as_f64().unwrap() > 0.0);
}
