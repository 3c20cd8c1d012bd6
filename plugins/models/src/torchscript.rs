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
//! Its `state_dict` is the module's parameters and buffers (BatchNorm's running statistics), as
//! `torch.nn.Module.state_dict` names them: checkpoints, `model.safetensors` and `predict` carry
//! both. tch 0.24 exposes a script module's parameters only; the buffers come from
//! `torch::jit::Module::named_buffers` through `cpp/jit_buffers.cpp`. A state without the buffers
//! (a checkpoint from before they were saved) restores the parameters and keeps the module's
//! buffers, with a warning.

use std::ffi::{c_char, c_void, CStr};
use std::sync::Mutex;
use torchfit_sdk::tch::{CModule, Tensor};
use torchfit_sdk::{parse_config, BuildContext, Error, Model, Result};

extern "C" {
    fn torchfit_jit_named_buffers(
        module: *mut c_void,
        data: *mut c_void,
        f: extern "C" fn(*mut c_void, *const c_char, *mut torch_sys::C_tensor),
    ) -> *mut c_char;
}

// `tch::CModule` is a struct holding one `torch::jit::Module*` and nothing else; its field is
// private, so `named_buffers` reads the pointer through the struct's address.
const _: () = assert!(std::mem::size_of::<CModule>() == std::mem::size_of::<*mut c_void>());

/// The buffers of `module` under their dotted names, sharing the module's storage.
fn named_buffers(module: &CModule) -> Result<Vec<(String, Tensor)>> {
    extern "C" fn push(data: *mut c_void, name: *const c_char, tensor: *mut torch_sys::C_tensor) {
        // SAFETY: `data` is the vector below, `name` a C string and `tensor` a new `at::Tensor*`
        // whose ownership the C++ side hands over, for the duration of the call.
        unsafe {
            let buffers = &mut *(data as *mut Vec<(String, Tensor)>);
            buffers.push((CStr::from_ptr(name).to_string_lossy().into_owned(), Tensor::from_ptr(tensor)));
        }
    }
    let mut buffers: Vec<(String, Tensor)> = Vec::new();
    // SAFETY: the module pointer is `CModule`'s only field (asserted above) and outlives the call.
    let error = unsafe {
        let raw = *(module as *const CModule as *const *mut c_void);
        torchfit_jit_named_buffers(raw, &mut buffers as *mut _ as *mut c_void, push)
    };
    // SAFETY: the entry point's answer, read once.
    unsafe { crate::shim::take_error(error) }
        .map_err(|m| Error::msg(format!("reading the TorchScript module's buffers: {m}")))?;
    buffers.sort_by(|a, b| crate::natural_cmp(&a.0, &b.0));
    Ok(buffers)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    path: String,
}

/// A loaded TorchScript module and whether it is in training mode.
pub struct TorchScript {
    module: Mutex<(CModule, Option<bool>)>,
    params: Vec<(String, Tensor)>,
    /// The module's buffers, sharing its storage (its forward updates them in place).
    buffers: Vec<(String, Tensor)>,
    /// Names of the parameters that were trainable when loaded (Freezer may turn them off).
    trainable: Vec<String>,
}

/// Loads the module named by `path`.
pub fn build(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Model>> {
    let c: Config = parse_config(config)?;
    let path = ctx.resolve(&c.path);
    if !path.exists() {
        return Err(Error::config("path", format!("{} does not exist", path.display())));
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
    let buffers = named_buffers(&module)?;
    Ok(Box::new(TorchScript { module: Mutex::new((module, None)), params, buffers, trainable }))
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
        let mut state: Vec<(String, Tensor)> =
            self.params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
        state.extend(self.buffers.iter().map(|(n, t)| (n.clone(), t.shallow_clone())));
        state
    }

    fn load_state_dict(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let params: Vec<(String, Tensor)> = self.params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
        crate::copy_state(&params, state)?;
        let (held, missing): (Vec<_>, Vec<_>) = self
            .buffers
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .partition(|(n, _)| state.iter().any(|(k, _)| k == n));
        if !missing.is_empty() {
            let names: Vec<&str> = missing.iter().map(|(n, _)| n.as_str()).collect();
            log::warn!("the state has no buffer {}: the module keeps its own", names.join(", "));
        }
        crate::copy_state(&held, state)
    }
}
