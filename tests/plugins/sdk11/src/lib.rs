//! Callbacks that use what SDK 1.1 added, one concern each, for the tests that load this library
//! into the current host (`tests/tests/plugins/sdk11.rs`) and into a 1.0 host
//! (`tests/tests/plugins/abi_versions.rs`).
use serde::Deserialize;
use torchfit_sdk::tch::{Kind, Tensor};
use torchfit_sdk::{
    export_plugin, json, parse_config, Batch, BatchOutput, BuildContext, Callback, Error, Flow, Forward, Host, Result,
    Scorer, SdkVersion, Value,
};

/// `l1_penalty`: adds `coef * Σ|w|` over the weights (not the biases) to every training loss,
/// and records the batch's term as `l1_term`.
struct L1Penalty {
    coef: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct L1Config {
    coef: f64,
}

fn build_l1(config: &Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: L1Config = parse_config(config)?;
    Ok(Box::new(L1Penalty { coef: c.coef }))
}

impl Callback for L1Penalty {
    fn on_loss_computed(&mut self, host: &mut dyn Host, _out: &BatchOutput<'_>) -> Result<Flow> {
        let mut term = Tensor::zeros([], (Kind::Float, host.device()?));
        for (name, p) in host.parameters() {
            if name.ends_with("weight") {
                term = term.f_add(&p.f_abs()?.f_sum(Kind::Float)?)?;
            }
        }
        let term = term.f_mul_scalar(self.coef)?;
        host.record_batch("l1_term", term.f_double_value(&[])?.into())?;
        host.add_to_loss(&term)?;
        Ok(Flow::Continue)
    }

