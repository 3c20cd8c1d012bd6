//! The host services of SDK 1.1 on both sides of the boundary: [`serve`] carries a service out
//! on the engine's [`Host`]; the plugin side is a [`Host`] whose later methods call them by name.

use super::{services, ReplyFfi, ServicesFfi, ServicesFfi_TO};
use crate::ffi::host::{HostBridge, HostFfi_TO, HostProxy};
use crate::ffi::{ErrorFfi, NamedTensor};
use crate::host::Forward;
use crate::{Error, Host, Result, SdkVersion};
use abi_stable::std_types::{RResult, RStr, RVec};
use abi_stable::RMut;
use serde_json::{json, Map, Value};
use std::cell::RefCell;
use std::path::Path;
use tch::Tensor;

fn device_name(d: tch::Device) -> String {
    match d {
        tch::Device::Cuda(n) => format!("cuda:{n}"),
        tch::Device::Mps => "mps".into(),
        tch::Device::Vulkan => "vulkan".into(),
        tch::Device::Cpu => "cpu".into(),
    }
}

fn parse_device(text: &str) -> Result<tch::Device> {
    match text {
        "cpu" => Ok(tch::Device::Cpu),
        "mps" => Ok(tch::Device::Mps),
        "vulkan" => Ok(tch::Device::Vulkan),
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(tch::Device::Cuda)
            .ok_or_else(|| Error::msg(format!("unknown device `{other}`"))),
    }
}

fn arg<'a>(args: &'a Value, key: &str) -> Result<&'a Value> {
    args.get(key).ok_or_else(|| Error::msg(format!("missing argument `{key}`")))
}

fn usize_arg(args: &Value, key: &str) -> Result<usize> {
    arg(args, key)?.as_u64().map(|v| v as usize).ok_or_else(|| Error::msg(format!("argument `{key}` must be a count")))
}

/// The host side of [`ServicesFfi`]: each service name carried out on the engine's [`Host`].
pub fn serve(host: &mut dyn Host, service: &str, args: &Value, tensors: Vec<(String, Tensor)>) -> Result<ReplyFfi> {
    use services::*;
    let none = || Ok(ReplyFfi::data(&Value::Null, Vec::new()));
    let first = |what: &str| {
        tensors.first().map(|(_, t)| t.shallow_clone()).ok_or_else(|| Error::msg(format!("{what}: no tensor given")))
    };
    match service {
        SDK_VERSION => {
            let v = host.sdk_version();
            Ok(ReplyFfi::data(&json!([v.major, v.minor]), Vec::new()))
        }
        ADD_TO_LOSS => host.add_to_loss(&first(service)?).and_then(|()| none()),
        SKIP_STEP => host.skip_step().and_then(|()| none()),
        REPLACE_BATCH => match tensors.as_slice() {
            [(_, x), (_, y)] => host.replace_batch(x, y).and_then(|()| none()),
            _ => Err(Error::msg("loop.replace_batch takes two tensors, x and y")),
        },
        GROUP_PARAMETERS => Ok(ReplyFfi::data(&json!(host.group_parameters(usize_arg(args, "group")?)?), Vec::new())),
        HYPER => {
            let name = arg(args, "name")?.as_str().unwrap_or_default();
            Ok(ReplyFfi::data(&host.hyper(usize_arg(args, "group")?, name)?, Vec::new()))
        }
        SET_HYPER => {
            let name = arg(args, "name")?.as_str().unwrap_or_default().to_owned();
            host.set_hyper(usize_arg(args, "group")?, &name, arg(args, "value")?.clone()).and_then(|()| none())
        }
        OPTIMIZER_STATE => Ok(ReplyFfi::data(&Value::Null, host.optimizer_state()?)),
        BUFFERS => Ok(ReplyFfi::data(&Value::Null, host.buffers()?)),
        STATE_DICT => Ok(ReplyFfi::data(&Value::Null, host.state_dict()?)),
        LOAD_STATE_DICT => host.load_state_dict(&tensors).and_then(|()| none()),
        FORWARD => {
            let flag = |k: &str| args.get(k).and_then(Value::as_bool).unwrap_or(false);
            let y = host.forward(&first(service)?, Forward { train: flag("train"), grad: flag("grad") })?;
            Ok(ReplyFfi::data(&Value::Null, vec![("y".into(), y)]))
        }
        UPDATE_BATCH_NORM => Ok(ReplyFfi::data(&json!(host.update_batch_norm()?), Vec::new())),
        DEVICE => Ok(ReplyFfi::data(&json!(device_name(host.device()?)), Vec::new())),
        PROCESS => Ok(ReplyFfi::data(&json!(host.process()?), Vec::new())),
        HISTORY_BATCH_VALUE => {
            let index = |k: &str| {
                arg(args, k)?
                    .as_i64()
                    .map(|v| v as isize)
                    .ok_or_else(|| Error::msg(format!("argument `{k}` must be an index")))
            };
            let key = arg(args, "key")?.as_str().unwrap_or_default();
            let value = host.history_batch_value(index("epoch")?, index("batch")?, key);
            Ok(ReplyFfi::data(&value.unwrap_or(Value::Null), Vec::new()))
        }
        GRAD_SCALER => Ok(ReplyFfi::data(&json!(host.grad_scaler()?), Vec::new())),
        ACCUMULATE_GRAD_BATCHES => Ok(ReplyFfi::data(&json!(host.accumulate_grad_batches()), Vec::new())),
        SCORER_LOWER_IS_BETTER => {
            let name = arg(args, "name")?.as_str().unwrap_or_default().to_owned();
            Ok(ReplyFfi::data(&json!(host.scorer_lower_is_better(&name)?), Vec::new()))
        }
        other => Err(Error::unsupported(format!("host service `{other}`"), SdkVersion::CURRENT)),
    }
}

