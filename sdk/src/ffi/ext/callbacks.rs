//! Callbacks through the extension interface on both sides of the boundary, and the requests of
//! components of other kinds.

use super::host_services::HostExtProxy;
use super::{
    requests, CallbackExtFfi, CallbackExtFfi_TO, EventFfi, EventKind, FlowCode, ReplyFfi, RequestsFfi, ServicesFfi_TO,
};
use crate::ffi::callback::BatchFfi;
use crate::ffi::components::{SharedModel, SharedReader};
use crate::ffi::host::{parse, HostBridge, HostFfi_TO};
use crate::ffi::{guard_in, ErrorFfi, ErrorForm, NamedTensor, RawTensor};
use crate::{
    Batch, BatchNormStats, BatchOutput, Callback, DatasetReader, Error, Flow, Host, Inspected, Inspection, Model,
    Result, SdkVersion, Stage,
};
use abi_stable::std_types::{RBox, RResult, RStr, RString, RVec};
use abi_stable::RMut;
use serde_json::{json, Value};
use std::cell::RefCell;
use tch::Tensor;

/// Sends `event` to a loaded callback with `host`'s services behind both interfaces.
fn send(inner: &mut CallbackExtFfi_TO<'static, RBox<()>>, host: &mut dyn Host, event: EventFfi) -> Result<FlowCode> {
    let mut bridge = HostBridge { host, form: ErrorForm::WithKind };
    let raw: *mut HostBridge<'_> = &mut bridge;
    // SAFETY: both trait objects point at `bridge`, which outlives the call; the plugin calls
    // them one at a time on this thread, each call reborrowing the bridge for its duration.
    let (v1, ext) = unsafe { (RMut::from_raw(raw), RMut::from_raw(raw)) };
    let v1 = HostFfi_TO::from_ptr(v1, abi_stable::sabi_trait::TD_Opaque);
    let ext = ServicesFfi_TO::from_ptr(ext, abi_stable::sabi_trait::TD_Opaque);
    match inner.on_event(v1, ext, event) {
        RResult::ROk(flow) => Ok(flow),
        RResult::RErr(e) => Err(decode(e)),
    }
}

/// An error from across the boundary (off the hot path of every hook).
#[cold]
#[inline(never)]
fn decode(e: ErrorFfi) -> Error {
    Error::from(e)
}

/// The host side: a callback built through the extension root, usable wherever a [`Callback`]
/// is.
pub struct DynCallbackExt {
    /// In a cell: [`Callback::state_tensors`] takes `&self` but is a request, which takes
    /// `&mut`.
    inner: RefCell<CallbackExtFfi_TO<'static, RBox<()>>>,
}

impl DynCallbackExt {
    /// Wraps a callback a library built.
    pub fn new(inner: CallbackExtFfi_TO<'static, RBox<()>>) -> Self {
        Self { inner: RefCell::new(inner) }
    }

    /// Wraps an in-process callback the way a library does (for tests and benchmarks).
    pub fn wrap(cb: Box<dyn Callback>) -> Self {
        Self::new(CallbackExtFfi_TO::from_value(CallbackExtAdapter(cb), abi_stable::sabi_trait::TD_Opaque))
    }

    fn event(
        &mut self,
        host: &mut dyn Host,
        kind: EventKind,
        batch: Option<&Batch<'_>>,
        out: Option<(&Tensor, &Tensor)>,
    ) -> Result<Flow> {
        let event = EventFfi {
            kind,
            batch: batch.map(BatchFfi::lend).into(),
            y_pred: out.map(|(p, _)| RawTensor::lend(p)).into(),
            loss: out.map(|(_, l)| RawTensor::lend(l)).into(),
        };
        Flow::try_from(send(self.inner.get_mut(), host, event)?)
    }

