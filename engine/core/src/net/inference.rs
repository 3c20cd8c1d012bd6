//! Using a trained net: its outputs, class probabilities and predictions, its score, and its
//! loss on a data set. All run in evaluation mode without gradients.

use super::build::Components;
use super::NeuralNet;
use crate::data::{batches, for_each_batch, TensorDataset};
use crate::{Error, Result};
use std::ops::ControlFlow;
use tch::{Device, Kind, Tensor};
use torchfit_sdk::metrics::{correct, predicted_classes, r2};
use torchfit_sdk::{DatasetReader, Inspection, Stage, Task};

/// Loss (and accuracy, for classification) of a model on a set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean loss per sample.
    pub loss: f64,
    /// Fraction of samples predicted right (classification only).
    pub accuracy: Option<f64>,
    /// Number of samples.
    pub samples: usize,
}

impl NeuralNet {
    /// The score of scorer component `name` on outputs `out` for targets `y`, negated and named
    /// `neg_<name>` when it is lower-is-better (scikit-learn's convention: higher is better).
    pub(crate) fn score_by(&mut self, name: &str, y: &Tensor, out: &Tensor) -> Result<(String, f64)> {
        let c = self.components.as_mut().ok_or(Error::NotInitialized)?;
        let error = |source| Error::Component { kind: torchfit_sdk::ComponentKind::Scorer, name: name.into(), source };
        let scorer = c.scorers.get(name).map_err(error)?;
        let score = scorer.score(y, out).map_err(error)?;
        Ok(match scorer.lower_is_better() {
            Some(true) => (format!("neg_{name}"), -score),
            _ => (name.to_owned(), score),
        })
    }

    /// The model's outputs for samples `indices` of `reader`, on the CPU. No samples is an
    /// [`Error::Data`], as scikit-learn refuses an array of 0 samples.
    pub fn forward_reader(&mut self, reader: &mut dyn DatasetReader, indices: &[i64]) -> Result<Tensor> {
        let c = self.components.as_ref().ok_or(Error::NotInitialized)?;
        if indices.is_empty() {
            return Err(Error::Data("no samples to predict".into()));
        }
        let mut outs = Vec::new();
        evaluation_pass(c, reader, indices, |_, x, _| {
            outs.push(c.forward(&x.f_to_device(c.device)?, false)?);
            Ok(())
        })?;
        Ok(Tensor::f_cat(&outs, 0)?.f_to_device(Device::Cpu)?)
    }

    /// The gradient of output `target` (summed over the samples) with respect to the inputs `x`,
    /// the model in evaluation mode, on the CPU: a saliency map's source (Simonyan et al.).
    /// Autograd's `grad`, not `backward`: no parameter's gradient changes.
    pub fn input_gradient(&mut self, x: &Tensor, target: i64) -> Result<Tensor> {
        self.gradient_through(x, target, |c, x| c.forward(x, false))
    }

    /// [`NeuralNet::input_gradient`] through ReLUs that pass back only the positive part of
    /// their gradient: guided backpropagation (Springenberg et al. 2015), for a model that can
    /// run so ([`torchfit_sdk::Model::forward_inspected`]; every stock model but `torchscript`;
    /// `mlp`, `cnn` and `text_cnn` with ReLU activations).
    pub fn guided_gradient(&mut self, x: &Tensor, target: i64) -> Result<Tensor> {
        let guided = Inspection { guided_relu: true, capture: None };
        self.gradient_through(x, target, |c, x| Ok(c.forward_inspected(x, &guided)?.output))
    }

    /// The output of the model's layer `layer` (the name its parameters carry, `conv.0`) for
    /// `x`, in evaluation mode without gradients, on the CPU: what a PyTorch forward hook on
    /// that module receives.
    pub fn layer_output(&mut self, x: &Tensor, layer: &str) -> Result<Tensor> {
        let c = self.components.as_ref().ok_or(Error::NotInitialized)?;
        let _no_grad = tch::no_grad_guard();
        let x = x.f_to_device(c.device)?.f_to_kind(Kind::Float)?;
        let inspection = Inspection { guided_relu: false, capture: Some(layer.to_owned()) };
        let captured = c.forward_inspected(&x, &inspection)?.captured;
        let captured = captured.ok_or_else(|| Error::Data(format!("the model kept no output of layer `{layer}`")))?;
        Ok(captured.f_to_device(Device::Cpu)?)
    }

