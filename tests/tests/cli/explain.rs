//! `torchfit explain` on a digits run: a saliency and a SmoothGrad picture of one row (the input,
//! the map, the overlay side by side), SmoothGrad reproducible for the run's seed, the methods
//! the stock models cannot support refused in one line.

use torchfit_tests::{temp_dir, torchfit_env, train_digits};

#[test]
fn saliency_and_smoothgrad_draw_three_panels_and_hook_methods_are_refused_in_one_line() {
    let dir = temp_dir("explain");
    let run = dir.join("run");
    assert!(train_digits(&["max_epochs=3"], Some(&run), &[]).status.success());
    // One digit, as the run's csv reader reads its file.
    let text = std::process::Command::new("sh")
        .args(["-c", "zcat examples/digits/digits.csv.gz | sed -n 3p"])
        .current_dir(torchfit_tests::root())
        .output()
        .unwrap()
        .stdout;
    let input = dir.join("one.csv");
    std::fs::write(&input, text).unwrap();
    let explain = |method: &str, out: &str| {
        let out = dir.join(out);
        let o = torchfit_env(
            &[
                "explain",
                run.to_str().unwrap(),
                "--input",
                input.to_str().unwrap(),
                "--method",
                method,
                "--out",
                out.to_str().unwrap(),
            ],
            &[],
        );
        (o, out)
    };
    for (method, file) in [("saliency", "saliency.png"), ("smoothgrad", "smooth.png")] {
        let (o, out) = explain(method, file);
        assert!(o.status.success(), "{method}: {}", String::from_utf8_lossy(&o.stderr));
        let picture = image::open(&out).unwrap().to_rgb8();
        // 8 x 8 digits scaled by 16: three 128 x 128 panels.
        assert_eq!(picture.dimensions(), (384, 128), "{method}");
        let map: Vec<u8> = (0..8).flat_map(|i| picture.get_pixel(128 + 16 * i + 8, 64).0).collect();
        assert!(map.iter().any(|&v| v > 0), "{method}: the map is not empty");
    }
    let (o, again) = explain("smoothgrad", "smooth2.png");
    assert!(o.status.success());
    assert_eq!(std::fs::read(dir.join("smooth.png")).unwrap(), std::fs::read(again).unwrap(), "seeded noise");
    for method in ["guided_backprop", "activations"] {
        let (o, _) = explain(method, "refused.png");
        assert_eq!(o.status.code(), Some(2), "{method}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.lines().count() == 1 && err.contains(method), "{method}: {err}");
    }
}
