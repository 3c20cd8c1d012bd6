//! Components that misbehave on purpose, for the loading-failure tests.
use serde::Deserialize;
use torchfit_sdk::{
    export_plugin, parse_config, tch::Tensor, Batch, BatchOutput, BuildContext, Callback, Criterion, Error, Flow, Host,
    Result,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The hook to misbehave in.
    hook: String,
    /// `panic`, `error`, or `sleep` (for `seconds`, e.g. to be killed mid-epoch).
    #[serde(default = "panic")]
    how: String,
    /// Misbehave only in this epoch (1-based); every epoch when absent.
    #[serde(default)]
    epoch: Option<usize>,
    /// Sleep length for `how = "sleep"`.
    #[serde(default = "minute")]
    seconds: u64,
    /// On epoch end, record `scored` = this scorer's score of two fixed tensors (through the host).
    #[serde(default)]
    score: Option<String>,
}

fn minute() -> u64 {
    60
}

fn panic() -> String {
    "panic".into()
}

struct Faulty(Config);

impl Faulty {
    fn at(&self, hook: &str) -> Result<Flow> {
        self.at_epoch(hook, None)
    }

    fn at_epoch(&self, hook: &str, epoch: Option<usize>) -> Result<Flow> {
        if self.0.hook != hook || (self.0.epoch.is_some() && self.0.epoch != epoch) {
            return Ok(Flow::Continue);
        }
        match self.0.how.as_str() {
            "panic" => panic!("faulty plugin panics in {hook}"),
            "sleep" => {
                torchfit_sdk::log::info!("faulty plugin sleeps in {hook}");
                std::thread::sleep(std::time::Duration::from_secs(self.0.seconds));
                Ok(Flow::Continue)
            }
            _ => Err(Error::msg(format!("faulty plugin fails in {hook}"))),
        }
    }
}

fn build(config: &torchfit_sdk::Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: Config = parse_config(config)?;
    if c.hook == "constructor" {
        panic!("faulty plugin panics in its constructor");
    }
    Ok(Box::new(Faulty(c)))
}

impl Callback for Faulty {
    fn initialize(&mut self) -> Result<()> {
        torchfit_sdk::log::info!("faulty plugin initialized to misbehave in {}", self.0.hook);
        self.at("initialize").map(|_| ())
    }
    fn on_train_begin(&mut self, _h: &mut dyn Host) -> Result<Flow> {
        self.at("on_train_begin")
    }
    fn on_epoch_begin(&mut self, _h: &mut dyn Host) -> Result<Flow> {
        self.at("on_epoch_begin")
    }
    fn on_batch_begin(&mut self, _h: &mut dyn Host, _b: &Batch<'_>) -> Result<Flow> {
        self.at("on_batch_begin")
    }
    fn on_grad_computed(&mut self, _h: &mut dyn Host, _b: &Batch<'_>) -> Result<Flow> {
        self.at("on_grad_computed")
    }
    fn on_batch_end(&mut self, h: &mut dyn Host, _o: &BatchOutput<'_>) -> Result<Flow> {
        self.at_epoch("on_batch_end", Some(h.epochs()))
    }
    fn on_epoch_end(&mut self, h: &mut dyn Host) -> Result<Flow> {
        if let Some(name) = &self.0.score {
            let y = Tensor::from_slice(&[0i64, 1, 1, 0]);
            let y_pred = Tensor::from_slice(&[1f32, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]).view([4, 2]);
            let v = h.score(name, &y, &y_pred)?;
            h.record("scored", v.into())?;
        }
        self.at("on_epoch_end")
    }
    fn on_train_end(&mut self, _h: &mut dyn Host) -> Result<()> {
        self.at("on_train_end").map(|_| ())
    }
    fn state(&self) -> Result<torchfit_sdk::Value> {
        self.at("state").map(|_| torchfit_sdk::Value::Null)
    }
}

struct FaultyLoss;

fn build_loss(_config: &torchfit_sdk::Value, _ctx: &BuildContext) -> Result<Box<dyn Criterion>> {
    Ok(Box::new(FaultyLoss))
}

impl Criterion for FaultyLoss {
    fn loss(&self, _y_pred: &Tensor, _y: &Tensor) -> Result<Tensor> {
        panic!("faulty plugin panics in loss")
    }
}

struct ConstantHalf;

fn build_half(_config: &torchfit_sdk::Value, _ctx: &BuildContext) -> Result<Box<dyn torchfit_sdk::Scorer>> {
    Ok(Box::new(ConstantHalf))
}

impl torchfit_sdk::Scorer for ConstantHalf {
    fn score(&self, y_true: &Tensor, _y_pred: &Tensor) -> Result<f64> {
        Ok(0.5 * (y_true.size()[0] > 0) as i32 as f64)
    }
}

export_plugin! {
    name: "torchfit-testplugin-faulty",
    components: [
        Scorer("constant_half", build_half, "scores 0.5"),
        Callback("faulty", build, "panics or fails in the hook named by `hook`"),
        Criterion("faulty_loss", build_loss, "panics in loss"),
    ],
}
