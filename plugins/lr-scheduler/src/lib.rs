//! Stock callback `lr_scheduler` (skorch's `LRScheduler`): sets the learning rate of every
//! parameter group by a policy of `torch.optim.lr_scheduler`, stepping per epoch or per batch,
//! and records the rate used as `event_lr`. `CyclicLR` and `OneCycleLR` also cycle the momentum
//! (beta1 for Adam and AdamW) by default, as torch's do, and record it as `event_momentum`. Its
//! state (steps taken, base rates, plateau counters) is checkpointed with the other callbacks,
//! and the optimizer's checkpoint keeps the momentum, so a resumed run continues the schedule.
#![deny(missing_docs)]

pub mod plateau;
pub mod policy;

use plateau::{Plateau, PlateauConfig};
use policy::Policy;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use torchfit_sdk::{
    export_plugin, json, parse_config, BatchOutput, BuildContext, Callback, Error, Flow, Host, Result, SdkVersion,
};

/// The history key of the momentum (or beta1) used, beside `event_lr`, when the policy cycles it.
pub const MOMENTUM_KEY: &str = "event_momentum";
/// The batch-record key the engine writes when not every training batch steps the optimizer
/// (gradient accumulation, `16-mixed`): whether this one did.
pub const STEPPED_KEY: &str = "stepped";

/// When the schedule advances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepEvery {
    /// After each epoch.
    #[default]
    Epoch,
    /// After each training batch.
    Batch,
}

/// The schedule: a closed-form policy or ReduceLROnPlateau.
#[derive(Debug, Clone)]
enum Schedule {
    Policy(Policy),
    Plateau(PlateauConfig),
}

/// Run state, checkpointed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct State {
    step: u64,
    base: Vec<f64>,
    plateau: Plateau,
    /// A `OneCycleLR`'s total steps taken from the run (kept, so a resumed run keeps its cycle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
}

/// The `lr_scheduler` callback: its schedule and the steps taken.
pub struct LrScheduler {
    schedule: Schedule,
    /// Whether the schedule's length is the run's (a `OneCycleLR` given none).
    length_from_run: bool,
    step_every: StepEvery,
    event_name: String,
    state: State,
    /// Whether the run's batches say if they stepped (`Host::records_stepped`), asked at train
    /// begin.
    records_stepped: bool,
}

fn build(config: &Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let mut rest: Map<String, Value> = config.as_object().cloned().unwrap_or_default();
    let step_every: StepEvery = match rest.remove("step_every") {
        None => StepEvery::Epoch,
        Some(v) => parse_config(&v).map_err(|e| Error::Config { key: "step_every".into(), message: e.to_string() })?,
    };
    let event_name = match rest.remove("event_name") {
        None => "event_lr".to_owned(),
        Some(Value::String(s)) => s,
        Some(_) => return Err(Error::config("event_name", "must be a string")),
    };
    let schedule = if rest.get("policy") == Some(&Value::String("ReduceLROnPlateau".into())) {
        rest.remove("policy");
        let cfg: PlateauConfig = parse_config(&Value::Object(rest))?;
        cfg.validate().map_err(|(key, message)| Error::Config { key, message })?;
        Schedule::Plateau(cfg)
    } else {
        let mut p: Policy = parse_config(&Value::Object(rest))?;
        p.validate().map_err(|(key, message)| Error::Config { key, message })?;
        if !p.needs_total() {
            p.set_total(0); // `epochs` x `steps_per_epoch`, when given so
        }
        Schedule::Policy(p)
    };
    let length_from_run = matches!(&schedule, Schedule::Policy(p) if p.needs_total());
    Ok(Box::new(LrScheduler {
        schedule,
        length_from_run,
        step_every,
        event_name,
        state: State::default(),
        records_stepped: false,
    }))
}

/// Where a cycled momentum goes: `momentum` (SGD, RMSprop) or the first of `betas` (Adam, AdamW),
/// as `torch.optim.lr_scheduler` decides (by whether the optimizer has `betas`).
fn set_momentum(host: &mut dyn Host, group: usize, momentum: f64) -> Result<()> {
    match host.hyper(group, "betas") {
        Ok(Value::Array(betas)) if betas.len() == 2 => host.set_hyper(group, "betas", json!([momentum, betas[1]])),
        _ => host.set_hyper(group, "momentum", json!(momentum)),
    }
}

impl LrScheduler {
    /// The momentum the schedule sets at the current step, if it cycles one.
    fn momentum(&self) -> Option<f64> {
        match &self.schedule {
            Schedule::Policy(p) => p.momentum(self.state.step),
            Schedule::Plateau(_) => None,
        }
    }

    /// Sets every group's rate (and momentum, when the policy cycles it) for the current step.
    fn apply(&self, host: &mut dyn Host) -> Result<()> {
        if let Schedule::Policy(p) = &self.schedule {
            if p.needs_total() {
                return Ok(()); // set once the run's length is known (`resolve`)
            }
            for (g, &base) in self.state.base.iter().enumerate() {
                host.set_lr(g, p.lr(base, self.state.step))?;
                if let Some(m) = self.momentum() {
                    set_momentum(host, g, m)?;
                }
            }
        }
        Ok(())
    }

