//! The dataset-reader interface: a sized, indexable source of samples.

use crate::Result;
use tch::Tensor;

/// A data set the engine can split, shuffle and batch by index.
///
/// The engine never asks for the whole data set at once: it draws batches of indices, so a reader
/// may keep samples on disk and decode them on demand.
pub trait DatasetReader: Send {
    /// Number of samples.
    fn len(&self) -> usize;

    /// Whether the data set is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shape of one input sample (without the batch dimension).
    fn sample_shape(&self) -> Vec<i64>;

    /// Inputs and targets of the samples at `indices`, stacked along a new first dimension:
    /// inputs as `f32`, targets as `i64` class indices or `f32` values. On CPU.
    fn get(&mut self, indices: &[i64]) -> Result<(Tensor, Tensor)>;

    /// All targets (as [`DatasetReader::get`] returns them), for stratified splitting and for
    /// counting classes. The default reads every sample; readers should override it when targets
    /// are cheaper to read on their own.
    fn targets(&mut self) -> Result<Tensor> {
        let all: Vec<i64> = (0..self.len() as i64).collect();
        Ok(self.get(&all)?.1)
    }

    /// Called by the engine before each training epoch (1-based `epoch`, the run's `seed`): a
    /// reader with per-epoch randomness (augmentation, streamed shuffling) derives it from these
    /// two values, so that any epoch can be replayed exactly. The default does nothing.
    fn reset(&mut self, _epoch: u64, _seed: u64) -> Result<()> {
        Ok(())
    }

    /// Called by the engine before each pass over the data (SDK 1.3): [`Stage::Train`] before a
    /// training pass, [`Stage::Eval`] before validation, prediction and scoring. A reader with
    /// random augmentation applies it in `Train` only (torchvision's `transform` for the training
    /// set, a deterministic one for evaluation). The default does nothing; a host older than 1.3
    /// never calls it, so a reader must start in the stage it wants by default.
    fn set_stage(&mut self, _stage: Stage) -> Result<()> {
        Ok(())
    }

    /// A name for each sample, in index order (an image reader's file paths), or `None` (SDK
    /// 1.3). `torchfit predict` writes them as the rows' ids instead of the row numbers.
    fn sample_names(&mut self) -> Option<Vec<String>> {
        None
    }
}

/// What a pass over a reader's samples is for (see [`DatasetReader::set_stage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// A training pass: random augmentation applies.
    Train,
    /// Validation, prediction, scoring: deterministic samples.
    Eval,
}

impl Stage {
    /// `"train"` or `"eval"`, as the stage crosses the plugin boundary.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Train => "train",
            Stage::Eval => "eval",
        }
    }

    /// The stage named `name` ([`Stage::as_str`]).
    pub fn from_name(name: &str) -> Option<Stage> {
        [Stage::Train, Stage::Eval].into_iter().find(|s| s.as_str() == name)
    }
}

impl<R: DatasetReader + ?Sized> DatasetReader for Box<R> {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn sample_shape(&self) -> Vec<i64> {
        (**self).sample_shape()
    }
    fn get(&mut self, indices: &[i64]) -> Result<(Tensor, Tensor)> {
        (**self).get(indices)
    }
    fn targets(&mut self) -> Result<Tensor> {
        (**self).targets()
    }
    fn reset(&mut self, epoch: u64, seed: u64) -> Result<()> {
        (**self).reset(epoch, seed)
    }
    fn set_stage(&mut self, stage: Stage) -> Result<()> {
        (**self).set_stage(stage)
    }
    fn sample_names(&mut self) -> Option<Vec<String>> {
        (**self).sample_names()
    }
}
