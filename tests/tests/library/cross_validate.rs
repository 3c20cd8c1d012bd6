//! Cross-validation of a net on the digits: a fresh fit per fold (scikit-learn's clone), scored
//! on the fold's held-out samples, reproducible.

use torchfit::data::TensorDataset;
use torchfit::model_selection::stratified_k_fold;
use torchfit::model_selection::Cv;
use torchfit::net::Start;
use torchfit::NeuralNet;
use torchfit_tests::{digits, serial};

fn net() -> NeuralNet {
    let mut net = torchfit::classifier();
    net.set_params(&[
        ("module__hidden", "[32]"),
        ("optimizer__lr", "0.1"),
        ("optimizer__momentum", "0.9"),
        ("max_epochs", "3"),
        ("callbacks__print_log", "false"),
        ("callbacks__progress_bar", "false"),
    ])
    .unwrap();
    net
}

#[test]
fn each_fold_is_a_fresh_fit_scored_on_its_held_out_samples() {
    let _serial = serial();
    let (x, y) = digits();
    let mut data = TensorDataset::new(&x, &y).unwrap();
    let cv = &Cv { n_splits: 3, ..Cv::default() };
    let result = net().cross_validate(&mut data, None, cv).unwrap();
    assert_eq!(result.folds.len(), 3);
    assert!(result.folds.iter().all(|f| f.score > 0.85 && f.test_samples == 599), "{result:?}");
    let mean = result.folds.iter().map(|f| f.score).sum::<f64>() / 3.0;
    assert!((result.mean - mean).abs() < 1e-12);
    // The second fold alone, in a net that never saw the first: the same score, bit for bit.
    let labels = Vec::<i64>::try_from(&y).unwrap();
    let second = &stratified_k_fold(&labels, 3, None).unwrap()[1];
    let mut alone = net();
    alone.fit_dataset(&mut data, Some(&second.train), Start::Fresh).unwrap();
    let out = alone.forward_reader(&mut data, &second.test).unwrap();
    let held_out = y.index_select(0, &tch::Tensor::from_slice(&second.test));
    assert_eq!(torchfit_sdk::metrics::accuracy(&held_out, &out).unwrap(), result.folds[1].score);
    // And the whole cross-validation again: the same scores.
    let again = net().cross_validate(&mut data, None, cv).unwrap();
    let scores = |r: &torchfit::model_selection::CrossValidation| r.folds.iter().map(|f| f.score).collect::<Vec<_>>();
    assert_eq!(scores(&again), scores(&result));
}

#[test]
fn impossible_folds_are_a_config_error() {
    let _serial = serial();
    let (x, y) = digits();
    let mut data = TensorDataset::new(&x.narrow(0, 0, 4), &y.narrow(0, 0, 4)).unwrap();
    let e = net().cross_validate(&mut data, None, &Cv { n_splits: 5, ..Cv::default() }).unwrap_err();
    assert!(e.to_string().contains("n_splits=5"), "{e}");
}

#[test]
fn a_grid_search_ranks_the_candidates_and_refits_the_best() {
    use torchfit::model_selection::search::{grid, search};
    let _serial = serial();
    let (x, y) = digits();
    let mut data = TensorDataset::new(&x, &y).unwrap();
    let space = vec![("optimizer__lr".to_owned(), vec![toml::Value::from(1e-5), toml::Value::from(0.1)])];
    let candidates = grid(&space);
    let (found, refit) = search(net, &mut data, None, &candidates, &Cv { n_splits: 2, ..Cv::default() }, None).unwrap();
    let scored = &found.scored;
    assert_eq!(scored.iter().map(|s| s.rank).collect::<Vec<_>>(), [2, 1], "{scored:?}");
    assert!(scored[1].mean() > 0.8 && scored[0].mean() < 0.5, "{} {}", scored[0].mean(), scored[1].mean());
    assert_eq!(found.best, 1);
    assert_eq!(refit.history().len(), 3, "the best candidate refitted on all the samples");
    assert_eq!(refit.optimizer().unwrap().lr(0), Some(0.1));
}
