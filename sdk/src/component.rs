//! What every component constructor is told about the run.

use std::path::PathBuf;

/// The kinds of component a plugin can provide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A [`crate::Callback`].
    Callback,
    /// A [`crate::Criterion`].
    Criterion,
    /// A [`crate::Model`].
    Model,
    /// A [`crate::DatasetReader`].
    Reader,
    /// A [`crate::Scorer`].
    Scorer,
}

impl Kind {
    /// Lower-case name as used in configs and listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Callback => "callback",
            Kind::Criterion => "criterion",
            Kind::Model => "model",
            Kind::Reader => "reader",
            Kind::Scorer => "scorer",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Constructor of a component from its config (JSON) and the run's facts.
pub type Ctor<T> = fn(&serde_json::Value, &BuildContext) -> crate::Result<Box<T>>;

/// A typed component constructor.
#[derive(Clone, Copy)]
pub enum Constructor {
    /// Builds a callback.
    Callback(Ctor<dyn crate::Callback>),
    /// Builds a criterion.
    Criterion(Ctor<dyn crate::Criterion>),
    /// Builds a model.
    Model(Ctor<dyn crate::Model>),
    /// Builds a dataset reader.
    Reader(Ctor<dyn crate::DatasetReader>),
    /// Builds a scorer.
    Scorer(Ctor<dyn crate::Scorer>),
}

impl Constructor {
    /// The kind of component it builds.
    pub fn kind(&self) -> Kind {
        match self {
            Constructor::Callback(_) => Kind::Callback,
            Constructor::Criterion(_) => Kind::Criterion,
            Constructor::Model(_) => Kind::Model,
            Constructor::Reader(_) => Kind::Reader,
            Constructor::Scorer(_) => Kind::Scorer,
        }
    }
}

/// Classification or regression: decides the default criterion, scoring and `predict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Targets are class indices (`i64`); the model outputs one logit per class.
    #[default]
    Classification,
    /// Targets are real values (`f32`); the model outputs one value per target column.
    Regression,
}

/// Facts about the run handed to every component constructor.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The name the component is configured under (a callback's name keys its history values).
    pub name: String,
    /// Shape of one input sample (without the batch dimension); empty for readers.
    pub input_shape: Vec<i64>,
    /// Number of model outputs: for classification the classes (1 + the largest label of the
    /// training and validation targets); for regression the size of the targets' second
    /// dimension (1 for targets of shape `[n]`). Targets of more dimensions (`[n, 8, 8]`) give
    /// their second dimension only (8): a model for them reads its output shape from its own
    /// config.
    pub n_outputs: i64,
    /// Classification or regression.
    pub task: Task,
    /// Device the run trains on.
    pub device: tch::Device,
    /// Directory relative paths in the config are resolved against (the config file's folder).
    pub base_dir: PathBuf,
    /// The run's seed: components with randomness of their own derive it from this.
    pub seed: u64,
}

impl BuildContext {
    /// `path` resolved against [`BuildContext::base_dir`] when relative.
    pub fn resolve(&self, path: impl AsRef<std::path::Path>) -> PathBuf {
        let path = path.as_ref();
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }
}
