//! The dense layers a network ends with after its features (`cnn`, `text_cnn`): hidden layers of
//! the configured sizes, each followed by the activation and dropout, then the output layer.
//! Parameters `dense.<i>.*` and `output.*`.

use crate::budget::Budget;
use crate::probe::Probe;
use crate::Activation;
use torchfit_sdk::tch::nn::{self, Module};
use torchfit_sdk::tch::Tensor;
use torchfit_sdk::{Error, Result};

/// The hidden dense layers and the output layer.
#[derive(Debug)]
pub(crate) struct DenseHead {
    dense: Vec<nn::Linear>,
    output: nn::Linear,
}

impl DenseHead {
    /// Refuses a hidden size below 1, naming `dense[i]`.
    pub(crate) fn check(sizes: &[i64]) -> Result<()> {
        match sizes.iter().position(|&h| h < 1) {
            Some(i) => Err(Error::config(format!("dense[{i}]"), "layer sizes must be at least 1")),
            None => Ok(()),
        }
    }

    /// Takes the head's parameters from `budget`: from `width` features through `sizes` to
    /// `n_outputs`.
    pub(crate) fn budget(budget: &mut Budget, width: i64, sizes: &[i64], n_outputs: i64) -> Result<()> {
        let mut width = width;
        for (i, &size) in sizes.iter().enumerate() {
            budget.linear(width, size, |m| Error::config(format!("dense[{i}]"), m))?;
            width = size;
        }
        budget.output(width, n_outputs)
    }

    /// The layers under `root`, from `width` features through `sizes` to `n_outputs`.
    pub(crate) fn new(root: &nn::Path<'_>, width: i64, sizes: &[i64], n_outputs: i64) -> Self {
        let (mut dense, mut width) = (Vec::new(), width);
        for (i, &size) in sizes.iter().enumerate() {
            dense.push(nn::linear(root / "dense" / i, width, size, Default::default()));
            width = size;
        }
        DenseHead { dense, output: nn::linear(root / "output", width, n_outputs, Default::default()) }
    }

    /// The outputs for features `h` (`[n, width]`), each layer's output shown to `probe`
    /// (`dense.<i>`, `output`).
    pub(crate) fn forward(
        &self,
        h: Tensor,
        activation: Activation,
        dropout: f64,
        train: bool,
        probe: &Probe<'_>,
    ) -> Result<Tensor> {
        let mut h = h;
        for (i, layer) in self.dense.iter().enumerate() {
            h = probe.activate(activation, &probe.layer(|| format!("dense.{i}"), layer.forward(&h)))?;
            if dropout > 0.0 {
                h = h.f_dropout(dropout, train)?;
            }
        }
        Ok(probe.layer(|| "output".into(), self.output.forward(&h)))
    }
}
