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
    /// An error raised by libtorch. It displays libtorch's message without the C++ frames that
    /// follow it ([`torch_summary`]); [`Error::detail`] keeps them.
    #[error("libtorch: {}", torch_summary(.0))]
    Torch(#[from] tch::TchError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file at fault.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Input data is wrong or cannot be read as data (a malformed file, a label out of range):
    /// like [`Error::Config`] and [`Error::Io`], the user's input, not a failure of the run.
    #[error("{0}")]
    Data(String),
    /// The other side of the plugin boundary is older and does not provide `what`.
    #[error("{what} needs a torchfit host with SDK {needs} or later")]
    Unsupported {
        /// The service, hook or request (`optimizer.set_hyper`).
        what: String,
        /// The SDK version that added it.
        needs: crate::SdkVersion,
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

    /// An [`Error::Config`]: the value of `key` (in the component's own section; the host
    /// prefixes the section) is wrong because of `message`.
    pub fn config(key: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::Config { key: key.into(), message: message.to_string() }
    }

    /// An [`Error::Data`] from anything printable.
    pub fn data(message: impl std::fmt::Display) -> Self {
        Error::Data(message.to_string())
    }

    /// An [`Error::Unsupported`]: `what` needs an SDK of version `needs`.
    pub fn unsupported(what: impl Into<String>, needs: crate::SdkVersion) -> Self {
        Error::Unsupported { what: what.into(), needs }
    }

    /// Whether this is the user's input (config, data, files) rather than a failure of the run.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Error::Config { .. } | Error::Io { .. } | Error::Data(_))
    }

    /// The whole text of the error, libtorch's C++ frames included (for a debug log).
    pub fn detail(&self) -> String {
        match self {
            Error::Torch(e) => format!("libtorch: {e}"),
            other => other.to_string(),
        }
    }

    /// An [`Error::Io`] naming `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), source }
    }
}

/// The message a panic carried (`panic!` with a literal or a formatted string).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// libtorch's message without its C++ context: the lines before `Exception raised from ...`
/// (the frames of the backtrace), joined into one line.
pub fn torch_summary(e: &tch::TchError) -> String {
    let text = match e {
        tch::TchError::Torch(message) => message.clone(),
        other => other.to_string(),
    };
    let lines: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("Exception raised from") && !l.starts_with("frame #"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        text.lines().next().unwrap_or_default().to_owned()
    } else {
        lines.join(" ")
    }
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_libtorch_error_displays_without_its_cpp_frames() {
        let text = "shape '[32, 8, 8]' is invalid for input of size 1024\nException raised from infer_size_impl at /pytorch/aten/src/ATen/InferSize.h:82 (most recent call first):\nframe #0: c10::Error::Error(c10::SourceLocation, std::string) + 0x98 (0x7f in libc10.so)\nframe #1: ...";
        let e = Error::Torch(tch::TchError::Torch(text.into()));
        assert_eq!(e.to_string(), "libtorch: shape '[32, 8, 8]' is invalid for input of size 1024");
        assert!(e.detail().contains("frame #0"));
    }
}
