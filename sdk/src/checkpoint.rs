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
    /// The history (`history.json`).
    pub history: bool,
}

impl Parts {
    /// Everything: what exact resumption needs.
    pub const ALL: Parts = Parts { params: true, optimizer: true, callbacks: true, history: true };
    /// Only the model parameters (e.g. to load the best model at train end).
    pub const PARAMS: Parts = Parts { params: true, optimizer: false, callbacks: false, history: false };
}

/// The files of checkpoint `prefix` under `dir` (skorch's names with `fn_prefix`; tensors in
/// safetensors). The engine writes them as one set: a save interrupted by a crash leaves the old
/// set or the new one whole, and the engine completes or discards such a save before it reads
/// the files again or starts a run in that folder.
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
    /// `<prefix>callbacks.safetensors`: the callbacks' tensor state (SDK 1.1), under
    /// `<callback name>/<tensor name>`. Written with `callbacks`; a checkpoint from before 1.1
    /// has none, and restores without it.
    pub callback_tensors: PathBuf,
}

impl Files {
    /// The files of checkpoint `prefix` under `dir`.
    pub fn new(dir: &Path, prefix: &str) -> Self {
        Files {
            params: dir.join(format!("{prefix}params.safetensors")),
            optimizer: dir.join(format!("{prefix}optimizer.safetensors")),
            callbacks: dir.join(format!("{prefix}callbacks.json")),
            history: dir.join(format!("{prefix}history.json")),
            callback_tensors: dir.join(format!("{prefix}callbacks.safetensors")),
        }
    }

    /// The files that must exist for `parts`.
    pub fn of(&self, parts: Parts) -> Vec<&Path> {
        [
            (parts.params, &self.params),
            (parts.optimizer, &self.optimizer),
            (parts.callbacks, &self.callbacks),
            (parts.history, &self.history),
        ]
        .into_iter()
        .filter(|(wanted, _)| *wanted)
        .map(|(_, p)| p.as_path())
        .collect()
    }

    /// Every file a checkpoint with `parts` may have: [`Files::of`] and the optional ones.
    pub fn all_of(&self, parts: Parts) -> Vec<&Path> {
        let mut files = self.of(parts);
        if parts.callbacks {
            files.push(&self.callback_tensors);
        }
        files
    }

    /// Whether the checkpoint holds `parts`: every file of them exists.
    pub fn exist(&self, parts: Parts) -> bool {
        self.of(parts).iter().all(|p| p.exists())
    }
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
