//! The extension interfaces: how the SDK grows within ABI 1 (SDK 1.1 and later).
//!
//! The 1.0 root module and every type it reaches are frozen: abi_stable refuses a plugin when
//! the host's copy of any of them has a field or method more than the plugin's, so nothing can
//! be appended to them without locking every 1.0 plugin out. What SDK 1.1 added lives behind a
//! second exported symbol, [`EXT_SYMBOL`], that 1.0 hosts never look up. It returns
//! [`ExtHeader`]: the layout of [`SdkExtFfi`], which the host checks against its own, and the
//! extension root. The extension types are frozen too, and were made to grow by *names*:
//!
//! - **events** reach a callback through one entry, [`CallbackExtFfi::on_event`], as an
//!   [`EventFfi`] whose [`EventKind`] is a number: a new hook is a new number, which a plugin
//!   built before it never receives (the host knows the plugin's SDK minor) and ignores anyway;
//! - **host services** are called by name through [`ServicesFfi::call`] (arguments as JSON,
//!   tensors lent; the reply as JSON and given tensors): a new service is a new name, and a
//!   host that does not know a name answers [`crate::Error::Unsupported`] with the version it
//!   needs (see the table of [`services`]);
//! - **component requests** go the other way, by name, through `call` on each component
//!   ([`CallbackExtFfi::call`], [`RequestsFfi::call`]);
//! - replies grow by JSON keys and tensor names; a [`FlowCode`] is a number too.
//!
//! The rule for every addition after 1.1, step by step:
//! 1. give it a name (an [`EventKind`] number, a service or request name, a JSON key) and add it
//!    to the tables here with the SDK minor it appears in; never change an existing one;
//! 2. raise [`SDK_MINOR`] (and [`crate::SdkVersion::CURRENT`]);
//! 3. add the typed Rust API on the SDK trait (`Host`, `Callback`, ...) as a default method, so
//!    that no plugin's source breaks: on a host that predates it, a service's default answers
//!    `Unsupported`; a hook's default does nothing;
//! 4. carry it on both sides of the boundary: the plugin side here (the adapters), the host side
//!    in the engine;
//! 5. test it: a plugin built before the addition still loads and runs (the ABI v1 plugin of
//!    `tests/tests/plugins/abi_versions.rs`), a plugin using it runs, and a plugin using it on a
//!    host without it is refused in one line or runs without it, as its
//!    `Callback::requires_sdk` says.
//!
//! A change that cannot follow the rule (a field in a frozen type) is a new ABI version.

use super::callback::BatchFfi;
use super::host::{parse, HostBridge, HostFfi_TO, HostProxy};
use super::{guard_in, BuildContextFfi, ComponentFfi, ErrorFfi, ErrorForm, KindFfi, NamedTensor, RawTensor};
use crate::host::Forward;
use crate::{Batch, BatchOutput, Callback, Error, Flow, Host, Result, SdkVersion};
use abi_stable::sabi_trait;
use abi_stable::std_types::{RBox, ROption, RResult, RStr, RString, RVec};
use abi_stable::type_layout::TypeLayout;
use abi_stable::{RMut, StableAbi};
use serde_json::{json, Map, Value};
use std::cell::RefCell;
use std::path::Path;
use tch::Tensor;

/// The symbol of the extension root: `extern "C" fn() -> ExtHeader`.
pub const EXT_SYMBOL: &[u8] = b"torchfit_sdk_ext\0";

/// The minor version of this SDK (`1.SDK_MINOR`).
pub const SDK_MINOR: u32 = SdkVersion::CURRENT.minor;

/// What [`EXT_SYMBOL`] returns. Its own layout (two pointers) is the one thing both sides assume;
/// the host checks `layout` against its [`SdkExtFfi`] before it reads `root`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExtHeader {
    /// The layout of [`SdkExtFfi`] the plugin was built with.
    pub layout: &'static TypeLayout,
    /// The extension root.
    pub root: *const SdkExtFfi,
}

