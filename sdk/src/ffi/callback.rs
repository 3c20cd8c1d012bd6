//! Callbacks across the boundary: [`CallbackFfi`], the plugin-side [`CallbackAdapter`] over a
//! [`Callback`], and the host-side [`DynCallback`] that is a [`Callback`] again.

use super::host::{HostBridge, HostFfi_TO, HostProxy};
use super::{guard, ErrorFfi, FlowFfi, RawTensor};
use crate::{Batch, BatchOutput, Callback, Error, Flow, Host, Result};
use abi_stable::sabi_trait;
use abi_stable::std_types::{RBox, RResult, RStr, RString};
use abi_stable::RMut;

/// A batch across the boundary; tensors are lent for the call.
#[repr(C)]
#[derive(abi_stable::StableAbi, Clone, Copy)]
pub struct BatchFfi {
    /// Inputs.
    pub x: RawTensor,
    /// Targets.
    pub y: RawTensor,
    /// Training (true) or validation batch.
    pub training: bool,
    /// Index in the epoch's phase.
    pub index: usize,
}

/// A batch with its outputs; tensors are lent for the call.
#[repr(C)]
#[derive(abi_stable::StableAbi, Clone, Copy)]
pub struct BatchOutputFfi {
    /// The batch.
    pub batch: BatchFfi,
    /// Model outputs.
    pub y_pred: RawTensor,
    /// Mean loss.
    pub loss: RawTensor,
}

impl BatchFfi {
    /// Lends the tensors of `b` for one call.
    pub fn lend(b: &Batch<'_>) -> Self {
        BatchFfi { x: RawTensor::lend(b.x), y: RawTensor::lend(b.y), training: b.training, index: b.index }
    }
}

