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
    /// A distributed job could not be joined: the store cannot be served or reached, or the
    /// other ranks did not join in time.
    #[error("distributed: {0}")]
    Rendezvous(String),
    /// A distributed job failed while training: a rank was lost, or the ranks disagree.
    #[error("distributed: {0}")]
    Distributed(String),
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

    /// Whether the error is the user's input (config, data file, plugin file, run directory)
    /// rather than the environment or a failure while running.
    pub fn is_bad_input(&self) -> bool {
        self.class() == Class::BadInput
    }

    /// What the error is, for the exit code ([`Class::exit_code`]).
    pub fn class(&self) -> Class {
        match self {
            Error::Io { source, .. } => Class::of_io(source),
            Error::Config { .. } | Error::Data(_) | Error::Plugin(_) | Error::RunDir { .. } => Class::BadInput,
            Error::Rendezvous(_) | Error::Device(_) => Class::Environment,
            Error::Component { source, .. } | Error::Callback { source, .. } => match source {
                torchfit_sdk::Error::Io { source, .. } => Class::of_io(source),
                other if other.is_bad_input() => Class::BadInput,
                _ => Class::Failure,
            },
            _ => Class::Failure,
        }
    }
}

/// The three kinds of error, each with its exit code: the README's rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The config, a data file, a plugin file or the run directory is wrong: exit 2.
    BadInput,
    /// The machine refused: a disk full, a permission, a read-only file system: exit 3.
    Environment,
    /// Something failed while training (libtorch, a callback, a non-finite loss): exit 1.
    Failure,
}

impl Class {
    /// An I/O error's class: what the machine refuses is the environment, the rest (a missing
    /// or malformed file) the input.
    fn of_io(e: &std::io::Error) -> Class {
        use std::io::ErrorKind::*;
        match e.kind() {
            StorageFull | QuotaExceeded | PermissionDenied | ReadOnlyFilesystem | OutOfMemory | FileTooLarge
            | ResourceBusy | ExecutableFileBusy | Interrupted => Class::Environment,
            _ => Class::BadInput,
        }
    }

    /// The process's exit code for an error of this class.
    pub fn exit_code(self) -> u8 {
        match self {
            Class::Failure => 1,
            Class::BadInput => 2,
            Class::Environment => 3,
        }
    }
}

impl Error {
    /// The error as a component's (a checkpoint a callback asked for that failed), keeping what
    /// decides its class: an I/O error's kind, a data error.
    pub fn into_sdk(self) -> torchfit_sdk::Error {
        match self {
            Error::Io { path, source } => torchfit_sdk::Error::Io { path: path.display().to_string(), source },
            Error::Data(message) => torchfit_sdk::Error::Data(message),
            e @ (Error::History(_) | Error::Config { .. }) => torchfit_sdk::Error::Data(e.to_string()),
            other => torchfit_sdk::Error::msg(other),
        }
    }
}

impl From<torchfit_sdk::Error> for Error {
    fn from(e: torchfit_sdk::Error) -> Self {
        match e {
            torchfit_sdk::Error::Torch(t) => Error::Torch(t),
            torchfit_sdk::Error::Io { path, source } => Error::Io { path: path.into(), source },
            other => Error::Data(other.to_string()),
        }
    }
}

/// The first line of a panic's message (tch's layers unwrap libtorch errors into panics whose
/// text carries libtorch's C++ frames after escaped or real newlines).
pub fn panic_summary(payload: &(dyn std::any::Any + Send)) -> String {
    let message = torchfit_sdk::error::panic_message(payload);
    let cut = [message.find("\\n"), message.find('\n')].into_iter().flatten().min().unwrap_or(message.len());
    message[..cut].trim_end().to_owned()
}

/// Runs `f`, a call into a component linked in-process, with a panic in it turned into an
/// error: an input the component did not expect must end the run with a message, never abort.
pub(crate) fn unpanic<T>(what: &str, f: impl FnOnce() -> torchfit_sdk::Result<T>) -> torchfit_sdk::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(torchfit_sdk::Error::msg(format!("panicked in {what}: {}", panic_summary(&*payload))))
    })
}

/// `Result` with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind) -> Error {
        Error::io(Path::new("f"), std::io::Error::from(kind))
    }

    #[test]
    fn each_class_of_error_has_its_exit_code() {
        assert_eq!(io(std::io::ErrorKind::NotFound).class().exit_code(), 2, "a missing file is the input's");
        assert_eq!(io(std::io::ErrorKind::StorageFull).class().exit_code(), 3);
        assert_eq!(io(std::io::ErrorKind::PermissionDenied).class().exit_code(), 3);
        assert_eq!(Error::Data("x".into()).class().exit_code(), 2);
        assert_eq!(Error::NonFinite { epoch: 1, batch: 2, value: f64::NAN }.class().exit_code(), 1);
        let full = torchfit_sdk::Error::io(Path::new("f"), std::io::Error::from(std::io::ErrorKind::StorageFull));
        let in_callback = Error::Callback { name: "cp".into(), event: "on_epoch_end", source: full };
        assert_eq!(in_callback.class(), Class::Environment);
        let config = torchfit_sdk::Error::Config { key: "k".into(), message: "m".into() };
        let component =
            Error::Component { kind: torchfit_sdk::ComponentKind::Criterion, name: "c".into(), source: config };
        assert_eq!(component.class(), Class::BadInput);
        let data =
            Error::Callback { name: "cb".into(), event: "on_epoch_end", source: torchfit_sdk::Error::Data("x".into()) };
        assert_eq!(data.class(), Class::BadInput, "a callback's data error is the input's, as a reader's is");
        let failed =
            Error::Callback { name: "cb".into(), event: "on_epoch_end", source: torchfit_sdk::Error::msg("x") };
        assert_eq!(failed.class(), Class::Failure);
        assert_eq!(Error::Device("no GPU".into()).class(), Class::Environment);
    }
}