    fn requires_sdk(&self) -> SdkVersion {
        SdkVersion::V1_1
    }
}

/// `skip_steps`: skips the optimizer step of every training batch from `on_grad_computed`
/// (or, with `early = true`, backward and the step from `on_loss_computed`).
struct SkipSteps {
    early: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SkipConfig {
    #[serde(default)]
    early: bool,
}

fn build_skip(config: &Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: SkipConfig = parse_config(config)?;
    Ok(Box::new(SkipSteps { early: c.early }))
}

impl Callback for SkipSteps {
    fn on_loss_computed(&mut self, host: &mut dyn Host, _out: &BatchOutput<'_>) -> Result<Flow> {
        if self.early {
            host.skip_step()?;
        }
        Ok(Flow::Continue)
    }
    fn on_grad_computed(&mut self, host: &mut dyn Host, _batch: &Batch<'_>) -> Result<Flow> {
        host.skip_step()?;
        Ok(Flow::Continue)
    }
}

/// `stop_now`: asks to stop after training batch `batch` (from 0) of epoch `epoch`, or without
/// `batch` after epoch `epoch`; with `rank`, only in that process of a distributed job (SDK 1.2).
struct StopNow {
    epoch: usize,
    batch: Option<usize>,
    rank: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StopConfig {
    epoch: usize,
    #[serde(default)]
    batch: Option<usize>,
    #[serde(default)]
    rank: Option<usize>,
}

fn build_stop(config: &Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: StopConfig = parse_config(config)?;
    Ok(Box::new(StopNow { epoch: c.epoch, batch: c.batch, rank: c.rank }))
}

impl StopNow {
    fn here(&self, host: &dyn Host) -> Result<bool> {
        Ok(self.rank.is_none_or(|r| host.process().is_ok_and(|p| p.rank == r)) && host.epochs() == self.epoch)
    }
}

impl Callback for StopNow {
    fn on_batch_end(&mut self, host: &mut dyn Host, out: &BatchOutput<'_>) -> Result<Flow> {
        let now = out.batch.training && Some(out.batch.index) == self.batch && self.here(host)?;
        Ok(if now { Flow::StopAfterBatch } else { Flow::Continue })
    }
    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        let now = self.batch.is_none() && self.here(host)?;
        Ok(if now { Flow::Stop } else { Flow::Continue })
    }
    fn on_train_end(&mut self, host: &mut dyn Host) -> Result<()> {
        host.record("train_end_ran", true.into())
    }
}

/// `mixup`: mixes each training batch with its reverse (weight `lam`) and trains on soft
/// targets, class probabilities mixed the same way.
struct Mixup {
    lam: f64,
    classes: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MixupConfig {
    lam: f64,
}

fn build_mixup(config: &Value, ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: MixupConfig = parse_config(config)?;
    Ok(Box::new(Mixup { lam: c.lam, classes: ctx.n_outputs }))
}

impl Callback for Mixup {
    fn on_batch_begin(&mut self, host: &mut dyn Host, batch: &Batch<'_>) -> Result<Flow> {
        if batch.training {
            let n = batch.x.size()[0];
            let rev = Tensor::f_arange_start_step(n - 1, -1, -1, (Kind::Int64, batch.x.device()))?;
            let x = batch
                .x
                .f_mul_scalar(self.lam)?
                .f_add(&batch.x.f_index_select(0, &rev)?.f_mul_scalar(1.0 - self.lam)?)?;
            let y = batch.y.f_one_hot(self.classes)?.f_to_kind(Kind::Float)?;
            let y = y.f_mul_scalar(self.lam)?.f_add(&y.f_index_select(0, &rev)?.f_mul_scalar(1.0 - self.lam)?)?;
            host.replace_batch(&x, &y)?;
        }
        Ok(Flow::Continue)
    }
    fn on_batch_end(&mut self, host: &mut dyn Host, out: &BatchOutput<'_>) -> Result<Flow> {
        if out.batch.training {
            host.record_batch("soft_targets", out.batch.y.is_floating_point().into())?;
        }
        Ok(Flow::Continue)
    }
}

/// `probe`: reads and sets the optimizer and model through the 1.1 services and records what it
/// saw: at train begin sets `momentum` to 0.5; at every epoch end records the group's momentum,
/// its parameter names, the optimizer-state and buffer counts, the device, whether running
/// the model in evaluation mode without gradients gives the same outputs twice, and (SDK 1.4)
/// the gradient scaler and the first batch's `train_batch_size` and `stepped`.
struct Probe;

fn build_probe(_config: &Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    Ok(Box::new(Probe))
}

impl Callback for Probe {
    fn on_train_begin(&mut self, host: &mut dyn Host) -> Result<Flow> {
        host.set_hyper(0, "momentum", json!(0.5))?;
        Ok(Flow::Continue)
    }
    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        let momentum = host.hyper(0, "momentum")?;
        host.record("probe_momentum", momentum)?;
        host.record("probe_group_parameters", json!(host.group_parameters(0)?))?;
        host.record("probe_optimizer_state", json!(host.optimizer_state()?.len()))?;
        host.record("probe_buffers", json!(host.buffers()?.len()))?;
        host.record("probe_state_dict", json!(host.state_dict()?.len()))?;
        host.record("probe_device", json!(format!("{:?}", host.device()?)))?;
        host.record("probe_process", json!(host.process()?))?;
        // SDK 1.4: the gradient scaler, and one batch's history value.
        host.record("probe_grad_scaler", json!(host.grad_scaler()?))?;
        host.record("probe_first_batch_size", host.history_batch_value(-1, 0, "train_batch_size").unwrap_or_default())?;
        host.record("probe_first_stepped", host.history_batch_value(-1, 0, "stepped").unwrap_or_default())?;
        let x = Tensor::ones([2, 64], (Kind::Float, host.device()?));
        let mode = Forward { train: false, grad: false };
        let (a, b) = (host.forward(&x, mode)?, host.forward(&x, mode)?);
        host.record("probe_forward_repeats", json!(a.equal(&b) && !a.requires_grad()))?;
        let g = host.forward(&x, Forward { train: false, grad: true })?;
        host.record("probe_forward_grad", json!(g.requires_grad()))?;
        match host.hyper(0, "betas") {
            Err(e) => host.record("probe_betas_error", json!(e.to_string()))?,
            Ok(_) => return Err(Error::msg("SGD has no betas")),
        }
        Ok(Flow::Continue)
    }
}

/// `running_mean`: an exponential moving average of the parameters, kept as tensor state (it
/// resumes from a checkpoint), recorded as `ema_l1` (the sum of its absolute values) each epoch.
struct RunningMean {
    decay: f64,
    avg: Vec<(String, Tensor)>,
}

fn build_running_mean(_config: &Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    Ok(Box::new(RunningMean { decay: 0.9, avg: Vec::new() }))
}

impl Callback for RunningMean {
    fn initialize(&mut self) -> Result<()> {
        self.avg.clear();
        Ok(())
    }
    fn on_batch_end(&mut self, host: &mut dyn Host, out: &BatchOutput<'_>) -> Result<Flow> {
        if !out.batch.training {
            return Ok(Flow::Continue);
        }
        let _guard = torchfit_sdk::tch::no_grad_guard();
        let state = host.state_dict()?;
        if self.avg.is_empty() {
            self.avg = state.iter().map(|(n, t)| Ok((n.clone(), t.f_detach_copy()?))).collect::<Result<_>>()?;
        } else {
            for (name, a) in self.avg.iter_mut() {
                // By name: tensor state comes back from a checkpoint in the file's order.
                let (_, t) = state.iter().find(|(n, _)| n == name).ok_or_else(|| Error::msg(format!("no `{name}`")))?;
                if a.is_floating_point() {
                    let next = a.f_mul_scalar(self.decay)?.f_add(&t.f_mul_scalar(1.0 - self.decay)?)?;
                    a.f_copy_(&next)?;
                }
            }
        }
        Ok(Flow::Continue)
    }
    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        let mut l1 = 0.0;
        for (_, a) in &self.avg {
            if a.is_floating_point() {
                l1 += a.f_abs()?.f_sum(Kind::Double)?.f_double_value(&[])?;
            }
        }
        host.record("ema_l1", l1.into())?;
        Ok(Flow::Continue)
    }
    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(self.avg.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect())
    }
    fn load_state_tensors(&mut self, tensors: Vec<(String, Tensor)>) -> Result<()> {
        self.avg = tensors.into_iter().map(|(n, t)| Ok((n, t.f_detach_copy()?))).collect::<Result<_>>()?;
        Ok(())
    }
}

