//! `torchfit plot`: a finished run's curves as PNG and SVG, runs overlaid by name, chosen keys,
//! a diverged run, and bad input in one line.

use std::path::{Path, PathBuf};
use torchfit_tests::{temp_dir, torchfit, train_digits};

fn run(dir: &Path, name: &str, sets: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let o = train_digits(sets, Some(&out), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

fn plot(args: &[&str]) -> std::process::Output {
    torchfit(&[&["plot"], args].concat())
}

fn svg_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"), "{}", path.display());
    text
}

#[test]
fn a_run_is_drawn_as_png_and_svg_in_its_directory_and_runs_overlay_by_name() {
    let dir = temp_dir("plot");
    let sched =
        "callbacks__sched={type = \"lr_scheduler\", policy = \"OneCycleLR\", max_lr = 0.2, step_every = \"batch\"}";
    let a = run(&dir, "onecycle", &["max_epochs=3", sched]);
    let b = run(&dir, "constant", &["max_epochs=2"]);
    let o = plot(&[a.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let png = image::open(a.join("training_curves.png")).unwrap();
    assert_eq!((png.width(), png.height()), (1400, 1040), "two rows of panels: losses and scores, rate and momentum");
    let svg = svg_of(&a.join("training_curves.svg"));
    for label in
        ["train_loss (batch)", "train_loss (moving average)", "valid_loss", "valid_acc", "learning rate", "momentum"]
    {
        assert!(svg.contains(label), "{label}");
    }

    let both = dir.join("both.svg");
    let o = plot(&[a.to_str().unwrap(), b.to_str().unwrap(), "--out", both.to_str().unwrap(), "--keys", "valid_acc"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let svg = svg_of(&both);
    assert!(svg.contains("onecycle: valid_acc") && svg.contains("constant: valid_acc"), "each run named");
    assert!(!svg.contains("train_loss"), "only the keys asked for");
}

#[test]
fn a_diverged_run_and_a_one_epoch_run_still_draw() {
    let dir = temp_dir("plot-nan");
    let diverged = run(&dir, "diverged", &["max_epochs=2", "optimizer__lr=1e6", "on_nan=\"continue\""]);
    let history = std::fs::read_to_string(diverged.join("history.json")).unwrap();
    assert!(history.contains("NaN"), "the run diverged");
    let out = dir.join("diverged.png");
    let o = plot(&[diverged.to_str().unwrap(), "--out", out.to_str().unwrap(), "--log-loss"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(image::open(&out).is_ok());
    let one = run(&dir, "one", &["max_epochs=1"]);
    assert!(plot(&[one.to_str().unwrap()]).status.success());
    svg_of(&one.join("training_curves.svg"));
}

#[test]
fn bad_plots_are_refused_in_one_line() {
    let dir = temp_dir("plot-bad");
    let o = plot(&[dir.join("nothing").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("history.json") && err.lines().count() == 1, "{err}");
    let one = run(&dir, "one", &["max_epochs=1"]);
    let o = plot(&[one.to_str().unwrap(), "--out", dir.join("x.jpg").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--out must end in .png or .svg"));
}

#[test]
fn where_training_resumed_is_marked_by_plot_and_by_plot_history() {
    let dir = temp_dir("plot-resume");
    let out = run(&dir, "run", &["max_epochs=2", "callbacks__plot__type=plot_history"]);
    let o = train_digits(&["max_epochs=4", "callbacks__plot__type=plot_history"], Some(&out), &[]);
    assert!(!o.status.success(), "a second run into the same folder needs --resume");
    let resumed = torchfit(&[
        "train",
        "examples/digits/config.toml",
        "--set",
        "max_epochs=4",
        "--set",
        "callbacks__plot__type=plot_history",
        "--out",
        out.to_str().unwrap(),
        "--resume",
    ]);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let summary = torchfit_tests::read_json(&out.join("summary.json"));
    assert_eq!(summary["resumed_after"], serde_json::json!([2]));
    assert!(svg_of(&out.join("training_curves.svg")).contains("training resumed"), "plot_history marks it");
    let drawn = dir.join("drawn.svg");
    assert!(plot(&[out.to_str().unwrap(), "--out", drawn.to_str().unwrap()]).status.success());
    assert!(svg_of(&drawn).contains("training resumed"), "torchfit plot reads it from summary.json");
    let straight = run(&dir, "straight", &["max_epochs=4"]);
    assert!(plot(&[straight.to_str().unwrap()]).status.success());
    assert!(!svg_of(&straight.join("training_curves.svg")).contains("training resumed"));
}

#[test]
fn lr_find_prints_fastais_suggestions_and_draws_the_loss_against_the_rate() {
    let dir = temp_dir("lr-find");
    let out = dir.join("lr.svg");
    let o = torchfit(&["lr-find", "examples/digits/config.toml", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let rate = |name: &str| -> f64 {
        let line =
            stdout.lines().find(|l| l.starts_with(&format!("{name}: lr = "))).unwrap_or_else(|| panic!("{stdout}"));
        line[name.len() + 7..].split_whitespace().next().unwrap().parse().unwrap()
    };
    let (steepest, valley) = (rate("steepest"), rate("valley"));
    assert!((1e-4..1.0).contains(&steepest) && (1e-4..1.0).contains(&valley), "{stdout}");
    let svg = svg_of(&out);
    assert!(svg.contains("learning-rate finder") && svg.contains("steepest") && svg.contains("valley"));
    let o = torchfit(&["lr-find", "examples/digits/config.toml", "--end-lr", "1e-9", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("0 < start_lr < end_lr"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
