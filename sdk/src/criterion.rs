//! The loss-function interface.

use crate::Result;
use tch::Tensor;

/// A loss function.
pub trait Criterion: Send {
    /// The mean loss of a batch as a scalar tensor that autograd can differentiate.
    fn loss(&self, y_pred: &Tensor, y: &Tensor) -> Result<Tensor>;
}

impl<C: Criterion + ?Sized> Criterion for Box<C> {
    fn loss(&self, y_pred: &Tensor, y: &Tensor) -> Result<Tensor> {
        (**self).loss(y_pred, y)
    }
}