/// The extension root a plugin exports (frozen: see the module docs).
#[repr(C)]
#[derive(StableAbi)]
pub struct SdkExtFfi {
    /// The SDK minor version the plugin was built with.
    pub sdk_minor: u32,
    /// Builds component `name` of a kind from its JSON config, for a host of SDK minor
    /// `host_minor`, with the extension interfaces and errors that keep their kind. A component
    /// that needs a newer host is refused.
    pub build: extern "C" fn(KindFfi, RStr<'_>, RStr<'_>, &BuildContextFfi, u32) -> RResult<ComponentExtFfi, ErrorFfi>,
}

/// A component built through the extension root.
#[repr(u8)]
#[derive(StableAbi)]
pub enum ComponentExtFfi {
    /// A callback, every hook through one entry.
    Callback(CallbackExtFfi_TO<'static, RBox<()>>),
    /// Any other kind: its 1.0 interface (errors keep their kind) and its requests.
    Other(ComponentFfi, RequestsFfi_TO<'static, RBox<()>>),
}

/// The hook an [`EventFfi`] stands for. A number, not an enum, so that hooks can be added.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventKind(pub u32);

impl EventKind {
    /// `on_train_begin` (1.1).
    pub const TRAIN_BEGIN: EventKind = EventKind(1);
    /// `on_epoch_begin` (1.1).
    pub const EPOCH_BEGIN: EventKind = EventKind(2);
    /// `on_batch_begin`, with the batch (1.1).
    pub const BATCH_BEGIN: EventKind = EventKind(3);
    /// `on_loss_computed`, with the batch, outputs and loss, graphs attached (1.1).
    pub const LOSS_COMPUTED: EventKind = EventKind(4);
    /// `on_grad_computed`, with the batch (1.1).
    pub const GRAD_COMPUTED: EventKind = EventKind(5);
    /// `on_batch_end`, with the batch, outputs and loss (1.1).
    pub const BATCH_END: EventKind = EventKind(6);
    /// `on_epoch_end` (1.1).
    pub const EPOCH_END: EventKind = EventKind(7);
    /// `on_train_end` (1.1).
    pub const TRAIN_END: EventKind = EventKind(8);
}

/// An event for a callback; every tensor is lent for the call.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct EventFfi {
    /// Which hook.
    pub kind: EventKind,
    /// The batch, for batch events.
    pub batch: ROption<BatchFfi>,
    /// The model's outputs, for `LOSS_COMPUTED` and `BATCH_END`.
    pub y_pred: ROption<RawTensor>,
    /// The loss, for `LOSS_COMPUTED` and `BATCH_END`.
    pub loss: ROption<RawTensor>,
}

/// What a callback asks of the loop, as a number (see [`Flow`]).
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowCode(pub u32);

impl FlowCode {
    /// [`Flow::Continue`] (1.1).
    pub const CONTINUE: FlowCode = FlowCode(0);
    /// [`Flow::Stop`] (1.1).
    pub const STOP: FlowCode = FlowCode(1);
    /// [`Flow::StopAfterBatch`] (1.1).
    pub const STOP_AFTER_BATCH: FlowCode = FlowCode(2);
}

impl From<Flow> for FlowCode {
    fn from(f: Flow) -> Self {
        match f {
            Flow::Continue => FlowCode::CONTINUE,
            Flow::Stop => FlowCode::STOP,
            Flow::StopAfterBatch => FlowCode::STOP_AFTER_BATCH,
        }
    }
}

impl TryFrom<FlowCode> for Flow {
    type Error = Error;
    #[inline]
    fn try_from(c: FlowCode) -> Result<Flow> {
        match c {
            FlowCode::CONTINUE => Ok(Flow::Continue),
            FlowCode::STOP => Ok(Flow::Stop),
            FlowCode::STOP_AFTER_BATCH => Ok(Flow::StopAfterBatch),
            FlowCode(n) => Err(unknown_flow(n)),
        }
    }
}

#[cold]
#[inline(never)]
fn unknown_flow(n: u32) -> Error {
    Error::msg(format!("the plugin asked for flow {n}, which this host does not know"))
}

/// The reply to a service call or a request: JSON text (empty for `null`) and tensors given to
/// the receiver.
#[repr(C)]
#[derive(StableAbi)]
pub struct ReplyFfi {
    /// Reserved: [`FlowCode::CONTINUE`].
    pub flow: FlowCode,
    /// JSON text; empty for `null`.
    pub json: RString,
    /// Tensors, given.
    pub tensors: RVec<NamedTensor>,
}

impl ReplyFfi {
    fn new(flow: FlowCode, json: &Value, tensors: Vec<(String, Tensor)>) -> Self {
        ReplyFfi { flow, json: json.to_string().into(), tensors: NamedTensor::give_all(tensors) }
    }

