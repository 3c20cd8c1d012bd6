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

    /// Sets how the batch-normalization layers update their running statistics in training
    /// mode (SDK 1.1); [`BatchNormStats::Cumulative`] first resets them. Returns whether the
    /// model has such layers.
    ///
    /// The default serves models without batch norm: `Ok(false)`, or an error when the state
    /// dict has `running_mean` buffers ([`without_batch_norm_control`]).
    fn set_batch_norm_stats(&mut self, stats: BatchNormStats) -> Result<bool> {
        let _ = stats;
        without_batch_norm_control(self)
    }

    /// A forward pass in evaluation mode that `inspection` looks into (SDK 1.5; what `torchfit
    /// explain` asks): the outputs, with ReLUs that pass back only positive gradients when
    /// [`Inspection::guided_relu`] is set, and the output of the layer [`Inspection::capture`]
    /// names. A model refuses what it cannot do with an error that says what it can (an
    /// unknown layer's error lists the layers); the default refuses everything.
    fn forward_inspected(&self, x: &Tensor, inspection: &Inspection) -> Result<Inspected> {
        let _ = (x, inspection);
        Err(crate::Error::msg("this model does not look inside its forward pass (Model::forward_inspected)"))
    }
}

/// What a look inside a forward pass asks of a model ([`Model::forward_inspected`], SDK 1.5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspection {
    /// Every ReLU passes back only the positive part of its output's gradient, where its input
    /// was positive: guided backpropagation (Springenberg et al. 2015). The outputs are those of
    /// a plain forward pass; only the gradients that flow back through the ReLUs differ.
    pub guided_relu: bool,
    /// The layer whose output is kept, by the name its parameters carry (`conv.1` for
    /// `conv.1.weight`): what a PyTorch forward hook on that module would receive.
    pub capture: Option<String>,
}

/// What [`Model::forward_inspected`] gives.
#[derive(Debug)]
pub struct Inspected {
    /// The model's outputs, as [`Model::forward`] in evaluation mode gives them.
    pub output: Tensor,
    /// The output of the layer [`Inspection::capture`] named, when it named one.
    pub captured: Option<Tensor>,
}

/// How batch-normalization layers update their running statistics in training mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchNormStats {
    /// An exponential moving average with each layer's momentum (PyTorch's default, 0.1).
    Momentum,
    /// Reset (mean 0, variance 1), then the cumulative average of the batches seen since:
    /// PyTorch's `momentum=None`, which `torch.optim.swa_utils.update_bn` sets.
    Cumulative,
}

/// What [`Model::set_batch_norm_stats`] answers for a model that cannot switch its statistics:
/// `Ok(false)` if its state dict has no `running_mean` buffer, else an error (its statistics
/// exist but cannot be recomputed).
pub fn without_batch_norm_control<M: Model + ?Sized>(model: &M) -> Result<bool> {
    let has_norm = model.state_dict().iter().any(|(n, _)| n == "running_mean" || n.ends_with(".running_mean"));
    if has_norm {
        Err(crate::Error::msg(
            "the model has batch-norm statistics but cannot switch how they are updated (Model::set_batch_norm_stats)",
        ))
    } else {
        Ok(false)
    }
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
    fn set_batch_norm_stats(&mut self, stats: BatchNormStats) -> Result<bool> {
        (**self).set_batch_norm_stats(stats)
    }
    fn forward_inspected(&self, x: &Tensor, inspection: &Inspection) -> Result<Inspected> {
        (**self).forward_inspected(x, inspection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model of fixed state-dict names that keeps the default `set_batch_norm_stats`.
    struct Named(&'static [&'static str]);

    impl Model for Named {
        fn forward(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
            Ok(x.shallow_clone())
        }
        fn parameters(&self) -> Vec<(String, Tensor)> {
            Vec::new()
        }
        fn state_dict(&self) -> Vec<(String, Tensor)> {
            self.0.iter().map(|n| (n.to_string(), Tensor::from(0.0f32))).collect()
        }
        fn load_state_dict(&mut self, _state: &[(String, Tensor)]) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_model_that_cannot_switch_its_statistics_says_so_only_when_it_has_some() {
        assert!(!Named(&["fc.weight", "fc.bias"]).set_batch_norm_stats(BatchNormStats::Cumulative).unwrap());
        let err = Named(&["fc.weight", "bn.running_mean"]).set_batch_norm_stats(BatchNormStats::Cumulative);
        assert!(err.unwrap_err().to_string().contains("set_batch_norm_stats"));
    }
}