/// [`Callback`] as a stable-ABI trait object.
#[sabi_trait]
pub trait CallbackFfi: Send {
    /// [`Callback::initialize`].
    fn initialize(&mut self) -> RResult<(), ErrorFfi>;
    /// [`Callback::on_train_begin`].
    fn on_train_begin(&mut self, host: HostFfi_TO<'_, RMut<'_, ()>>) -> RResult<FlowFfi, ErrorFfi>;
    /// [`Callback::on_epoch_begin`].
    fn on_epoch_begin(&mut self, host: HostFfi_TO<'_, RMut<'_, ()>>) -> RResult<FlowFfi, ErrorFfi>;
    /// [`Callback::on_batch_begin`].
    fn on_batch_begin(&mut self, host: HostFfi_TO<'_, RMut<'_, ()>>, batch: BatchFfi) -> RResult<FlowFfi, ErrorFfi>;
    /// [`Callback::on_grad_computed`].
    fn on_grad_computed(&mut self, host: HostFfi_TO<'_, RMut<'_, ()>>, batch: BatchFfi) -> RResult<FlowFfi, ErrorFfi>;
    /// [`Callback::on_batch_end`].
    fn on_batch_end(&mut self, host: HostFfi_TO<'_, RMut<'_, ()>>, out: BatchOutputFfi) -> RResult<FlowFfi, ErrorFfi>;
    /// [`Callback::on_epoch_end`].
    fn on_epoch_end(&mut self, host: HostFfi_TO<'_, RMut<'_, ()>>) -> RResult<FlowFfi, ErrorFfi>;
    /// [`Callback::on_train_end`].
    fn on_train_end(&mut self, host: HostFfi_TO<'_, RMut<'_, ()>>) -> RResult<(), ErrorFfi>;
    /// [`Callback::state`], as JSON text.
    fn state(&self) -> RResult<RString, ErrorFfi>;
    /// [`Callback::load_state`] from JSON text.
    #[sabi(last_prefix_field)]
    fn load_state(&mut self, state: RStr<'_>) -> RResult<(), ErrorFfi>;
}

/// The plugin side: any [`Callback`] as a [`CallbackFfi`], every call under `catch_unwind`.
pub struct CallbackAdapter<C>(pub C);

/// Borrows the lent tensors of `b` as a [`Batch`] for the duration of `f`.
fn with_batch<T>(b: BatchFfi, f: impl FnOnce(Batch<'_>) -> T) -> T {
    // SAFETY: the host lends these tensors for the duration of this call (BatchFfi::lend).
    let (x, y) = unsafe { (b.x.borrow(), b.y.borrow()) };
    f(Batch { x: &x, y: &y, training: b.training, index: b.index })
}

impl<C: Callback> CallbackFfi for CallbackAdapter<C> {
    fn initialize(&mut self) -> RResult<(), ErrorFfi> {
        guard("initialize", || self.0.initialize())
    }
    fn on_train_begin(&mut self, host: HostFfi_TO<'_, RMut<'_, ()>>) -> RResult<FlowFfi, ErrorFfi> {
        guard(crate::Hook::TrainBegin.name(), || self.0.on_train_begin(&mut HostProxy::new(host)).map(FlowFfi::from))
    }
    fn on_epoch_begin(&mut self, host: HostFfi_TO<'_, RMut<'_, ()>>) -> RResult<FlowFfi, ErrorFfi> {
        guard(crate::Hook::EpochBegin.name(), || self.0.on_epoch_begin(&mut HostProxy::new(host)).map(FlowFfi::from))
    }
    fn on_batch_begin(&mut self, host: HostFfi_TO<'_, RMut<'_, ()>>, batch: BatchFfi) -> RResult<FlowFfi, ErrorFfi> {
        guard(crate::Hook::BatchBegin.name(), || {
            with_batch(batch, |b| self.0.on_batch_begin(&mut HostProxy::new(host), &b)).map(FlowFfi::from)
        })
    }
    fn on_grad_computed(&mut self, host: HostFfi_TO<'_, RMut<'_, ()>>, batch: BatchFfi) -> RResult<FlowFfi, ErrorFfi> {
        guard(crate::Hook::GradComputed.name(), || {
            with_batch(batch, |b| self.0.on_grad_computed(&mut HostProxy::new(host), &b)).map(FlowFfi::from)
        })
    }
    fn on_batch_end(&mut self, host: HostFfi_TO<'_, RMut<'_, ()>>, out: BatchOutputFfi) -> RResult<FlowFfi, ErrorFfi> {
        guard(crate::Hook::BatchEnd.name(), || {
            // SAFETY: lent by the host for this call (DynCallback::on_batch_end).
            let (y_pred, loss) = unsafe { (out.y_pred.borrow(), out.loss.borrow()) };
            with_batch(out.batch, |batch| {
                self.0.on_batch_end(&mut HostProxy::new(host), &BatchOutput { batch, y_pred: &y_pred, loss: &loss })
            })
            .map(FlowFfi::from)
        })
    }
    fn on_epoch_end(&mut self, host: HostFfi_TO<'_, RMut<'_, ()>>) -> RResult<FlowFfi, ErrorFfi> {
        guard(crate::Hook::EpochEnd.name(), || self.0.on_epoch_end(&mut HostProxy::new(host)).map(FlowFfi::from))
    }
    fn on_train_end(&mut self, host: HostFfi_TO<'_, RMut<'_, ()>>) -> RResult<(), ErrorFfi> {
        guard(crate::Hook::TrainEnd.name(), || self.0.on_train_end(&mut HostProxy::new(host)))
    }
    fn state(&self) -> RResult<RString, ErrorFfi> {
        guard("state", || self.0.state().map(|v| v.to_string().into()))
    }
    fn load_state(&mut self, state: RStr<'_>) -> RResult<(), ErrorFfi> {
        guard("load_state", || {
            let v = serde_json::from_str(state.as_str()).map_err(|e| Error::msg(format!("invalid state JSON: {e}")))?;
            self.0.load_state(v)
        })
    }
}

/// The host side: a loaded callback, usable wherever a [`Callback`] is.
pub struct DynCallback {
    inner: CallbackFfi_TO<'static, RBox<()>>,
}

impl DynCallback {
    /// Wraps a callback built by a library.
    pub fn new(inner: CallbackFfi_TO<'static, RBox<()>>) -> Self {
        Self { inner }
    }

    /// Wraps an in-process callback the same way a library does (for conformance tests).
    pub fn wrap<C: Callback + 'static>(cb: C) -> Self {
        Self::new(CallbackFfi_TO::from_value(CallbackAdapter(cb), abi_stable::sabi_trait::TD_Opaque))
    }
}

fn flow(r: RResult<FlowFfi, ErrorFfi>) -> Result<Flow> {
    r.into_result().map(Flow::from).map_err(Error::from)
}

impl Callback for DynCallback {
    fn initialize(&mut self) -> Result<()> {
        self.inner.initialize().into_result().map_err(Error::from)
    }
    fn on_train_begin(&mut self, host: &mut dyn Host) -> Result<Flow> {
        flow(self.inner.on_train_begin(HostBridge::new(host).as_ffi()))
    }
    fn on_epoch_begin(&mut self, host: &mut dyn Host) -> Result<Flow> {
        flow(self.inner.on_epoch_begin(HostBridge::new(host).as_ffi()))
    }
    fn on_batch_begin(&mut self, host: &mut dyn Host, batch: &Batch<'_>) -> Result<Flow> {
        flow(self.inner.on_batch_begin(HostBridge::new(host).as_ffi(), BatchFfi::lend(batch)))
    }
    fn on_grad_computed(&mut self, host: &mut dyn Host, batch: &Batch<'_>) -> Result<Flow> {
        flow(self.inner.on_grad_computed(HostBridge::new(host).as_ffi(), BatchFfi::lend(batch)))
    }
    fn on_batch_end(&mut self, host: &mut dyn Host, out: &BatchOutput<'_>) -> Result<Flow> {
        let ffi = BatchOutputFfi {
            batch: BatchFfi::lend(&out.batch),
            y_pred: RawTensor::lend(out.y_pred),
            loss: RawTensor::lend(out.loss),
        };
        flow(self.inner.on_batch_end(HostBridge::new(host).as_ffi(), ffi))
    }
    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        flow(self.inner.on_epoch_end(HostBridge::new(host).as_ffi()))
    }
    fn on_train_end(&mut self, host: &mut dyn Host) -> Result<()> {
        self.inner.on_train_end(HostBridge::new(host).as_ffi()).into_result().map_err(Error::from)
    }
    fn state(&self) -> Result<serde_json::Value> {
        let text = self.inner.state().into_result().map_err(Error::from)?;
        serde_json::from_str(&text).map_err(|e| Error::msg(format!("invalid state JSON from a plugin: {e}")))
    }
    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        self.inner.load_state(state.to_string().as_str().into()).into_result().map_err(Error::from)
    }
}
