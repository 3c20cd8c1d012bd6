//! `torchfit explain` on a digits run: saliency, SmoothGrad and guided backpropagation pictures
//! of one row (the input, the map, the overlay side by side), SmoothGrad reproducible for the
//! run's seed, a hidden layer's activations in a grid, and what a model cannot give refused in
//! one line.

use torchfit_tests::{temp_dir, torchfit_env, train_digits};

#[test]
fn each_method_draws_its_picture_and_what_the_model_cannot_give_is_refused_in_one_line() {
    let dir = temp_dir("explain");
    let run = dir.join("run");
    assert!(train_digits(&["max_epochs=3"], Some(&run), &[]).status.success());
    let selu = dir.join("selu");
    assert!(train_digits(&["max_epochs=1", "module.activation=\"selu\""], Some(&selu), &[]).status.success());
    // One digit, as the run's csv reader reads its file.
    let text = std::process::Command::new("sh")
        .args(["-c", "zcat examples/digits/digits.csv.gz | sed -n 3p"])
        .current_dir(torchfit_tests::root())
        .output()
        .unwrap()
        .stdout;
    let input = dir.join("one.csv");
    std::fs::write(&input, text).unwrap();
    let explain_run = |run: &std::path::Path, method: &str, out: &str, more: &[&str]| {
        let out = dir.join(out);
        let mut args = vec![
            "explain",
            run.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--method",
            method,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(more);
        (torchfit_env(&args, &[]), out)
    };
    let explain = |method: &str, out: &str| explain_run(&run, method, out, &[]);
    let mut maps = Vec::new();
    for (method, file) in
        [("saliency", "saliency.png"), ("smoothgrad", "smooth.png"), ("guided_backprop", "guided.png")]
    {
        let (o, out) = explain(method, file);
        assert!(o.status.success(), "{method}: {}", String::from_utf8_lossy(&o.stderr));
        let picture = image::open(&out).unwrap().to_rgb8();
        // 8 x 8 digits scaled by 16: three 128 x 128 panels.
        assert_eq!(picture.dimensions(), (384, 128), "{method}");
        let map: Vec<u8> =
            (0..64).flat_map(|i| picture.get_pixel(128 + 16 * (i % 8) + 8, 16 * (i / 8) + 8).0).collect();
        assert!(map.iter().any(|&v| v > 0), "{method}: the map is not empty");
        maps.push(map);
    }
    assert_ne!(maps[0], maps[2], "guided backpropagation's map is not the saliency map");
    let (o, again) = explain("smoothgrad", "smooth2.png");
    assert!(o.status.success());
    assert_eq!(std::fs::read(dir.join("smooth.png")).unwrap(), std::fs::read(again).unwrap(), "seeded noise");
    // The demo's second hidden layer: 64 values, an 8 x 8 grid of 48-pixel tiles 2 apart.
    let (o, out) = explain_run(&run, "activations", "act.png", &["--layer", "hidden.1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(image::open(&out).unwrap().to_rgb8().dimensions(), (8 * 50 - 2, 8 * 50 - 2));
    let refusals: [(&std::path::Path, &str, &[&str], &str); 3] = [
        (&run, "activations", &[], "--layer"),
        (&run, "activations", &["--layer", "conv.0"], "hidden.0, hidden.1, output"),
        (&selu, "guided_backprop", &[], "`selu`"),
    ];
    for (run, method, more, says) in refusals {
        let (o, _) = explain_run(run, method, "refused.png", more);
        assert_eq!(o.status.code(), Some(2), "{method} {more:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.lines().count() == 1 && err.contains(says), "{method} {more:?}: {err}");
    }
    assert!(!dir.join("refused.png").exists());
}