    fn request(&self, name: &str, tensors: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>> {
        let reply = self
            .inner
            .borrow_mut()
            .call(name.into(), "null".into(), NamedTensor::lend_all(tensors))
            .into_result()
            .map_err(Error::from)?;
        // SAFETY: CallbackExtAdapter::call gives its reply's tensors.
        Ok(unsafe { reply.take() }?.1)
    }
}

impl Callback for DynCallbackExt {
    fn initialize(&mut self) -> Result<()> {
        self.inner.get_mut().initialize().into_result().map_err(Error::from)
    }
    fn on_train_begin(&mut self, host: &mut dyn Host) -> Result<Flow> {
        self.event(host, EventKind::TRAIN_BEGIN, None, None)
    }
    fn on_epoch_begin(&mut self, host: &mut dyn Host) -> Result<Flow> {
        self.event(host, EventKind::EPOCH_BEGIN, None, None)
    }
    fn on_batch_begin(&mut self, host: &mut dyn Host, batch: &Batch<'_>) -> Result<Flow> {
        self.event(host, EventKind::BATCH_BEGIN, Some(batch), None)
    }
    fn on_loss_computed(&mut self, host: &mut dyn Host, out: &BatchOutput<'_>) -> Result<Flow> {
        self.event(host, EventKind::LOSS_COMPUTED, Some(&out.batch), Some((out.y_pred, out.loss)))
    }
    fn on_grad_computed(&mut self, host: &mut dyn Host, batch: &Batch<'_>) -> Result<Flow> {
        self.event(host, EventKind::GRAD_COMPUTED, Some(batch), None)
    }
    fn on_batch_end(&mut self, host: &mut dyn Host, out: &BatchOutput<'_>) -> Result<Flow> {
        self.event(host, EventKind::BATCH_END, Some(&out.batch), Some((out.y_pred, out.loss)))
    }
    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        self.event(host, EventKind::EPOCH_END, None, None)
    }
    fn on_train_end(&mut self, host: &mut dyn Host) -> Result<()> {
        self.event(host, EventKind::TRAIN_END, None, None).map(|_| ())
    }
    fn state(&self) -> Result<Value> {
        let text = self.inner.borrow().state().into_result().map_err(Error::from)?;
        parse(&text)
    }
    fn load_state(&mut self, state: Value) -> Result<()> {
        self.inner.get_mut().load_state(state.to_string().as_str().into()).into_result().map_err(Error::from)
    }
    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        self.request(requests::STATE_TENSORS, &[])
    }
    fn load_state_tensors(&mut self, tensors: Vec<(String, Tensor)>) -> Result<()> {
        self.request(requests::LOAD_STATE_TENSORS, &tensors).map(|_| ())
    }
}

/// The plugin side: any [`Callback`] behind [`CallbackExtFfi`], every call under
/// `catch_unwind`, errors with their kind.
pub struct CallbackExtAdapter(pub Box<dyn Callback>);

const FORM: ErrorForm = ErrorForm::WithKind;

