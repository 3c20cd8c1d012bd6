//! The engine's error type.

use std::path::{Path, PathBuf};

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration file or `--set` value was rejected. `source` names the file (or the
    /// `--set` argument) and `key` the dotted key at fault.
    #[error("{origin}: `{key}`: {message}")]
    Config {
        /// Where the value came from: a file path, `--set K=V`, or `set_params`.
        origin: String,
        /// Dotted path of the key at fault (`optimizer.lr`).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A component (model, criterion, reader, callback) failed.
    #[error("{kind} `{name}`: {source}")]
    Component {
        /// Kind of component.
        kind: torchfit_sdk::ComponentKind,
        /// Its name in the config.
        name: String,
        /// What it reported.
        source: torchfit_sdk::Error,
    },
    /// A callback hook failed.
    #[error("callback `{name}` failed in {event}: {source}")]
    Callback {
        /// The callback's name in the config.
        name: String,
        /// The hook that failed.
        event: &'static str,
        /// What it reported.
        source: torchfit_sdk::Error,
    },
    /// History was used wrongly or could not be read.
    #[error("history: {0}")]
    History(String),
    /// Data could not be read or is inconsistent.
    #[error("data: {0}")]
    Data(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder at fault.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// libtorch reported an error; it displays without libtorch's C++ frames
    /// ([`Error::detail`] keeps them).
    #[error("libtorch: {}", torchfit_sdk::error::torch_summary(.0))]
    Torch(#[from] tch::TchError),
    /// The requested device cannot be used.
    #[error("device: {0}")]
    Device(String),
    /// A plugin library was refused.
    #[error(transparent)]
    Plugin(#[from] crate::plugins::LoadError),
    /// A run directory cannot be used as asked.
    #[error("{}: {message}", dir.display())]
    RunDir {
        /// The run directory (`--out`).
        dir: PathBuf,
        /// Why it cannot be used.
        message: String,
    },
    /// A training loss was NaN or infinite and `on_nan = "stop"`.
    #[error("the training loss is {value} in epoch {epoch}, batch {batch}: the run stopped before that step (on_nan = \"stop\"; lower the learning rate, check the data for NaN, or set on_nan = \"skip_batch\")")]
    NonFinite {
        /// The epoch (from 1).
        epoch: usize,
        /// The batch of the epoch's training pass (from 1).
        batch: usize,
        /// The loss.
        value: f64,
    },
    /// The net was used before `fit` initialized it.
    #[error("the net is not initialized: call fit first")]
    NotInitialized,
}

impl Error {
    /// The whole text of the error, libtorch's C++ frames included (for a debug log).
    pub fn detail(&self) -> String {
        match self {
            Error::Torch(t) => format!("libtorch: {t}"),
            Error::Component { kind, name, source } => format!("{kind} `{name}`: {}", source.detail()),
            Error::Callback { name, event, source } => {
                format!("callback `{name}` failed in {event}: {}", source.detail())
            }
            other => other.to_string(),
        }
    }

    /// An [`Error::Io`] naming `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.to_path_buf(), source }
    }

    /// Whether the error is the user's input (config, data file) rather than a failure while
    /// running: the binary exits with 2 for these.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Config { .. } | Error::Data(_) | Error::Io { .. } | Error::Plugin(_) | Error::RunDir { .. } => true,
            Error::Component { source, .. } => source.is_bad_input(),
            _ => false,
        }
    }
}

impl From<torchfit_sdk::Error> for Error {
    fn from(e: torchfit_sdk::Error) -> Self {
        match e {
            torchfit_sdk::Error::Torch(t) => Error::Torch(t),
            other => Error::Data(other.to_string()),
        }
    }
}

/// `Result` with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