    /// The gradient of output `target` of `forward` with respect to `x`.
    fn gradient_through(
        &mut self,
        x: &Tensor,
        target: i64,
        forward: impl FnOnce(&Components, &Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let c = self.components.as_ref().ok_or(Error::NotInitialized)?;
        let x = x.f_to_device(c.device)?.f_to_kind(Kind::Float)?.f_detach()?.f_set_requires_grad(true)?;
        let out = forward(c, &x)?.f_flatten(1, -1)?;
        let outputs = out.size()[1];
        if !(0..outputs).contains(&target) {
            return Err(Error::Data(format!("target {target} is not one of the model's {outputs} outputs")));
        }
        let score = out.f_select(1, target)?.f_sum(Kind::Float)?;
        let no_gradient = || {
            Error::Data(
                "the model's outputs have no gradient with respect to its inputs (a model of token ids reads integers): \
                 input gradients need real-valued inputs"
                    .into(),
            )
        };
        if !score.requires_grad() {
            return Err(no_gradient());
        }
        let grads = Tensor::f_run_backward(&[&score], &[&x], false, false)?;
        match grads.into_iter().next() {
            Some(g) if g.defined() => Ok(g.f_to_device(Device::Cpu)?),
            _ => Err(no_gradient()),
        }
    }

    /// The model's outputs for `x`, on the CPU.
    fn forward_tensor(&mut self, x: &Tensor) -> Result<Tensor> {
        let n = x.size().first().copied().unwrap_or(0);
        let mut data = TensorDataset::new(x, &Tensor::zeros([n], (Kind::Int64, Device::Cpu)))?;
        self.forward_reader(&mut data, &(0..n).collect::<Vec<_>>())
    }

    /// Class probabilities for classification (the softmax of the logits; for one logit per
    /// sample, its sigmoid as the probability of class 1 beside that of class 0), the outputs
    /// for regression.
    pub fn predict_proba(&mut self, x: &Tensor) -> Result<Tensor> {
        let out = self.forward_tensor(x)?;
        match self.task() {
            Task::Regression => Ok(out),
            Task::Classification => Ok(torchfit_sdk::metrics::class_probabilities(&out)?),
        }
    }

    /// Predicted classes for classification ([`predicted_classes`]), the outputs for regression.
    pub fn predict(&mut self, x: &Tensor) -> Result<Tensor> {
        let out = self.forward_tensor(x)?;
        match self.task() {
            Task::Classification => Ok(predicted_classes(&out)?),
            Task::Regression => Ok(out),
        }
    }

    /// Accuracy (classification) or R² (regression, scikit-learn's `r2_score`) on `x`, `y`.
    pub fn score(&mut self, x: &Tensor, y: &Tensor) -> Result<f64> {
        let out = self.forward_tensor(x)?;
        match self.task() {
            Task::Classification => Ok(torchfit_sdk::metrics::accuracy(y, &out)?),
            Task::Regression => Ok(r2(y, &out)?),
        }
    }

    /// Mean loss (and accuracy for classification) on samples `indices` of `reader`.
    pub fn evaluate(&mut self, reader: &mut dyn DatasetReader, indices: &[i64]) -> Result<Evaluation> {
        let c = self.components.as_ref().ok_or(Error::NotInitialized)?;
        let classification = c.settings.task == Task::Classification;
        let (mut loss_sum, mut right) =
            (Tensor::zeros([], (Kind::Double, c.device)), Tensor::zeros([], (Kind::Int64, c.device)));
        evaluation_pass(c, reader, indices, |idx, x, y| {
            let (x, y) = (x.f_to_device(c.device)?, y.f_to_device(c.device)?);
            let out = c.forward(&x, false)?;
            let loss = c.loss(&out, &y)?;
            loss_sum = loss_sum.f_add(&loss.f_to_kind(Kind::Double)?.f_mul_scalar(idx.len() as f64)?)?;
            if classification {
                right = right.f_add(&correct(&y, &out)?)?;
            }
            Ok(())
        })?;
        let n = indices.len().max(1) as f64;
        let accuracy = if classification { Some(right.f_int64_value(&[])? as f64 / n) } else { None };
        Ok(Evaluation { loss: loss_sum.f_double_value(&[])? / n, accuracy, samples: indices.len() })
    }

    fn task(&self) -> Task {
        self.components.as_ref().map(|c| c.settings.task).unwrap_or_default()
    }
}

/// One pass over samples `indices` of `reader` in `iterator_valid`'s batches, in order, as
/// evaluation reads them (the reader in [`Stage::Eval`], no gradients): `step(indices, x, y)`
/// for each batch.
fn evaluation_pass(
    c: &Components,
    reader: &mut dyn DatasetReader,
    indices: &[i64],
    mut step: impl FnMut(&[i64], Tensor, Tensor) -> Result<()>,
) -> Result<()> {
    let _guard = tch::no_grad_guard();
    let iv = &c.settings.iterator_valid;
    let batches = batches(indices, iv.batch_size, false, 0, 0);
    for_each_batch(reader, &batches, Stage::Eval, iv.prefetch, |_, idx, x, y| {
        step(idx, x, y).map(|()| ControlFlow::Continue(()))
    })
}
