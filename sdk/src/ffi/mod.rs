//! The stable ABI between the `torchfit` host and plugin libraries.
//!
//! Plugin authors do not use this module directly: they implement the SDK traits and call
//! [`export_plugin!`](crate::export_plugin). The host loads a library, checks its layout (done by
//! abi_stable), its [`ABI_VERSION`] and its [`TORCH_TAG`], and wraps each component in an adapter
//! that implements the same SDK trait, so the engine cannot tell a loaded component from a
//! builtin one.
//!
//! Rules the adapters enforce:
//! - every call into a plugin runs under `catch_unwind`; a panic becomes an error naming the
//!   hook, never an unwind across the boundary;
//! - tensors cross as [`RawTensor`] handles, lent or given (see [`tensor`]);
//! - JSON values (configs, history values, state) cross as strings;
//!
//! ## How the ABI may change
//! abi_stable checks, at load time, the layout of every type reachable from the root module, and
//! refuses a plugin whose trait-object vtables are shorter than the host's: appending a method,
//! even one with a default body after the `#[sabi(last_prefix_field)]` marker, to `ReaderFfi` or
//! to [`HostFfi`] makes the host refuse the ABI v1 plugin of `tests/tests/plugins/abi_versions.rs`
//! ("too many fields").
//!
//! So every interface here, the root module included, is frozen within an ABI version: the SDK
//! grows through the extension root instead (a second exported symbol that 1.0 hosts never look
//! up), by names, under the rule written in [`ext`]; a change to an existing interface raises
//! [`ABI_VERSION`]. The versioning test builds the example plugin from the commit that released
//! ABI v1 and loads it in the current host, so an incompatible change fails the test suite.
#![allow(non_camel_case_types, non_local_definitions)] // from abi_stable's generated code (`PluginRoot_Ref`, `CallbackFfi_TO`)

pub mod callback;
// `ReaderFfi_TO`, generated, has `len` without `is_empty`: adding a method would change the ABI.
#[allow(clippy::len_without_is_empty)]
pub mod components;
pub mod export;
pub mod ext;
pub mod host;
pub mod tensor;

pub use callback::{CallbackFfi, CallbackFfi_TO, DynCallback};
pub use components::{
    CriterionFfi_TO, DynCriterion, DynModel, DynReader, DynScorer, ModelFfi_TO, ReaderFfi_TO, ScorerFfi_TO,
};
pub use export::{LogSink, Registration};
pub use host::{HostBridge, HostFfi, HostFfi_TO, HostProxy, PartsFfi};
pub use tensor::{NamedTensor, RawTensor, TensorRef};

use crate::{BuildContext, ComponentKind, Error, Flow, Task};
use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RNone, ROption, RResult, RSome, RStr, RString, RVec};
use abi_stable::{declare_root_module_statics, package_version_strings, StableAbi};

/// Version of torchfit's own plugin ABI. Raised only by an incompatible change; additions do not.
pub const ABI_VERSION: u32 = 1;

/// The tch and libtorch versions this SDK was built against. A plugin must match the host's:
/// abi_stable cannot see C++ types, and a tensor from another libtorch is undefined behaviour.
pub const TORCH_TAG: &str = concat!("tch 0.24.0, libtorch ", env!("TORCHFIT_TORCH_VERSION"));

/// An error crossing the boundary: a config error keeps its key, anything else its message.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct ErrorFfi {
    /// `Some(key)` for [`Error::Config`].
    pub config_key: ROption<RString>,
    /// The message.
    pub message: RString,
}

impl From<Error> for ErrorFfi {
    /// The 1.0 form: a config error keeps its key, anything else becomes its message.
    fn from(e: Error) -> Self {
        match e {
            Error::Config { key, message } => ErrorFfi { config_key: RSome(key.into()), message: message.into() },
            other => ErrorFfi { config_key: RNone, message: other.to_string().into() },
        }
    }
}

/// Marks the message of an [`ErrorFfi`] that carries its kind (SDK 1.1): what follows is JSON.
/// Components built through the extension root send this form, which only hosts of SDK 1.1 and
/// later ask for; a 1.0 host gets the 1.0 form.
const KIND_MARK: char = '\u{1}';

impl ErrorFfi {
    /// The SDK 1.1 form: the error's kind (data, I/O, libtorch, unsupported, missing history key)
    /// and its whole text cross, so that the host reports it as it reports its own.
    pub fn with_kind(e: Error) -> Self {
        let json = match &e {
            Error::Config { .. } => return ErrorFfi::from(e),
            Error::Data(m) => serde_json::json!({"kind": "data", "message": m}),
            Error::Io { path, source } => {
                serde_json::json!({"kind": "io", "path": path, "message": source.to_string()})
            }
            Error::Torch(t) => serde_json::json!({"kind": "torch", "message": t.to_string()}),
            Error::Unsupported { what, needs } => {
                serde_json::json!({"kind": "unsupported", "what": what, "needs": [needs.major, needs.minor]})
            }
            Error::MissingHistoryKey { key, epoch, writer } => {
                serde_json::json!({"kind": "missing_key", "key": key, "epoch": epoch, "writer": writer})
            }
            Error::Msg(m) => return ErrorFfi { config_key: RNone, message: m.as_str().into() },
        };
        ErrorFfi { config_key: RNone, message: format!("{KIND_MARK}{json}").into() }
    }
}