    /// A reply with JSON and tensors.
    pub fn data(json: &Value, tensors: Vec<(String, Tensor)>) -> Self {
        Self::new(FlowCode::CONTINUE, json, tensors)
    }

    /// The reply's JSON and tensors, taken.
    ///
    /// # Safety
    /// The tensors must have been given ([`ReplyFfi::data`]) and not taken before.
    pub unsafe fn take(self) -> Result<(Value, Vec<(String, Tensor)>)> {
        // SAFETY: forwarded contract.
        let tensors = unsafe { NamedTensor::take_all(self.tensors) };
        let json = serde_json::from_str(&self.json)
            .map_err(|e| Error::msg(format!("invalid JSON across the plugin boundary: {e}")))?;
        Ok((json, tensors))
    }
}

/// A callback through the extension interface.
#[sabi_trait]
pub trait CallbackExtFfi: Send {
    /// [`Callback::initialize`].
    fn initialize(&mut self) -> RResult<(), ErrorFfi>;
    /// Every hook: `host` gives the 1.0 services, `services` the rest by name. The reply is what
    /// the callback asks of the loop; anything else it asks goes through `services`.
    fn on_event(
        &mut self,
        host: HostFfi_TO<'_, RMut<'_, ()>>,
        services: ServicesFfi_TO<'_, RMut<'_, ()>>,
        event: EventFfi,
    ) -> RResult<FlowCode, ErrorFfi>;
    /// [`Callback::state`], as JSON text.
    fn state(&self) -> RResult<RString, ErrorFfi>;
    /// [`Callback::load_state`] from JSON text.
    fn load_state(&mut self, state: RStr<'_>) -> RResult<(), ErrorFfi>;
    /// A request by name (see [`requests`]); tensors lent, the reply's given.
    #[sabi(last_prefix_field)]
    fn call(&mut self, request: RStr<'_>, args: RStr<'_>, tensors: RVec<NamedTensor>) -> RResult<ReplyFfi, ErrorFfi>;
}

/// Requests to a component of another kind than callback (see [`requests`]).
#[sabi_trait]
pub trait RequestsFfi: Send {
    /// A request by name; tensors lent, the reply's given.
    #[sabi(last_prefix_field)]
    fn call(&mut self, request: RStr<'_>, args: RStr<'_>, tensors: RVec<NamedTensor>) -> RResult<ReplyFfi, ErrorFfi>;
}

/// The host services of SDK 1.1 and later, by name (see [`services`]).
#[sabi_trait]
pub trait ServicesFfi {
    /// Calls `service`; tensors lent, the reply's given. An unknown name is
    /// [`crate::Error::Unsupported`].
    #[sabi(last_prefix_field)]
    fn call(&mut self, service: RStr<'_>, args: RStr<'_>, tensors: RVec<NamedTensor>) -> RResult<ReplyFfi, ErrorFfi>;
}

/// The requests a component answers, with the SDK minor that added each.
///
/// | request | minor | args | reply |
/// |---|---|---|---|
/// | `state_tensors` | 1 | — | the callback's tensor state, given |
/// | `load_state_tensors` | 1 | tensors, lent | — |
/// | `describe` | 1 | — | `{"lower_is_better": bool \| null}` for a scorer, `{}` otherwise |
pub mod requests {
    /// [`crate::Callback::state_tensors`].
    pub const STATE_TENSORS: &str = "state_tensors";
    /// [`crate::Callback::load_state_tensors`].
    pub const LOAD_STATE_TENSORS: &str = "load_state_tensors";
    /// Static facts about a component.
    pub const DESCRIBE: &str = "describe";
}

/// The host services, with the SDK minor that added each; each is a method of
/// [`crate::Host`].
///
/// | service | minor | args | tensors in | reply |
/// |---|---|---|---|---|
/// | `sdk.version` | 1 | — | — | `[major, minor]` |
/// | `loop.add_to_loss` | 1 | — | the term | — |
/// | `loop.skip_step` | 1 | — | — | — |
/// | `loop.replace_batch` | 1 | — | `x`, `y` | — |
/// | `optimizer.group_parameters` | 1 | `{"group"}` | — | names |
/// | `optimizer.hyper` | 1 | `{"group", "name"}` | — | the value |
/// | `optimizer.set_hyper` | 1 | `{"group", "name", "value"}` | — | — |
/// | `optimizer.state` | 1 | — | — | tensors |
/// | `model.buffers` | 1 | — | — | tensors |
/// | `model.state_dict` | 1 | — | — | tensors |
/// | `model.load_state_dict` | 1 | — | the state | — |
/// | `model.forward` | 1 | `{"train", "grad"}` | `x` | `y` |
/// | `run.device` | 1 | — | — | `"cpu"`, `"cuda:N"` |
/// | `scorer.lower_is_better` | 1 | `{"name"}` | — | `bool` or `null` |
pub mod services {
    /// [`crate::Host::sdk_version`].
    pub const SDK_VERSION: &str = "sdk.version";
    /// [`crate::Host::add_to_loss`].
    pub const ADD_TO_LOSS: &str = "loop.add_to_loss";
    /// [`crate::Host::skip_step`].
    pub const SKIP_STEP: &str = "loop.skip_step";
    /// [`crate::Host::replace_batch`].
    pub const REPLACE_BATCH: &str = "loop.replace_batch";
    /// [`crate::Host::group_parameters`].
    pub const GROUP_PARAMETERS: &str = "optimizer.group_parameters";
    /// [`crate::Host::hyper`].
    pub const HYPER: &str = "optimizer.hyper";
    /// [`crate::Host::set_hyper`].
    pub const SET_HYPER: &str = "optimizer.set_hyper";
    /// [`crate::Host::optimizer_state`].
    pub const OPTIMIZER_STATE: &str = "optimizer.state";
    /// [`crate::Host::buffers`].
    pub const BUFFERS: &str = "model.buffers";
    /// [`crate::Host::state_dict`].
    pub const STATE_DICT: &str = "model.state_dict";
    /// [`crate::Host::load_state_dict`].
    pub const LOAD_STATE_DICT: &str = "model.load_state_dict";
    /// [`crate::Host::forward`].
    pub const FORWARD: &str = "model.forward";
    /// [`crate::Host::device`].
    pub const DEVICE: &str = "run.device";
    /// [`crate::Host::scorer_lower_is_better`].
    pub const SCORER_LOWER_IS_BETTER: &str = "scorer.lower_is_better";
}

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
        DEVICE => Ok(ReplyFfi::data(&json!(device_name(host.device()?)), Vec::new())),
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
        let mut host = HostExtProxy { v1: HostProxy::new(host), services: RefCell::new(services) };
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

fn event_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::TRAIN_BEGIN => "on_train_begin",
        EventKind::EPOCH_BEGIN => "on_epoch_begin",
        EventKind::BATCH_BEGIN => "on_batch_begin",
        EventKind::LOSS_COMPUTED => "on_loss_computed",
        EventKind::GRAD_COMPUTED => "on_grad_computed",
        EventKind::BATCH_END => "on_batch_end",
        EventKind::EPOCH_END => "on_epoch_end",
        EventKind::TRAIN_END => "on_train_end",
        _ => "an event",
    }
}

