//! Host services across the boundary: [`HostFfi`], implemented on the host side by
//! [`HostBridge`] over the engine's [`Host`], and turned back into a [`Host`] on the plugin side
//! by [`HostProxy`].

use super::{ErrorFfi, NamedTensor, RawTensor};
use crate::{Error, Host, Result};
use abi_stable::sabi_trait;
use abi_stable::std_types::{ROption, RResult, RStr, RString, RVec, Tuple2};
use abi_stable::RMut;
use serde_json::{Map, Value};
use std::path::Path;
use tch::Tensor;

/// The services a hook may use, as a stable-ABI trait object. JSON values cross as text.
#[sabi_trait]
pub trait HostFfi {
    /// [`Host::epochs`].
    fn epochs(&self) -> usize;
    /// [`Host::history_get`], as JSON text.
    fn history_get(&self, epoch: isize, key: RStr<'_>) -> ROption<RString>;
    /// [`Host::history_epoch`], as a JSON object.
    fn history_epoch(&self, epoch: isize) -> ROption<RString>;
    /// [`Host::history_batch_values`], as a JSON array.
    fn history_batch_values(&self, epoch: isize, key: RStr<'_>) -> RString;
    /// [`Host::record`] with a JSON value.
    fn record(&mut self, key: RStr<'_>, value: RStr<'_>) -> RResult<(), ErrorFfi>;
    /// [`Host::record_batch`] with a JSON value.
    fn record_batch(&mut self, key: RStr<'_>, value: RStr<'_>) -> RResult<(), ErrorFfi>;
    /// [`Host::parameters`]; the tensors are given to the caller.
    fn parameters(&self) -> RVec<NamedTensor>;
    /// [`Host::set_requires_grad`].
    fn set_requires_grad(&mut self, pattern: RStr<'_>, requires_grad: bool) -> RResult<usize, ErrorFfi>;
    /// [`Host::param_groups`].
    fn param_groups(&self) -> usize;
    /// [`Host::lr`].
    fn lr(&self, group: usize) -> RResult<f64, ErrorFfi>;
    /// [`Host::set_lr`].
    fn set_lr(&mut self, group: usize, lr: f64) -> RResult<(), ErrorFfi>;
    /// [`Host::max_epochs`].
    fn max_epochs(&self) -> usize;
    /// [`Host::batch_counts`].
    fn batch_counts(&self) -> Tuple2<usize, usize>;
    /// [`Host::request_stop`].
    fn request_stop(&mut self);
    /// [`Host::save_checkpoint`].
    fn save_checkpoint(&mut self, dir: RStr<'_>, prefix: RStr<'_>, parts: PartsFfi) -> RResult<(), ErrorFfi>;
    /// [`Host::load_checkpoint`].
    fn load_checkpoint(&mut self, dir: RStr<'_>, prefix: RStr<'_>, parts: PartsFfi) -> RResult<(), ErrorFfi>;
    /// [`Host::run_dir`].
    fn run_dir(&self) -> ROption<RString>;
    /// [`Host::score`]: both tensors lent.
    #[sabi(last_prefix_field)]
    fn score(&mut self, name: RStr<'_>, y_true: RawTensor, y_pred: RawTensor) -> RResult<f64, ErrorFfi>;
}

/// [`crate::Parts`] across the boundary.
#[repr(C)]
#[derive(abi_stable::StableAbi, Debug, Clone, Copy)]
pub struct PartsFfi {
    /// Model parameters and buffers.
    pub params: bool,
    /// Optimizer state.
    pub optimizer: bool,
    /// Callback states.
    pub callbacks: bool,
    /// History.
    pub history: bool,
}

impl From<crate::Parts> for PartsFfi {
    fn from(p: crate::Parts) -> Self {
        PartsFfi { params: p.params, optimizer: p.optimizer, callbacks: p.callbacks, history: p.history }
    }
}

impl From<PartsFfi> for crate::Parts {
    fn from(p: PartsFfi) -> Self {
        crate::Parts { params: p.params, optimizer: p.optimizer, callbacks: p.callbacks, history: p.history }
    }
}

/// The host side: the engine's [`Host`] behind [`HostFfi`] (and, for the extension interfaces,
/// behind `ext::ServicesFfi` too), its errors in the form the plugin asked for.
pub struct HostBridge<'a> {
    pub(crate) host: &'a mut dyn Host,
    pub(crate) form: super::ErrorForm,
}

impl<'a> HostBridge<'a> {
    /// Bridges `host` for a 1.0 plugin.
    pub fn new(host: &'a mut dyn Host) -> Self {
        Self { host, form: super::ErrorForm::V1_0 }
    }

    /// The bridge as a trait object to hand to a plugin for one call.
    pub fn as_ffi(&mut self) -> HostFfi_TO<'_, RMut<'_, ()>> {
        HostFfi_TO::from_ptr(self, abi_stable::sabi_trait::TD_Opaque)
    }
}

fn json_text(v: &Value) -> RString {
    v.to_string().into()
}

/// JSON text from across the boundary.
pub(crate) fn parse(text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| Error::msg(format!("invalid JSON from a plugin: {e}")))
}

impl HostFfi for HostBridge<'_> {
    fn epochs(&self) -> usize {
        self.host.epochs()
    }
    fn history_get(&self, epoch: isize, key: RStr<'_>) -> ROption<RString> {
        self.host.history_get(epoch, key.as_str()).map(|v| json_text(&v)).into()
    }
    fn history_epoch(&self, epoch: isize) -> ROption<RString> {
        self.host.history_epoch(epoch).map(|m| json_text(&Value::Object(m))).into()
    }
    fn history_batch_values(&self, epoch: isize, key: RStr<'_>) -> RString {
        json_text(&Value::Array(self.host.history_batch_values(epoch, key.as_str())))
    }
    fn record(&mut self, key: RStr<'_>, value: RStr<'_>) -> RResult<(), ErrorFfi> {
        parse(value.as_str()).and_then(|v| self.host.record(key.as_str(), v)).map_err(|e| self.form.encode(e)).into()
    }
    fn record_batch(&mut self, key: RStr<'_>, value: RStr<'_>) -> RResult<(), ErrorFfi> {
        parse(value.as_str())
            .and_then(|v| self.host.record_batch(key.as_str(), v))
            .map_err(|e| self.form.encode(e))
            .into()
    }
    fn parameters(&self) -> RVec<NamedTensor> {
        NamedTensor::give_all(self.host.parameters())
    }
    fn set_requires_grad(&mut self, pattern: RStr<'_>, requires_grad: bool) -> RResult<usize, ErrorFfi> {
        self.host.set_requires_grad(pattern.as_str(), requires_grad).map_err(|e| self.form.encode(e)).into()
    }
    fn param_groups(&self) -> usize {
        self.host.param_groups()
    }
    fn lr(&self, group: usize) -> RResult<f64, ErrorFfi> {
        self.host.lr(group).map_err(|e| self.form.encode(e)).into()
    }
    fn set_lr(&mut self, group: usize, lr: f64) -> RResult<(), ErrorFfi> {
        self.host.set_lr(group, lr).map_err(|e| self.form.encode(e)).into()
    }
    fn max_epochs(&self) -> usize {
        self.host.max_epochs()
    }
    fn batch_counts(&self) -> Tuple2<usize, usize> {
        let (t, v) = self.host.batch_counts();
        Tuple2(t, v)
    }
    fn request_stop(&mut self) {
        self.host.request_stop()
    }
    fn save_checkpoint(&mut self, dir: RStr<'_>, prefix: RStr<'_>, parts: PartsFfi) -> RResult<(), ErrorFfi> {
        self.host
            .save_checkpoint(Path::new(dir.as_str()), prefix.as_str(), parts.into())
            .map_err(|e| self.form.encode(e))
            .into()
    }
    fn load_checkpoint(&mut self, dir: RStr<'_>, prefix: RStr<'_>, parts: PartsFfi) -> RResult<(), ErrorFfi> {
        self.host
            .load_checkpoint(Path::new(dir.as_str()), prefix.as_str(), parts.into())
            .map_err(|e| self.form.encode(e))
            .into()
    }
    fn run_dir(&self) -> ROption<RString> {
        self.host.run_dir().map(|p| RString::from(p.display().to_string())).into()
    }
    fn score(&mut self, name: RStr<'_>, y_true: RawTensor, y_pred: RawTensor) -> RResult<f64, ErrorFfi> {
        // SAFETY: lent by HostProxy::score for this call.
        let (t, p) = unsafe { (y_true.borrow(), y_pred.borrow()) };
        self.host.score(name.as_str(), &t, &p).map_err(|e| self.form.encode(e)).into()
    }
}

/// The plugin side: a [`Host`] that forwards to the host through [`HostFfi`].
pub struct HostProxy<'a, 'b> {
    ffi: HostFfi_TO<'a, RMut<'b, ()>>,
}

impl<'a, 'b> HostProxy<'a, 'b> {
    /// Wraps the trait object a hook received.
    pub fn new(ffi: HostFfi_TO<'a, RMut<'b, ()>>) -> Self {
        Self { ffi }
    }
}

impl Host for HostProxy<'_, '_> {
    fn epochs(&self) -> usize {
        self.ffi.epochs()
    }
    fn history_get(&self, epoch: isize, key: &str) -> Option<Value> {
        self.ffi.history_get(epoch, key.into()).into_option().and_then(|t| parse(&t).ok())
    }
    fn history_epoch(&self, epoch: isize) -> Option<Map<String, Value>> {
        match self.ffi.history_epoch(epoch).into_option().and_then(|t| parse(&t).ok()) {
            Some(Value::Object(m)) => Some(m),
            _ => None,
        }
    }
    fn history_batch_values(&self, epoch: isize, key: &str) -> Vec<Value> {
        match parse(&self.ffi.history_batch_values(epoch, key.into())) {
            Ok(Value::Array(v)) => v,
            _ => Vec::new(),
        }
    }
    fn record(&mut self, key: &str, value: Value) -> Result<()> {
        self.ffi.record(key.into(), value.to_string().as_str().into()).into_result().map_err(Error::from)
    }
    fn record_batch(&mut self, key: &str, value: Value) -> Result<()> {
        self.ffi.record_batch(key.into(), value.to_string().as_str().into()).into_result().map_err(Error::from)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        // SAFETY: HostBridge::parameters gives every tensor (NamedTensor::give_all).
        unsafe { NamedTensor::take_all(self.ffi.parameters()) }
    }
    fn set_requires_grad(&mut self, pattern: &str, requires_grad: bool) -> Result<usize> {
        self.ffi.set_requires_grad(pattern.into(), requires_grad).into_result().map_err(Error::from)
    }
    fn param_groups(&self) -> usize {
        self.ffi.param_groups()
    }
    fn lr(&self, group: usize) -> Result<f64> {
        self.ffi.lr(group).into_result().map_err(Error::from)
    }
    fn set_lr(&mut self, group: usize, lr: f64) -> Result<()> {
        self.ffi.set_lr(group, lr).into_result().map_err(Error::from)
    }
    fn max_epochs(&self) -> usize {
        self.ffi.max_epochs()
    }
    fn batch_counts(&self) -> (usize, usize) {
        let Tuple2(t, v) = self.ffi.batch_counts();
        (t, v)
    }
    fn request_stop(&mut self) {
        self.ffi.request_stop()
    }
    fn save_checkpoint(&mut self, dir: &Path, prefix: &str, parts: crate::Parts) -> Result<()> {
        self.ffi
            .save_checkpoint(dir.display().to_string().as_str().into(), prefix.into(), parts.into())
            .into_result()
            .map_err(Error::from)
    }
    fn load_checkpoint(&mut self, dir: &Path, prefix: &str, parts: crate::Parts) -> Result<()> {
        self.ffi
            .load_checkpoint(dir.display().to_string().as_str().into(), prefix.into(), parts.into())
            .into_result()
            .map_err(Error::from)
    }
    fn run_dir(&self) -> Option<std::path::PathBuf> {
        self.ffi.run_dir().into_option().map(|s| s.into_string().into())
    }
    fn score(&mut self, name: &str, y_true: &Tensor, y_pred: &Tensor) -> Result<f64> {
        self.ffi.score(name.into(), RawTensor::lend(y_true), RawTensor::lend(y_pred)).into_result().map_err(Error::from)
    }
}
