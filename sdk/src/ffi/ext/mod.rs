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
use super::host::HostFfi_TO;
use super::{BuildContextFfi, ComponentFfi, ErrorFfi, KindFfi, NamedTensor, RawTensor};
use crate::{Error, Flow, Result, SdkVersion};
use abi_stable::sabi_trait;
use abi_stable::std_types::{RBox, ROption, RResult, RStr, RString, RVec};
use abi_stable::type_layout::TypeLayout;
use abi_stable::{RMut, StableAbi};
use serde_json::Value;
use tch::Tensor;

mod callbacks;
mod host_services;

pub use callbacks::{batch_norm_stats_name, inspection_args, CallbackExtAdapter, DynCallbackExt, RequestsAdapter};
pub use host_services::serve;

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

    /// The number of `hook`.
    pub fn of(hook: crate::Hook) -> EventKind {
        use crate::Hook;
        match hook {
            Hook::TrainBegin => EventKind::TRAIN_BEGIN,
            Hook::EpochBegin => EventKind::EPOCH_BEGIN,
            Hook::BatchBegin => EventKind::BATCH_BEGIN,
            Hook::LossComputed => EventKind::LOSS_COMPUTED,
            Hook::GradComputed => EventKind::GRAD_COMPUTED,
            Hook::BatchEnd => EventKind::BATCH_END,
            Hook::EpochEnd => EventKind::EPOCH_END,
            Hook::TrainEnd => EventKind::TRAIN_END,
        }
    }
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
    /// [`crate::Callback::initialize`].
    fn initialize(&mut self) -> RResult<(), ErrorFfi>;
    /// Every hook: `host` gives the 1.0 services, `services` the rest by name. The reply is what
    /// the callback asks of the loop; anything else it asks goes through `services`.
    fn on_event(
        &mut self,
        host: HostFfi_TO<'_, RMut<'_, ()>>,
        services: ServicesFfi_TO<'_, RMut<'_, ()>>,
        event: EventFfi,
    ) -> RResult<FlowCode, ErrorFfi>;
    /// [`crate::Callback::state`], as JSON text.
    fn state(&self) -> RResult<RString, ErrorFfi>;
    /// [`crate::Callback::load_state`] from JSON text.
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
/// | `set_batch_norm_stats` | 1 | `{"stats": "momentum" \| "cumulative"}` | a model's `bool` |
/// | `set_stage` | 3 | `{"stage": "train" \| "eval"}` | — (a reader's) |
/// | `sample_names` | 3 | — | a reader's names, an array of strings or `null` |
/// | `forward_inspected` | 5 | `{"guided_relu": bool, "capture": name \| null}`, tensor `x` lent | a model's `output` and `captured` tensors, given |
pub mod requests {
    /// [`crate::Callback::state_tensors`].
    pub const STATE_TENSORS: &str = "state_tensors";
    /// [`crate::Callback::load_state_tensors`].
    pub const LOAD_STATE_TENSORS: &str = "load_state_tensors";
    /// Static facts about a component.
    pub const DESCRIBE: &str = "describe";
    /// [`crate::Model::set_batch_norm_stats`].
    pub const SET_BATCH_NORM_STATS: &str = "set_batch_norm_stats";
    /// [`crate::DatasetReader::set_stage`] (SDK 1.3).
    pub const SET_STAGE: &str = "set_stage";
    /// [`crate::DatasetReader::sample_names`] (SDK 1.3).
    pub const SAMPLE_NAMES: &str = "sample_names";
    /// [`crate::Model::forward_inspected`] (SDK 1.5).
    pub const FORWARD_INSPECTED: &str = "forward_inspected";
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
/// | `model.update_batch_norm` | 1 | — | — | `bool` |
/// | `run.device` | 1 | — | — | `"cpu"`, `"cuda:N"` |
/// | `run.process` | 2 | — | — | `{"rank", "world_size", "local_rank"}` |
/// | `history.batch_value` | 4 | `{"epoch", "batch", "key"}` | — | the value or `null` |
/// | `run.grad_scaler` | 4 | — | — | `{"scale", "growth_tracker"}` or `null` |
/// | `run.accumulate_grad_batches` | 4 | — | — | a count |
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
    /// [`crate::Host::update_batch_norm`].
    pub const UPDATE_BATCH_NORM: &str = "model.update_batch_norm";
    /// [`crate::Host::device`].
    pub const DEVICE: &str = "run.device";
    /// [`crate::Host::process`] (SDK 1.2).
    pub const PROCESS: &str = "run.process";
    /// [`crate::Host::scorer_lower_is_better`].
    pub const SCORER_LOWER_IS_BETTER: &str = "scorer.lower_is_better";
    /// [`crate::Host::history_batch_value`] (SDK 1.4).
    pub const HISTORY_BATCH_VALUE: &str = "history.batch_value";
    /// [`crate::Host::grad_scaler`] (SDK 1.4).
    pub const GRAD_SCALER: &str = "run.grad_scaler";
    /// [`crate::Host::accumulate_grad_batches`] (SDK 1.4).
    pub const ACCUMULATE_GRAD_BATCHES: &str = "run.accumulate_grad_batches";
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
    fn every_hook_has_its_own_event_number_and_the_abi_names_it_as_the_engine_does() {
        let kinds: Vec<EventKind> = crate::Hook::ALL.iter().map(|h| EventKind::of(*h)).collect();
        assert_eq!(kinds, (1..=8).map(EventKind).collect::<Vec<_>>(), "the 1.1 numbers, in order");
        for h in crate::Hook::ALL {
            assert_eq!(callbacks::event_name(EventKind::of(h)), h.name());
        }
        assert_eq!(callbacks::event_name(EventKind(99)), "an event");
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
        assert_eq!(root.sdk_minor, 5, "this SDK is 1.5");
    }
}
