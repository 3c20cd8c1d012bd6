//! Non-finite losses (`on_nan`): a diverging run stops at once naming the epoch and the batch,
//! with the weights of the last finite step; `skip_batch` trains on without the bad batches;
//! `continue` keeps skorch's behaviour, the NaN in the history.

use tch::Tensor;
use torchfit::{Error, NeuralNet};
use torchfit_tests::{digits, serial};

fn net(on_nan: &str, lr: &str) -> NeuralNet {
    let mut net = torchfit::classifier();
    net.set_params(&[
        ("module__hidden", "[128, 64]"),
        ("optimizer__lr", lr),
        ("optimizer__momentum", "0.9"),
        ("max_epochs", "3"),
        ("iterator_train__batch_size", "32"),
        ("on_nan", &format!("\"{on_nan}\"")),
        ("callbacks__print_log", "false"),
    ])
    .unwrap();
    net
}

fn all_finite(net: &NeuralNet) -> bool {
    net.model().unwrap().state_dict().iter().all(|(_, t)| bool::try_from(t.isfinite().all()).unwrap())
}

/// The digits with a NaN pixel in every 100th sample.
fn digits_with_nan() -> (Tensor, Tensor) {
    let (x, y) = digits();
    let x = x.copy();
    for i in (0..x.size()[0]).step_by(100) {
        let _ = x.get(i).get(3).fill_(f64::NAN);
    }
    (x, y)
}

#[test]
fn a_diverging_run_stops_at_its_first_non_finite_loss_keeping_finite_weights() {
    let _serial = serial();
    let (x, y) = digits();
    let mut net = net("stop", "1e6");
    match net.fit(&x, &y) {
        Err(Error::NonFinite { epoch, batch, value }) => {
            assert!(!value.is_finite());
            assert_eq!(net.history().len(), epoch);
            let batches = net.history().batches(-1);
            assert_eq!(batches.iter().filter(|b| b.get("train_loss").is_some()).count(), batch);
            let last = torchfit_sdk::values::as_number(&batches[batch - 1]["train_loss"]).unwrap();
            assert!(!last.is_finite(), "the bad batch's loss is in the history: {last}");
        }
        other => panic!("expected a non-finite stop, got {other:?}"),
    }
    assert!(all_finite(&net), "the step of the bad batch was not taken");
}

#[test]
fn skip_batch_trains_on_without_the_batches_whose_loss_is_not_finite() {
    let _serial = serial();
    let (x, y) = digits_with_nan();
    let mut net = net("skip_batch", "0.1");
    net.fit(&x, &y).unwrap();
    assert!(all_finite(&net));
    let h = net.history();
    let skipped = h.get(-1, "skipped_batches").and_then(|v| v.as_u64()).unwrap();
    assert!(skipped > 0 && skipped < 40, "{skipped}");
    assert_eq!(h.batch_values(-1, "skipped").len() as u64, skipped);
    assert!(h.last_f64("train_loss").unwrap().is_finite(), "the epoch's loss averages the batches that ran");
    assert!(h.last_f64("valid_acc").unwrap() > 0.8);
}

#[test]
fn continue_trains_on_nan_as_skorch_does_and_the_history_says_so() {
    let _serial = serial();
    let (x, y) = digits_with_nan();
    let mut net = net("continue", "0.1");
    net.fit(&x, &y).unwrap();
    assert!(net.history().last_f64("train_loss").unwrap().is_nan());
    assert!(!all_finite(&net));
}

#[test]
fn a_typo_in_on_nan_is_refused() {
    let mut net = torchfit::classifier();
    let err = net.set_params(&[("on_nan", "\"skip\"")]).unwrap_err().to_string();
    assert!(err.contains("on_nan") && err.contains("skip_batch"), "{err}");
}
