//! What a checkpoint holds and where its files are. Callbacks decide when to save or restore
//! ([`crate::Host::save_checkpoint`], [`crate::Host::load_checkpoint`]); the engine acts.

use std::path::{Path, PathBuf};

/// The parts of a run a checkpoint saves or restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Parts {
    /// Model parameters and buffers.
    pub params: bool,
    /// Optimizer state (step counts, moments, learning rates).
    pub optimizer: bool,
    /// The state of every callback (schedulers included), by callback name.
    pub callbacks: bool,
    /// The history.
    pub history: bool,
}

impl Parts {
    /// Everything: what exact resumption needs.
    pub const ALL: Parts = Parts { params: true, optimizer: true, callbacks: true, history: true };
    /// Only the model parameters (e.g. to load the best model at train end).
    pub const PARAMS: Parts = Parts { params: true, optimizer: false, callbacks: false, history: false };
}

/// The files of checkpoint `prefix` under `dir` (skorch's names with `fn_prefix`; tensors in
/// safetensors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    /// `<prefix>params.safetensors`: readable by `safetensors.torch.load_file`.
    pub params: PathBuf,
    /// `<prefix>optimizer.safetensors`.
    pub optimizer: PathBuf,
    /// `<prefix>callbacks.json`: `{callback name: state}`.
    pub callbacks: PathBuf,
    /// `<prefix>history.json`: skorch's format.
    pub history: PathBuf,
    /// `<prefix>checkpoint.commit`: present only while a save is between its commit point and
    /// its last rename.
    pub commit: PathBuf,
}

impl Files {
    /// The files of checkpoint `prefix` under `dir`.
    pub fn new(dir: &Path, prefix: &str) -> Self {
        Files {
            params: dir.join(format!("{prefix}params.safetensors")),
            optimizer: dir.join(format!("{prefix}optimizer.safetensors")),
            callbacks: dir.join(format!("{prefix}callbacks.json")),
            history: dir.join(format!("{prefix}history.json")),
            commit: dir.join(format!("{prefix}checkpoint.commit")),
        }
    }

    /// Whether `path` (one of these files) holds a checkpoint: it exists, or a save that passed
    /// its commit point left it staged (the engine completes such a save before reading it).
    pub fn present(&self, path: &Path) -> bool {
        path.exists() || (self.commit.exists() && staged(path).exists())
    }
}

/// The name a checkpoint file has while a save is writing it: `<file>.next`.
///
/// A save writes every file staged, then writes `<prefix>checkpoint.commit` (its commit point),
/// then renames the staged files over the old ones and removes the commit file; see the engine's
/// `checkpoint` module.
pub fn staged(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".next");
    PathBuf::from(s)
}

/// A request a callback made during a hook, carried out by the engine once the event has
/// reached every callback.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Save `parts` of the run as checkpoint `prefix` under `dir`.
    Save {
        /// Folder.
        dir: PathBuf,
        /// File-name prefix.
        prefix: String,
        /// What to save.
        parts: Parts,
    },
    /// Restore `parts` of the run from checkpoint `prefix` under `dir`.
    Load {
        /// Folder.
        dir: PathBuf,
        /// File-name prefix.
        prefix: String,
        /// What to restore.
        parts: Parts,
    },
}