/// Borrows the lent tensors of an event for the duration of `f`.
fn with_event<T>(event: &EventFfi, f: impl FnOnce(Option<Batch<'_>>, Option<(&Tensor, &Tensor)>) -> T) -> T {
    // SAFETY: the host lends every tensor of the event for this call (DynCallbackExt::event).
    let batch = event.batch.into_option().map(|b| unsafe { (b.x.borrow(), b.y.borrow(), b.training, b.index) });
    let out = match (event.y_pred.into_option(), event.loss.into_option()) {
        (Some(p), Some(l)) => Some(unsafe { (p.borrow(), l.borrow()) }),
        _ => None,
    };
    let batch_ref = batch.as_ref().map(|(x, y, training, index)| Batch { x, y, training: *training, index: *index });
    f(batch_ref, out.as_ref().map(|(p, l)| (&**p, &**l)))
}

impl CallbackExtFfi for CallbackExtAdapter {
    fn initialize(&mut self) -> RResult<(), ErrorFfi> {
        guard_in(FORM, "initialize", || self.0.initialize())
    }

    fn on_event(
        &mut self,
        host: HostFfi_TO<'_, RMut<'_, ()>>,
        services: ServicesFfi_TO<'_, RMut<'_, ()>>,
        event: EventFfi,
    ) -> RResult<FlowCode, ErrorFfi> {
        let cb = &mut self.0;
        let mut host = HostExtProxy::new(host, services);
        let name = event_name(event.kind);
        guard_in(FORM, name, || {
            let flow = with_event(&event, |batch, out| {
                let output = batch.zip(out).map(|(batch, (y_pred, loss))| BatchOutput { batch, y_pred, loss });
                match (event.kind, batch, output) {
                    (EventKind::TRAIN_BEGIN, ..) => cb.on_train_begin(&mut host),
                    (EventKind::EPOCH_BEGIN, ..) => cb.on_epoch_begin(&mut host),
                    (EventKind::BATCH_BEGIN, Some(b), _) => cb.on_batch_begin(&mut host, &b),
                    (EventKind::LOSS_COMPUTED, _, Some(o)) => cb.on_loss_computed(&mut host, &o),
                    (EventKind::GRAD_COMPUTED, Some(b), _) => cb.on_grad_computed(&mut host, &b),
                    (EventKind::BATCH_END, _, Some(o)) => cb.on_batch_end(&mut host, &o),
                    (EventKind::EPOCH_END, ..) => cb.on_epoch_end(&mut host),
                    (EventKind::TRAIN_END, ..) => cb.on_train_end(&mut host).map(|()| Flow::Continue),
                    // A hook added after this plugin's SDK, or an event without its payload.
                    _ => Ok(Flow::Continue),
                }
            })?;
            Ok(flow.into())
        })
    }

    fn state(&self) -> RResult<RString, ErrorFfi> {
        guard_in(FORM, "state", || self.0.state().map(|v| v.to_string().into()))
    }

    fn load_state(&mut self, state: RStr<'_>) -> RResult<(), ErrorFfi> {
        guard_in(FORM, "load_state", || self.0.load_state(parse(state.as_str())?))
    }

    fn call(&mut self, request: RStr<'_>, _args: RStr<'_>, tensors: RVec<NamedTensor>) -> RResult<ReplyFfi, ErrorFfi> {
        guard_in(FORM, request.as_str(), || match request.as_str() {
            requests::STATE_TENSORS => Ok(ReplyFfi::data(&Value::Null, self.0.state_tensors()?)),
            requests::LOAD_STATE_TENSORS => {
                // SAFETY: lent by DynCallbackExt::request for this call.
                let tensors = unsafe { NamedTensor::copy_lent(&tensors) };
                self.0.load_state_tensors(tensors).map(|()| ReplyFfi::data(&Value::Null, Vec::new()))
            }
            requests::DESCRIBE => Ok(ReplyFfi::data(&json!({}), Vec::new())),
            other => Err(Error::unsupported(format!("callback request `{other}`"), SdkVersion::CURRENT)),
        })
    }
}

/// The name of the hook event `kind` stands for (`an event` for a number this SDK does not know).
pub(super) fn event_name(kind: EventKind) -> &'static str {
    crate::Hook::ALL.into_iter().find(|h| EventKind::of(*h) == kind).map_or("an event", crate::Hook::name)
}

/// The plugin side of [`RequestsFfi`] for components of other kinds: the facts read from the
/// component when it was built and, for a model, the model.
pub struct RequestsAdapter {
    /// The reply to [`requests::DESCRIBE`].
    pub description: Value,
    /// The model, when the component is one.
    pub model: Option<SharedModel>,
    /// The reader, when the component is one.
    pub reader: Option<SharedReader>,
}

impl Default for RequestsAdapter {
    /// Describes the component as `{}` and answers no model's or reader's request.
    fn default() -> Self {
        RequestsAdapter { description: json!({}), model: None, reader: None }
    }
}

