//! The learning-rate finder through the library: a sweep over the digits whose rates grow
//! exponentially, which stops when the loss diverges, suggests rates on the falling part of the
//! curve, and leaves the model, the optimizer and the history as they were.

use tch::{Kind, Tensor};
use torchfit::net::LrFindConfig;
use torchfit_sdk::TensorDataset;
use torchfit_tests::{digits, serial};

fn state(net: &torchfit::NeuralNet) -> Vec<(String, Tensor)> {
    let mut all: Vec<(String, Tensor)> =
        net.model().unwrap().state_dict().into_iter().map(|(n, t)| (n, t.copy())).collect();
    all.extend(net.optimizer().unwrap().state_dict().into_iter().map(|(n, t)| (format!("optimizer.{n}"), t.copy())));
    all
}

#[test]
fn a_sweep_suggests_rates_where_the_loss_falls_and_puts_the_net_back() {
    let _serial = serial();
    let (x, y) = digits();
    let mut net = torchfit::classifier();
    net.set_params(&[
        ("module__hidden", "[64]"),
        ("optimizer__lr", "0.05"),
        ("optimizer__momentum", "0.9"),
        ("iterator_train__batch_size", "32"),
        ("callbacks__print_log", "false"),
    ])
    .unwrap();
    let mut data = TensorDataset::new(&x, &y).unwrap();
    let all: Vec<i64> = (0..x.size()[0]).collect();
    net.initialize_for(&mut data, &all).unwrap();
    let before = state(&net);
    let found = net.lr_find(&mut data, None, LrFindConfig::default()).unwrap();

    assert!(
        found.lrs.len() > 50 && found.lrs.len() < 100,
        "the sweep diverged before 100 batches: {}",
        found.lrs.len()
    );
    assert!(found.lrs.windows(2).all(|w| (w[1] / w[0] - 10f64.powf(8.0 / 100.0)).abs() < 1e-9), "exponential steps");
    assert_eq!((found.losses.len(), found.smoothed.len()), (found.lrs.len(), found.lrs.len()));
    let last = *found.smoothed.last().unwrap();
    let least = found.smoothed.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(last > 4.0 * least || !last.is_finite(), "it stopped because the loss diverged: {last} against {least}");
    let (steepest, valley) = (found.steepest.unwrap(), found.valley.unwrap());
    let flat = found.smoothed[..10].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    for s in [steepest, valley] {
        assert!(s.lr > 1e-4 && s.lr < 1.0 && s.loss < flat, "{s:?} against the flat start's {flat}");
    }

    let after = state(&net);
    assert_eq!(before.len(), after.len());
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        assert!(a.equal(b), "{name} was put back");
    }
    assert_eq!(net.history().len(), 0, "the sweep leaves no epoch in the history");
    assert_eq!(net.optimizer().unwrap().lr(0), Some(0.05));
}

#[test]
fn a_trained_net_keeps_its_history_weights_and_rates_through_a_sweep() {
    let _serial = serial();
    let (x, y) = digits();
    let mut net = torchfit::classifier();
    net.set_params(&[
        ("module__hidden", "[32]"),
        ("optimizer__name", "adam"),
        ("optimizer__lr", "0.01"),
        ("max_epochs", "2"),
        ("callbacks__print_log", "false"),
    ])
    .unwrap();
    net.fit(&x.narrow(0, 0, 400), &y.narrow(0, 0, 400)).unwrap();
    let (before, history) = (state(&net), net.history().to_json());
    let mut data = TensorDataset::new(&x, &y).unwrap();
    let config = LrFindConfig { num_it: 30, ..LrFindConfig::default() };
    assert_eq!(net.lr_find(&mut data, Some(&(0..400).collect::<Vec<i64>>()), config).unwrap().lrs.len(), 30);
    for ((name, a), (_, b)) in before.iter().zip(&state(&net)) {
        assert!(a.equal(b), "{name} was put back (Adam's moments and step too)");
    }
    assert_eq!(net.history().to_json(), history);
    let proba = net.predict_proba(&x.narrow(0, 0, 4)).unwrap();
    assert_eq!(proba.kind(), Kind::Float);
}
