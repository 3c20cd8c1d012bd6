//! The engine as a library: skorch's fit/predict shape, parameter routing, and the contracts of
//! the event bus (order, stop requests, errors, `on_train_end`).

use std::cell::RefCell;
use tch::{Device, Kind, Tensor};
use torchfit::{Error, NeuralNet};
use torchfit_sdk::Constructor;
use torchfit_sdk::{BatchOutput, BuildContext, Callback, DatasetReader, Flow, Host, Result as SdkResult};

use torchfit_tests::{digits, serial};

fn small_net(epochs: usize) -> NeuralNet {
    let mut net = torchfit::classifier();
    net.set_params(&[
        ("module__hidden", "[64]"),
        ("optimizer__lr", "0.1"),
        ("optimizer__momentum", "0.9"),
        ("iterator_train__batch_size", "32"),
        ("callbacks__print_log", "false"),
        ("callbacks__progress_bar", "false"),
    ])
    .unwrap();
    net.set_param("max_epochs", epochs as i64).unwrap();
    net
}

#[test]
fn fit_predict_and_score_on_the_digits() {
    let _serial = serial();
    let (x, y) = digits();
    let (x_train, x_test) = (x.narrow(0, 0, 1400), x.narrow(0, 1400, 397));
    let (y_train, y_test) = (y.narrow(0, 0, 1400), y.narrow(0, 1400, 397));
    let mut net = small_net(15);
    net.fit(&x_train, &y_train).unwrap();
    assert_eq!(net.history().len(), 15);
    assert!(net.history().last_f64("valid_acc").unwrap() > 0.9);
    let score = net.score(&x_test, &y_test).unwrap();
    assert!(score > 0.9, "test accuracy {score}");
    let proba = net.predict_proba(&x_test).unwrap();
    assert_eq!(proba.size(), [397, 10]);
    let row_sums = proba.sum_dim_intlist(1, false, Kind::Float);
    assert!(row_sums.allclose(&Tensor::ones([397], (Kind::Float, Device::Cpu)), 1e-5, 1e-5, false));
    let pred = net.predict(&x_test).unwrap();
    assert!(pred.equal(&proba.argmax(-1, false)));
}

#[test]
fn set_params_routes_into_callbacks_and_rebuilds_them() {
    let _serial = serial();
    let (x, y) = digits();
    let mut net = small_net(2);
    net.set_param("callbacks__valid_acc__name", "accuracy").unwrap();
    net.fit(&x, &y).unwrap();
    assert!(net.history().last("accuracy").is_some() && net.history().last("valid_acc").is_none());
    net.set_param("callbacks__valid_acc", false).unwrap();
    assert!(!net.is_initialized(), "changing callbacks rebuilds the components");
    net.fit(&x, &y).unwrap();
    assert!(net.history().last("accuracy").is_none());
}

#[test]
fn an_invalid_parameter_is_refused_and_leaves_the_net_unchanged() {
    let _serial = serial();
    let mut net = small_net(2);
    let err = net.set_param("optimizer__lr", "fast").unwrap_err().to_string();
    assert!(err.contains("optimizer.lr"), "{err}");
    assert_eq!(net.params().settings().optimizer.lr, Some(0.1));
    assert!(net.set_param("iterator_train__batchsize", 3).is_err());
}

/// Data the model cannot take is an error of the data, saying what is wrong, before libtorch
/// meets it in a batch (or a model's forward).
#[test]
fn data_the_net_cannot_take_is_a_data_error_naming_what_is_wrong() {
    let _serial = serial();
    let (x, y) = digits();
    let data_error = |r: torchfit::Result<&mut NeuralNet>| match r {
        Err(Error::Data(m)) => m,
        Err(e) => panic!("not a data error: {e}"),
        Ok(_) => panic!("accepted"),
    };
    let m = data_error(small_net(1).fit(&x.narrow(0, 0, 100), &y.narrow(0, 0, 90)));
    assert!(m.contains("x has 100 samples but y has 90 samples"), "{m}");
    let m = data_error(small_net(1).fit(&x, &(&y - 1)));
    assert!(m.contains("class label -1"), "{m}");
    // partial_fit keeps the model's outputs: a class it has no output for is refused.
    let mut net = small_net(1);
    net.fit(&x, &y.remainder(5)).unwrap();
    let m = data_error(net.partial_fit(&x, &y));
    assert!(m.contains("class label 5") && m.contains("5 outputs"), "{m}");
    match net.predict(&x.narrow(0, 0, 0)) {
        Err(Error::Data(m)) => assert_eq!(m, "no samples to predict"),
        other => panic!("{:?}", other.map(|t| t.size())),
    }
}

