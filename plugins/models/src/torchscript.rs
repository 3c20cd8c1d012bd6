//! `torchscript`: a model scripted or traced in PyTorch and saved with `torch.jit.save`, trained
//! by torchfit as it is.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `path` | required | the `.pt` file, relative to the config file |
//!
//! The module's parameters keep their PyTorch names (`fc1.weight`, `0.bias`): Freezer patterns,
//! the optimizer, checkpoints and `model.safetensors` use them. The module is switched between
//! `train()` and `eval()` as the loop needs (dropout, batch norm). Its `forward` takes the batch
//! of inputs and returns one row of outputs per sample; the output size is the module's own
//! (torchfit does not resize it to the data's class count).
//!
//! Limit: tch 0.24 exposes a scripted module's parameters but not its buffers, so BatchNorm
//! running statistics are not in `state_dict`: checkpoints of such a module restore its weights
//! but not those statistics.

use std::sync::Mutex;
use torchfit_sdk::tch::{CModule, Tensor};
use torchfit_sdk::{parse_config, BuildContext, Error, Model, Result};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    path: String,
}

/// A loaded TorchScript module and whether it is in training mode.
pub struct TorchScript {
    module: Mutex<(CModule, Option<bool>)>,
    params: Vec<(String, Tensor)>,
    /// Names of the parameters that were trainable when loaded (Freezer may turn them off).
    trainable: Vec<String>,
}

/// Loads the module named by `path`.
pub fn build(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Model>> {
    let c: Config = parse_config(config)?;
    let path = ctx.resolve(&c.path);
    if !path.exists() {
        return Err(Error::Config { key: "path".into(), message: format!("{} does not exist", path.display()) });
    }
    let module = CModule::load_on_device(&path, ctx.device).map_err(|e| {
        Error::Data(format!("{}: not a TorchScript module: {}", path.display(), torchfit_sdk::error::torch_summary(&e)))
    })?;
    let mut params = module.named_parameters()?;
    params.sort_by(|a, b| crate::natural_cmp(&a.0, &b.0));
    if params.is_empty() {
        return Err(Error::Data(format!("{}: the module has no parameters to train", path.display())));
    }
    let trainable = params.iter().filter(|(_, t)| t.requires_grad()).map(|(n, _)| n.clone()).collect();
    Ok(Box::new(TorchScript { module: Mutex::new((module, None)), params, trainable }))
}

impl Model for TorchScript {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut guard =
            self.module.lock().map_err(|_| Error::msg("the TorchScript module was poisoned by an earlier panic"))?;
        let (module, mode) = &mut *guard;
        if *mode != Some(train) {
            if train {
                module.f_set_train()?
            } else {
                module.f_set_eval()?
            }
            *mode = Some(train);
        }
        Ok(module.forward_ts(&[x])?)
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .filter(|(n, _)| self.trainable.contains(n))
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect()
    }

    fn state_dict(&self) -> Vec<(String, Tensor)> {
        self.params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }

    fn load_state_dict(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        crate::copy_state(&self.state_dict(), state)
    }
}
