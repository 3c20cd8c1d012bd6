//! Run directories (Poutyne's ModelBundle): `--resume` continues up to `max_epochs` in all from
//! the newest complete checkpoint, a non-empty directory is never overwritten without it, what an
//! interrupted save left is cleaned, one run at a time holds the directory, and a failed run
//! keeps what it has.

use std::path::Path;
use torchfit_tests::{read_json, temp_dir, torchfit_env};

fn train(out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args =
        vec!["train", "examples/digits/config.toml", "--set", "max_epochs=4", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    torchfit_env(&args, &[])
}

fn history_without_dur(out: &Path) -> String {
    torchfit_tests::history_without(out, &["dur"])
}

#[test]
fn a_non_empty_run_directory_is_refused_without_resume() {
    let out = temp_dir("rundir-refuse").join("run");
    assert!(train(&out, &[]).status.success());
    let before = std::fs::read(out.join("history.json")).unwrap();
    let o = train(&out, &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(out.to_str().unwrap()) && err.contains("--resume"), "{err}");
    assert_eq!(std::fs::read(out.join("history.json")).unwrap(), before, "nothing overwritten");
}

#[test]
fn resume_continues_to_max_epochs_in_all_and_equals_one_run() {
    let root = temp_dir("rundir-resume");
    let (straight, resumed) = (root.join("straight"), root.join("resumed"));
    assert!(train(&straight, &[]).status.success());
    assert!(train(&resumed, &["--set", "max_epochs=2"]).status.success());
    assert_eq!(read_json(&resumed.join("history.json")).as_array().unwrap().len(), 2);
    let o = train(&resumed, &["--resume"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(history_without_dur(&resumed), history_without_dur(&straight));
    assert_eq!(read_json(&resumed.join("summary.json"))["test"], read_json(&straight.join("summary.json"))["test"]);

    // Again with the same max_epochs: nothing left to train.
    let o = train(&resumed, &["--resume"]);
    assert!(o.status.success());
    assert_eq!(read_json(&resumed.join("history.json")).as_array().unwrap().len(), 4);
    // A larger max_epochs simply goes on.
    let o = train(&resumed, &["--resume", "--set", "max_epochs=5"]);
    assert!(o.status.success());
    assert_eq!(read_json(&resumed.join("history.json")).as_array().unwrap().len(), 5);
}

#[test]
fn resume_without_a_checkpoint_is_refused_unless_the_folder_is_empty() {
    let out = temp_dir("rundir-empty").join("run");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let o = train(&out, &["--resume"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no complete checkpoint"));
    std::fs::remove_file(out.join("notes.txt")).unwrap();
    let o = train(&out, &["--resume", "--set", "max_epochs=1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("starts from the beginning"));
}

/// What a SIGKILL during the first checkpoint save leaves: staged `.next` files without their
/// commit file, and the hidden temporary file of an atomic write.
fn leave_an_interrupted_first_save(out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    for name in ["train_end_params.safetensors.next", "train_end_optimizer.safetensors.next"] {
        std::fs::write(out.join(name), "staged").unwrap();
    }
    std::fs::write(out.join(".train_end_callbacks.json.tmp4000000000.json"), "{\"half").unwrap();
}

fn leftovers(out: &Path) -> Vec<String> {
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".next") || n.ends_with(".commit") || n.contains(".tmp"))
        .collect()
}

#[test]
fn a_folder_left_by_a_kill_during_the_first_save_can_be_resumed_or_restarted() {
    let root = temp_dir("rundir-first-save");
    let straight = root.join("straight");
    assert!(train(&straight, &[]).status.success());
    for (name, extra) in [("restarted", vec![]), ("resumed", vec!["--resume"])] {
        let out = root.join(name);
        leave_an_interrupted_first_save(&out);
        let o = train(&out, &extra);
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(history_without_dur(&out), history_without_dur(&straight), "{name}");
        assert!(leftovers(&out).is_empty(), "{name}: {:?}", leftovers(&out));
    }
}

#[test]
fn resume_takes_the_newest_checkpoint_whatever_callback_wrote_it() {
    let root = temp_dir("rundir-newest");
    let every_epoch = ["--set", "callbacks__cp__type=checkpoint", "--set", "callbacks__cp__monitor=false"];
    let straight = root.join("straight");
    assert!(train(&straight, &every_epoch).status.success());
    // Killed during epoch 3: the checkpoint callback's files of epoch 2 are the newest.
    let killed = root.join("killed");
    let mut two = every_epoch.to_vec();
    two.extend(["--set", "max_epochs=2"]);
    assert!(train(&killed, &two).status.success());
    for f in std::fs::read_dir(&killed).unwrap() {
        let f = f.unwrap().path();
        if f.file_name().unwrap().to_str().unwrap().starts_with("train_end_") {
            std::fs::remove_file(f).unwrap();
        }
    }
    let o = train(&killed, &[&every_epoch[..], &["--resume"]].concat());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(history_without_dur(&killed), history_without_dur(&straight));
    let said = torchfit_env(
        &[
            "train",
            "examples/digits/config.toml",
            "--set",
            "max_epochs=5",
            "--out",
            killed.to_str().unwrap(),
            "--resume",
        ],
        &[("TORCHFIT_LOG", "info")],
    );
    let said = String::from_utf8_lossy(&said.stderr);
    assert!(said.contains("resuming from") && said.contains("(4 epochs)"), "{said}");
}

#[test]
fn a_run_directory_in_use_is_refused_in_one_line() {
    let out = temp_dir("rundir-locked").join("run");
    assert!(train(&out, &["--set", "max_epochs=1"]).status.success());
    let lock = std::fs::OpenOptions::new().write(true).open(out.join(".torchfit.lock")).unwrap();
    lock.try_lock().unwrap();
    let o = train(&out, &["--resume"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("is in use by") && err.trim().lines().count() == 1, "{err}");
    drop(lock);
    assert!(train(&out, &["--resume"]).status.success());
}

#[test]
fn a_checkpoint_without_a_run_directory_goes_to_the_working_directory_and_leaves_no_commit_file() {
    let cwd = temp_dir("rundir-cwd");
    let config = torchfit_tests::root().join("examples/digits/config.toml");
    for _ in 0..2 {
        let o = std::process::Command::new(torchfit_tests::torchfit_bin())
            .args(["train", config.to_str().unwrap(), "--set", "max_epochs=1"])
            .args(["--set", "callbacks__cp__type=checkpoint", "--set", "callbacks__cp__monitor=false"])
            .current_dir(&cwd)
            .env("TORCHFIT_LOG", "warn")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert!(cwd.join("params.safetensors").exists() && cwd.join("history.json").exists());
    assert!(leftovers(&cwd).is_empty(), "{:?}", leftovers(&cwd));
}

#[test]
fn a_run_that_fails_in_training_keeps_its_history_and_the_error() {
    let out = temp_dir("rundir-failed").join("run");
    let o =
        train(&out, &["--set", "callbacks__cp__type=checkpoint", "--set", "callbacks__cp__monitor=\"no_such_key\""]);
    assert!(!o.status.success());
    let summary = read_json(&out.join("summary.json"));
    assert!(summary["error"].as_str().unwrap().contains("no_such_key"), "{summary}");
    assert_eq!(read_json(&out.join("history.json")).as_array().unwrap().len(), 1);
    assert!(out.join("config.toml").exists());
}

#[test]
fn a_diverging_run_exits_1_naming_the_batch_and_resumes_at_the_rate_given_on_resume() {
    let root = temp_dir("rundir-diverged");
    let (straight, diverged) = (root.join("straight"), root.join("diverged"));
    assert!(train(&straight, &[]).status.success());
    let o = train(&diverged, &["--set", "optimizer__lr=1e6"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("epoch 1, batch") && err.trim().lines().count() == 1, "{err}");
    assert!(
        read_json(&diverged.join("summary.json"))["error"].as_str().unwrap().contains("not finite")
            || err.contains("NaN")
    );
    assert!(diverged.join("train_end_params.safetensors").exists(), "the last epoch boundary is kept");
    // The rate given on resume replaces the checkpoint's, and the run is the straight one.
    let o = train(&diverged, &["--resume"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(history_without_dur(&diverged), history_without_dur(&straight));
    assert!(std::fs::read_to_string(diverged.join("config.toml")).unwrap().contains("lr = 0.1"));
}

#[test]
fn non_finite_input_is_bad_input_naming_the_file_and_line() {
    let root = temp_dir("rundir-nan-input");
    let rows: Vec<String> =
        (0..20).map(|i| if i == 6 { "1,nan,3,1".to_owned() } else { format!("{i},1,2,{}", i % 2) }).collect();
    std::fs::write(root.join("d.csv"), rows.join("\n")).unwrap();
    let config = "[dataset]\nname = \"csv\"\npath = \"d.csv\"\n[module]\nname = \"mlp\"\n";
    std::fs::write(root.join("c.toml"), config).unwrap();
    let o = torchfit_tests::torchfit_env(&["train", root.join("c.toml").to_str().unwrap()], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("d.csv:7") && err.contains("allow_non_finite") && err.trim().lines().count() == 1, "{err}");
}

/// Every file under `dir` (the lock file aside) with its bytes, in path order.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n != ".torchfit.lock") {
                files.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// `bytes` with the byte at `at` (from the end when negative) flipped.
fn flip(path: &Path, at: i64) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = if at < 0 { bytes.len() - (-at) as usize } else { at as usize };
    bytes[i] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_resume_refused_for_a_damaged_checkpoint_changes_nothing_in_the_run_directory() {
    let root = temp_dir("rundir-damaged");
    let finished = root.join("finished");
    assert!(train(&finished, &["--set", "max_epochs=2"]).status.success());
    type Damage = fn(&Path);
    let cases: [(&str, Damage); 5] = [
        ("train_end_params.safetensors", |p| flip(p, -9)),
        // A set saved before records were: the history loads, then the optimizer state fails.
        ("train_end_optimizer.safetensors", |p| {
            std::fs::remove_file(p.with_file_name("train_end_checkpoint.json")).unwrap();
            std::fs::write(p, b"not safetensors").unwrap();
        }),
        ("train_end_params.safetensors", |p| flip(p, 3)),
        ("train_end_optimizer.safetensors", |p| {
            let bytes = std::fs::read(p).unwrap();
            std::fs::write(p, &bytes[..bytes.len() / 2]).unwrap();
        }),
        ("train_end_callbacks.json", |p| std::fs::write(p, "{\"valid_loss\": nul}").unwrap()),
    ];
    for (i, (file, damage)) in cases.into_iter().enumerate() {
        let run = root.join(format!("case{i}"));
        assert!(std::process::Command::new("cp").arg("-r").arg(&finished).arg(&run).status().unwrap().success());
        damage(&run.join(file));
        let before = snapshot(&run);
        let o = train(&run, &["--resume", "--set", "max_epochs=3", "--set", "optimizer__lr=0.05"]);
        assert_eq!(o.status.code(), Some(2), "{file}: {}", String::from_utf8_lossy(&o.stderr));
        let err = String::from_utf8_lossy(&o.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with('[')).collect();
        let why = if i == 1 { "" } else { "changed after it was saved" };
        assert!(lines.len() == 1 && lines[0].contains(file) && lines[0].contains(why), "{file}: {err}");
        assert!(snapshot(&run) == before, "{file}: the refused resume changed the run directory");
    }
}

#[test]
fn predict_refuses_a_model_whose_bytes_changed_naming_the_file() {
    let run = temp_dir("rundir-predict-damaged").join("run");
    assert!(train(&run, &["--set", "max_epochs=1"]).status.success());
    let predict = || torchfit_env(&["predict", run.to_str().unwrap()], &[]);
    assert!(predict().status.success());
    flip(&run.join("model.safetensors"), -5);
    let o = predict();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("model.safetensors") && err.contains("model.json"), "{err}");
}

#[test]
fn resume_refuses_a_changed_model_setting_and_records_nothing() {
    let run = temp_dir("rundir-module-changed").join("run");
    assert!(train(&run, &["--set", "max_epochs=1"]).status.success());
    let before = snapshot(&run);
    let o = train(&run, &["--resume", "--set", "module__dropout=0.3"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("module.dropout") && err.contains("keeps the model"), "{err}");
    assert!(snapshot(&run) == before);
}

/// A tmpfs of `size` mounted on a fresh folder for one test, unmounted when dropped; `None`
/// (said loudly) where this process may not mount.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(name: &str, size: &str) -> Option<SmallDisk> {
        let dir = temp_dir(name).join("disk");
        std::fs::create_dir_all(&dir).unwrap();
        let o = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .ok()?;
        if !o.status.success() {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs to fill ({}): run as root",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return None;
        }
        Some(SmallDisk(dir))
    }

    fn resize(&self, size: &str) {
        let o = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_at_the_first_checkpoint_exits_3_and_resume_then_starts_afresh() {
    let Some(disk) = SmallDisk::mount("rundir-full", "48k") else { return };
    let straight = temp_dir("rundir-full-straight").join("run");
    assert!(train(&straight, &["--set", "max_epochs=2"]).status.success());
    let run = disk.0.join("run");
    let o = train(&run, &["--set", "max_epochs=2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "a full disk is the environment's: {err}");
    assert!(err.contains("No space left on device") && err.contains("train_end_"), "{err}");
    assert!(!run.join("train_end_params.safetensors").exists());
    disk.resize("16m");
    let again = train(&run, &["--set", "max_epochs=2"]);
    assert_eq!(again.status.code(), Some(2), "a fresh run still refuses the folder");
    let o = train(&run, &["--set", "max_epochs=2", "--resume"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(history_without_dur(&run), history_without_dur(&straight));
}

#[test]
fn a_full_disk_in_a_callbacks_checkpoint_save_is_the_environments_refusal_exit_3() {
    let Some(disk) = SmallDisk::mount("rundir-full-cp", "48k") else { return };
    let run = disk.0.join("run");
    let sets =
        ["--set", "max_epochs=2", "--set", "callbacks__cp__type=checkpoint", "--set", "callbacks__cp__monitor=false"];
    let o = train(&run, &sets);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("callback `cp` failed in on_epoch_end") && err.contains("No space left on device"), "{err}");
}

#[test]
fn a_run_resumed_under_the_fused_optimizer_ends_where_the_for_loop_run_ends() {
    let root = temp_dir("rundir-implementation");
    let (straight, resumed) = (root.join("straight"), root.join("resumed"));
    let adam = ["--set", "optimizer__name=adam", "--set", "optimizer__lr=0.002"];
    assert!(train(&straight, &adam).status.success());
    assert!(train(&resumed, &[&adam[..], &["--set", "max_epochs=2"]].concat()).status.success());
    let o = train(&resumed, &[&adam[..], &["--resume", "--set", "optimizer__implementation=fused"]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let losses = |run: &Path| -> Vec<f64> {
        let h = read_json(&run.join("history.json"));
        h.as_array().unwrap().iter().map(|e| e["valid_loss"].as_f64().unwrap()).collect()
    };
    let (a, b) = (losses(&straight), losses(&resumed));
    assert_eq!(a.len(), 4);
    assert_eq!(a[..2], b[..2], "the same first two epochs");
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x - y).abs() <= 1e-4 * x.abs(),
            "the fused kernels' epochs differ beyond float rounding: {a:?} vs {b:?}"
        );
    }
    let config = std::fs::read_to_string(resumed.join("config.toml")).unwrap();
    assert!(config.contains("implementation = \"fused\""), "{config}");
}
