//! The error type shared by the engine and plugins.

/// Everything a plugin or the engine can report instead of panicking.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value was rejected; `key` is the full dotted path (`optimizer.lr`).
    #[error("`{key}`: {message}")]
    Config {
        /// Dotted path of the offending key, relative to the component's section.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A history key was read before anything wrote it.
    #[error("history has no `{key}` for epoch {epoch}; it is written by {writer}")]
    MissingHistoryKey {
        /// The key that was looked up.
        key: String,
        /// The epoch (1-based) it was looked up in.
        epoch: usize,
        /// The component expected to write it (e.g. "the `valid_loss` callback").
        writer: String,
    },
    /// An error raised by libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file at fault.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Anything else, described in a sentence.
    #[error("{0}")]
    Msg(String),
}

impl Error {
    /// An [`Error::Msg`] from anything printable.
    pub fn msg(message: impl std::fmt::Display) -> Self {
        Error::Msg(message.to_string())
    }

    /// An [`Error::Io`] naming `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), source }
    }
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