impl ServicesFfi for HostBridge<'_> {
    fn call(&mut self, service: RStr<'_>, args: RStr<'_>, tensors: RVec<NamedTensor>) -> RResult<ReplyFfi, ErrorFfi> {
        // SAFETY: the plugin lends these tensors for this call (HostExtProxy::call).
        let tensors = unsafe { NamedTensor::copy_lent(&tensors) };
        let args: Value = serde_json::from_str(args.as_str()).unwrap_or(Value::Null);
        serve(&mut *self.host, service.as_str(), &args, tensors).map_err(|e| self.form.encode(e)).into()
    }
}

/// The plugin side of the services: a [`Host`] whose 1.0 methods go through the 1.0 interface
/// and whose later ones go through [`ServicesFfi`] by name.
pub(super) struct HostExtProxy<'a, 'b, 'c, 'd> {
    v1: HostProxy<'a, 'b>,
    /// In a cell: the services that only read are `&self` methods of [`Host`].
    services: RefCell<ServicesFfi_TO<'c, RMut<'d, ()>>>,
}

impl<'a, 'b, 'c, 'd> HostExtProxy<'a, 'b, 'c, 'd> {
    /// The host a hook received: the 1.0 services and the later ones.
    pub(super) fn new(v1: HostFfi_TO<'a, RMut<'b, ()>>, services: ServicesFfi_TO<'c, RMut<'d, ()>>) -> Self {
        Self { v1: HostProxy::new(v1), services: RefCell::new(services) }
    }
}

impl HostExtProxy<'_, '_, '_, '_> {
    fn call(&self, service: &str, args: Value, tensors: &[(String, Tensor)]) -> Result<(Value, Vec<(String, Tensor)>)> {
        let reply = self
            .services
            .borrow_mut()
            .call(service.into(), args.to_string().as_str().into(), NamedTensor::lend_all(tensors))
            .into_result()
            .map_err(Error::from)?;
        // SAFETY: the host's `ServicesFfi::call` gives its reply's tensors.
        unsafe { reply.take() }
    }

    fn call_ref(&self, service: &str, args: Value) -> Result<(Value, Vec<(String, Tensor)>)> {
        self.call(service, args, &[])
    }
}

