//! A torchfit callback plugin: records the global L2 norm of the gradients.
//!
//! Writes the batch key `<key>` after every backward pass and the epoch key `<key>` (the mean
//! over the epoch's training batches) at epoch end.
use serde::Deserialize;
use torchfit_sdk::{export_plugin, parse_config, tch, Batch, BuildContext, Callback, Flow, Host, Result};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    key: String,
}

impl Default for Config {
    fn default() -> Self {
        Config { key: "grad_norm".into() }
    }
}

struct GradNorm {
    key: String,
    norms: Vec<f64>,
}

fn build(config: &torchfit_sdk::Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: Config = parse_config(config)?;
    Ok(Box::new(GradNorm { key: c.key, norms: Vec::new() }))
}

impl Callback for GradNorm {
    fn on_epoch_begin(&mut self, _host: &mut dyn Host) -> Result<Flow> {
        self.norms.clear();
        Ok(Flow::Continue)
    }

    fn on_grad_computed(&mut self, host: &mut dyn Host, _batch: &Batch<'_>) -> Result<Flow> {
        let mut total = 0.0;
        for (_, p) in host.parameters() {
            let g = p.grad();
            if g.defined() {
                total += g.f_square()?.f_sum(tch::Kind::Double)?.f_double_value(&[])?;
            }
        }
        self.norms.push(total.sqrt());
        host.record_batch(&self.key, total.sqrt().into())?;
        Ok(Flow::Continue)
    }

    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        if !self.norms.is_empty() {
            host.record(&self.key, (self.norms.iter().sum::<f64>() / self.norms.len() as f64).into())?;
        }
        Ok(Flow::Continue)
    }
}

export_plugin! {
    name: "custom-callback",
    components: [Callback("grad_norm", build, "records the L2 norm of the gradients as `grad_norm` (key)")],
}
