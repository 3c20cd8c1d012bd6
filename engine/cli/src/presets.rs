//! The presets: nets over the stock components with skorch's defaults for a task, as skorch's
//! `NeuralNetClassifier` and `NeuralNetRegressor` (its generic `NeuralNet` has none).

use crate::{Defaults, NeuralNet, Result};
use std::path::Path;
use torchfit_engine::config::Params;

/// The stock defaults: criterion `cross_entropy` for classification (skorch's classifier uses
/// `NLLLoss` on a softmax module; torchfit's models output logits), `mse` for regression.
pub fn defaults() -> Defaults {
    Defaults { classification_criterion: Some("cross_entropy".into()), regression_criterion: Some("mse".into()) }
}

/// A net over `params` with the builtin components, every plugin crate linked into the program
/// (the stock models, criteria and readers among them) and the stock [`defaults`].
pub fn from_params(params: Params) -> NeuralNet {
    NeuralNet::new(params).with_defaults(defaults())
}

/// A [`from_params`] net from a TOML config file.
pub fn from_file(path: &Path) -> Result<NeuralNet> {
    Ok(from_params(Params::from_file(path)?))
}

/// A classification net: an `mlp` module (set `module__hidden` and the rest with `set_params`),
/// `cross_entropy`, SGD, a stratified 20 % validation split, `valid_acc`.
pub fn classifier() -> NeuralNet {
    for_task("classification")
}

/// A regression net: an `mlp` module, `mse`, SGD, a 20 % validation split.
pub fn regressor() -> NeuralNet {
    for_task("regression")
}

fn for_task(task: &str) -> NeuralNet {
    let text = format!("task = \"{task}\"\n[module]\nname = \"mlp\"\n");
    from_params(Params::from_str(&text, "defaults", ".".into()).expect("the preset config is valid"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use torchfit_engine::registry::Registry;
    use torchfit_sdk::{BuildContext, Constructor, Task};

    fn ctx() -> BuildContext {
        torchfit_sdk::testing::context("module")
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let err = Registry::builtin().model("resnet99", &serde_json::json!({}), &ctx()).err().unwrap().to_string();
        assert!(err.contains("resnet99") && err.contains("mlp"), "{err}");
    }

    #[test]
    fn a_duplicate_name_is_refused_naming_both_origins() {
        let mut r = Registry::builtin();
        let err =
            r.add("mlp", "1.0", "another mlp", Constructor::Model(crate::models::mlp::build)).unwrap_err().to_string();
        assert!(err.contains("in-process (torchfit-plugin-models)") && err.contains("in-process (program)"), "{err}");
        r.add("mlp", "1.0", "a criterion may share a model's name", Constructor::Criterion(crate::criteria::mse))
            .unwrap();
    }

    #[test]
    fn the_presets_default_the_criterion_by_task() {
        assert_eq!(defaults().criterion(Task::Classification), Some("cross_entropy"));
        assert_eq!(defaults().criterion(Task::Regression), Some("mse"));
        for net in [classifier(), regressor()] {
            assert_eq!(net.params().settings().module.name, "mlp");
        }
        assert_eq!(regressor().params().settings().task, Task::Regression);
    }

    #[test]
    fn the_engine_alone_names_no_criterion() {
        let params = Params::from_str("[module]\nname = \"mlp\"\n", "cfg.toml", ".".into()).unwrap();
        let err = NeuralNet::new(params).initialize(&[4], 2).err().unwrap().to_string();
        assert!(err.starts_with("cfg.toml: `criterion`: missing"), "{err}");
    }
}
