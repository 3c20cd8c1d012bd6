//! Stock callbacks `ema` and `swa`: an average of the model's weights kept beside the model, used
//! to validate and, at the end, as the trained model.
//!
//! - `ema`: an exponential moving average of the whole state dict, buffers included, after every
//!   optimizer step, as timm's `ModelEmaV2` keeps it ([`ema_update`]);
//! - `swa`: the running mean of the parameters at the end of every epoch from `swa_start` on, as
//!   `torch.optim.swa_utils.AveragedModel` keeps it ([`swa_update`]); buffers are averaged too
//!   with `use_buffers` (torch's option). Once the average becomes the model, its batch-norm
//!   statistics are recomputed by the host's pass over the training data (`update_bn`,
//!   [`Host::update_batch_norm`]).
//!
//! The average is tensor state (SDK 1.1), saved in checkpoints, so a resumed run continues it
//! exactly. With `validate`, the epoch's validation pass runs on the averaged weights (they are
//! swapped in at the first validation batch and out after the last), so `valid_loss` and the
//! scores are the average's. With `apply_at_end`, the average replaces the model's weights when
//! training ends: the saved model and the test evaluation are the average's.
#![deny(missing_docs)]

use serde::{Deserialize, Serialize};
use torchfit_sdk::tch::{Kind, Tensor};
use torchfit_sdk::{
    export_plugin, parse_config, Batch, BatchOutput, BuildContext, Callback, Error, Flow, Host, Result, SdkVersion,
    Value,
};

/// One step of timm's `ModelEmaV2`: every entry `e` of the average becomes
/// `decay * e + (1 - decay) * m` for the model's entry `m`, computed in the default float type and
/// copied into the entry's own type (an integer counter is truncated, as `copy_` does).
pub fn ema_update(average: &mut [(String, Tensor)], model: &[(String, Tensor)], decay: f64) -> Result<()> {
    let _guard = torchfit_sdk::tch::no_grad_guard();
    for (name, a) in average.iter_mut() {
        let m = find(model, name)?;
        let next = if a.is_floating_point() {
            a.f_mul_scalar(decay)?.f_add(&m.f_mul_scalar(1.0 - decay)?)?
        } else {
            a.f_to_kind(Kind::Float)?
                .f_mul_scalar(decay)?
                .f_add(&m.f_to_kind(Kind::Float)?.f_mul_scalar(1.0 - decay)?)?
        };
        a.f_copy_(&next)?;
    }
    Ok(())
}

/// One step of `AveragedModel`'s default average (its CPU path): with `n` models averaged so
/// far, every entry `a` becomes `a + (m - a) / (n + 1)`, computed as torch does (an integer entry
/// in the default float type, then truncated by `copy_`); the first step (`n = 0`) copies the
/// model's.
pub fn swa_update(average: &mut [(String, Tensor)], model: &[(String, Tensor)], n: u64) -> Result<()> {
    let _guard = torchfit_sdk::tch::no_grad_guard();
    let count = Tensor::from((n + 1) as i64);
    for (name, a) in average.iter_mut() {
        let m = find(model, name)?;
        if n == 0 {
            a.f_copy_(m)?;
        } else {
            let next = a.f_add(&m.f_sub(a)?.f_div(&count)?)?;
            a.f_copy_(&next)?;
        }
    }
    Ok(())
}

fn find<'a>(tensors: &'a [(String, Tensor)], name: &str) -> Result<&'a Tensor> {
    tensors
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .ok_or_else(|| Error::msg(format!("the model has no `{name}`")))
}

/// Owned copies of `tensors`, detached.
fn copies(tensors: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>> {
    tensors.iter().map(|(n, t)| Ok((n.clone(), t.f_detach_copy()?))).collect()
}

/// Tensor-state prefixes: the average, and the model weights it replaced at train end.
const AVERAGE: &str = "average";
const MODEL: &str = "model";

/// Which average.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Average {
    /// `ema`, with its decay.
    Ema { decay: f64 },
    /// `swa`, from epoch `start`, parameters only unless `use_buffers`; with `update_bn`, the
    /// batch-norm statistics are recomputed once the average becomes the model.
    Swa { start: usize, use_buffers: bool, update_bn: bool },
}