#[test]
fn partial_fit_continues_and_fit_starts_over() {
    let _serial = serial();
    let (x, y) = digits();
    let mut net = small_net(2);
    net.fit(&x, &y).unwrap();
    let first = net.history().column_f64("train_loss");
    net.partial_fit(&x, &y).unwrap();
    assert_eq!(net.history().len(), 4);
    assert_eq!(net.history().column_f64("train_loss")[..2], first[..]);
    net.set_param("max_epochs", 1).unwrap();
    assert!(net.is_initialized(), "max_epochs does not rebuild the model");
    net.partial_fit(&x, &y).unwrap();
    assert_eq!(net.history().len(), 5);
    net.fit(&x, &y).unwrap();
    assert_eq!(net.history().len(), 1, "fit re-initializes (no warm_start)");
}

#[test]
fn fit_with_valid_validates_on_the_given_data() {
    let _serial = serial();
    let (x, y) = digits();
    let mut net = small_net(1);
    net.fit_with_valid(&x.narrow(0, 0, 1000), &y.narrow(0, 0, 1000), &x.narrow(0, 1000, 300), &y.narrow(0, 1000, 300))
        .unwrap();
    let valid: u64 = net.history().batch_values(-1, "valid_batch_size").iter().map(|v| v.as_u64().unwrap()).sum();
    let train: u64 = net.history().batch_values(-1, "train_batch_size").iter().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!((train, valid), (1000, 300));
}

#[test]
fn a_regressor_fits_a_linear_function() {
    let _serial = serial();
    tch::manual_seed(0);
    let x = Tensor::randn([512, 3], (Kind::Float, Device::Cpu));
    let y = (x.matmul(&Tensor::from_slice(&[1.5f32, -2.0, 0.5]).view([3, 1])) + 0.3).view([512, 1]);
    let mut net = torchfit::regressor();
    net.set_params(&[
        ("module__hidden", "[32]"),
        ("optimizer__name", "adam"),
        ("optimizer__lr", "0.01"),
        ("max_epochs", "40"),
        ("callbacks__print_log", "false"),
    ])
    .unwrap();
    net.fit(&x, &y).unwrap();
    assert!(net.history().last("valid_acc").is_none(), "no accuracy for regression");
    let r2 = net.score(&x, &y).unwrap();
    assert!(r2 > 0.95, "R² {r2}");
}

/// R² as scikit-learn's `r2_score` defines it for several outputs: each column's own R², then
/// their mean (not the R² of the pooled values, which weighs the column with the wider spread).
fn uniform_average_r2(y: &Tensor, pred: &Tensor) -> f64 {
    let ss_res = (y - pred).square().sum_dim_intlist(0, false, Kind::Double);
    let ss_tot = (y - y.mean_dim(0, true, Kind::Float)).square().sum_dim_intlist(0, false, Kind::Double);
    1.0 - (ss_res / ss_tot).mean(Kind::Double).double_value(&[])
}

#[test]
fn score_of_a_two_output_regressor_is_the_mean_of_the_columns_r2() {
    let _serial = serial();
    tch::manual_seed(1);
    let x = Tensor::randn([256, 3], (Kind::Float, Device::Cpu));
    // Two targets of very different spread: pooling them would weigh the second tenfold.
    let w = Tensor::from_slice(&[1.0f32, 10.0, -2.0, 5.0, 0.5, -8.0]).view([3, 2]);
    let y = x.matmul(&w) * Tensor::from_slice(&[0.1f32, 1.0]) + x.square().narrow(1, 0, 2);
    let mut net = torchfit::regressor();
    net.set_params(&[
        ("module__hidden", "[16]"),
        ("optimizer__name", "adam"),
        ("max_epochs", "5"),
        ("callbacks__print_log", "false"),
    ])
    .unwrap();
    net.fit(&x, &y).unwrap();
    let pred = net.predict(&x).unwrap();
    let expected = uniform_average_r2(&y, &pred);
    let score = net.score(&x, &y).unwrap();
    assert!((score - expected).abs() < 1e-6, "score {score}, scikit-learn's uniform average {expected}");
}

