//! `iterator_train.sampler` through the binary on the digits: a class of weight 0 never reaches
//! training, a balanced sampler trains as well as taking every sample once, and a setting that
//! does not fit the data is refused naming the key.

use torchfit_tests::{read_json, temp_dir, train_digits};

fn final_accuracy(sets: &[&str], name: &str) -> f64 {
    let run = temp_dir(name).join("run");
    let o = train_digits(&[&["max_epochs=4"], sets].concat(), Some(&run), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let history = read_json(&run.join("history.json"));
    history.as_array().unwrap().last().unwrap()["valid_acc"].as_f64().unwrap()
}

#[test]
fn a_class_of_weight_zero_never_reaches_training_and_balanced_draws_train_as_well() {
    let only_zeros = final_accuracy(
        &["iterator_train__sampler={ class_weights = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0] }"],
        "sampler-zeros",
    );
    assert!(only_zeros < 0.15, "trained on zeros only, the net answers 0 for every digit: {only_zeros}");
    let balanced = final_accuracy(&["iterator_train__sampler=\"balanced\""], "sampler-balanced");
    assert!(balanced > 0.85, "{balanced}");
}

#[test]
fn a_sampler_that_does_not_fit_the_data_is_refused_by_its_key() {
    for (value, says) in [
        ("{ weights = [1.0, 2.0] }", "1797 samples"),
        ("{ class_weights = [1.0, 1.0] }", "class"),
        ("\"sometimes\"", "iterator_train.sampler"),
    ] {
        let o = train_digits(&[&format!("iterator_train__sampler={value}")], None, &[]);
        assert_eq!(o.status.code(), Some(2), "{value}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("iterator_train.sampler") && err.contains(says), "{value}: {err}");
    }
    let o = train_digits(&["iterator_valid__sampler=\"balanced\""], None, &[]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_run_with_a_balanced_sampler_resumes_to_the_uninterrupted_result() {
    let root = temp_dir("sampler-resume");
    let (straight, resumed) = (root.join("straight"), root.join("resumed"));
    let train = |run: &std::path::Path, epochs: &str, resume: bool| {
        let mut args = vec!["train", "examples/digits/config.toml", "--out", run.to_str().unwrap()];
        args.extend(["--set", "iterator_train__sampler=\"balanced\"", "--set", epochs]);
        if resume {
            args.push("--resume");
        }
        let o = torchfit_tests::torchfit_env(&args, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    train(&straight, "max_epochs=4", false);
    train(&resumed, "max_epochs=2", false);
    train(&resumed, "max_epochs=4", true);
    let history = |run| torchfit_tests::history_without(run, &["dur"]);
    assert_eq!(history(&straight), history(&resumed));
    assert_eq!(
        std::fs::read(straight.join("model.safetensors")).unwrap(),
        std::fs::read(resumed.join("model.safetensors")).unwrap()
    );
}
