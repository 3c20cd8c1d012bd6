//! Mixed precision and gradient accumulation through the library API: a `bf16-mixed` forward
//! really runs in bfloat16, `16-mixed` checkpoints its gradient scaler, and accumulating `k`
//! batches of `b` takes the steps one batch of `k * b` takes.

use tch::{Kind, Tensor};
use torchfit::NeuralNet;
use torchfit_sdk::{BatchOutput, BuildContext, Callback, Constructor, Flow, Host, Result as SdkResult};
use torchfit_tests::{digits, serial};

/// Records each training batch's output dtype (`y_pred_kind`) and the sum of the first
/// parameter's gradient after the step (`grad_sum`).
struct Watch;
impl Callback for Watch {
    fn on_loss_computed(&mut self, h: &mut dyn Host, o: &BatchOutput<'_>) -> SdkResult<Flow> {
        h.record_batch("y_pred_kind", format!("{:?}", o.y_pred.kind()).into())?;
        Ok(Flow::Continue)
    }
    fn on_batch_end(&mut self, h: &mut dyn Host, o: &BatchOutput<'_>) -> SdkResult<Flow> {
        if o.batch.training {
            let grad = h.parameters()[0].1.grad();
            let sum = if grad.defined() { grad.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]) } else { 0.0 };
            h.record_batch("grad_sum", sum.into())?;
        }
        Ok(Flow::Continue)
    }
}

fn watch(_config: &serde_json::Value, _ctx: &BuildContext) -> SdkResult<Box<dyn Callback>> {
    Ok(Box::new(Watch))
}

/// An MLP without dropout on the digits, one epoch, no validation split.
fn net(extra: &[(&str, &str)]) -> NeuralNet {
    let mut net = torchfit::classifier();
    net.registry_mut().add("watch", "0.0.1", "records dtypes and gradients", Constructor::Callback(watch)).unwrap();
    net.set_params(&[
        ("module__hidden", "[64]"),
        ("module__dropout", "0.0"),
        ("optimizer__lr", "0.1"),
        ("optimizer__momentum", "0.9"),
        ("max_epochs", "1"),
        ("train_split__kind", "\"none\""),
        ("callbacks__print_log", "false"),
        ("callbacks__progress_bar", "false"),
        ("callbacks__watch__type", "\"watch\""),
    ])
    .unwrap();
    net.set_params(extra).unwrap();
    net
}

fn params(net: &NeuralNet) -> Vec<Tensor> {
    net.model().unwrap().parameters().into_iter().map(|(_, t)| t.detach().copy()).collect()
}

fn max_diff(a: &[Tensor], b: &[Tensor]) -> f64 {
    a.iter().zip(b).map(|(u, v)| (u - v).abs().max().double_value(&[])).fold(0.0, f64::max)
}

fn batch_values(net: &NeuralNet, key: &str) -> Vec<serde_json::Value> {
    net.history().batch_values(-1, key).into_iter().cloned().collect()
}

#[test]
fn four_accumulated_batches_of_8_end_where_batches_of_32_do() {
    let _serial = serial();
    let (x, y) = digits();
    let (x, y) = (x.narrow(0, 0, 1280), y.narrow(0, 0, 1280));
    let mut whole = net(&[("iterator_train__batch_size", "32")]);
    whole.fit(&x, &y).unwrap();
    let mut accumulated = net(&[("iterator_train__batch_size", "8"), ("accumulate_grad_batches", "4")]);
    accumulated.fit(&x, &y).unwrap();
    let worst = max_diff(&params(&whole), &params(&accumulated));
    assert!(worst < 1e-5, "parameters differ by {worst}");
    let stepped = batch_values(&accumulated, "stepped");
    assert_eq!(stepped.len(), 160);
    assert!(stepped.iter().enumerate().all(|(i, s)| s.as_bool() == Some(i % 4 == 3)), "every fourth batch steps");
    assert!(batch_values(&whole, "stepped").is_empty(), "without accumulation the records are as before");
    // The batch losses in history are the batches' own, not divided by k.
    let mean = |n: &NeuralNet| n.history().last_f64("train_loss").unwrap();
    assert!((mean(&whole) - mean(&accumulated)).abs() / mean(&whole) < 0.05, "{} {}", mean(&whole), mean(&accumulated));
}

