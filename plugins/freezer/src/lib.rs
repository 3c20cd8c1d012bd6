//! Stock callbacks `freezer` and `unfreezer` (skorch's `Freezer`/`Unfreezer`): from epoch `at`
//! on, parameters whose names match the glob patterns stop (or resume) receiving gradients and
//! optimizer updates. Applied at every epoch from `at` on, so a resumed run keeps them frozen.
#![deny(missing_docs)]

use serde::Deserialize;
use torchfit_sdk::{export_plugin, parse_config, BuildContext, Callback, Error, Flow, Host, Result};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(deserialize_with = "torchfit_sdk::config::one_or_many")]
    patterns: Vec<String>,
    #[serde(default = "one")]
    at: usize,
}

fn one() -> usize {
    1
}

/// Whether the mapping applies in `epoch` (pure).
pub fn applies(at: usize, epoch: usize) -> bool {
    epoch >= at
}

/// Freezes (`requires_grad = false`) or unfreezes the matching parameters.
pub struct ParamMapper {
    patterns: Vec<String>,
    at: usize,
    requires_grad: bool,
}

fn build(config: &serde_json::Value, requires_grad: bool) -> Result<Box<dyn Callback>> {
    let c: Config = parse_config(config)?;
    if c.at == 0 {
        return Err(Error::config("at", "epochs count from 1"));
    }
    Ok(Box::new(ParamMapper { patterns: c.patterns, at: c.at, requires_grad }))
}

fn build_freezer(config: &serde_json::Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    build(config, false)
}

fn build_unfreezer(config: &serde_json::Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    build(config, true)
}

impl Callback for ParamMapper {
    fn on_epoch_begin(&mut self, host: &mut dyn Host) -> Result<Flow> {
        if applies(self.at, host.epochs()) {
            for p in &self.patterns {
                if host.set_requires_grad(p, self.requires_grad)? == 0 {
                    return Err(Error::config("patterns", format!("{p:?} matches no parameter")));
                }
            }
        }
        Ok(Flow::Continue)
    }
}

export_plugin! {
    name: "torchfit-plugin-freezer",
    components: [
        Callback("freezer", build_freezer, "from epoch `at` on, parameters matching `patterns` (globs) get no updates"),
        Callback("unfreezer", build_unfreezer, "from epoch `at` on, parameters matching `patterns` (globs) are trained again"),
    ],
}

#[cfg(test)]
mod tests {
    use super::*;
    use torchfit_sdk::testing::FakeHost;

    #[test]
    fn the_freezer_applies_from_its_epoch_on() {
        assert!(!applies(3, 2));
        assert!(applies(3, 3) && applies(3, 7));
        let mut cb = build_freezer(
            &serde_json::json!({"patterns": "*.bias", "at": 2}),
            &BuildContext { input_shape: vec![], n_outputs: 1, ..torchfit_sdk::testing::context("f") },
        )
        .unwrap();
        let mut host = FakeHost::default();
        host.new_epoch();
        cb.on_epoch_begin(&mut host).unwrap();
        assert!(host.params[1].1.requires_grad(), "not yet at epoch 1");
        host.new_epoch();
        cb.on_epoch_begin(&mut host).unwrap();
        assert!(!host.params[1].1.requires_grad() && host.params[0].1.requires_grad(), "fc.bias frozen, fc.weight not");
    }

    #[test]
    fn a_pattern_that_matches_nothing_is_an_error() {
        let mut cb = build_unfreezer(
            &serde_json::json!({"patterns": ["conv.*"]}),
            &BuildContext { input_shape: vec![], n_outputs: 1, ..torchfit_sdk::testing::context("u") },
        )
        .unwrap();
        let mut host = FakeHost::default();
        host.new_epoch();
        assert!(cb.on_epoch_begin(&mut host).unwrap_err().to_string().contains("conv.*"));
    }
}