/// Settings of `ema` (timm's defaults).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct EmaConfig {
    decay: f64,
    validate: bool,
    apply_at_end: bool,
}

impl Default for EmaConfig {
    fn default() -> Self {
        EmaConfig { decay: 0.9998, validate: Default::default(), apply_at_end: true }
    }
}

/// Settings of `swa`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SwaConfig {
    #[serde(default = "one")]
    swa_start: usize,
    #[serde(default)]
    use_buffers: bool,
    /// Default: when the average becomes the model and its buffers are not averaged.
    update_bn: Option<bool>,
    #[serde(default)]
    validate: bool,
    #[serde(default = "yes")]
    apply_at_end: bool,
}

fn yes() -> bool {
    true
}
fn one() -> usize {
    1
}

/// Run state, checkpointed as JSON beside the tensors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct State {
    /// Models averaged so far (SWA's `n_averaged`; EMA's update count).
    n: u64,
}

/// The `ema` and `swa` callbacks: the average and, while validating on it, the live weights.
pub struct WeightAveraging {
    kind: Average,
    validate: bool,
    apply_at_end: bool,
    state: State,
    average: Vec<(String, Tensor)>,
    /// The model's own weights while the average is swapped in for validation.
    live: Option<Vec<(String, Tensor)>>,
    /// The model's own weights after the average replaced them at train end: kept in the
    /// checkpoint, and put back when training goes on (a resumed run continues the model, not
    /// the average).
    replaced: Vec<(String, Tensor)>,
    /// Whether the run's batches say if they stepped (`Host::records_stepped`), asked at train
    /// begin.
    records_stepped: bool,
}

fn build_ema(config: &Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: EmaConfig = parse_config(config)?;
    if !(0.0..1.0).contains(&c.decay) {
        return Err(Error::config("decay", format!("must be in [0, 1), got {}", c.decay)));
    }
    Ok(Box::new(WeightAveraging::new(Average::Ema { decay: c.decay }, c.validate, c.apply_at_end)))
}

fn build_swa(config: &Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: SwaConfig = parse_config(config)?;
    if c.swa_start == 0 {
        return Err(Error::config("swa_start", "epochs count from 1"));
    }
    if c.update_bn == Some(true) && !c.apply_at_end {
        return Err(Error::config(
            "update_bn",
            "recomputes the statistics of the average once it becomes the model: it needs apply_at_end",
        ));
    }
    let update_bn = c.update_bn.unwrap_or(c.apply_at_end && !c.use_buffers);
    let kind = Average::Swa { start: c.swa_start, use_buffers: c.use_buffers, update_bn };
    Ok(Box::new(WeightAveraging::new(kind, c.validate, c.apply_at_end)))
}

impl WeightAveraging {
    fn new(kind: Average, validate: bool, apply_at_end: bool) -> Self {
        let (average, replaced) = (Vec::new(), Vec::new());
        WeightAveraging {
            kind,
            validate,
            apply_at_end,
            state: State::default(),
            average,
            live: None,
            replaced,
            records_stepped: false,
        }
    }

    /// What the average covers: the whole state dict, or (SWA without `use_buffers`) the
    /// parameters.
    fn tracked(&self, host: &dyn Host) -> Result<Vec<(String, Tensor)>> {
        match self.kind {
            Average::Swa { use_buffers: false, .. } => {
                let params: Vec<String> = host.parameters().into_iter().map(|(n, _)| n).collect();
                Ok(host.state_dict()?.into_iter().filter(|(n, _)| params.contains(n)).collect())
            }
            _ => host.state_dict(),
        }
    }

    fn update(&mut self, host: &dyn Host) -> Result<()> {
        let model = self.tracked(host)?;
        match self.kind {
            Average::Ema { decay } => ema_update(&mut self.average, &model, decay)?,
            Average::Swa { .. } => swa_update(&mut self.average, &model, self.state.n)?,
        }
        self.state.n += 1;
        Ok(())
    }

    /// The model's state dict with the average's entries in place of its own.
    fn averaged_state(&self, host: &dyn Host) -> Result<Vec<(String, Tensor)>> {
        Ok(host
            .state_dict()?
            .into_iter()
            .map(|(n, t)| match self.average.iter().find(|(a, _)| *a == n) {
                Some((_, a)) => (n, a.shallow_clone()),
                None => (n, t),
            })
            .collect())
    }

