//! A torchfit plugin: one callback, `l2_penalty`, that adds `coef * Σ w²` over the weights to
//! every training loss (SDK 1.1's `on_loss_computed`) and records the term as the batch key
//! `l2_term`. Replace it with yours; the test below shows how to check a callback without the
//! engine.
use serde::Deserialize;
use torchfit_sdk::tch::{Kind, Tensor};
use torchfit_sdk::{export_plugin, parse_config, BatchOutput, BuildContext, Callback, Flow, Host, Result, SdkVersion};

/// The settings, refused with the key's name when misspelt.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Weight of the penalty.
    coef: f64,
}

struct L2Penalty {
    coef: f64,
}

fn build(config: &torchfit_sdk::Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: Config = parse_config(config)?;
    Ok(Box::new(L2Penalty { coef: c.coef }))
}

impl Callback for L2Penalty {
    fn on_loss_computed(&mut self, host: &mut dyn Host, _out: &BatchOutput<'_>) -> Result<Flow> {
        let mut term = Tensor::zeros([], (Kind::Float, host.device()?));
        for (name, w) in host.parameters() {
            if name.ends_with("weight") {
                term = term.f_add(&w.f_square()?.f_sum(Kind::Float)?)?;
            }
        }
        let term = term.f_mul_scalar(self.coef)?;
        host.record_batch("l2_term", term.f_double_value(&[])?.into())?;
        host.add_to_loss(&term)?;
        Ok(Flow::Continue)
    }

    /// The penalty is the point: a host older than SDK 1.1 (without `on_loss_computed`) refuses
    /// the callback instead of running it without.
    fn requires_sdk(&self) -> SdkVersion {
        SdkVersion::V1_1
    }
}

export_plugin! {
    name: "my-plugin",
    components: [Callback("l2_penalty", build, "adds coef * sum of squared weights to the loss; keys: coef")],
}

#[cfg(test)]
mod tests {
    use super::*;
    use torchfit_sdk::testing::{context, drive_one_epoch, FakeHost};

    #[test]
    fn the_penalty_is_added_to_the_loss_of_every_training_batch() {
        let mut cb = build(&torchfit_sdk::json!({"coef": 0.5}), &context("l2")).unwrap();
        let mut host = FakeHost::default();
        drive_one_epoch(cb.as_mut(), &mut host).unwrap();
        // FakeHost's weight is a 3x2 matrix of ones: 0.5 * 6.
        assert_eq!(host.loss_terms.len(), 1, "one training batch");
        assert_eq!(host.loss_terms[0].double_value(&[]), 3.0);
        assert_eq!(host.history[0]["batches"][0]["l2_term"], 3.0);
    }

    #[test]
    fn a_misspelt_key_is_refused_by_name() {
        let err = build(&torchfit_sdk::json!({"coeff": 0.5}), &context("l2")).err().unwrap();
        assert!(err.to_string().contains("coeff"), "{err}");
    }
}