/// `mean_abs_error`: a scorer that knows its direction (lower is better).
struct MeanAbsError;

fn build_mae(_config: &Value, _ctx: &BuildContext) -> Result<Box<dyn Scorer>> {
    Ok(Box::new(MeanAbsError))
}

impl Scorer for MeanAbsError {
    fn score(&self, y_true: &Tensor, y_pred: &Tensor) -> Result<f64> {
        let classes = y_pred.f_argmax(-1, false)?;
        Ok(classes.f_sub(y_true)?.f_abs()?.f_to_kind(Kind::Double)?.f_mean(Kind::Double)?.f_double_value(&[])?)
    }
    fn lower_is_better(&self) -> Option<bool> {
        Some(true)
    }
}

/// `data_error`: fails in `on_epoch_end` with an error of kind data (a bad input file).
struct DataError;

fn build_data_error(_config: &Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    Ok(Box::new(DataError))
}

impl Callback for DataError {
    fn on_epoch_end(&mut self, _host: &mut dyn Host) -> Result<Flow> {
        Err(Error::data("labels.csv: row 7: label `x` is not a number"))
    }
}

/// `loss_watch`: counts its `on_loss_computed` calls (a hook SDK 1.1 added; a 1.0 host never
/// calls it) and records the count as `loss_hook_calls` at each epoch end. It requires nothing
/// of the host, so a 1.0 host runs it without the hook.
struct LossWatch {
    calls: u64,
}

fn build_loss_watch(_config: &Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    Ok(Box::new(LossWatch { calls: 0 }))
}

impl Callback for LossWatch {
    fn on_loss_computed(&mut self, _host: &mut dyn Host, _out: &BatchOutput<'_>) -> Result<Flow> {
        self.calls += 1;
        Ok(Flow::Continue)
    }
    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        host.record("loss_hook_calls", self.calls.into())?;
        Ok(Flow::Continue)
    }
}

