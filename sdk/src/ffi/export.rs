//! What [`export_plugin!`](crate::export_plugin) expands to: in-process registration with
//! `inventory`, the library's root module, and log forwarding to the host.

use super::callback::{CallbackAdapter, CallbackFfi_TO};
use super::components::{
    CriterionAdapter, CriterionFfi_TO, ModelAdapter, ModelFfi_TO, ReaderAdapter, ReaderFfi_TO, ScorerAdapter,
    ScorerFfi_TO, SharedModel, SharedReader,
};
use super::ext::{
    CallbackExtAdapter, CallbackExtFfi_TO, ComponentExtFfi, ExtHeader, RequestsAdapter, RequestsFfi_TO, SdkExtFfi,
    SDK_MINOR,
};
use super::{guard, guard_in, BuildContextFfi, ComponentDescFfi, ComponentFfi, ErrorFfi, ErrorForm, KindFfi};
use crate::{BuildContext, ComponentKind, Constructor, Error, SdkVersion};
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RBox, RResult, RStr, RVec};
use abi_stable::StableAbi;

/// One component registered by [`export_plugin!`](crate::export_plugin), collected with
/// `inventory`: in a plugin library, its own components; in a program, those of every plugin
/// crate it links.
pub struct Registration {
    /// Name in configs.
    pub name: &'static str,
    /// One line on what it is.
    pub summary: &'static str,
    /// Package that provides it.
    pub plugin: &'static str,
    /// That package's version.
    pub version: &'static str,
    /// Its constructor.
    pub ctor: Constructor,
}

inventory::collect!(Registration);

/// Every component registered in this binary image.
pub fn registrations() -> impl Iterator<Item = &'static Registration> {
    inventory::iter::<Registration>.into_iter()
}

/// Root-module function: this library's components.
pub extern "C" fn components() -> RVec<ComponentDescFfi> {
    registrations()
        .map(|r| ComponentDescFfi { kind: r.ctor.kind().into(), name: r.name.into(), summary: r.summary.into() })
        .collect()
}

/// Looks up the registration of component `name` of `kind` and parses its config.
fn find(kind: KindFfi, name: RStr<'_>, config: RStr<'_>) -> Result<(&'static Registration, serde_json::Value), Error> {
    let kind: ComponentKind = kind.into();
    let reg = registrations()
        .find(|r| r.ctor.kind() == kind && r.name == name.as_str())
        .ok_or_else(|| Error::msg(format!("this library has no {kind} named `{name}`")))?;
    let config = serde_json::from_str(config.as_str()).map_err(|e| Error::msg(format!("invalid config JSON: {e}")))?;
    Ok((reg, config))
}

/// A callback that needs a newer host than one of SDK `host` is refused, naming the version.
fn check_host(name: &str, cb: &dyn crate::Callback, host: SdkVersion) -> Result<(), Error> {
    let needs = cb.requires_sdk();
    if needs > host {
        return Err(Error::msg(format!(
            "callback `{name}` needs a torchfit host with SDK {needs} or later; this host has SDK {host} (update torchfit)"
        )));
    }
    Ok(())
}

/// A 1.0 component behind its 1.0 interface, errors in `form`.
fn component(
    ctor: Constructor,
    config: &serde_json::Value,
    ctx: &BuildContext,
    form: ErrorForm,
) -> Result<ComponentFfi, Error> {
    Ok(match ctor {
        Constructor::Callback(f) => {
            ComponentFfi::Callback(CallbackFfi_TO::from_value(CallbackAdapter(f(config, ctx)?), TD_Opaque))
        }
        Constructor::Criterion(f) => {
            ComponentFfi::Criterion(CriterionFfi_TO::from_value(CriterionAdapter(f(config, ctx)?, form), TD_Opaque))
        }
        Constructor::Model(f) => {
            ComponentFfi::Model(ModelFfi_TO::from_value(ModelAdapter(f(config, ctx)?, form), TD_Opaque))
        }
        Constructor::Reader(f) => {
            ComponentFfi::Reader(ReaderFfi_TO::from_value(ReaderAdapter(f(config, ctx)?, form), TD_Opaque))
        }
        Constructor::Scorer(f) => {
            ComponentFfi::Scorer(ScorerFfi_TO::from_value(ScorerAdapter(f(config, ctx)?, form), TD_Opaque))
        }
    })
}