/// The error of either form.
impl From<ErrorFfi> for Error {
    fn from(e: ErrorFfi) -> Self {
        if let RSome(key) = e.config_key {
            return Error::Config { key: key.into_string(), message: e.message.into_string() };
        }
        let text = e.message.into_string();
        let Some(json) = text.strip_prefix(KIND_MARK) else { return Error::Msg(text) };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else { return Error::Msg(text) };
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        match v["kind"].as_str() {
            Some("data") => Error::Data(s("message")),
            Some("io") => Error::Io { path: s("path"), source: std::io::Error::other(s("message")) },
            Some("torch") => Error::Torch(tch::TchError::Torch(s("message"))),
            Some("unsupported") => {
                let minor = v["needs"][1].as_u64().unwrap_or(0) as u32;
                Error::Unsupported { what: s("what"), needs: crate::SdkVersion::v1(minor) }
            }
            Some("missing_key") => Error::MissingHistoryKey {
                key: s("key"),
                epoch: v["epoch"].as_u64().unwrap_or(0) as usize,
                writer: s("writer"),
            },
            _ => Error::Msg(s("message")),
        }
    }
}

/// [`Flow`] across the boundary.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowFfi {
    /// Go on.
    Continue,
    /// Stop after this epoch.
    Stop,
}

impl From<Flow> for FlowFfi {
    /// A 1.0 host knows no stop after the batch: it gets a stop after the epoch.
    fn from(f: Flow) -> Self {
        match f {
            Flow::Continue => FlowFfi::Continue,
            Flow::Stop | Flow::StopAfterBatch => FlowFfi::Stop,
        }
    }
}

impl From<FlowFfi> for Flow {
    fn from(f: FlowFfi) -> Self {
        match f {
            FlowFfi::Continue => Flow::Continue,
            FlowFfi::Stop => Flow::Stop,
        }
    }
}

/// [`ComponentKind`] across the boundary.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindFfi {
    /// A callback.
    Callback,
    /// A criterion.
    Criterion,
    /// A model.
    Model,
    /// A dataset reader.
    Reader,
    /// A scorer.
    Scorer,
}

impl From<ComponentKind> for KindFfi {
    fn from(k: ComponentKind) -> Self {
        match k {
            ComponentKind::Callback => KindFfi::Callback,
            ComponentKind::Criterion => KindFfi::Criterion,
            ComponentKind::Model => KindFfi::Model,
            ComponentKind::Reader => KindFfi::Reader,
            ComponentKind::Scorer => KindFfi::Scorer,
        }
    }
}

impl From<KindFfi> for ComponentKind {
    fn from(k: KindFfi) -> Self {
        match k {
            KindFfi::Callback => ComponentKind::Callback,
            KindFfi::Criterion => ComponentKind::Criterion,
            KindFfi::Model => ComponentKind::Model,
            KindFfi::Reader => ComponentKind::Reader,
            KindFfi::Scorer => ComponentKind::Scorer,
        }
    }
}

/// [`BuildContext`] across the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct BuildContextFfi {
    /// Name the component is configured under.
    pub name: RString,
    /// Shape of one input sample.
    pub input_shape: RVec<i64>,
    /// Number of outputs.
    pub n_outputs: i64,
    /// 0 = classification, 1 = regression.
    pub task: u8,
    /// -1 = CPU, n = CUDA device n.
    pub device: i64,
    /// Folder relative paths resolve against.
    pub base_dir: RString,
    /// The run's seed.
    pub seed: u64,
}

impl From<&BuildContext> for BuildContextFfi {
    fn from(c: &BuildContext) -> Self {
        BuildContextFfi {
            name: c.name.as_str().into(),
            input_shape: c.input_shape.iter().copied().collect(),
            n_outputs: c.n_outputs,
            task: match c.task {
                Task::Classification => 0,
                Task::Regression => 1,
            },
            device: match c.device {
                tch::Device::Cuda(n) => n as i64,
                _ => -1,
            },
            base_dir: c.base_dir.display().to_string().into(),
            seed: c.seed,
        }
    }
}

impl From<&BuildContextFfi> for BuildContext {
    fn from(c: &BuildContextFfi) -> Self {
        BuildContext {
            name: c.name.to_string(),
            input_shape: c.input_shape.to_vec(),
            n_outputs: c.n_outputs,
            task: if c.task == 1 { Task::Regression } else { Task::Classification },
            device: if c.device < 0 { tch::Device::Cpu } else { tch::Device::Cuda(c.device as usize) },
            base_dir: c.base_dir.as_str().into(),
            seed: c.seed,
        }
    }
}