    /// Whether there is an average to use: EMA from its start, SWA once it averaged a model.
    fn ready(&self) -> bool {
        !self.average.is_empty() && (matches!(self.kind, Average::Ema { .. }) || self.state.n > 0)
    }
}

impl Callback for WeightAveraging {
    fn initialize(&mut self) -> Result<()> {
        self.state = State::default();
        self.average.clear();
        self.live = None;
        self.replaced.clear();
        Ok(())
    }

    fn on_train_begin(&mut self, host: &mut dyn Host) -> Result<Flow> {
        self.records_stepped = host.records_stepped();
        if !self.replaced.is_empty() {
            host.load_state_dict(&std::mem::take(&mut self.replaced))?;
        }
        if self.average.is_empty() {
            // EMA starts from the model as it is (timm copies it when the EMA is created); SWA's
            // first update copies the model anyway.
            self.average = copies(&self.tracked(host)?)?;
        }
        Ok(Flow::Continue)
    }

    fn on_batch_begin(&mut self, host: &mut dyn Host, batch: &Batch<'_>) -> Result<Flow> {
        if self.validate && !batch.training && batch.index == 0 && self.ready() {
            self.live = Some(copies(&host.state_dict()?)?);
            let averaged = self.averaged_state(host)?;
            host.load_state_dict(&averaged)?;
        }
        Ok(Flow::Continue)
    }

    fn on_batch_end(&mut self, host: &mut dyn Host, out: &BatchOutput<'_>) -> Result<Flow> {
        // EMA updates after each optimizer step: not after a batch that only accumulated
        // gradients, or whose step the gradient scaler skipped (`stepped = false`).
        let stepped = || !self.records_stepped || host.history_batch_value(-1, -1, "stepped") != Some(false.into());
        if out.batch.training && matches!(self.kind, Average::Ema { .. }) && stepped() {
            self.update(host)?;
        }
        let last_valid = !out.batch.training && out.batch.index + 1 == host.batch_counts().1;
        if last_valid {
            if let Some(live) = self.live.take() {
                host.load_state_dict(&live)?;
            }
        }
        Ok(Flow::Continue)
    }

    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        if let Average::Swa { start, .. } = self.kind {
            if host.epochs() >= start {
                self.update(host)?;
            }
        }
        host.record("averaged", self.state.n.into())?;
        Ok(Flow::Continue)
    }

    fn on_train_end(&mut self, host: &mut dyn Host) -> Result<()> {
        if let Some(live) = self.live.take() {
            host.load_state_dict(&live)?;
        }
        if self.apply_at_end && self.ready() {
            self.replaced = copies(&host.state_dict()?)?;
            let averaged = self.averaged_state(host)?;
            host.load_state_dict(&averaged)?;
            if let Average::Swa { update_bn: true, .. } = self.kind {
                if host.update_batch_norm()? {
                    torchfit_sdk::log::info!("batch-norm statistics recomputed for the averaged weights");
                }
            }
        }
        Ok(())
    }

    fn state(&self) -> Result<Value> {
        serde_json::to_value(&self.state).map_err(Error::msg)
    }

    fn load_state(&mut self, state: Value) -> Result<()> {
        self.state = serde_json::from_value(state).map_err(|e| Error::msg(format!("weight averaging state: {e}")))?;
        Ok(())
    }

    /// The average under `average/`, and the replaced model weights under `model/`.
    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let tagged = |tag: &str, v: &[(String, Tensor)]| -> Vec<(String, Tensor)> {
            v.iter().map(|(n, t)| (format!("{tag}/{n}"), t.shallow_clone())).collect()
        };
        let mut all = tagged(AVERAGE, &self.average);
        all.extend(tagged(MODEL, &self.replaced));
        Ok(all)
    }

    fn load_state_tensors(&mut self, tensors: Vec<(String, Tensor)>) -> Result<()> {
        let untagged = |tag: &str| -> Result<Vec<(String, Tensor)>> {
            let prefix = format!("{tag}/");
            let mut v: Vec<(String, Tensor)> = Vec::new();
            for (n, t) in &tensors {
                if let Some(name) = n.strip_prefix(&prefix) {
                    v.push((name.to_owned(), t.f_detach_copy()?));
                }
            }
            Ok(v)
        };
        self.average = untagged(AVERAGE)?;
        self.replaced = untagged(MODEL)?;
        Ok(())
    }

    /// The average is read and written through the state-dict services of SDK 1.1.
    fn requires_sdk(&self) -> SdkVersion {
        SdkVersion::V1_1
    }
}

