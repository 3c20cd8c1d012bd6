//! The text CNN example (`examples/names`) through the binary, shortened: generated names of
//! two origins as byte ids (`text` reader), `text_cnn`, a stated test accuracy, and
//! `torchfit predict --proba` giving the probability of each origin for unlabelled names, and
//! `torchfit explain` drawing a convolution's outputs for a name while refusing input gradients
//! (token ids have none) in one line.

use torchfit_tests::{python, root, temp_dir, torchfit_env};

#[test]
fn a_text_cnn_tells_the_generated_names_origins_apart() {
    let dir = temp_dir("names");
    let data = dir.join("names.csv");
    let o = std::process::Command::new(python())
        .arg(root().join("examples/names/generate.py"))
        .arg(&data)
        .arg("1200")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = dir.join("run");
    let path = format!("dataset__path=\"{}\"", data.display());
    let o = torchfit_env(
        &[
            "train",
            "examples/names/config.toml",
            "--out",
            run.to_str().unwrap(),
            "--set",
            &path,
            "--set",
            "max_epochs=6",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let accuracy: f64 = stdout.lines().find_map(|l| l.strip_prefix("test_accuracy=")).unwrap().parse().unwrap();
    assert!(accuracy > 0.85, "test accuracy {accuracy}");
    let new = dir.join("new.csv");
    std::fs::write(&new, "Hofsteinmann\nKamoshiko\n").unwrap();
    let o = torchfit_env(&["predict", run.to_str().unwrap(), "--data", new.to_str().unwrap(), "--proba"], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: Vec<Vec<String>> =
        String::from_utf8_lossy(&o.stdout).lines().skip(1).map(|l| l.split(',').map(String::from).collect()).collect();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        let p: f64 = row[2..].iter().map(|v| v.parse::<f64>().unwrap()).sum();
        assert!((p - 1.0).abs() < 1e-5, "{row:?}");
    }
    assert_eq!((rows[0][1].as_str(), rows[1][1].as_str()), ("1", "0"), "{rows:?}");
    let explain = |method: &str, more: &[&str]| {
        let out = dir.join(format!("{method}.png"));
        let mut args = vec!["explain", run.to_str().unwrap(), "--input", new.to_str().unwrap(), "--method", method];
        args.extend(more);
        args.extend(["--out", out.to_str().unwrap()]);
        (torchfit_env(&args, &[]), out)
    };
    // conv.0's 32 channels over the 20 positions of the first name: one map of 32 rows.
    let (o, out) = explain("activations", &["--layer", "conv.0"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("1 maps of 32x"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.exists());
    for method in ["saliency", "smoothgrad", "guided_backprop"] {
        let (o, out) = explain(method, &[]);
        assert_eq!(o.status.code(), Some(2), "{method}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.lines().count() == 1 && err.contains("no gradient with respect to its inputs"), "{method}: {err}");
        assert!(!out.exists());
    }
}
