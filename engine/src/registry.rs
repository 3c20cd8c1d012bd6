//! The component registry: every model, criterion, dataset reader and callback a run can name.

use crate::{Error, Result};
use torchfit_sdk::{BuildContext, Callback, ComponentKind, Criterion, DatasetReader, Model};

/// Constructor of a component from its config (JSON) and the run's facts.
pub type Ctor<T> = fn(&serde_json::Value, &BuildContext) -> torchfit_sdk::Result<Box<T>>;

/// A typed constructor.
#[derive(Clone, Copy)]
pub enum Constructor {
    /// Builds a callback.
    Callback(Ctor<dyn Callback>),
    /// Builds a criterion.
    Criterion(Ctor<dyn Criterion>),
    /// Builds a model.
    Model(Ctor<dyn Model>),
    /// Builds a dataset reader.
    Reader(Ctor<dyn DatasetReader>),
}

impl Constructor {
    fn kind(&self) -> ComponentKind {
        match self {
            Constructor::Callback(_) => ComponentKind::Callback,
            Constructor::Criterion(_) => ComponentKind::Criterion,
            Constructor::Model(_) => ComponentKind::Model,
            Constructor::Reader(_) => ComponentKind::Reader,
        }
    }
}

/// Where a component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Compiled into the engine.
    Builtin,
    /// Registered by the program using the engine as a library.
    InProcess,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Builtin => f.write_str("builtin"),
            Origin::InProcess => f.write_str("in-process"),
        }
    }
}

/// One registered component.
#[derive(Clone)]
pub struct Component {
    /// Its name in configs.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Where it comes from.
    pub origin: Origin,
    /// One line on what it is.
    pub summary: String,
    ctor: Constructor,
}

impl Component {
    /// Kind of component.
    pub fn kind(&self) -> ComponentKind {
        self.ctor.kind()
    }
}

/// All components a run can use.
#[derive(Clone, Default)]
pub struct Registry {
    components: Vec<Component>,
}

impl Registry {
    /// The components compiled into the engine.
    pub fn builtin() -> Self {
        use Constructor as C;
        let mut r = Registry::default();
        let builtins: [(&str, &str, Constructor); 9] = [
            ("mlp", "fully connected network (hidden, activation, dropout, batch_norm)", C::Model(crate::models::mlp::build)),
            ("cross_entropy", "cross-entropy over logits (weight, label_smoothing, ignore_index)", C::Criterion(crate::criteria::cross_entropy)),
            ("mse", "mean squared error", C::Criterion(crate::criteria::mse)),
            ("csv", "numeric CSV file, optionally .gz (path, target, header, delimiter, scale, shape)", C::Reader(crate::data::csv::build)),
            ("epoch_timer", "records `dur`, the epoch's wall time in seconds", C::Callback(crate::callbacks::epoch_timer::build)),
            ("passthrough_scoring", "epoch mean of a batch-level key, weighted by batch size, with `<name>_best`", C::Callback(crate::callbacks::passthrough::build)),
            ("epoch_scoring", "scores the epoch's cached predictions (accuracy) as `<name>` and `<name>_best`", C::Callback(crate::callbacks::epoch_scoring::build)),
            ("print_log", "prints the per-epoch table, best values marked", C::Callback(crate::callbacks::print_log::build)),
            ("progress_bar", "batch progress bar on a terminal", C::Callback(crate::callbacks::progress::build)),
        ];
        for (name, summary, ctor) in builtins {
            r.components.push(Component { name: name.into(), version: env!("CARGO_PKG_VERSION").into(), origin: Origin::Builtin, summary: summary.into(), ctor });
        }
        r
    }

    /// Registers a component compiled into the calling program; a name already registered for
    /// the same kind is an error naming both origins.
    pub fn add(&mut self, name: &str, version: &str, summary: &str, ctor: Constructor) -> Result<()> {
        let kind = ctor.kind();
        if let Some(c) = self.components.iter().find(|c| c.kind() == kind && c.name == name) {
            return Err(Error::Component {
                kind,
                name: name.into(),
                source: torchfit_sdk::Error::msg(format!("registered twice: by {} and by {}", c.origin, Origin::InProcess)),
            });
        }
        self.components.push(Component { name: name.into(), version: version.into(), origin: Origin::InProcess, summary: summary.into(), ctor });
        Ok(())
    }

    /// Every component, in registration order.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    fn find(&self, kind: ComponentKind, name: &str) -> Result<&Component> {
        self.components.iter().find(|c| c.kind() == kind && c.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.components.iter().filter(|c| c.kind() == kind).map(|c| c.name.as_str()).collect();
            Error::Component { kind, name: name.into(), source: torchfit_sdk::Error::Config { key: "name".into(), message: format!("no {kind} named `{name}`; known: {}", known.join(", ")) } }
        })
    }

    fn wrap<T>(kind: ComponentKind, name: &str, r: torchfit_sdk::Result<T>) -> Result<T> {
        r.map_err(|source| Error::Component { kind, name: name.into(), source })
    }

    /// Builds the model `name`.
    pub fn model(&self, name: &str, config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Model>> {
        match self.find(ComponentKind::Model, name)?.ctor {
            Constructor::Model(f) => Self::wrap(ComponentKind::Model, name, f(config, ctx)),
            _ => unreachable!("find filters by kind"),
        }
    }

    /// Builds the criterion `name`.
    pub fn criterion(&self, name: &str, config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Criterion>> {
        match self.find(ComponentKind::Criterion, name)?.ctor {
            Constructor::Criterion(f) => Self::wrap(ComponentKind::Criterion, name, f(config, ctx)),
            _ => unreachable!("find filters by kind"),
        }
    }

    /// Builds the dataset reader `name`.
    pub fn reader(&self, name: &str, config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn DatasetReader>> {
        match self.find(ComponentKind::Reader, name)?.ctor {
            Constructor::Reader(f) => Self::wrap(ComponentKind::Reader, name, f(config, ctx)),
            _ => unreachable!("find filters by kind"),
        }
    }

    /// Builds the callback type `kind_name`.
    pub fn callback(&self, kind_name: &str, config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Callback>> {
        match self.find(ComponentKind::Callback, kind_name)?.ctor {
            Constructor::Callback(f) => Self::wrap(ComponentKind::Callback, &ctx.name, f(config, ctx)),
            _ => unreachable!("find filters by kind"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let ctx = BuildContext { name: "module".into(), input_shape: vec![2], n_outputs: 2, task: Default::default(), device: tch::Device::Cpu, base_dir: ".".into() };
        let err = Registry::builtin().model("resnet99", &serde_json::json!({}), &ctx).err().unwrap().to_string();
        assert!(err.contains("resnet99") && err.contains("mlp"), "{err}");
    }

    #[test]
    fn a_duplicate_name_is_refused_naming_both_origins() {
        let mut r = Registry::builtin();
        let err = r.add("mlp", "1.0", "another mlp", Constructor::Model(crate::models::mlp::build)).unwrap_err().to_string();
        assert!(err.contains("builtin") && err.contains("in-process"), "{err}");
        r.add("mlp", "1.0", "a criterion may share a model's name", Constructor::Criterion(crate::criteria::mse)).unwrap();
    }

    #[test]
    fn builtin_names_are_unique_per_kind() {
        let r = Registry::builtin();
        for (i, a) in r.components().iter().enumerate() {
            assert!(!r.components()[i + 1..].iter().any(|b| a.kind() == b.kind() && a.name == b.name), "{} twice", a.name);
        }
    }
}