/// The plugin side of the services: a [`Host`] whose 1.0 methods go through the 1.0 interface
/// and whose later ones go through [`ServicesFfi`] by name.
struct HostExtProxy<'a, 'b, 'c, 'd> {
    v1: HostProxy<'a, 'b>,
    /// In a cell: the services that only read are `&self` methods of [`Host`].
    services: RefCell<ServicesFfi_TO<'c, RMut<'d, ()>>>,
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
    fn device(&self) -> Result<tch::Device> {
        let (v, _) = self.call_ref(services::DEVICE, Value::Null)?;
        parse_device(v.as_str().unwrap_or_default())
    }
    fn scorer_lower_is_better(&mut self, name: &str) -> Result<Option<bool>> {
        self.call(services::SCORER_LOWER_IS_BETTER, json!({"name": name}), &[]).map(|(v, _)| v.as_bool())
    }
}

/// The plugin side of [`RequestsFfi`] for components of other kinds: the facts read from the
/// component when it was built.
pub struct RequestsAdapter {
    /// The reply to [`requests::DESCRIBE`].
    pub description: Value,
}

impl RequestsFfi for RequestsAdapter {
    fn call(&mut self, request: RStr<'_>, _args: RStr<'_>, _tensors: RVec<NamedTensor>) -> RResult<ReplyFfi, ErrorFfi> {
        guard_in(FORM, request.as_str(), || match request.as_str() {
            requests::DESCRIBE => Ok(ReplyFfi::data(&self.description, Vec::new())),
            other => Err(Error::unsupported(format!("component request `{other}`"), SdkVersion::CURRENT)),
        })
    }
}

