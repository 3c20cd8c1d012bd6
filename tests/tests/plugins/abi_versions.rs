//! The SDK grows without breaking plugins (the rule in `sdk/src/ffi/ext/mod.rs`): a plugin built
//! against the first released SDK (1.0) loads and runs in the current host, and a plugin built
//! against the current SDK loads into a 1.0 host, which runs it without the hooks it does not
//! know or refuses it in one line when the plugin says it needs them.
//!
//! The 1.0 side is built in the test from the repository's own history: `git archive` of the
//! commit that released ABI v1 gives its `sdk/` and `examples/custom-callback/`, built here
//! (renamed, so that its library does not replace the current example's), and a small host
//! written against that SDK: it loads a library as the 1.0 `torchfit` did (abi_stable's root
//! module, the 1.0 `build`, the 1.0 host-side adapter) and drives a callback through an epoch with
//! the 1.0 `FakeHost`. Building the whole 1.0 engine would add minutes for no more fidelity: the
//! boundary is the SDK's code on both sides.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use torchfit_tests::{plugin_library, read_json, root, temp_dir, train_digits};

/// The commit whose `sdk/` is torchfit's first released plugin ABI (`ABI_VERSION` 1, SDK 1.0).
const ABI_V1: &str = "938d1c7c9671434ff14c57b0e230cdf34232897e";

fn git(args: &[&str]) -> Option<std::process::Output> {
    Command::new("git").args(args).current_dir(root()).output().ok().filter(|o| o.status.success())
}

/// The host written against SDK 1.0: `host-abi-v1 LIBRARY CALLBACK CONFIG` prints `refused: ...`
/// when the library or the callback is refused, else `ran: <history as JSON>` after two epochs.
const HOST_V1: &str = r#"
use torchfit_sdk::abi_stable::library::lib_header_from_path;
use torchfit_sdk::ffi::{BuildContextFfi, ComponentFfi, DynCallback, KindFfi, PluginRoot_Ref};
use torchfit_sdk::testing::{drive_one_epoch, FakeHost};
use torchfit_sdk::{BuildContext, Task, Value};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (path, name, config) = (&args[1], &args[2], &args[3]);
    let root = match lib_header_from_path(path.as_ref()).and_then(|h| h.init_root_module::<PluginRoot_Ref>()) {
        Ok(root) => root,
        Err(e) => return println!("refused: {}", e.to_string().lines().last().unwrap_or_default()),
    };
    let ctx = BuildContext { name: name.clone(), input_shape: vec![2], n_outputs: 3, task: Task::Classification, device: torchfit_sdk::tch::Device::Cpu, base_dir: ".".into(), seed: 0 };
    let built = (root.build())(KindFfi::Callback, name.as_str().into(), config.as_str().into(), &BuildContextFfi::from(&ctx));
    match built.into_result() {
        Err(e) => println!("refused: {}", torchfit_sdk::Error::from(e)),
        Ok(ComponentFfi::Callback(c)) => {
            let mut cb = DynCallback::new(c);
            let mut host = FakeHost::default();
            for _ in 0..2 {
                drive_one_epoch(&mut cb, &mut host).expect("the callback runs");
            }
            println!("ran: {}", Value::Array(host.history.into_iter().map(Value::Object).collect()));
        }
        Ok(_) => println!("refused: not a callback"),
    }
}
"#;

/// The 1.0 workspace, built once for the tests of this file: its example plugin and its host.
struct V1 {
    plugin: PathBuf,
    host: PathBuf,
}

/// Builds the 1.0 side; `None` (with a loud message) when the commit is not in this checkout.
fn v1() -> Option<&'static V1> {
    static BUILT: OnceLock<Option<V1>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if git(&["cat-file", "-e", &format!("{ABI_V1}^{{commit}}")]).is_none() {
                eprintln!("SKIP: commit {ABI_V1} (SDK 1.0) is not in this checkout (shallow clone or no git)");
                return None;
            }
            Some(build_v1())
        })
        .as_ref()
}