impl Host for HostExtProxy<'_, '_, '_, '_> {
    fn epochs(&self) -> usize {
        self.v1.epochs()
    }
    fn history_get(&self, epoch: isize, key: &str) -> Option<Value> {
        self.v1.history_get(epoch, key)
    }
    fn history_epoch(&self, epoch: isize) -> Option<Map<String, Value>> {
        self.v1.history_epoch(epoch)
    }
    fn history_batch_values(&self, epoch: isize, key: &str) -> Vec<Value> {
        self.v1.history_batch_values(epoch, key)
    }
    fn record(&mut self, key: &str, value: Value) -> Result<()> {
        self.v1.record(key, value)
    }
    fn record_batch(&mut self, key: &str, value: Value) -> Result<()> {
        self.v1.record_batch(key, value)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.v1.parameters()
    }
    fn set_requires_grad(&mut self, pattern: &str, requires_grad: bool) -> Result<usize> {
        self.v1.set_requires_grad(pattern, requires_grad)
    }
    fn param_groups(&self) -> usize {
        self.v1.param_groups()
    }
    fn lr(&self, group: usize) -> Result<f64> {
        self.v1.lr(group)
    }
    fn set_lr(&mut self, group: usize, lr: f64) -> Result<()> {
        self.v1.set_lr(group, lr)
    }
    fn max_epochs(&self) -> usize {
        self.v1.max_epochs()
    }
    fn batch_counts(&self) -> (usize, usize) {
        self.v1.batch_counts()
    }
    fn request_stop(&mut self) {
        self.v1.request_stop()
    }
    fn save_checkpoint(&mut self, dir: &Path, prefix: &str, parts: crate::Parts) -> Result<()> {
        self.v1.save_checkpoint(dir, prefix, parts)
    }
    fn load_checkpoint(&mut self, dir: &Path, prefix: &str, parts: crate::Parts) -> Result<()> {
        self.v1.load_checkpoint(dir, prefix, parts)
    }
    fn run_dir(&self) -> Option<std::path::PathBuf> {
        self.v1.run_dir()
    }
    fn score(&mut self, name: &str, y_true: &Tensor, y_pred: &Tensor) -> Result<f64> {
        self.v1.score(name, y_true, y_pred)
    }
    fn sdk_version(&self) -> SdkVersion {
        match self.call_ref(services::SDK_VERSION, Value::Null) {
            Ok((v, _)) => {
                SdkVersion { major: v[0].as_u64().unwrap_or(1) as u32, minor: v[1].as_u64().unwrap_or(0) as u32 }
            }
            Err(_) => SdkVersion::V1_0,
        }
    }
    fn add_to_loss(&mut self, term: &Tensor) -> Result<()> {
        self.call(services::ADD_TO_LOSS, Value::Null, &[("term".into(), term.shallow_clone())]).map(|_| ())
    }
    fn skip_step(&mut self) -> Result<()> {
        self.call(services::SKIP_STEP, Value::Null, &[]).map(|_| ())
    }
    fn replace_batch(&mut self, x: &Tensor, y: &Tensor) -> Result<()> {
        let tensors = [("x".to_owned(), x.shallow_clone()), ("y".to_owned(), y.shallow_clone())];
        self.call(services::REPLACE_BATCH, Value::Null, &tensors).map(|_| ())
    }
    fn group_parameters(&self, group: usize) -> Result<Vec<String>> {
        let (v, _) = self.call_ref(services::GROUP_PARAMETERS, json!({"group": group}))?;
        serde_json::from_value(v).map_err(Error::msg)
    }
    fn hyper(&self, group: usize, name: &str) -> Result<Value> {
        self.call_ref(services::HYPER, json!({"group": group, "name": name})).map(|(v, _)| v)
    }
    fn set_hyper(&mut self, group: usize, name: &str, value: Value) -> Result<()> {
        self.call(services::SET_HYPER, json!({"group": group, "name": name, "value": value}), &[]).map(|_| ())
    }
    fn optimizer_state(&self) -> Result<Vec<(String, Tensor)>> {
        self.call_ref(services::OPTIMIZER_STATE, Value::Null).map(|(_, t)| t)
    }
    fn buffers(&self) -> Result<Vec<(String, Tensor)>> {
        self.call_ref(services::BUFFERS, Value::Null).map(|(_, t)| t)
    }
    fn state_dict(&self) -> Result<Vec<(String, Tensor)>> {
        self.call_ref(services::STATE_DICT, Value::Null).map(|(_, t)| t)
    }
    fn load_state_dict(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        self.call(services::LOAD_STATE_DICT, Value::Null, state).map(|_| ())
    }
    fn forward(&mut self, x: &Tensor, mode: Forward) -> Result<Tensor> {
        let args = json!({"train": mode.train, "grad": mode.grad});
        let (_, mut out) = self.call(services::FORWARD, args, &[("x".into(), x.shallow_clone())])?;
        out.pop().map(|(_, y)| y).ok_or_else(|| Error::msg("model.forward returned no tensor"))
    }
    fn update_batch_norm(&mut self) -> Result<bool> {
        let (v, _) = self.call(services::UPDATE_BATCH_NORM, Value::Null, &[])?;
        v.as_bool().ok_or_else(|| Error::msg("model.update_batch_norm answered no bool"))
    }
    fn device(&self) -> Result<tch::Device> {
        let (v, _) = self.call_ref(services::DEVICE, Value::Null)?;
        parse_device(v.as_str().unwrap_or_default())
    }
    fn process(&self) -> Result<crate::Process> {
        let (v, _) = self.call_ref(services::PROCESS, Value::Null)?;
        serde_json::from_value(v).map_err(|e| Error::msg(format!("run.process answered no process: {e}")))
    }
    fn history_batch_value(&self, epoch: isize, batch: isize, key: &str) -> Option<Value> {
        match self.call_ref(services::HISTORY_BATCH_VALUE, json!({"epoch": epoch, "batch": batch, "key": key})) {
            Ok((v, _)) => Some(v).filter(|v| !v.is_null()),
            // A host older than 1.4: the provided method's reading of the epoch's batches.
            Err(_) => crate::host::batch_value_from_epoch(self.history_get(epoch, "batches")?, batch, key),
        }
    }
    fn grad_scaler(&self) -> Result<Option<crate::ScalerState>> {
        let (v, _) = self.call_ref(services::GRAD_SCALER, Value::Null)?;
        serde_json::from_value(v).map_err(|e| Error::msg(format!("run.grad_scaler answered no scaler state: {e}")))
    }
    fn accumulate_grad_batches(&self) -> usize {
        // A host older than 1.4 has no such service: it steps after every batch.
        match self.call_ref(services::ACCUMULATE_GRAD_BATCHES, Value::Null) {
            Ok((v, _)) => v.as_u64().map_or(1, |k| k.max(1) as usize),
            Err(_) => 1,
        }
    }
    fn scorer_lower_is_better(&mut self, name: &str) -> Result<Option<bool>> {
        self.call(services::SCORER_LOWER_IS_BETTER, json!({"name": name}), &[]).map(|(v, _)| v.as_bool())
    }
}