/// The header [`EXT_SYMBOL`] returns for `root`.
pub fn header(root: &'static SdkExtFfi) -> ExtHeader {
    ExtHeader { layout: <SdkExtFfi as StableAbi>::LAYOUT, root }
}

/// Checks the header a library's [`EXT_SYMBOL`] returned against this SDK's extension root and
/// returns the root; the error is the first lines of abi_stable's report.
///
/// # Safety
/// `header` must come from a plugin's [`EXT_SYMBOL`] (its pointers valid for the process).
pub unsafe fn check(header: ExtHeader) -> std::result::Result<&'static SdkExtFfi, String> {
    abi_stable::abi_stability::abi_checking::check_layout_compatibility(
        <SdkExtFfi as StableAbi>::LAYOUT,
        header.layout,
    )
    .map_err(|e| {
        e.to_string().lines().map(str::trim).filter(|l| !l.is_empty()).take(3).collect::<Vec<_>>().join(" ")
    })?;
    // SAFETY: the layout matches this SDK's, and the plugin keeps its root static.
    Ok(unsafe { &*header.root })
}

/// A `ReplyFfi`'s flow for tests of this module.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_codes_round_trip_and_an_unknown_code_is_an_error() {
        for f in [Flow::Continue, Flow::Stop, Flow::StopAfterBatch] {
            assert_eq!(Flow::try_from(FlowCode::from(f)).unwrap(), f);
        }
        assert!(Flow::try_from(FlowCode(99)).is_err());
    }

    #[test]
    fn errors_keep_their_kind_in_the_extension_form_only() {
        let data = || Error::data("digits.csv: row 3: label -1");
        let back = Error::from(ErrorFfi::with_kind(data()));
        assert!(matches!(back, Error::Data(ref m) if m == "digits.csv: row 3: label -1"), "{back:?}");
        assert!(matches!(Error::from(ErrorFfi::from(data())), Error::Msg(_)), "a 1.0 host gets the message");
        let io = Error::io("/no/file", std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(matches!(Error::from(ErrorFfi::with_kind(io)), Error::Io { ref path, .. } if path == "/no/file"));
        let unsupported = Error::unsupported("model.forward", SdkVersion::V1_1);
        let back = Error::from(ErrorFfi::with_kind(unsupported));
        assert_eq!(back.to_string(), "model.forward needs a torchfit host with SDK 1.1 or later");
        let torch = Error::Torch(tch::TchError::Torch("bad shape\nException raised from f\nframe #0: x".into()));
        assert!(matches!(Error::from(ErrorFfi::with_kind(torch)), Error::Torch(_)));
    }

    #[test]
    fn the_extension_root_checks_against_itself() {
        extern "C" fn no_build(
            _: KindFfi,
            _: RStr<'_>,
            _: RStr<'_>,
            _: &BuildContextFfi,
            _: u32,
        ) -> RResult<ComponentExtFfi, ErrorFfi> {
            RResult::RErr(ErrorFfi::from(Error::msg("none")))
        }
        static ROOT: SdkExtFfi = SdkExtFfi { sdk_minor: SDK_MINOR, build: no_build };
        let root = unsafe { check(header(&ROOT)) }.unwrap();
        assert_eq!(root.sdk_minor, 1);
    }
}