impl RequestsFfi for RequestsAdapter {
    fn call(&mut self, request: RStr<'_>, args: RStr<'_>, tensors: RVec<NamedTensor>) -> RResult<ReplyFfi, ErrorFfi> {
        guard_in(FORM, request.as_str(), || match (request.as_str(), &mut self.model, &mut self.reader) {
            (requests::DESCRIBE, _, _) => Ok(ReplyFfi::data(&self.description, Vec::new())),
            (requests::SET_STAGE, _, Some(reader)) => {
                let args: Value = serde_json::from_str(args.as_str()).unwrap_or(Value::Null);
                let stage = args["stage"].as_str().and_then(Stage::from_name).ok_or_else(|| {
                    Error::msg(format!("{}: `stage` must be \"train\" or \"eval\"", requests::SET_STAGE))
                })?;
                reader.set_stage(stage)?;
                Ok(ReplyFfi::data(&Value::Null, Vec::new()))
            }
            (requests::SAMPLE_NAMES, _, Some(reader)) => Ok(ReplyFfi::data(&json!(reader.sample_names()), Vec::new())),
            (requests::SET_BATCH_NORM_STATS, Some(model), _) => {
                let args: Value = serde_json::from_str(args.as_str()).unwrap_or(Value::Null);
                let stats = args["stats"].as_str().and_then(batch_norm_stats_of).ok_or_else(|| {
                    Error::msg(format!(
                        "{}: `stats` must be \"momentum\" or \"cumulative\"",
                        requests::SET_BATCH_NORM_STATS
                    ))
                })?;
                Ok(ReplyFfi::data(&json!(model.set_batch_norm_stats(stats)?), Vec::new()))
            }
            (requests::FORWARD_INSPECTED, Some(model), _) => {
                let inspection = inspection_of(args.as_str())?;
                // SAFETY: lent by DynModel::forward_inspected for this call.
                let lent = unsafe { NamedTensor::copy_lent(&tensors) };
                let x = lent
                    .into_iter()
                    .find(|(n, _)| n == "x")
                    .map(|(_, t)| t)
                    .ok_or_else(|| Error::msg(format!("{}: no tensor `x`", requests::FORWARD_INSPECTED)))?;
                let Inspected { output, captured } = model.forward_inspected(&x, &inspection)?;
                let mut given = vec![("output".to_string(), output)];
                given.extend(captured.map(|c| ("captured".to_string(), c)));
                Ok(ReplyFfi::data(&Value::Null, given))
            }
            (other, _, _) => Err(Error::unsupported(format!("component request `{other}`"), SdkVersion::CURRENT)),
        })
    }
}

/// The arguments of [`requests::FORWARD_INSPECTED`] for `inspection`.
pub fn inspection_args(inspection: &Inspection) -> String {
    json!({"guided_relu": inspection.guided_relu, "capture": inspection.capture}).to_string()
}

/// The inspection [`inspection_args`] wrote.
fn inspection_of(args: &str) -> Result<Inspection> {
    let args: Value = serde_json::from_str(args).unwrap_or(Value::Null);
    let guided_relu = args["guided_relu"]
        .as_bool()
        .ok_or_else(|| Error::msg(format!("{}: `guided_relu` must be a bool", requests::FORWARD_INSPECTED)))?;
    let capture = match &args["capture"] {
        Value::Null => None,
        Value::String(name) => Some(name.clone()),
        _ => return Err(Error::msg(format!("{}: `capture` must be a string or null", requests::FORWARD_INSPECTED))),
    };
    Ok(Inspection { guided_relu, capture })
}

/// The name of `stats` in [`requests::SET_BATCH_NORM_STATS`].
pub fn batch_norm_stats_name(stats: BatchNormStats) -> &'static str {
    match stats {
        BatchNormStats::Momentum => "momentum",
        BatchNormStats::Cumulative => "cumulative",
    }
}

fn batch_norm_stats_of(name: &str) -> Option<BatchNormStats> {
    [BatchNormStats::Momentum, BatchNormStats::Cumulative].into_iter().find(|s| batch_norm_stats_name(*s) == name)
}