#[test]
fn the_same_seed_gives_the_same_history_in_one_process() {
    let _serial = serial();
    let (x, y) = digits();
    let run = || {
        let mut net = small_net(3);
        net.set_param("module__dropout", 0.3).unwrap();
        net.fit(&x, &y).unwrap();
        net.history().batches(-1).to_vec()
    };
    assert_eq!(run(), run());
}

// ---- the event bus -------------------------------------------------------------------------

thread_local! {
    static EVENTS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn log(e: impl Into<String>) {
    EVENTS.with(|v| v.borrow_mut().push(e.into()));
}

fn take_events() -> Vec<String> {
    EVENTS.with(|v| std::mem::take(&mut *v.borrow_mut()))
}

/// Records every event; asks to stop at `stop_at`, fails at `fail_at` (epoch numbers).
struct Recorder {
    name: String,
    stop_at: Option<usize>,
    fail_at: Option<usize>,
}

fn recorder(config: &serde_json::Value, ctx: &BuildContext) -> SdkResult<Box<dyn Callback>> {
    let at = |k: &str| config.get(k).and_then(serde_json::Value::as_u64).map(|v| v as usize);
    Ok(Box::new(Recorder { name: ctx.name.clone(), stop_at: at("stop_at"), fail_at: at("fail_at") }))
}

impl Callback for Recorder {
    fn on_train_begin(&mut self, _h: &mut dyn Host) -> SdkResult<Flow> {
        log(format!("{}:train_begin", self.name));
        Ok(Flow::Continue)
    }
    fn on_epoch_begin(&mut self, h: &mut dyn Host) -> SdkResult<Flow> {
        log(format!("{}:epoch_begin {}", self.name, h.epochs()));
        Ok(Flow::Continue)
    }
    fn on_batch_begin(&mut self, _h: &mut dyn Host, b: &torchfit_sdk::Batch<'_>) -> SdkResult<Flow> {
        log(format!("{}:batch_begin {}", self.name, if b.training { "train" } else { "valid" }));
        Ok(Flow::Continue)
    }
    fn on_grad_computed(&mut self, h: &mut dyn Host, _b: &torchfit_sdk::Batch<'_>) -> SdkResult<Flow> {
        let all_grads = h.parameters().iter().all(|(_, p)| p.grad().defined());
        log(format!("{}:grad_computed {all_grads}", self.name));
        Ok(Flow::Continue)
    }
    fn on_batch_end(&mut self, _h: &mut dyn Host, o: &BatchOutput<'_>) -> SdkResult<Flow> {
        let phase = if o.batch.training { "train" } else { "valid" };
        log(format!("{}:batch_end {phase} grad={}", self.name, o.loss.requires_grad() || o.y_pred.requires_grad()));
        Ok(Flow::Continue)
    }
    fn on_epoch_end(&mut self, h: &mut dyn Host) -> SdkResult<Flow> {
        let epoch = h.epochs();
        log(format!("{}:epoch_end {epoch} valid_loss={}", self.name, h.history_get(-1, "valid_loss").is_some()));
        if self.fail_at == Some(epoch) {
            return Err(torchfit_sdk::Error::msg("deliberate failure"));
        }
        Ok(if self.stop_at == Some(epoch) { Flow::Stop } else { Flow::Continue })
    }
    fn on_train_end(&mut self, _h: &mut dyn Host) -> SdkResult<()> {
        log(format!("{}:train_end", self.name));
        Ok(())
    }
}

fn recorded_net(epochs: usize, callbacks: &[(&str, &str)]) -> NeuralNet {
    let mut net = small_net(epochs);
    net.registry_mut().add("recorder", "0.0.1", "test recorder", Constructor::Callback(recorder)).unwrap();
    for (k, v) in callbacks {
        net.set_params(&[(k, v)]).unwrap();
    }
    net
}

#[test]
fn hooks_run_in_skorchs_order_with_validation_under_no_grad() {
    let _serial = serial();
    let (x, y) = digits();
    let mut net = recorded_net(
        1,
        &[
            ("callbacks__rec__type", "recorder"),
            ("iterator_train__batch_size", "1000"),
            ("iterator_valid__batch_size", "1000"),
        ],
    );
    take_events();
    net.fit(&x.narrow(0, 0, 1000), &y.narrow(0, 0, 1000)).unwrap();
    // 800 training samples in one batch, 200 validation samples in one batch.
    assert_eq!(
        take_events(),
        [
            "rec:train_begin",
            "rec:epoch_begin 1",
            "rec:batch_begin train",
            "rec:grad_computed true",
            "rec:batch_end train grad=false",
            "rec:batch_begin valid",
            "rec:batch_end valid grad=false",
            "rec:epoch_end 1 valid_loss=true",
            "rec:train_end",
        ]
    );
}

#[test]
fn a_stop_request_ends_training_after_that_epoch_and_train_end_still_runs() {
    let _serial = serial();
    let (x, y) = digits();
    let mut net = recorded_net(10, &[("callbacks__rec__type", "recorder"), ("callbacks__rec__stop_at", "2")]);
    take_events();
    net.fit(&x, &y).unwrap();
    assert_eq!(net.history().len(), 2);
    assert_eq!(take_events().last().unwrap(), "rec:train_end");
}

#[test]
fn an_error_in_a_callback_aborts_the_run_and_every_train_end_still_runs() {
    let _serial = serial();
    let (x, y) = digits();
    let mut net = recorded_net(
        10,
        &[
            ("callbacks__bad__type", "recorder"),
            ("callbacks__bad__fail_at", "2"),
            ("callbacks__good__type", "recorder"),
        ],
    );
    take_events();
    let err = net.fit(&x, &y).expect_err("the run fails");
    match &err {
        Error::Callback { name, event, .. } => assert_eq!((name.as_str(), *event), ("bad", "on_epoch_end")),
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("deliberate failure"));
    assert_eq!(net.history().len(), 2);
    let events = take_events();
    assert!(
        events.contains(&"bad:train_end".to_string()) && events.contains(&"good:train_end".to_string()),
        "{events:?}"
    );
    assert!(
        !events.contains(&"good:epoch_end 2 valid_loss=true".to_string()),
        "callbacks after the failing one do not run"
    );
}

/// A reader that logs `reset` and `set_stage` calls and otherwise serves a small in-memory data
/// set.
struct LoggingReader(torchfit::data::TensorDataset);

impl DatasetReader for LoggingReader {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn sample_shape(&self) -> Vec<i64> {
        self.0.sample_shape()
    }
    fn get(&mut self, indices: &[i64]) -> SdkResult<(Tensor, Tensor)> {
        self.0.get(indices)
    }
    fn reset(&mut self, epoch: u64, seed: u64) -> SdkResult<()> {
        log(format!("reset {epoch} {seed}"));
        Ok(())
    }
    fn set_stage(&mut self, stage: torchfit_sdk::Stage) -> SdkResult<()> {
        log(format!("{stage:?}"));
        Ok(())
    }
}

#[test]
fn readers_are_reset_each_epoch_and_told_the_stage_of_each_pass() {
    let _serial = serial();
    let (x, y) = digits();
    let mut reader = LoggingReader(torchfit::data::TensorDataset::new(&x, &y).unwrap());
    let mut net = small_net(3);
    net.set_param("seed", 7).unwrap();
    take_events();
    net.fit_dataset(&mut reader, None, torchfit::net::Start::Fresh).unwrap();
    let epoch = |e: u64| [format!("reset {e} 7"), "Train".into(), "Eval".into()];
    assert_eq!(take_events(), [epoch(1), epoch(2), epoch(3)].concat());
    assert_eq!(net.forward_reader(&mut reader, &[0, 1, 2]).unwrap().size()[0], 3);
    assert_eq!(take_events(), ["Eval"], "prediction reads evaluation samples");
}

/// Cross-entropy per sample, not reduced: `reshape` keeps a single-sample batch's loss of shape [1].
struct Unreduced;
impl torchfit_sdk::Criterion for Unreduced {
    fn loss(&self, y_pred: &Tensor, y: &Tensor) -> SdkResult<Tensor> {
        Ok(y_pred.log_softmax(-1, Kind::Float).nll_loss_nd::<Tensor>(y, None, tch::Reduction::None, -100))
    }
}

fn unreduced(_config: &serde_json::Value, _ctx: &BuildContext) -> SdkResult<Box<dyn torchfit_sdk::Criterion>> {
    Ok(Box::new(Unreduced))
}

#[test]
fn a_loss_of_more_than_one_value_is_an_error_naming_the_criterion_and_one_value_of_any_shape_is_taken() {
    let _serial = serial();
    let (x, y) = digits();
    let mut net = small_net(1);
    net.registry_mut().add("unreduced", "0.0.1", "per-sample loss", Constructor::Criterion(unreduced)).unwrap();
    net.set_params(&[("criterion__name", "\"unreduced\"")]).unwrap();
    match net.fit(&x.narrow(0, 0, 100), &y.narrow(0, 0, 100)).expect_err("an unreduced loss fails") {
        Error::Component { kind: torchfit_sdk::ComponentKind::Criterion, source, .. } => {
            assert!(source.to_string().contains("has shape [32]"), "{source}")
        }
        other => panic!("unexpected error {other}"),
    }
    // Batches of one sample: the unreduced loss has shape [1], a single value.
    net.set_params(&[("iterator_train__batch_size", "1"), ("iterator_valid__batch_size", "1")]).unwrap();
    net.fit(&x.narrow(0, 0, 20), &y.narrow(0, 0, 20)).unwrap();
    let batches = net.history().batches(-1);
    assert_eq!(batches.len(), 20);
    assert!(batches.iter().all(|b| b
        .get("train_loss")
        .or(b.get("valid_loss"))
        .and_then(|v| v.as_f64())
        .is_some_and(f64::is_finite)));
}

/// Counts the batch losses history holds at each `on_batch_end` and at `on_epoch_end`.
struct LossWatch;
impl LossWatch {
    fn log_counts(event: &str, h: &dyn Host) {
        log(format!(
            "{event} {} {}",
            h.history_batch_values(-1, "train_loss").len(),
            h.history_batch_values(-1, "valid_loss").len()
        ));
    }
}
impl Callback for LossWatch {
    fn on_batch_end(&mut self, h: &mut dyn Host, _o: &BatchOutput<'_>) -> SdkResult<Flow> {
        Self::log_counts("batch_end", h);
        Ok(Flow::Continue)
    }
    fn on_epoch_end(&mut self, h: &mut dyn Host) -> SdkResult<Flow> {
        Self::log_counts("epoch_end", h);
        Ok(Flow::Continue)
    }
}

fn loss_watch(_config: &serde_json::Value, _ctx: &BuildContext) -> SdkResult<Box<dyn Callback>> {
    Ok(Box::new(LossWatch))
}

#[test]
fn batch_losses_reach_history_together_at_the_epoch_end_so_no_batch_waits_for_the_device() {
    let _serial = serial();
    let (x, y) = digits();
    let mut net = small_net(1);
    net.registry_mut().add("loss_watch", "0.0.1", "counts batch losses", Constructor::Callback(loss_watch)).unwrap();
    net.set_params(&[
        ("callbacks__watch__type", "\"loss_watch\""),
        ("iterator_train__batch_size", "100"),
        ("iterator_valid__batch_size", "100"),
    ])
    .unwrap();
    take_events();
    net.fit(&x.narrow(0, 0, 500), &y.narrow(0, 0, 500)).unwrap();
    // 400 training samples in 4 batches, 100 validation samples in 1.
    let mut expected = vec!["batch_end 0 0".to_string(); 5];
    expected.push("epoch_end 4 1".into());
    assert_eq!(take_events(), expected);
    let train: Vec<f64> = net.history().batch_values(-1, "train_loss").iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(train.len(), 4);
    assert!(train.iter().all(|l| l.is_finite() && *l > 0.0), "{train:?}");
}

/// Calls `update_batch_norm` in `on_epoch_begin` (refused there) or `on_epoch_end`, and records
/// its answer as `bn_updated`.
struct BatchNormUpdate {
    too_early: bool,
}

impl Callback for BatchNormUpdate {
    fn on_epoch_begin(&mut self, h: &mut dyn Host) -> SdkResult<Flow> {
        if self.too_early {
            h.update_batch_norm()?;
        }
        Ok(Flow::Continue)
    }
    fn on_epoch_end(&mut self, h: &mut dyn Host) -> SdkResult<Flow> {
        let updated = h.update_batch_norm()?;
        h.record("bn_updated", updated.into())?;
        Ok(Flow::Continue)
    }
}

fn bn_update(config: &serde_json::Value, _ctx: &BuildContext) -> SdkResult<Box<dyn Callback>> {
    Ok(Box::new(BatchNormUpdate { too_early: config["too_early"] == true }))
}

#[test]
fn update_batch_norm_passes_over_the_training_data_at_the_epoch_end_only() {
    let _serial = serial();
    let (x, y) = digits();
    let (x, y) = (x.narrow(0, 0, 300), y.narrow(0, 0, 300));
    let running_mean = |net: &NeuralNet| {
        let state = net.model().unwrap().state_dict();
        state.into_iter().find(|(n, _)| n == "bn.0.running_mean").unwrap().1.copy()
    };
    let mut net = small_net(1);
    net.registry_mut().add("bn_update", "0.0.1", "update_bn", Constructor::Callback(bn_update)).unwrap();
    net.set_params(&[("module__batch_norm", "true"), ("callbacks__bn__type", "\"bn_update\"")]).unwrap();
    net.fit(&x, &y).unwrap();
    assert_eq!(net.history().last("bn_updated"), Some(&serde_json::json!(true)));
    // The statistics are the cumulative average over the training batches: a model whose layer
    // followed the momentum for one epoch (momentum 0.1 from mean 0) keeps a smaller mean.
    let updated = running_mean(&net);
    let mut plain = small_net(1);
    plain.set_params(&[("module__batch_norm", "true")]).unwrap();
    plain.fit(&x, &y).unwrap();
    assert!(!updated.allclose(&running_mean(&plain), 1e-3, 1e-3, false));
    net.set_param("module__batch_norm", false).unwrap();
    net.fit(&x, &y).unwrap();
    assert_eq!(net.history().last("bn_updated"), Some(&serde_json::json!(false)), "no batch norm, no pass");
    net.set_params(&[("callbacks__bn__too_early", "true")]).unwrap();
    let err = net.fit(&x, &y).unwrap_err().to_string();
    assert!(err.contains("update_batch_norm is possible in on_epoch_end and on_train_end only"), "{err}");
}

#[test]
fn load_params_partially_keeps_the_body_and_leaves_a_new_head_as_initialized() {
    let _serial = serial();
    let (x, y) = digits();
    let mut pre = small_net(2);
    pre.fit(&x, &y).unwrap();
    let path = std::env::temp_dir().join(format!("torchfit-partial-{}.safetensors", std::process::id()));
    pre.save_params(&path).unwrap();
    let mut three = small_net(1);
    three.initialize(&[64], 3).unwrap();
    let err = three.load_params(&path).unwrap_err().to_string();
    assert!(err.contains("shape"), "a whole load refuses another head: {err}");
    let report = three.load_params_partially(&path, false, &[]).unwrap();
    assert_eq!(report.loaded.len(), 2, "{report:?}");
    assert_eq!(report.mismatched.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(), ["output.bias", "output.weight"]);
    let strict = three.load_params_partially(&path, true, &[]).unwrap_err().to_string();
    assert!(strict.contains("strict = false"), "{strict}");
    let excluded = three.load_params_partially(&path, true, &["output.*"]).unwrap();
    assert_eq!(excluded.excluded, ["output.bias", "output.weight"]);
    let body = |net: &NeuralNet| {
        net.model().unwrap().state_dict().into_iter().find(|(n, _)| n == "hidden.0.weight").unwrap().1
    };
    assert!(body(&three).equal(&body(&pre)));
    let _ = std::fs::remove_file(path);
}
