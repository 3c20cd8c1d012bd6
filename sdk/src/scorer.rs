//! The scorer interface: a metric over an epoch's targets and predictions.

use crate::Result;
use tch::Tensor;

/// A metric over targets and model outputs (skorch's `scoring`).
///
/// Scorers are components like any other: a plugin provides them, and a scoring callback uses
/// them by name through [`crate::Host::score`].
pub trait Scorer: Send {
    /// The score of outputs `y_pred` (logits or values, as the model returns them) against
    /// targets `y_true`, over all samples of an epoch.
    fn score(&self, y_true: &Tensor, y_pred: &Tensor) -> Result<f64>;

    /// Whether a lower score is better (a loss or an error), if the scorer knows (SDK 1.1):
    /// scoring callbacks then need no `lower_is_better` key for it.
    fn lower_is_better(&self) -> Option<bool> {
        None
    }
}

impl<S: Scorer + ?Sized> Scorer for Box<S> {
    fn score(&self, y_true: &Tensor, y_pred: &Tensor) -> Result<f64> {
        (**self).score(y_true, y_pred)
    }
    fn lower_is_better(&self) -> Option<bool> {
        (**self).lower_is_better()
    }
}
