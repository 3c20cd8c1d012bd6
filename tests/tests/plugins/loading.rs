//! Plugins loaded at run time: a third party's callback runs; bad libraries are refused with a
//! short message; a plugin that panics ends the run with an error, never a crash.

use std::path::PathBuf;
use torchfit_tests::{plugin_dir, plugin_library, read_json, temp_dir, torchfit_env, train_digits};

fn example() -> PathBuf {
    plugin_library("custom-callback", "custom_callback")
}

fn faulty() -> PathBuf {
    plugin_library("torchfit-testplugin-faulty", "torchfit_testplugin_faulty")
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The error line (the plugin's own panic message, printed by Rust's panic hook, may precede it).
fn error_line(o: &std::process::Output) -> String {
    stderr(o).lines().filter(|l| l.starts_with("error: ")).collect::<Vec<_>>().join("\n")
}

fn train_losses(history: &serde_json::Value) -> Vec<String> {
    history.as_array().unwrap().iter().map(|e| e["train_loss"].to_string()).collect()
}

#[test]
fn a_third_party_callback_loads_from_the_plugin_path_and_runs() {
    let dir = plugin_dir("example", &example(), "libcustom_callback.so");
    let with = temp_dir("with-plugin").join("run");
    let o = train_digits(
        &["max_epochs=3", "callbacks__grad_norm__key=grad_norm"],
        Some(&with),
        &[("TORCHFIT_PLUGIN_PATH", dir.to_str().unwrap())],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let history = read_json(&with.join("history.json"));
    for epoch in history.as_array().unwrap() {
        assert!(epoch["grad_norm"].as_f64().unwrap() > 0.0);
        let batches = epoch["batches"].as_array().unwrap();
        assert_eq!(batches.iter().filter(|b| b.get("grad_norm").is_some()).count(), 36, "one value per training batch");
    }
    // The plugin only observes: training is bit-identical to a run without it.
    let without = temp_dir("without-plugin").join("run");
    let o = torchfit_env(
        &["train", "examples/digits/config.toml", "--set", "max_epochs=3", "--out", without.to_str().unwrap()],
        &[],
    );
    assert!(o.status.success());
    assert_eq!(train_losses(&history), train_losses(&read_json(&without.join("history.json"))));
}

#[test]
fn plugins_lists_a_librarys_components_with_their_origin() {
    let dir = plugin_dir("list", &example(), "libcustom_callback.so");
    let o = torchfit_env(&["plugins"], &[("TORCHFIT_PLUGIN_PATH", dir.to_str().unwrap())]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text.lines().find(|l| l.contains("grad_norm")).expect("grad_norm listed");
    assert!(line.starts_with("callback") && line.contains("0.1.0") && line.contains("libcustom_callback.so"), "{line}");
}

#[test]
fn a_stray_library_on_the_search_path_is_skipped_with_a_warning() {
    let dir = plugin_dir("stray", &example(), "libcustom_callback.so");
    let libtorch = PathBuf::from(env!("TORCHFIT_LIBTORCH_LIB"));
    std::fs::copy(libtorch.join("libtorch_global_deps.so"), dir.join("libstray.so")).unwrap();
    std::fs::write(dir.join("junk.so"), b"not a library").unwrap();
    let path = [("TORCHFIT_PLUGIN_PATH", dir.to_str().unwrap())];
    let o = torchfit_env(&["plugins"], &path);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("grad_norm"));
    assert!(err.contains("libstray.so") && err.contains("junk.so") && err.contains("skipped"), "{err}");
    let o = train_digits(&["max_epochs=1"], None, &path);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_plugin_folder_that_does_not_exist_is_a_config_error() {
    let o = train_digits(&["plugin_dirs=[\"no-such-folder\"]"], None, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = error_line(&o);
    assert!(err.contains("plugin_dirs[0]") && err.contains("no-such-folder"), "{err}");
}

fn refused_with(plugin: &str, needles: &[&str]) {
    let out = temp_dir("refused").join("run");
    let o = torchfit_env(
        &[
            "train",
            "examples/digits/config.toml",
            "--set",
            &format!("plugins=[{plugin:?}]"),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "a short message expected:\n{err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} not in {err}");
    }
    assert!(!out.exists());
}

#[test]
fn a_library_that_is_not_a_plugin_is_refused() {
    let lib = PathBuf::from(env!("TORCHFIT_LIBTORCH_LIB")).join("libtorch_global_deps.so");
    refused_with(lib.to_str().unwrap(), &["libtorch_global_deps.so", "not a torchfit plugin"]);
}

#[test]
fn a_plugin_built_against_another_libtorch_is_refused() {
    let lib = plugin_library("torchfit-testplugin-wrong-torch", "torchfit_testplugin_wrong_torch");
    refused_with(
        lib.to_str().unwrap(),
        &["libtorchfit_testplugin_wrong_torch.so", "libtorch 2.13.0", "libtorch 2.11.0"],
    );
}

#[test]
fn a_plugin_with_an_incompatible_abi_is_refused_in_one_line() {
    let lib = plugin_library("torchfit-testplugin-wrong-abi", "torchfit_testplugin_wrong_abi");
    refused_with(lib.to_str().unwrap(), &["libtorchfit_testplugin_wrong_abi.so", "incompatible torchfit plugin ABI"]);
}

#[test]
fn a_missing_plugin_named_in_the_config_is_a_clear_error() {
    let o = train_digits(&["callbacks__cp__type=checkpoint_that_is_not_there"], None, &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("callbacks.cp") && err.contains("checkpoint_that_is_not_there") && err.contains("print_log"),
        "{err}"
    );
}

#[test]
fn the_same_name_from_two_libraries_is_refused_naming_both() {
    let a = plugin_dir("dup-a", &example(), "liba.so");
    let b = plugin_dir("dup-b", &example(), "libb.so");
    let path = format!("{}:{}", a.display(), b.display());
    let o = torchfit_env(&["plugins"], &[("TORCHFIT_PLUGIN_PATH", &path)]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("grad_norm") && err.contains("liba.so") && err.contains("libb.so"), "{err}");
}

#[test]
fn a_panic_in_any_hook_ends_the_run_with_an_error_naming_the_callback_and_the_hook() {
    let lib = faulty();
    for hook in [
        "initialize",
        "on_train_begin",
        "on_epoch_begin",
        "on_batch_begin",
        "on_grad_computed",
        "on_batch_end",
        "on_epoch_end",
        "on_train_end",
    ] {
        let o = torchfit_env(
            &[
                "train",
                "examples/digits/config.toml",
                "--set",
                "max_epochs=2",
                "--set",
                &format!("plugins=[{:?}]", lib.display().to_string()),
                "--set",
                "callbacks__bad__type=faulty",
                "--set",
                &format!("callbacks__bad__hook={hook}"),
            ],
            &[],
        );
        assert_eq!(o.status.code(), Some(1), "{hook}: the host must exit with an error, not crash: {}", stderr(&o));
        let err = error_line(&o);
        assert!(err.contains("callback `bad`") && err.contains(hook) && err.contains("panicked"), "{hook}: {err}");
        assert_eq!(stderr(&o).trim_end().lines().count(), 1, "{hook}: one line, not the plugin's panic report too");
    }
}

#[test]
fn a_plugin_error_is_reported_like_a_panic_without_one() {
    let lib = faulty();
    let o = torchfit_env(
        &[
            "train",
            "examples/digits/config.toml",
            "--set",
            &format!("plugins=[{:?}]", lib.display().to_string()),
            "--set",
            "callbacks__bad__type=faulty",
            "--set",
            "callbacks__bad__hook=on_epoch_end",
            "--set",
            "callbacks__bad__how=error",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(error_line(&o).contains("faulty plugin fails in on_epoch_end"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn a_panic_in_a_plugin_criterion_or_constructor_is_an_error_not_a_crash() {
    let lib = faulty();
    let plugins = format!("plugins=[{:?}]", lib.display().to_string());
    let o = torchfit_env(
        &["train", "examples/digits/config.toml", "--set", &plugins, "--set", "criterion__name=faulty_loss"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(error_line(&o).contains("panicked in loss"), "{}", stderr(&o));
    let o = train_digits(&[&plugins, "callbacks__bad__type=faulty", "callbacks__bad__hook=constructor"], None, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(error_line(&o).contains("panicked in build"), "{}", stderr(&o));
}

#[test]
fn plugin_log_records_appear_in_the_hosts_output() {
    let lib = faulty();
    let o = torchfit_env(
        &[
            "train",
            "examples/digits/config.toml",
            "--set",
            "max_epochs=1",
            "--set",
            &format!("plugins=[{:?}]", lib.display().to_string()),
            "--set",
            "callbacks__bad__type=faulty",
            "--set",
            "callbacks__bad__hook=none",
        ],
        &[("TORCHFIT_LOG", "info")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("[info] faulty plugin initialized to misbehave in none"), "{}", stderr(&o));
}

/// Saves the history length on train end, as TrainEndCheckpoint does (the `path` key).
struct SaveOnTrainEnd(std::path::PathBuf);

impl torchfit_sdk::Callback for SaveOnTrainEnd {
    fn on_train_end(&mut self, host: &mut dyn torchfit_sdk::Host) -> torchfit_sdk::Result<()> {
        let epochs = host.epochs();
        host.save_json(&self.0, &serde_json::json!({ "epochs": epochs }))
    }
}

fn save_on_train_end(
    config: &serde_json::Value,
    _ctx: &torchfit_sdk::BuildContext,
) -> torchfit_sdk::Result<Box<dyn torchfit_sdk::Callback>> {
    Ok(Box::new(SaveOnTrainEnd(config["path"].as_str().unwrap().into())))
}

#[test]
fn after_a_plugin_panics_the_run_ends_cleanly_and_train_end_state_is_saved() {
    let lib = torchfit::plugins::Library::load(&faulty()).unwrap();
    let state = temp_dir("saved-after-panic").join("state.json");
    let x = tch::Tensor::randn([64, 4], (tch::Kind::Float, tch::Device::Cpu));
    let y = x.sum_dim_intlist(1, false, tch::Kind::Float).gt(0.0).to_kind(tch::Kind::Int64);
    let mut net = torchfit::classifier();
    net.registry_mut().add_library(&lib).unwrap();
    net.registry_mut()
        .add("save_on_train_end", "0.0.1", "test", torchfit_sdk::Constructor::Callback(save_on_train_end))
        .unwrap();
    net.set_params(&[
        ("max_epochs", "5"),
        ("callbacks__print_log", "false"),
        ("callbacks__bad__type", "faulty"),
        ("callbacks__bad__hook", "on_epoch_end"),
    ])
    .unwrap();
    net.set_param("callbacks__save__type", "save_on_train_end").unwrap();
    net.set_param("callbacks__save__path", state.to_str().unwrap()).unwrap();
    let err = net.fit(&x, &y).unwrap_err().to_string();
    assert!(err.contains("callback `bad` failed in on_epoch_end") && err.contains("panicked"), "{err}");
    assert_eq!(torchfit_tests::read_json(&state)["epochs"], 1, "the state of the failed run was saved on train end");
}

#[test]
fn a_panic_in_a_callbacks_state_fails_the_run_but_keeps_its_directory() {
    let dir = plugin_dir("state-panic", &faulty(), "libfaulty.so");
    let out = temp_dir("state-panic-run").join("run");
    let sets = [
        "max_epochs=3",
        "callbacks__bad__type=\"faulty\"",
        "callbacks__bad__hook=\"state\"",
        "callbacks__bad__how=\"panic\"",
    ];
    let o = train_digits(&sets, Some(&out), &[("TORCHFIT_PLUGIN_PATH", dir.to_str().unwrap())]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(error_line(&o).contains("callback `bad` failed in state"), "{}", stderr(&o));
    assert_eq!(read_json(&out.join("history.json")).as_array().unwrap().len(), 3, "the epochs that ran are kept");
    assert!(read_json(&out.join("summary.json"))["error"].as_str().unwrap().contains("state"));
}

#[test]
fn a_loaded_callback_scores_with_a_loaded_scorer_through_the_host() {
    let lib = faulty();
    let out = temp_dir("scorer").join("run");
    let plugins = format!("plugins=[{:?}]", lib.display().to_string());
    let o = train_digits(
        &[
            "max_epochs=2",
            &plugins,
            "callbacks__s__type=faulty",
            "callbacks__s__hook=none",
            "callbacks__s__score=constant_half",
        ],
        Some(&out),
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_json(&out.join("history.json"))[1]["scored"], 0.5);
}

#[test]
fn an_unknown_scorer_is_an_error_listing_the_known_ones() {
    let lib = faulty();
    let plugins = format!("plugins=[{:?}]", lib.display().to_string());
    let o = train_digits(
        &["max_epochs=1", &plugins, "callbacks__s__type=faulty", "callbacks__s__hook=none", "callbacks__s__score=f3"],
        None,
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = error_line(&o);
    assert!(err.contains("callback `s`") && err.contains("f3") && err.contains("constant_half"), "{err}");
}