/// Root-module function: builds one of this library's components for a 1.0 host (a host of SDK
/// 1.1 or later builds through [`build_ext`]).
pub extern "C" fn build(
    kind: KindFfi,
    name: RStr<'_>,
    config: RStr<'_>,
    ctx: &BuildContextFfi,
) -> RResult<ComponentFfi, ErrorFfi> {
    guard("build", || {
        let (reg, config) = find(kind, name, config)?;
        let ctx = BuildContext::from(ctx);
        if let Constructor::Callback(f) = reg.ctor {
            let cb = f(&config, &ctx)?;
            check_host(reg.name, cb.as_ref(), SdkVersion::V1_0)?;
            return Ok(ComponentFfi::Callback(CallbackFfi_TO::from_value(CallbackAdapter(cb), TD_Opaque)));
        }
        component(reg.ctor, &config, &ctx, ErrorForm::V1_0)
    })
}

/// Extension-root function: builds one of this library's components with the extension
/// interfaces, for a host of SDK minor `host_minor`.
pub extern "C" fn build_ext(
    kind: KindFfi,
    name: RStr<'_>,
    config: RStr<'_>,
    ctx: &BuildContextFfi,
    host_minor: u32,
) -> RResult<ComponentExtFfi, ErrorFfi> {
    guard_in(ErrorForm::WithKind, "build", || {
        let (reg, config) = find(kind, name, config)?;
        let ctx = BuildContext::from(ctx);
        Ok(match reg.ctor {
            Constructor::Callback(f) => {
                let cb = f(&config, &ctx)?;
                check_host(reg.name, cb.as_ref(), SdkVersion::v1(host_minor))?;
                ComponentExtFfi::Callback(CallbackExtFfi_TO::from_value(CallbackExtAdapter(cb), TD_Opaque))
            }
            Constructor::Scorer(f) => {
                let scorer = f(&config, &ctx)?;
                let description = serde_json::json!({"lower_is_better": scorer.lower_is_better()});
                let base = ComponentFfi::Scorer(ScorerFfi_TO::from_value(
                    ScorerAdapter(scorer, ErrorForm::WithKind),
                    TD_Opaque,
                ));
                let requests = RequestsAdapter { description, ..RequestsAdapter::default() };
                ComponentExtFfi::Other(base, RequestsFfi_TO::from_value(requests, TD_Opaque))
            }
            Constructor::Reader(f) => {
                let reader = SharedReader::new(f(&config, &ctx)?);
                let base = ComponentFfi::Reader(ReaderFfi_TO::from_value(
                    ReaderAdapter(reader.clone(), ErrorForm::WithKind),
                    TD_Opaque,
                ));
                let requests = RequestsAdapter { reader: Some(reader), ..RequestsAdapter::default() };
                ComponentExtFfi::Other(base, RequestsFfi_TO::from_value(requests, TD_Opaque))
            }
            Constructor::Model(f) => {
                let model = SharedModel::new(f(&config, &ctx)?);
                let base = ComponentFfi::Model(ModelFfi_TO::from_value(
                    ModelAdapter(model.clone(), ErrorForm::WithKind),
                    TD_Opaque,
                ));
                let requests = RequestsAdapter { model: Some(model), ..RequestsAdapter::default() };
                ComponentExtFfi::Other(base, RequestsFfi_TO::from_value(requests, TD_Opaque))
            }
            other => {
                let base = component(other, &config, &ctx, ErrorForm::WithKind)?;
                let requests = RequestsAdapter::default();
                ComponentExtFfi::Other(base, RequestsFfi_TO::from_value(requests, TD_Opaque))
            }
        })
    })
}

/// The extension root every plugin library exports (through [`EXT_SYMBOL`](super::ext::EXT_SYMBOL)).
pub static SDK_EXT: SdkExtFfi = SdkExtFfi { sdk_minor: SDK_MINOR, build: build_ext };

/// What the library's extension symbol returns.
pub extern "C" fn ext_header() -> ExtHeader {
    super::ext::header(&SDK_EXT)
}

/// The host's log sink, handed to each library at load time (a library's `log` calls would
/// otherwise go to its own, unset, global logger).
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct LogSink {
    /// Receives `(level 1 = error .. 5 = trace, target, message)`.
    pub log: extern "C" fn(u8, RStr<'_>, RStr<'_>),
}

struct Forward(LogSink);

