//! The component registry: every model, criterion, dataset reader and callback a run can name.
//!
//! Three sources merge into one registry: components built into the engine, components of
//! plugin crates linked into the program (registered with `inventory` by `export_plugin!`), and
//! components of plugin libraries loaded at run time ([`crate::plugins`]). A name may be used
//! once per kind; a second registration is an error naming both origins.

use crate::plugins::Library;
use crate::{Error, Result};
use abi_stable::std_types::RBox;
use std::path::PathBuf;
use torchfit_sdk::ffi::ext::{requests, ComponentExtFfi, DynCallbackExt, RequestsFfi_TO, SDK_MINOR};
use torchfit_sdk::ffi::{
    BuildContextFfi, ComponentFfi, DynCallback, DynCriterion, DynModel, DynReader, DynScorer, KindFfi,
};
use torchfit_sdk::{BuildContext, Callback, ComponentKind, Constructor, Criterion, DatasetReader, Model, Scorer};

/// Where a component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Compiled into the engine.
    Builtin,
    /// A plugin crate linked into the program (the package name).
    InProcess(String),
    /// A plugin library loaded at run time.
    Library(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Builtin => f.write_str("builtin"),
            Origin::InProcess(p) => write!(f, "in-process ({p})"),
            Origin::Library(p) => write!(f, "{}", p.display()),
        }
    }
}

/// How a component is built.
#[derive(Clone)]
enum Source {
    Static(Constructor),
    Library(Library),
}

/// One registered component.
#[derive(Clone)]
pub struct Component {
    /// Its kind.
    pub kind: ComponentKind,
    /// Its name in configs.
    pub name: String,
    /// Its version (the providing package's).
    pub version: String,
    /// Where it comes from.
    pub origin: Origin,
    /// One line on what it is.
    pub summary: String,
    source: Source,
}

/// All components a run can use.
#[derive(Clone, Default)]
pub struct Registry {
    components: Vec<Component>,
}

impl Registry {
    /// The components compiled into the engine and those of plugin crates linked into the
    /// program.
    pub fn builtin() -> Self {
        use Constructor as C;
        let mut r = Registry::default();
        let builtins: [(&str, &str, Constructor); 5] = [
            (
                "epoch_timer",
                "records `dur`, the epoch's wall time in seconds",
                C::Callback(crate::callbacks::epoch_timer::build),
            ),
            (
                "passthrough_scoring",
                "epoch mean of a batch-level key, weighted by batch size, with `<name>_best`",
                C::Callback(crate::callbacks::passthrough::build),
            ),
            (
                "accuracy_scoring",
                "the accuracy of the epoch's cached predictions as `<name>` and `<name>_best` (the default valid_acc)",
                C::Callback(crate::callbacks::accuracy_scoring::build),
            ),
            (
                "print_log",
                "prints the per-epoch table, best values marked",
                C::Callback(crate::callbacks::print_log::build),
            ),
            ("progress_bar", "batch progress bar on a terminal", C::Callback(crate::callbacks::progress::build)),
        ];
        for (name, summary, ctor) in builtins {
            r.components.push(Component {
                kind: ctor.kind(),
                name: name.into(),
                version: env!("CARGO_PKG_VERSION").into(),
                origin: Origin::Builtin,
                summary: summary.into(),
                source: Source::Static(ctor),
            });
        }
        for reg in torchfit_sdk::ffi::export::registrations() {
            // Two linked crates registering one name is a programming error; report it at first use.
            if let Err(e) = r.push(Component {
                kind: reg.ctor.kind(),
                name: reg.name.into(),
                version: reg.version.into(),
                origin: Origin::InProcess(reg.plugin.into()),
                summary: reg.summary.into(),
                source: Source::Static(reg.ctor),
            }) {
                log::error!("{e}");
            }
        }
        r
    }

    fn push(&mut self, c: Component) -> Result<()> {
        if let Some(old) = self.components.iter().find(|o| o.kind == c.kind && o.name == c.name) {
            return Err(Error::Plugin(crate::plugins::LoadError::Duplicate {
                kind: c.kind,
                name: c.name.clone(),
                first: old.origin.to_string(),
                second: c.origin.to_string(),
            }));
        }
        self.components.push(c);
        Ok(())
    }