#[test]
fn the_short_last_group_of_an_epoch_is_stepped_at_its_end() {
    let _serial = serial();
    let (x, y) = digits();
    // 1296 samples in batches of 8: 162 batches, 40 groups of 4 and one of 2.
    let (x, y) = (x.narrow(0, 0, 1296), y.narrow(0, 0, 1296));
    let mut net = net(&[("iterator_train__batch_size", "8"), ("accumulate_grad_batches", "4")]);
    net.fit(&x, &y).unwrap();
    let stepped: Vec<bool> = batch_values(&net, "stepped").iter().map(|s| s.as_bool().unwrap()).collect();
    assert_eq!(stepped.len(), 162);
    assert_eq!(stepped.iter().filter(|s| **s).count(), 41);
    assert!(stepped[161] && !stepped[160], "the last group (batches 161 and 162) steps after its last batch");
}

#[test]
fn a_bf16_mixed_forward_runs_in_bfloat16_and_validation_in_float32() {
    let _serial = serial();
    let (x, y) = digits();
    let mut net = net(&[("precision", "\"bf16-mixed\""), ("max_epochs", "5"), ("train_split__kind", "\"fraction\"")]);
    net.fit(&x, &y).unwrap();
    let kinds = batch_values(&net, "y_pred_kind");
    assert!(!kinds.is_empty() && kinds.iter().all(|k| k == "BFloat16"), "{:?}", &kinds[..2]);
    assert!(net.history().last_f64("valid_acc").unwrap() > 0.9);
    assert_eq!(net.predict_proba(&x.narrow(0, 0, 4)).unwrap().kind(), Kind::Float);
    let mut full = self::net(&[("max_epochs", "1")]);
    full.fit(&x, &y).unwrap();
    assert!(batch_values(&full, "y_pred_kind").iter().all(|k| k == "Float"));
}

#[test]
fn sixteen_mixed_scales_the_loss_and_trains() {
    let _serial = serial();
    let (x, y) = digits();
    let mut net = net(&[("precision", "\"16-mixed\""), ("max_epochs", "5"), ("train_split__kind", "\"fraction\"")]);
    net.fit(&x, &y).unwrap();
    assert!(batch_values(&net, "y_pred_kind").iter().all(|k| k == "Half"));
    let stepped = batch_values(&net, "stepped");
    assert!(stepped.iter().all(|s| s.as_bool() == Some(true)), "no overflow at the initial scale on the digits");
    assert!(net.history().last_f64("valid_acc").unwrap() > 0.9);
}

#[test]
fn a_non_finite_loss_inside_a_group_skips_that_groups_step_and_training_goes_on() {
    let _serial = serial();
    let (x, y) = digits();
    let x = x.narrow(0, 0, 1280).copy();
    let y = y.narrow(0, 0, 1280);
    for i in (0..1280).step_by(200) {
        let _ = x.get(i).get(3).fill_(f64::NAN);
    }
    let mut net =
        net(&[("iterator_train__batch_size", "8"), ("accumulate_grad_batches", "4"), ("on_nan", "\"skip_batch\"")]);
    net.fit(&x, &y).unwrap();
    let all_finite = net.model().unwrap().parameters().iter().all(|(_, t)| bool::try_from(t.isfinite().all()).unwrap());
    assert!(all_finite, "no step took a NaN gradient");
    let batches = net.history().batches(-1).to_vec();
    let skipped: Vec<usize> = (0..batches.len()).filter(|&i| batches[i].get("skipped").is_some()).collect();
    assert!(!skipped.is_empty() && skipped.len() <= 7, "{skipped:?}");
    for i in skipped {
        let last = i - i % 4 + 3;
        assert_eq!(
            batches[last]["stepped"],
            false,
            "batch {} skipped: its group's step (batch {}) is too",
            i + 1,
            last + 1
        );
    }
    let stepped = batches.iter().filter(|b| b["stepped"] == true).count();
    assert!(stepped >= 40 - 7, "the other groups step: {stepped}");
}
