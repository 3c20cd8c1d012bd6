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

/// What a partial load ([`partial_state`]) took from the file and what it left as it was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartialLoad {
    /// Loaded from the file.
    pub loaded: Vec<String>,
    /// Left as initialized: an `exclude` pattern matches them.
    pub excluded: Vec<String>,
    /// Left as initialized: the file has no tensor of that name.
    pub missing: Vec<String>,
    /// Left as initialized: the file's tensor has another shape (`name`, the file's, the model's).
    pub mismatched: Vec<(String, Vec<i64>, Vec<i64>)>,
    /// In the file but not in the model.
    pub unexpected: Vec<String>,
}

impl PartialLoad {
    /// One line: how many tensors were loaded and every one left out, with why.
    pub fn summary(&self) -> String {
        let mut parts = vec![format!("loaded {} tensors", self.loaded.len())];
        if !self.excluded.is_empty() {
            parts.push(format!("excluded {}", self.excluded.join(", ")));
        }
        if !self.missing.is_empty() {
            parts.push(format!("not in the file {}", self.missing.join(", ")));
        }
        for (name, file, model) in &self.mismatched {
            parts.push(format!("{name} has shape {file:?} in the file but {model:?} in the model"));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!("not in the model {}", self.unexpected.join(", ")));
        }
        parts.join("; ")
    }
}

/// The model's state `current` with each tensor of `file` of the same name and shape put in its
/// place, except those an `exclude` pattern matches (left as initialized: a new head). As
/// PyTorch's `load_state_dict(strict=False)`, with the shapes checked too: without `strict`, a
/// tensor the file lacks or has in another shape is left as it is and reported; with `strict`,
/// that and a tensor of the file the model lacks are errors naming them (excluded names aside).
pub fn partial_state(
    current: &[(String, tch::Tensor)],
    file: &[(String, tch::Tensor)],
    exclude: &[crate::glob::Glob],
    strict: bool,
) -> crate::Result<(Vec<(String, tch::Tensor)>, PartialLoad)> {
    let mut report = PartialLoad::default();
    let mut merged = Vec::with_capacity(current.len());
    for (name, t) in current {
        let take = if exclude.iter().any(|g| g.matches(name)) {
            report.excluded.push(name.clone());
            None
        } else {
            match file.iter().find(|(n, _)| n == name) {
                None => {
                    report.missing.push(name.clone());
                    None
                }
                Some((_, f)) if f.size() != t.size() => {
                    report.mismatched.push((name.clone(), f.size(), t.size()));
                    None
                }
                Some((_, f)) => Some(f.shallow_clone()),
            }
        };
        if take.is_some() {
            report.loaded.push(name.clone());
        }
        merged.push((name.clone(), take.unwrap_or_else(|| t.shallow_clone())));
    }
    report.unexpected = file
        .iter()
        .map(|(n, _)| n)
        .filter(|n| !current.iter().any(|(c, _)| c == *n) && !exclude.iter().any(|g| g.matches(n)))
        .cloned()
        .collect();
    if strict && (!report.missing.is_empty() || !report.mismatched.is_empty() || !report.unexpected.is_empty()) {
        return Err(crate::Error::Data(format!(
            "the state does not fit the model ({}); set strict = false to load what fits, or exclude what differs",
            report.summary()
        )));
    }
    Ok((merged, report))
}

#[cfg(test)]
mod partial_tests {
    use super::*;
    use tch::{Kind, Tensor};

    fn state(entries: &[(&str, &[i64], f32)]) -> Vec<(String, Tensor)> {
        entries
            .iter()
            .map(|(n, s, v)| (n.to_string(), Tensor::full(*s, *v as f64, (Kind::Float, tch::Device::Cpu))))
            .collect()
    }

    #[test]
    fn a_partial_load_takes_what_fits_and_leaves_an_excluded_or_resized_head() {
        let model = state(&[("body.weight", &[4, 2], 0.0), ("fc.weight", &[3, 4], 0.0), ("fc.bias", &[3], 0.0)]);
        let file = state(&[
            ("body.weight", &[4, 2], 1.0),
            ("fc.weight", &[10, 4], 1.0),
            ("fc.bias", &[10], 1.0),
            ("aux", &[1], 1.0),
        ]);
        let (merged, report) = partial_state(&model, &file, &[], false).unwrap();
        assert_eq!(report.loaded, ["body.weight"]);
        assert_eq!(report.mismatched.len(), 2);
        assert_eq!(report.unexpected, ["aux"]);
        assert_eq!(merged[0].1.double_value(&[0, 0]), 1.0);
        assert_eq!(merged[1].1.double_value(&[0, 0]), 0.0, "the resized head stays as initialized");
        let err = partial_state(&model, &file, &[], true).unwrap_err().to_string();
        assert!(
            err.contains("fc.weight has shape [10, 4] in the file but [3, 4] in the model")
                && err.contains("strict = false"),
            "{err}"
        );
        let fc = [crate::glob::Glob::new("fc.*").unwrap(), crate::glob::Glob::new("aux").unwrap()];
        let (merged, report) = partial_state(&model, &file, &fc, true).unwrap();
        assert_eq!((report.loaded.len(), report.excluded.len()), (1, 2));
        assert!(report.summary().contains("excluded fc.weight, fc.bias"), "{}", report.summary());
        assert_eq!(merged[2].1.double_value(&[0]), 0.0);
    }
}