/// `lines`: a reader of a file of `x,label` lines; a missing file is an I/O error, as for the
/// stock readers. Evaluation samples (SDK 1.3 `set_stage`) are shifted by `eval_offset`; each
/// sample is named `line <n>` (SDK 1.3 `sample_names`).
struct Lines {
    x: Vec<f32>,
    y: Vec<i64>,
    eval_offset: f32,
    stage: torchfit_sdk::Stage,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinesConfig {
    path: String,
    #[serde(default)]
    eval_offset: f32,
}

fn build_lines(config: &Value, ctx: &BuildContext) -> Result<Box<dyn torchfit_sdk::DatasetReader>> {
    let c: LinesConfig = parse_config(config)?;
    let path = ctx.resolve(&c.path);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        let bad = || Error::data(format!("{}: line {}: expected `x,label`", path.display(), i + 1));
        let (a, b) = line.split_once(',').ok_or_else(bad)?;
        x.push(a.trim().parse().map_err(|_| bad())?);
        y.push(b.trim().parse().map_err(|_| bad())?);
    }
    Ok(Box::new(Lines { x, y, eval_offset: c.eval_offset, stage: torchfit_sdk::Stage::Train }))
}

impl torchfit_sdk::DatasetReader for Lines {
    fn len(&self) -> usize {
        self.y.len()
    }
    fn sample_shape(&self) -> Vec<i64> {
        vec![1]
    }
    fn get(&mut self, indices: &[i64]) -> Result<(Tensor, Tensor)> {
        let shift = if self.stage == torchfit_sdk::Stage::Eval { self.eval_offset } else { 0.0 };
        let x: Vec<f32> = indices.iter().map(|&i| self.x[i as usize] + shift).collect();
        let y: Vec<i64> = indices.iter().map(|&i| self.y[i as usize]).collect();
        Ok((Tensor::from_slice(&x).view([-1, 1]), Tensor::from_slice(&y)))
    }
    fn targets(&mut self) -> Result<Tensor> {
        Ok(Tensor::from_slice(&self.y))
    }
    fn set_stage(&mut self, stage: torchfit_sdk::Stage) -> Result<()> {
        self.stage = stage;
        Ok(())
    }
    fn sample_names(&mut self) -> Option<Vec<String>> {
        Some((1..=self.y.len()).map(|n| format!("line {n}")).collect())
    }
}

/// `bad_shape`: a criterion whose reshape libtorch refuses, with its C++ frames.
struct BadShape;

fn build_bad_shape(_config: &Value, _ctx: &BuildContext) -> Result<Box<dyn torchfit_sdk::Criterion>> {
    Ok(Box::new(BadShape))
}

impl torchfit_sdk::Criterion for BadShape {
    fn loss(&self, y_pred: &Tensor, _y: &Tensor) -> Result<Tensor> {
        Ok(y_pred.f_reshape([7, 7, 7])?.f_mean(Kind::Float)?)
    }
}

export_plugin! {
    name: "torchfit-testplugin-sdk11",
    components: [
        Callback("l1_penalty", build_l1, "adds coef * sum|w| to the loss (SDK 1.1 on_loss_computed); needs SDK 1.1"),
        Callback("skip_steps", build_skip, "skips every optimizer step (SDK 1.1 skip_step)"),
        Callback("stop_now", build_stop, "stops after training batch `batch` of epoch `epoch` (SDK 1.1 Flow::StopAfterBatch), or after epoch `epoch` without `batch`; only on rank `rank` if given"),
        Callback("mixup", build_mixup, "mixes each training batch with its reverse, soft targets (SDK 1.1 replace_batch)"),
        Callback("probe", build_probe, "reads and sets the optimizer and model through the SDK 1.1 services"),
        Callback("running_mean", build_running_mean, "an EMA of the parameters as tensor state (SDK 1.1)"),
        Callback("data_error", build_data_error, "fails in on_epoch_end with a data error"),
        Callback("loss_watch", build_loss_watch, "counts on_loss_computed calls (an SDK 1.1 hook it can do without)"),
        Scorer("mean_abs_error", build_mae, "mean |argmax - label|; lower is better (SDK 1.1 direction)"),
        Reader("lines", build_lines, "x,label lines, evaluation samples shifted by eval_offset (SDK 1.3 stage), named `line <n>`; keys: path, eval_offset"),
        Criterion("bad_shape", build_bad_shape, "a reshape libtorch refuses"),
    ],
}
