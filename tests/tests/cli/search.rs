//! `torchfit search` on the digits: a ranked table, scikit-learn's `cv_results_` in
//! `search.json`, the best refitted as `torchfit train` would, the same scores whatever
//! `--jobs`, failing candidates recorded and skipped, Ctrl-C and `--resume`, halving, random
//! candidates, scorers by name, and bad input refused in one line.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use torchfit_tests::{read_json, root, temp_dir, torchfit_bin, torchfit_env, train_digits};

/// `torchfit search examples/digits/config.toml` with `args`, into `out`.
fn search(out: &Path, args: &[&str]) -> Output {
    let mut all = vec!["search", "examples/digits/config.toml", "--out", out.to_str().unwrap()];
    all.extend(args);
    torchfit_env(&all, &[])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `search.json` without the times, which differ between runs.
fn scores(out: &Path) -> serde_json::Value {
    let mut s = read_json(&out.join("search.json"));
    let columns = s["cv_results_"].as_object_mut().unwrap();
    columns.retain(|k, _| !k.ends_with("_time"));
    s
}

const GRID: [&str; 10] = [
    "--grid",
    "module__dropout=0.2,0.5",
    "--grid",
    "optimizer__lr=0.02,0.05",
    "--set",
    "max_epochs=3",
    "--cv",
    "3",
    "--threads",
    "1",
];

#[test]
fn a_search_ranks_the_candidates_and_refits_the_best_as_train_would_the_same_with_two_jobs() {
    let dir = temp_dir("search-grid");
    let one = search(&dir.join("one"), &[&GRID[..], &["--jobs", "1"]].concat());
    assert!(one.status.success(), "{}", stderr(&one));
    let s = read_json(&dir.join("one/search.json"));
    let r = &s["cv_results_"];
    // ParameterGrid's order, each candidate's folds and their mean.
    let params: Vec<String> = r["params"].as_array().unwrap().iter().map(|p| p.to_string()).collect();
    assert_eq!(params[1], r#"{"module__dropout":0.2,"optimizer__lr":0.05}"#, "{params:?}");
    for i in 0..4 {
        let folds: Vec<f64> = (0..3).map(|k| r[format!("split{k}_test_score")][i].as_f64().unwrap()).collect();
        let mean = folds.iter().sum::<f64>() / 3.0;
        assert!((r["mean_test_score"][i].as_f64().unwrap() - mean).abs() < 1e-12);
        assert!(folds.iter().all(|f| (0.1..=1.0).contains(f)), "{folds:?}");
    }
    let means: Vec<f64> = r["mean_test_score"].as_array().unwrap().iter().map(|m| m.as_f64().unwrap()).collect();
    let best = s["best_index_"].as_u64().unwrap() as usize;
    assert!(means.iter().all(|m| *m <= means[best]), "{means:?} best {best}");
    assert_eq!(r["rank_test_score"][best], 1);
    assert_eq!(s["scoring"], "accuracy");
    // The table: a line per candidate, best first.
    let table = stdout(&one);
    let rows: Vec<&str> = table.lines().skip_while(|l| !l.starts_with("rank")).skip(1).collect();
    assert_eq!(rows.len(), 4, "{table}");
    assert!(rows[0].trim_start().starts_with("1 ") && rows[0].contains(&format!("{:.6}", means[best])), "{table}");
    // The refit is the run `torchfit train --set <best>` writes.
    let bp = &s["best_params_"];
    let sets = [
        "max_epochs=3".to_owned(),
        format!("module__dropout={}", bp["module__dropout"]),
        format!("optimizer__lr={}", bp["optimizer__lr"]),
    ];
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    assert!(train_digits(&sets, Some(&dir.join("train")), &[]).status.success());
    let model = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert!(model(&dir.join("one/refit")) == model(&dir.join("train")), "the refit equals a train run");
    // Two fits at once: the same table, bit for bit; another seed: another one.
    let two = search(&dir.join("two"), &[&GRID[..], &["--jobs", "2"]].concat());
    assert!(two.status.success(), "{}", stderr(&two));
    assert_eq!(scores(&dir.join("one")), scores(&dir.join("two")));
    let seeded = search(&dir.join("seed"), &[&GRID[..], &["--jobs", "2", "--set", "seed=1"]].concat());
    assert!(seeded.status.success(), "{}", stderr(&seeded));
    assert_ne!(scores(&dir.join("one"))["cv_results_"], scores(&dir.join("seed"))["cv_results_"]);
}

#[test]
fn a_failing_candidate_is_recorded_with_its_error_and_the_search_goes_on() {
    let dir = temp_dir("search-fails");
    let o = search(&dir, &["--grid", "module__hidden=[0],[16]", "--set", "max_epochs=2", "--cv", "2", "--jobs", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = read_json(&dir.join("search.json"));
    let r = &s["cv_results_"];
    assert!(r["error"][0].as_str().unwrap().contains("layer sizes must be at least 1"), "{}", r["error"]);
    assert!(r["error"][1].is_null() && r["mean_test_score"][0].is_null(), "{r}");
    assert_eq!((r["rank_test_score"][0].as_u64(), r["rank_test_score"][1].as_u64()), (Some(2), Some(1)));
    assert_eq!(s["best_index_"], 1);
    assert!(stdout(&o).contains("failed") && stderr(&o).contains("failed"), "{}\n{}", stdout(&o), stderr(&o));
    assert!(dir.join("refit/model.safetensors").exists());
}

#[test]
fn ctrl_c_keeps_the_finished_fits_and_resume_ends_as_a_search_never_stopped() {
    let dir = temp_dir("search-interrupt");
    let args = [
        "--grid",
        "optimizer__lr=0.003,0.03,0.3",
        "--set",
        "max_epochs=15",
        "--cv",
        "3",
        "--jobs",
        "2",
        "--threads",
        "1",
    ];
    assert!(search(&dir.join("straight"), &args).status.success());
    let stopped = dir.join("stopped");
    let mut all = vec!["search", "examples/digits/config.toml", "--out", stopped.to_str().unwrap()];
    all.extend(args);
    let child = Command::new(torchfit_bin())
        .args(&all)
        .current_dir(root())
        .env("TORCHFIT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let fits = || {
        std::fs::read_dir(stopped.join("fits"))
            .map_or(0, |d| d.filter(|e| e.as_ref().unwrap().file_name().to_str().unwrap().ends_with(".json")).count())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while fits() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let kept = fits();
    assert!((2..9).contains(&kept), "{kept} fits kept");
    assert!(
        stderr(&o).contains(&format!("keeps {kept} finished fits")) && stderr(&o).contains("--resume"),
        "{}",
        stderr(&o)
    );
    assert!(!stopped.join("search.json").exists());
    let first_fit = std::fs::read_dir(stopped.join("fits"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap();
    let before = std::fs::read(&first_fit).unwrap();
    let again = search(&stopped, &args);
    assert_eq!(again.status.code(), Some(2), "a kept search needs --resume: {}", stderr(&again));
    let resumed = search(&stopped, &[&args[..], &["--resume"]].concat());
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(std::fs::read(&first_fit).unwrap(), before, "a kept fit is not run again");
    assert_eq!(scores(&stopped), scores(&dir.join("straight")));
    let model = |d: &Path| std::fs::read(d.join("refit/model.safetensors")).unwrap();
    assert!(model(&stopped) == model(&dir.join("straight")));
}

#[test]
fn resume_refits_afresh_when_the_best_candidate_changed_since_the_refit_began() {
    let dir = temp_dir("search-refit-changed");
    let args = ["--grid", "module__dropout=0.0,0.5", "--set", "max_epochs=2", "--cv", "2", "--threads", "1"];
    let full = dir.join("full");
    assert!(search(&full, &args).status.success());
    let best = read_json(&full.join("search.json"))["best_index_"].as_u64().unwrap() as usize;
    let other_value = ["0.0", "0.5"][1 - best];
    let other = dir.join("other");
    let only_other = ["--grid", &format!("module__dropout={other_value}"), "--set", "max_epochs=2", "--cv", "2"];
    assert!(search(&other, &only_other).status.success());
    // The folder a first run leaves when the best candidate's workers were killed: their fits
    // failed, the other candidate won and its refit began.
    let stopped = dir.join("stopped");
    std::fs::create_dir_all(&stopped).unwrap();
    for item in ["search-spec.json", "fits"] {
        assert!(Command::new("cp").arg("-r").arg(full.join(item)).arg(&stopped).status().unwrap().success());
    }
    for item in ["refit", "refit.json"] {
        assert!(Command::new("cp").arg("-r").arg(other.join(item)).arg(&stopped).status().unwrap().success());
    }
    for fold in 0..2 {
        let path = stopped.join(format!("fits/i0-c{best:03}-f{fold}.json"));
        let fit = read_json(&path);
        let failed = serde_json::json!({ "candidate": fit["candidate"], "fold": fold, "error": "killed" });
        std::fs::write(&path, failed.to_string()).unwrap();
    }
    let resumed = search(&stopped, &[&args[..], &["--resume"]].concat());
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(read_json(&stopped.join("search.json"))["best_index_"], best as u64);
    assert_eq!(read_json(&stopped.join("refit.json")), read_json(&full.join("refit.json")));
    let model = |d: &Path| std::fs::read(d.join("refit/model.safetensors")).unwrap();
    assert!(model(&stopped) == model(&full), "the refit is the best candidate's, not the other's");
}

#[test]
fn halving_gives_the_best_third_three_times_the_epochs_and_refits_the_last_winner() {
    let dir = temp_dir("search-halving");
    let o = search(
        &dir,
        &[
            "--grid",
            "module__dropout=0,0.2,0.4",
            "--grid",
            "optimizer__lr=0.003,0.03,0.3",
            "--set",
            "max_epochs=9",
            "--cv",
            "2",
            "--halving",
            "--jobs",
            "2",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let s = read_json(&dir.join("search.json"));
    assert_eq!(s["n_resources_"], serde_json::json!([1, 3, 9]));
    assert_eq!(s["n_candidates_"], serde_json::json!([9, 3, 1]));
    let r = &s["cv_results_"];
    let column = |k: &str| r[k].as_array().unwrap().clone();
    let (iters, means, params) = (column("iter"), column("mean_test_score"), column("params"));
    let without_epochs = |p: &serde_json::Value| {
        let mut p = p.clone();
        p.as_object_mut().unwrap().remove("max_epochs");
        p
    };
    // The second iteration holds the three best of the first, the worst kept first.
    let mut first: Vec<(f64, serde_json::Value)> =
        (0..9).map(|i| (means[i].as_f64().unwrap(), without_epochs(&params[i]))).collect();
    first.sort_by(|a, b| a.0.total_cmp(&b.0));
    let second: Vec<serde_json::Value> = (9..12).map(|i| without_epochs(&params[i])).collect();
    assert_eq!(second, first[6..].iter().map(|f| f.1.clone()).collect::<Vec<_>>());
    assert_eq!(iters[12], 2);
    assert_eq!(s["best_index_"], 12);
    assert_eq!(s["best_params_"]["max_epochs"], 9);
    assert_eq!(read_json(&dir.join("refit/history.json")).as_array().unwrap().len(), 9);
}

#[test]
fn random_candidates_come_from_their_distributions_and_any_scorer_scores_them() {
    let dir = temp_dir("search-random");
    let args = [
        "--grid",
        "optimizer__lr=loguniform(0.001,0.3)",
        "--grid",
        "module__hidden=[16],[32]",
        "--random",
        "3",
        "--scoring",
        "log_loss",
        "--set",
        "max_epochs=2",
        "--cv",
        "2",
        "--jobs",
        "2",
    ];
    let o = search(&dir.join("a"), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = read_json(&dir.join("a/search.json"));
    assert_eq!(s["scoring"], "neg_log_loss", "a lower-is-better scorer is negated, as scikit-learn's");
    let r = &s["cv_results_"];
    let lrs: Vec<f64> = r["param_optimizer__lr"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(lrs.len(), 3);
    assert!(lrs.iter().all(|lr| (0.001..0.3).contains(lr)), "{lrs:?}");
    assert!(r["mean_test_score"].as_array().unwrap().iter().all(|m| m.as_f64().unwrap() < 0.0), "{r}");
    assert!(search(&dir.join("b"), &args).status.success());
    assert_eq!(scores(&dir.join("a"))["cv_results_"]["params"], scores(&dir.join("b"))["cv_results_"]["params"]);
}

#[test]
fn precision_and_accumulation_are_searched_like_any_setting() {
    let dir = temp_dir("search-precision");
    let args = [
        "--grid",
        "precision=32,bf16-mixed",
        "--grid",
        "accumulate_grad_batches=1,2",
        "--set",
        "max_epochs=2",
        "--cv",
        "2",
    ];
    let o = search(&dir, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = &read_json(&dir.join("search.json"))["cv_results_"];
    assert_eq!(r["param_precision"], serde_json::json!([32, "bf16-mixed", 32, "bf16-mixed"]), "{r}");
    assert!(r["mean_test_score"].as_array().unwrap().iter().all(|m| m.as_f64().unwrap() > 0.5), "{r}");
}

/// A wrong key or value of the config's own settings is refused before any fit runs; one a
/// component reads (`module__*`) is found by the fits, and a search whose candidates all fail
/// ends with the first one's error.
#[test]
fn bad_searches_are_refused_in_one_line() {
    let dir = temp_dir("search-bad");
    let cases: [(&[&str], &str); 8] = [
        (&["--grid", "module__dropuot=0.1,0.5"], "dropuot"),
        (&["--grid", "optimizer__lr=0.1", "--cv", "5000"], "--cv: `5000`"),
        (&["--grid", "optimizer__lr=0.1", "--cv", "200"], "--cv: `200`"),
        (&["--grid", "optimizer__lr=0.1", "--scoring", "acuracy"], "--scoring: `acuracy`: no scorer named `acuracy`"),
        (&["--grid", "optimizer__lr=0.1", "--threads", "5000"], "--threads: `threads`: 5000 is more than"),
        (&["--grid", "optimizer__lr=uniform(0.1,0.5)"], "--random"),
        (&["--grid", "optimizer__lr=0.1", "--grid", "iterator_train__batch_size=0,8"], "batch_size"),
        (&["--grid", "max_epochs=2,3", "--halving"], "max_epochs"),
    ];
    for (i, (args, names)) in cases.into_iter().enumerate() {
        let out = dir.join(format!("case{i}"));
        let o = search(&out, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with('[')).collect();
        assert!(lines.len() == 1 && lines[0].starts_with("error:") && lines[0].contains(names), "{args:?}: {lines:?}");
        assert!(i == 0 || !out.join("fits").exists(), "nothing ran for {args:?}");
    }
    // A folder with another search in it.
    let out = dir.join("taken");
    assert!(search(&out, &["--grid", "optimizer__lr=0.1", "--set", "max_epochs=1", "--cv", "2"]).status.success());
    let again = search(&out, &["--grid", "optimizer__lr=0.1", "--set", "max_epochs=1", "--cv", "2"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("not empty"), "{}", stderr(&again));
    let other = search(&out, &["--grid", "optimizer__lr=0.2", "--set", "max_epochs=1", "--cv", "2", "--resume"]);
    assert_eq!(other.status.code(), Some(2));
    assert!(stderr(&other).contains("space differs"), "{}", stderr(&other));
    // A folder with something else in it.
    let notes = dir.join("notes");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("notes.txt"), "mine").unwrap();
    let resumed = search(&notes, &["--grid", "optimizer__lr=0.1", "--cv", "2", "--resume"]);
    assert_eq!(resumed.status.code(), Some(2));
    assert!(stderr(&resumed).contains("holds no search to resume"), "{}", stderr(&resumed));
    assert_eq!(std::fs::read_to_string(notes.join("notes.txt")).unwrap(), "mine");
}