export_plugin! {
    name: "torchfit-plugin-weight-averaging",
    components: [
        Callback("ema", build_ema, "an exponential moving average of the weights and buffers after every step (timm's ModelEmaV2); keys: decay, validate, apply_at_end"),
        Callback("swa", build_swa, "the running mean of the weights at each epoch end from swa_start (torch's AveragedModel), then update_bn; keys: swa_start, use_buffers, update_bn, validate, apply_at_end"),
    ],
}

#[cfg(test)]
mod tests {
    use super::*;
    use torchfit_sdk::testing::{drive_one_epoch, FakeHost};

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_slice(v)
    }

    #[test]
    fn ema_moves_a_fraction_toward_the_model_and_truncates_counters() {
        let mut avg = vec![("w".to_string(), t(&[0.0, 1.0])), ("n".to_string(), Tensor::from_slice(&[10i64]))];
        let model = vec![("w".to_string(), t(&[1.0, 1.0])), ("n".to_string(), Tensor::from_slice(&[20i64]))];
        ema_update(&mut avg, &model, 0.9).unwrap();
        assert_eq!(Vec::<f32>::try_from(&avg[0].1).unwrap(), [0.1f32, 1.0]);
        assert_eq!(avg[1].1.int64_value(&[0]), 11, "0.9 * 10 + 0.1 * 20, truncated");
    }

    #[test]
    fn swa_is_the_running_mean_of_the_models_averaged() {
        let mut avg = vec![("w".to_string(), t(&[5.0]))];
        for (n, v) in [1.0f32, 2.0, 6.0].into_iter().enumerate() {
            swa_update(&mut avg, &[("w".to_string(), t(&[v]))], n as u64).unwrap();
        }
        assert_eq!(avg[0].1.double_value(&[0]), 3.0, "the first update copies; then the mean of 1, 2, 6");
    }

    #[test]
    fn the_callbacks_run_on_a_host_and_keep_their_average_as_tensor_state() {
        for (name, config) in
            [("ema", serde_json::json!({"decay": 0.5, "validate": true})), ("swa", serde_json::json!({}))]
        {
            let build = if name == "ema" { build_ema } else { build_swa };
            let mut cb = build(&config, &torchfit_sdk::testing::context(name)).unwrap();
            let mut host = FakeHost::default();
            drive_one_epoch(cb.as_mut(), &mut host).unwrap();
            let tensors = cb.state_tensors().unwrap();
            assert_eq!(tensors.len(), 4, "{name}: the average of fc.weight and fc.bias, and the weights it replaced");
            assert_eq!(host.history[0]["averaged"], 1, "{name}");
        }
        assert!(build_ema(&serde_json::json!({"decay": 1.5}), &torchfit_sdk::testing::context("ema")).is_err());
    }

    #[test]
    fn swa_recomputes_batch_norm_statistics_unless_it_averages_them() {
        let ctx = torchfit_sdk::testing::context("swa");
        let updates = |config: serde_json::Value| {
            let mut cb = build_swa(&config, &ctx).unwrap();
            let buffers = vec![("bn.running_mean".into(), t(&[0.0, 0.0, 0.0]))];
            let mut host = FakeHost { buffers, ..FakeHost::default() };
            drive_one_epoch(cb.as_mut(), &mut host).unwrap();
            host.batch_norm_updates
        };
        assert_eq!(updates(serde_json::json!({})), 1, "after the average became the model");
        assert_eq!(updates(serde_json::json!({"use_buffers": true})), 0, "the statistics are averaged");
        assert_eq!(updates(serde_json::json!({"use_buffers": true, "update_bn": true})), 1);
        assert_eq!(updates(serde_json::json!({"apply_at_end": false})), 0, "the model keeps its weights");
        let err = build_swa(&serde_json::json!({"update_bn": true, "apply_at_end": false}), &ctx).err().unwrap();
        assert!(err.to_string().contains("update_bn"), "{err}");
    }
}