    /// Registers a component compiled into the calling program; a name already registered for
    /// the same kind is an error naming both origins.
    pub fn add(&mut self, name: &str, version: &str, summary: &str, ctor: Constructor) -> Result<()> {
        self.push(Component {
            kind: ctor.kind(),
            name: name.into(),
            version: version.into(),
            origin: Origin::InProcess("program".into()),
            summary: summary.into(),
            source: Source::Static(ctor),
        })
    }

    /// Registers every component of a loaded library.
    pub fn add_library(&mut self, lib: &Library) -> Result<()> {
        for d in lib.components() {
            self.push(Component {
                kind: d.kind.into(),
                name: d.name.to_string(),
                version: lib.version().into(),
                origin: Origin::Library(lib.path().to_path_buf()),
                summary: d.summary.to_string(),
                source: Source::Library(lib.clone()),
            })?;
        }
        Ok(())
    }

    /// Every component, in registration order.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    fn find(&self, kind: ComponentKind, name: &str) -> Result<&Component> {
        self.components.iter().find(|c| c.kind == kind && c.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.components.iter().filter(|c| c.kind == kind).map(|c| c.name.as_str()).collect();
            // The key the config named it with: a callback section's `type` (its own name when
            // absent), any other section's `name`.
            let (key, hint) = match kind {
                ComponentKind::Callback => ("type", " (a callback section's `type` defaults to its name)"),
                _ => ("name", ""),
            };
            Error::Component {
                kind,
                name: name.into(),
                source: torchfit_sdk::Error::Config {
                    key: key.into(),
                    message: format!("no {kind} named `{name}`{hint}; known: {}", known.join(", ")),
                },
            }
        })
    }

    /// Builds component `name` of `kind`: `pick` takes the kind's constructor, `wrap` the kind's
    /// object from a library (built through its extension root when it has one, SDK 1.1, else
    /// through its 1.0 root). Errors name a callback by its config name (`ctx.name`), other
    /// components by their registered name.
    fn build<T: ?Sized>(
        &self,
        kind: ComponentKind,
        name: &str,
        config: &serde_json::Value,
        ctx: &BuildContext,
        pick: fn(Constructor) -> Option<torchfit_sdk::Ctor<T>>,
        wrap: fn(Built) -> Option<Box<T>>,
    ) -> Result<Box<T>> {
        let c = self.find(kind, name)?;
        let built = match &c.source {
            Source::Static(ctor) => {
                let build = pick(*ctor).expect("find filters by kind");
                crate::error::unpanic("its constructor", || build(config, ctx))
            }
            Source::Library(lib) => {
                let (kind, config, ctx) = (KindFfi::from(kind), config.to_string(), BuildContextFfi::from(ctx));
                let built = match lib.ext() {
                    Some(ext) => {
                        (ext.build)(kind, name.into(), config.as_str().into(), &ctx, SDK_MINOR).map(Built::Ext)
                    }
                    None => (lib.root().build())(kind, name.into(), config.as_str().into(), &ctx).map(Built::V1),
                };
                built.into_result().map_err(torchfit_sdk::Error::from).and_then(|obj| {
                    wrap(obj).ok_or_else(|| torchfit_sdk::Error::msg("the library built a component of another kind"))
                })
            }
        };
        let display = if kind == ComponentKind::Callback { &ctx.name } else { name };
        built.map_err(|source| Error::Component { kind, name: display.into(), source })
    }

    /// Builds the model `name`.
    pub fn model(&self, name: &str, config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Model>> {
        let pick = |c| if let Constructor::Model(f) = c { Some(f) } else { None };
        let wrap = |b: Built| match b {
            Built::Ext(ComponentExtFfi::Other(ComponentFfi::Model(m), requests)) => {
                Some(Box::new(DynModel::new(m, Some(requests))) as Box<dyn Model>)
            }
            Built::V1(ComponentFfi::Model(m)) => Some(Box::new(DynModel::new(m, None)) as Box<dyn Model>),
            _ => None,
        };
        self.build(ComponentKind::Model, name, config, ctx, pick, wrap)
    }

    /// Builds the criterion `name`.
    pub fn criterion(&self, name: &str, config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Criterion>> {
        let pick = |c| if let Constructor::Criterion(f) = c { Some(f) } else { None };
        let wrap = |b: Built| match b.base()? {
            ComponentFfi::Criterion(m) => Some(Box::new(DynCriterion(m)) as Box<dyn Criterion>),
            _ => None,
        };
        self.build(ComponentKind::Criterion, name, config, ctx, pick, wrap)
    }

    /// Builds the dataset reader `name`.
    pub fn reader(&self, name: &str, config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn DatasetReader>> {
        let pick = |c| if let Constructor::Reader(f) = c { Some(f) } else { None };
        let wrap = |b: Built| match b {
            Built::Ext(ComponentExtFfi::Other(ComponentFfi::Reader(m), requests)) => {
                Some(Box::new(DynReader(m, Some(requests))) as Box<dyn DatasetReader>)
            }
            Built::V1(ComponentFfi::Reader(m)) => Some(Box::new(DynReader(m, None)) as Box<dyn DatasetReader>),
            _ => None,
        };
        self.build(ComponentKind::Reader, name, config, ctx, pick, wrap)
    }

    /// Builds the scorer `name`.
    pub fn scorer(&self, name: &str, config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Scorer>> {
        let pick = |c| if let Constructor::Scorer(f) = c { Some(f) } else { None };
        let wrap = |b: Built| match b {
            Built::Ext(ComponentExtFfi::Other(ComponentFfi::Scorer(m), mut requests)) => {
                let lower_is_better = describe(&mut requests).and_then(|d| d["lower_is_better"].as_bool());
                Some(Box::new(DynScorer(m, lower_is_better)) as Box<dyn Scorer>)
            }
            Built::V1(ComponentFfi::Scorer(m)) => Some(Box::new(DynScorer(m, None)) as Box<dyn Scorer>),
            _ => None,
        };
        self.build(ComponentKind::Scorer, name, config, ctx, pick, wrap)
    }

    /// Builds the callback type `kind_name` (configured under `ctx.name`).
    pub fn callback(
        &self,
        kind_name: &str,
        config: &serde_json::Value,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Callback>> {
        let pick = |c| if let Constructor::Callback(f) = c { Some(f) } else { None };
        let wrap = |b: Built| match b {
            Built::Ext(ComponentExtFfi::Callback(c)) => Some(Box::new(DynCallbackExt::new(c)) as Box<dyn Callback>),
            Built::V1(ComponentFfi::Callback(c)) => Some(Box::new(DynCallback::new(c)) as Box<dyn Callback>),
            _ => None,
        };
        self.build(ComponentKind::Callback, kind_name, config, ctx, pick, wrap)
    }
}

/// What a component built through the extension root says of itself: its `describe` reply.
fn describe(requests: &mut RequestsFfi_TO<'static, RBox<()>>) -> Option<serde_json::Value> {
    let reply = requests.call(requests::DESCRIBE.into(), "null".into(), Default::default()).into_result().ok()?;
    // SAFETY: the plugin's requests give their reply's tensors.
    unsafe { reply.take() }.ok().map(|(json, _)| json)
}

/// A component a library built: through its 1.0 root, or through its extension root.
enum Built {
    V1(ComponentFfi),
    Ext(ComponentExtFfi),
}

impl Built {
    /// The component behind its 1.0 interface (every kind but a 1.1 callback).
    fn base(self) -> Option<ComponentFfi> {
        match self {
            Built::V1(c) | Built::Ext(ComponentExtFfi::Other(c, _)) => Some(c),
            Built::Ext(ComponentExtFfi::Callback(_)) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let err = Registry::builtin()
            .callback("print_lgo", &serde_json::json!({}), &torchfit_sdk::testing::context("cb"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("print_lgo") && err.contains("print_log"), "{err}");
    }

    #[test]
    fn a_duplicate_name_is_refused_naming_both_origins_and_kinds_have_their_own_names() {
        let mut r = Registry::builtin();
        let err = r
            .add("print_log", "1.0", "another", Constructor::Callback(crate::callbacks::print_log::build))
            .unwrap_err()
            .to_string();
        assert!(err.contains("builtin") && err.contains("in-process (program)"), "{err}");
        let scorer: torchfit_sdk::Ctor<dyn Scorer> = |_, _| Err(torchfit_sdk::Error::msg("unused"));
        r.add("print_log", "1.0", "a scorer may share a callback's name", Constructor::Scorer(scorer)).unwrap();
    }

    #[test]
    fn builtin_names_are_unique_per_kind() {
        let r = Registry::builtin();
        for (i, a) in r.components().iter().enumerate() {
            assert!(!r.components()[i + 1..].iter().any(|b| a.kind == b.kind && a.name == b.name), "{} twice", a.name);
        }
    }
}