impl log::Log for Forward {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let message = record.args().to_string();
        (self.0.log)(record.level() as u8, record.target().into(), message.as_str().into());
    }
    fn flush(&self) {}
}

/// Root-module function: installs the host's sink as this library's logger, and a panic hook
/// that sends a panic's report there at debug level. The library's Rust runtime is its own: its
/// default hook would print the panic's report to standard error, though every entry point
/// catches the panic and the host reports it in one line.
pub extern "C" fn set_logger(sink: LogSink) {
    if log::set_boxed_logger(Box::new(Forward(sink))).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
    std::panic::set_hook(Box::new(|info| log::debug!("{info}")));
}

/// The host's side of [`LogSink`]: forwards to the host's `log` logger.
pub extern "C" fn host_log_sink(level: u8, target: RStr<'_>, message: RStr<'_>) {
    let level = match level {
        1 => log::Level::Error,
        2 => log::Level::Warn,
        3 => log::Level::Info,
        4 => log::Level::Debug,
        _ => log::Level::Trace,
    };
    log::logger().log(
        &log::Record::builder().level(level).target(target.as_str()).args(format_args!("{}", message.as_str())).build(),
    );
}

#[doc(hidden)]
pub type BoxedUnit = RBox<()>;

/// Exports a plugin library: registers its components with `inventory` (so a program linking the
/// crate finds them in-process) and exports the root module the `torchfit` host loads.
///
/// ```ignore
/// torchfit_sdk::export_plugin! {
///     name: "my-plugins",
///     components: [
///         Callback("grad_norm", build_grad_norm, "records the gradient norm as `grad_norm`"),
///     ],
/// }
/// ```
///
/// The root module is exported only with the crate's `export` feature (on by default in the
/// plugin template): a program that links several plugin crates as rlibs turns it off, since
/// each library's root module has the same symbol name.
#[macro_export]
macro_rules! export_plugin {
    (name: $name:expr, components: [$($kind:ident($cname:expr, $ctor:path, $summary:expr)),* $(,)?] $(,)?) => {
        $(
            $crate::inventory::submit! {
                $crate::ffi::Registration {
                    name: $cname,
                    summary: $summary,
                    plugin: $name,
                    version: env!("CARGO_PKG_VERSION"),
                    ctor: $crate::Constructor::$kind($ctor),
                }
            }
        )*

        #[cfg(feature = "export")]
        #[doc(hidden)]
        pub fn __torchfit_root_module() -> $crate::ffi::PluginRoot_Ref {
            use $crate::abi_stable::prefix_type::PrefixTypeTrait;
            $crate::ffi::PluginRoot {
                abi_version: $crate::ffi::ABI_VERSION,
                torch_tag: $crate::abi_stable::std_types::RStr::from_str($crate::ffi::TORCH_TAG),
                name: $crate::abi_stable::std_types::RStr::from_str($name),
                version: $crate::abi_stable::std_types::RStr::from_str(env!("CARGO_PKG_VERSION")),
                set_logger: $crate::ffi::export::set_logger,
                components: $crate::ffi::export::components,
                build: $crate::ffi::export::build,
            }
            .leak_into_prefix()
        }

        /// The SDK 1.1 extension root (see `torchfit_sdk::ffi::ext`).
        #[cfg(feature = "export")]
        #[no_mangle]
        #[doc(hidden)]
        pub extern "C" fn torchfit_sdk_ext() -> $crate::ffi::ext::ExtHeader {
            $crate::ffi::export::ext_header()
        }

        #[cfg(feature = "export")]
        #[no_mangle]
        #[doc(hidden)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::abi_stable::library::LibHeader = {
            pub extern "C" fn _sabi_erased_module() -> $crate::abi_stable::library::RootModuleResult {
                $crate::abi_stable::library::__call_root_module_loader(__torchfit_root_module)
            }
            // SAFETY: this is what abi_stable's #[export_root_module] expands to, with paths
            // through the SDK's re-export so that plugins need no abi_stable dependency.
            unsafe {
                $crate::abi_stable::library::LibHeader::from_constructor::<$crate::ffi::PluginRoot_Ref>(
                    _sabi_erased_module,
                    $crate::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_exported_symbol_is_the_one_abi_stable_looks_up() {
        assert_eq!(abi_stable::library::ROOT_MODULE_LOADER_NAME, "_1as_0lib_1header_0root_bmodule_bloader");
    }
}