    fn advance(&mut self, host: &mut dyn Host) -> Result<()> {
        self.state.step += 1;
        match &self.schedule {
            Schedule::Policy(p) => {
                p.check_step(self.state.step).map_err(|(key, message)| Error::Config { key, message })?;
                self.apply(host)
            }
            Schedule::Plateau(cfg) => {
                let writer = "the scoring callback of that key (valid_loss needs validation data)";
                let value = host.history_number(&cfg.monitor, writer)?;
                let lrs: Vec<f64> = (0..host.param_groups()).map(|g| host.lr(g)).collect::<Result<_>>()?;
                for (g, lr) in self.state.plateau.step(cfg, value, &lrs).into_iter().enumerate() {
                    host.set_lr(g, lr)?;
                }
                Ok(())
            }
        }
    }
}

impl LrScheduler {
    /// Gives a `OneCycleLR` without a length of its own the run's: `max_epochs` epochs, of
    /// `train_batches` optimizer steps each with `step_every = "batch"` (a resumed run keeps the length it
    /// began with). Returns whether the length was set now.
    fn resolve(&mut self, max_epochs: usize, train_batches: Option<usize>) -> bool {
        let Schedule::Policy(p) = &mut self.schedule else { return false };
        if !p.needs_total() {
            return false;
        }
        let total = match (self.state.total, self.step_every, train_batches) {
            (Some(total), _, _) => total,
            (None, StepEvery::Epoch, _) => max_epochs as u64,
            (None, StepEvery::Batch, Some(batches)) => (max_epochs as u64).saturating_mul(batches as u64),
            (None, StepEvery::Batch, None) => return false,
        };
        p.set_total(total);
        self.state.total = Some(total);
        true
    }
}

impl Callback for LrScheduler {
    fn initialize(&mut self) -> Result<()> {
        self.state = State::default();
        if let (Schedule::Policy(p), true) = (&mut self.schedule, self.length_from_run) {
            p.clear_total(); // a new fit takes its own run's length
        }
        Ok(())
    }

    fn on_epoch_begin(&mut self, host: &mut dyn Host) -> Result<Flow> {
        // The run's optimizer steps per epoch: one per group of `accumulate_grad_batches`.
        let steps = host.batch_counts().0.div_ceil(host.accumulate_grad_batches());
        if self.resolve(host.max_epochs(), Some(steps)) {
            self.apply(host)?;
        }
        Ok(Flow::Continue)
    }

    fn on_train_begin(&mut self, host: &mut dyn Host) -> Result<Flow> {
        self.records_stepped = host.records_stepped();
        if self.state.base.is_empty() {
            let groups = host.param_groups();
            self.state.base = match &self.schedule {
                Schedule::Policy(p) => match p.overrides_base() {
                    Some(b) => vec![b; groups],
                    None => (0..groups).map(|g| host.lr(g)).collect::<Result<_>>()?,
                },
                Schedule::Plateau(_) => Vec::new(),
            };
        }
        self.resolve(host.max_epochs(), None);
        self.apply(host)?;
        Ok(Flow::Continue)
    }

    fn on_batch_end(&mut self, host: &mut dyn Host, out: &BatchOutput<'_>) -> Result<Flow> {
        if out.batch.training && self.step_every == StepEvery::Batch {
            host.record_batch(&self.event_name, host.lr(0)?.into())?;
            if let Some(m) = self.momentum() {
                host.record_batch(MOMENTUM_KEY, m.into())?;
            }
            // Per optimizer step: a batch that only accumulated gradients (or whose step the
            // gradient scaler skipped) records `stepped = false`.
            if !self.records_stepped || host.history_batch_value(-1, -1, STEPPED_KEY) != Some(false.into()) {
                self.advance(host)?;
            }
        }
        Ok(Flow::Continue)
    }

    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        if self.step_every == StepEvery::Epoch {
            host.record(&self.event_name, host.lr(0)?.into())?;
            if let Some(m) = self.momentum() {
                host.record(MOMENTUM_KEY, m.into())?;
            }
            self.advance(host)?;
        }
        Ok(Flow::Continue)
    }

    /// Cycling the momentum sets a hyper-parameter other than the rate, which needs SDK 1.1.
    fn requires_sdk(&self) -> SdkVersion {
        match self.momentum() {
            Some(_) => SdkVersion::V1_1,
            None => SdkVersion::V1_0,
        }
    }

    fn state(&self) -> Result<Value> {
        serde_json::to_value(&self.state).map_err(Error::msg)
    }

    fn load_state(&mut self, state: Value) -> Result<()> {
        self.state = serde_json::from_value(state).map_err(|e| Error::msg(format!("lr_scheduler state: {e}")))?;
        Ok(())
    }
}

export_plugin! {
    name: "torchfit-plugin-lr-scheduler",
    components: [Callback(
        "lr_scheduler",
        build,
        "sets learning rates by a torch.optim.lr_scheduler policy (StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR, WarmRestart, CyclicLR, OneCycleLR, ReduceLROnPlateau); keys: policy, step_every, event_name and the policy's"
    )],
}