/// A built component, boxed behind its interface.
#[repr(u8)]
#[derive(StableAbi)]
pub enum ComponentFfi {
    /// A callback.
    Callback(CallbackFfi_TO<'static, abi_stable::std_types::RBox<()>>),
    /// A criterion.
    Criterion(CriterionFfi_TO<'static, abi_stable::std_types::RBox<()>>),
    /// A model.
    Model(ModelFfi_TO<'static, abi_stable::std_types::RBox<()>>),
    /// A dataset reader.
    Reader(ReaderFfi_TO<'static, abi_stable::std_types::RBox<()>>),
    /// A scorer.
    Scorer(ScorerFfi_TO<'static, abi_stable::std_types::RBox<()>>),
}

/// One component a library provides.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct ComponentDescFfi {
    /// Its kind.
    pub kind: KindFfi,
    /// Its name in configs.
    pub name: RString,
    /// One line on what it is and its keys.
    pub summary: RString,
}

/// The root module every plugin library exports (through [`export_plugin!`](crate::export_plugin)).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginRoot_Ref)))]
#[sabi(missing_field(panic))]
pub struct PluginRoot {
    /// [`ABI_VERSION`] of the SDK the plugin was built with.
    pub abi_version: u32,
    /// [`TORCH_TAG`] of the SDK the plugin was built with.
    pub torch_tag: RStr<'static>,
    /// The plugin's package name.
    pub name: RStr<'static>,
    /// The plugin's package version.
    pub version: RStr<'static>,
    /// Installs the host's log sink in the plugin's image.
    pub set_logger: extern "C" fn(LogSink),
    /// The components the library provides.
    pub components: extern "C" fn() -> RVec<ComponentDescFfi>,
    /// Builds component `name` of `kind` from its JSON config.
    #[sabi(last_prefix_field)]
    pub build: extern "C" fn(KindFfi, RStr<'_>, RStr<'_>, &BuildContextFfi) -> RResult<ComponentFfi, ErrorFfi>,
}

impl RootModule for PluginRoot_Ref {
    declare_root_module_statics! {PluginRoot_Ref}
    const BASE_NAME: &'static str = "torchfit_plugin";
    const NAME: &'static str = "torchfit_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// Which form errors take across the boundary: [`ErrorFfi::from`] for a 1.0 host,
/// [`ErrorFfi::with_kind`] for a host that built the component through the extension root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorForm {
    /// Config errors keep their key; the rest become messages.
    #[default]
    V1_0,
    /// Every error keeps its kind.
    WithKind,
}

impl ErrorForm {
    /// `e` in this form.
    #[cold]
    #[inline(never)]
    pub fn encode(self, e: Error) -> ErrorFfi {
        match self {
            ErrorForm::V1_0 => ErrorFfi::from(e),
            ErrorForm::WithKind => ErrorFfi::with_kind(e),
        }
    }
}

/// Runs `f`, turning a panic into an error that names `what`: nothing unwinds across the ABI.
pub fn guard<T>(what: &str, f: impl FnOnce() -> crate::Result<T>) -> RResult<T, ErrorFfi> {
    guard_in(ErrorForm::V1_0, what, f)
}

/// [`guard`] with errors in `form`.
pub fn guard_in<T>(form: ErrorForm, what: &str, f: impl FnOnce() -> crate::Result<T>) -> RResult<T, ErrorFfi> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => RResult::ROk(v),
        Ok(Err(e)) => RResult::RErr(form.encode(e)),
        Err(payload) => RResult::RErr(panicked(what, payload)),
    }
}

/// The error a panic in `what` becomes (off the hot path of every hook).
#[cold]
#[inline(never)]
fn panicked(what: &str, payload: Box<dyn std::any::Any + Send>) -> ErrorFfi {
    let msg = crate::error::panic_message(&*payload);
    ErrorFfi { config_key: RNone, message: format!("panicked in {what}: {msg}").into() }
}

/// Like [`guard`] for calls that cannot report an error: a panic yields `fallback`.
pub fn guard_or<T>(what: &str, fallback: T, f: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            log::error!("plugin panicked in {what}");
            fallback
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_naming_the_hook() {
        let r = guard::<()>("on_epoch_end", || panic!("boom"));
        let e: Error = r.into_result().unwrap_err().into();
        assert_eq!(e.to_string(), "panicked in on_epoch_end: boom");
    }

    #[test]
    fn a_config_error_keeps_its_key_across_the_boundary() {
        let e: Error = ErrorFfi::from(Error::Config { key: "hidden[1]".into(), message: "bad".into() }).into();
        assert!(matches!(e, Error::Config { ref key, .. } if key == "hidden[1]"));
    }

    #[test]
    fn the_torch_tag_names_the_real_libtorch_version() {
        assert!(TORCH_TAG.ends_with("2.11.0"), "{TORCH_TAG}");
    }
}