fn build_v1() -> V1 {
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

    // A workspace of just the old SDK, the old example and the 1.0 host. They get other paths
    // and names: cargo keys artifacts in a shared target dir by workspace-relative path and name,
    // and the old crates must not replace the current ones.
    std::fs::rename(src.join("sdk"), src.join("sdk-abi-v1")).unwrap();
    let manifest = src.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap().replace("path = \"sdk\"", "path = \"sdk-abi-v1\"");
    let start = text.find("members = [").unwrap();
    let end = start + text[start..].find(']').unwrap() + 1;
    let members = "members = [\"sdk-abi-v1\", \"examples/custom-callback\", \"host-abi-v1\"]";
    std::fs::write(&manifest, format!("{}{members}{}", &text[..start], &text[end..])).unwrap();
    let example = src.join("examples/custom-callback/Cargo.toml");
    let text = std::fs::read_to_string(&example)
        .unwrap()
        .replace("name = \"custom-callback\"", "name = \"custom-callback-abi-v1\"")
        .replace("../../sdk\"", "../../sdk-abi-v1\"");
    std::fs::write(&example, text).unwrap();
    let host = src.join("host-abi-v1");
    std::fs::create_dir_all(host.join("src")).unwrap();
    std::fs::write(
        host.join("Cargo.toml"),
        "[package]\nname = \"torchfit-host-abi-v1\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\
         build = \"../sdk-abi-v1/build.rs\"\n\n[dependencies]\ntorchfit-sdk = { path = \"../sdk-abi-v1\" }\n\
         torch-sys.workspace = true\n",
    )
    .unwrap();
    std::fs::write(host.join("src/main.rs"), HOST_V1).unwrap();

    // Same target dir and the same libtorch as the current build, so libtorch's bindings are reused.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "--offline", "-p", "custom-callback-abi-v1", "-p", "torchfit-host-abi-v1"])
        .args(["--manifest-path", manifest.to_str().unwrap()])
        .env("CARGO_TARGET_DIR", profile_dir.parent().unwrap())
        .env("LIBTORCH", root().join(".venv/torch"))
        .env("LIBTORCH_CXX11_ABI", "1");
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "building the SDK 1.0 plugin and host failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    V1 { plugin: profile_dir.join("libcustom_callback_abi_v1.so"), host: profile_dir.join("torchfit-host-abi-v1") }
}

#[test]
fn a_plugin_built_against_the_first_released_abi_loads_and_runs() {
    let Some(v1) = v1() else { return };
    let dir = torchfit_tests::plugin_dir("abi-v1", &v1.plugin, "libcustom_callback_abi_v1.so");
    let run = temp_dir("abi-v1-run").join("run");
    let o = train_digits(
        &["max_epochs=2", "callbacks__grad_norm__key=grad_norm"],
        Some(&run),
        &[("TORCHFIT_PLUGIN_PATH", dir.to_str().unwrap())],
    );
    assert!(o.status.success(), "the current host refused the ABI v1 plugin: {}", String::from_utf8_lossy(&o.stderr));
    // Every hook it knows ran: gradients per batch (on_grad_computed), their mean per epoch
    // (on_epoch_begin clears, on_epoch_end records).
    let history = read_json(&run.join("history.json"));
    for e in history.as_array().unwrap() {
        let per_batch: Vec<f64> =
            e["batches"].as_array().unwrap().iter().filter_map(|b| b["grad_norm"].as_f64()).collect();
        let mean = per_batch.iter().sum::<f64>() / per_batch.len() as f64;
        assert!((e["grad_norm"].as_f64().unwrap() - mean).abs() < 1e-9, "{e}");
    }
}

/// Runs the 1.0 host on callback `name` of the SDK 1.1 test plugin.
fn in_v1_host(v1: &V1, name: &str, config: &str) -> String {
    let lib = plugin_library("torchfit-testplugin-sdk11", "torchfit_testplugin_sdk11");
    let o = Command::new(&v1.host).args([lib.to_str().unwrap(), name, config]).output().expect("run the 1.0 host");
    assert!(o.status.success(), "the 1.0 host failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn a_1_1_plugin_runs_in_a_1_0_host_without_its_new_hooks_or_is_refused_in_one_line() {
    let Some(v1) = v1() else { return };
    // `loss_watch` uses on_loss_computed, which SDK 1.0 does not have, and requires nothing: the
    // 1.0 host runs it, every hook it knows, without that one.
    let out = in_v1_host(v1, "loss_watch", "{}");
    let history: serde_json::Value = serde_json::from_str(out.strip_prefix("ran: ").expect(&out).trim()).unwrap();
    assert_eq!(history[1]["loss_hook_calls"], 0, "{history}");
    // `l1_penalty` needs SDK 1.1 (its loss term is the point): refused at build, in one line
    // that names the version.
    let out = in_v1_host(v1, "l1_penalty", r#"{"coef": 0.1}"#);
    assert_eq!(out.trim_end().lines().count(), 1, "{out}");
    assert!(out.starts_with("refused: ") && out.contains("SDK 1.1") && out.contains("l1_penalty"), "{out}");
    // The same plugin in the current host calls the hook.
    let run = temp_dir("abi-v1-loss-watch").join("run");
    let lib = plugin_library("torchfit-testplugin-sdk11", "torchfit_testplugin_sdk11");
    let plugins = format!("plugins=[{:?}]", lib.display().to_string());
    let o = train_digits(&["max_epochs=1", &plugins, "callbacks__watch__type=loss_watch"], Some(&run), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let calls = read_json(&run.join("history.json"))[0]["loss_hook_calls"].as_u64().unwrap();
    assert!(calls > 10, "one call per training batch: {calls}");
}
