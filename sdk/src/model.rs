//! The model interface.

use crate::Result;
use tch::Tensor;

/// A trainable network.
pub trait Model: Send {
    /// Forward pass; `train` selects training behaviour (dropout on, batch-norm statistics
    /// updated) or evaluation behaviour.
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor>;

    /// Trainable parameters by name (PyTorch-style dotted names), in a fixed order that does not
    /// change between calls or processes. Handles are shallow: they share storage with the model.
    fn parameters(&self) -> Vec<(String, Tensor)>;

    /// Everything needed to restore the model (parameters and buffers such as batch-norm
    /// running statistics), by name.
    fn state_dict(&self) -> Vec<(String, Tensor)>;

    /// Copies `state` into the model. Every name of [`Model::state_dict`] must be present with
    /// the same shape; anything else is an error naming the tensor.
    fn load_state_dict(&mut self, state: &[(String, Tensor)]) -> Result<()>;
}

impl<M: Model + ?Sized> Model for Box<M> {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        (**self).forward(x, train)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        (**self).parameters()
    }
    fn state_dict(&self) -> Vec<(String, Tensor)> {
        (**self).state_dict()
    }
    fn load_state_dict(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        (**self).load_state_dict(state)
    }
}
