//! The `foreach` and `fused` implementations of SGD, Adam and AdamW: one group's parameters
//! sorted by device and dtype, as torch.optim does, and each batch handed to torch's kernels
//! (torchfit-kernels) with the state this module keeps in the same buffers as the for-loop path,
//! so that a checkpoint written by one implementation resumes under another.

use super::optimizer::ParamState;
use super::settings::{Hyper, Implementation, OptimizerName};
use crate::{Error, Result};
use tch::{Device, Kind, Tensor};
use torchfit_kernels as kernels;

/// Parameters to update, as (index into the optimizer's parameters, gradient).
type Due = Vec<(usize, Tensor)>;

/// Updates `due` (step counts already incremented) of one group.
pub(super) fn step(
    implementation: Implementation,
    name: OptimizerName,
    hyper: &Hyper,
    params: &[(String, Tensor)],
    state: &mut [ParamState],
    due: Due,
) -> Result<()> {
    let fused = implementation == Implementation::Fused;
    for batch in by_device_and_dtype(params, due) {
        let ps: Vec<&Tensor> = batch.iter().map(|(i, _)| &params[*i].1).collect();
        let gs: Vec<&Tensor> = batch.iter().map(|(_, g)| g).collect();
        let indices: Vec<usize> = batch.iter().map(|(i, _)| *i).collect();
        match name {
            OptimizerName::Sgd => sgd(fused, hyper, &ps, &gs, &indices, state)?,
            OptimizerName::Adam | OptimizerName::Adamw => {
                adam(fused, name == OptimizerName::Adamw, hyper, &ps, &gs, &indices, state)?
            }
            OptimizerName::Rmsprop => {
                return Err(Error::Data("rmsprop has no foreach or fused implementation here".into()))
            }
        }
    }
    Ok(())
}

/// `due` split by the parameters' (device, dtype), in order of first appearance.
fn by_device_and_dtype(params: &[(String, Tensor)], due: Due) -> Vec<Due> {
    let mut batches: Vec<((Device, Kind), Due)> = Vec::new();
    for (i, grad) in due {
        let key = (params[i].1.device(), params[i].1.kind());
        match batches.iter_mut().find(|(k, _)| *k == key) {
            Some((_, batch)) => batch.push((i, grad)),
            None => batches.push((key, vec![(i, grad)])),
        }
    }
    batches.into_iter().map(|(_, batch)| batch).collect()
}

fn kernel_error(e: kernels::Error) -> Error {
    Error::Torch(tch::TchError::Torch(e.0))
}

fn sgd<'a>(
    fused: bool,
    h: &Hyper,
    ps: &[&'a Tensor],
    gs: &[&'a Tensor],
    indices: &[usize],
    state: &mut [ParamState],
) -> Result<()> {
    const BUFFER: &str = "momentum_buffer";
    let k = kernels::Sgd {
        lr: h.lr,
        momentum: h.momentum,
        dampening: h.dampening,
        weight_decay: h.weight_decay,
        nesterov: h.nesterov,
    };
    if h.momentum == 0.0 {
        return if fused {
            kernels::fused_sgd(ps, gs, &[], &k, false)
        } else {
            kernels::foreach_sgd(ps, gs, &mut [], &k)
        }
        .map_err(kernel_error);
    }
    if !fused {
        // A parameter without a buffer gets one from the kernel (an undefined handle it sets).
        let mut bufs: Vec<Tensor> = indices
            .iter()
            .map(|&i| state[i].existing(BUFFER).map_or_else(Tensor::new, Tensor::shallow_clone))
            .collect();
        kernels::foreach_sgd(ps, gs, &mut bufs, &k).map_err(kernel_error)?;
        for (&i, b) in indices.iter().zip(bufs) {
            state[i].set(BUFFER, b);
        }
        return Ok(());
    }
    // The fused kernel starts every buffer of a call or none (`is_first_step`): parameters
    // without one yet go in a call of their own, with fresh buffers the kernel fills.
    let fresh: Vec<bool> = indices.iter().map(|&i| state[i].existing(BUFFER).is_none()).collect();
    for first in [true, false] {
        let members: Vec<usize> = (0..indices.len()).filter(|&j| fresh[j] == first).collect();
        if members.is_empty() {
            continue;
        }
        let bufs: Vec<Tensor> = members
            .iter()
            .map(|&j| match state[indices[j]].existing(BUFFER) {
                Some(b) => Ok(b.shallow_clone()),
                None => gs[j].f_empty_like(),
            })
            .collect::<std::result::Result<_, _>>()?;
        let pick = |ts: &[&'a Tensor]| -> Vec<&'a Tensor> { members.iter().map(|&j| ts[j]).collect() };
        kernels::fused_sgd(&pick(ps), &pick(gs), &refs(&bufs), &k, first).map_err(kernel_error)?;
        for (&j, b) in members.iter().zip(bufs) {
            state[indices[j]].set(BUFFER, b);
        }
    }
    Ok(())
}

fn adam(
    fused: bool,
    decoupled: bool,
    h: &Hyper,
    ps: &[&Tensor],
    gs: &[&Tensor],
    indices: &[usize],
    state: &mut [ParamState],
) -> Result<()> {
    let k = kernels::Adam { lr: h.lr, betas: h.betas, eps: h.eps, weight_decay: h.weight_decay, decoupled };
    let mut exp_avgs = Vec::with_capacity(ps.len());
    let mut exp_avg_sqs = Vec::with_capacity(ps.len());
    for (&i, p) in indices.iter().zip(ps) {
        exp_avgs.push(state[i].buffer("exp_avg", || Ok(p.f_zeros_like()?))?.shallow_clone());
        exp_avg_sqs.push(state[i].buffer("exp_avg_sq", || Ok(p.f_zeros_like()?))?.shallow_clone());
    }
    if !fused {
        let steps: Vec<f64> = indices.iter().map(|&i| state[i].step as f64).collect();
        return kernels::foreach_adam(ps, gs, &refs(&exp_avgs), &refs(&exp_avg_sqs), &steps, &k).map_err(kernel_error);
    }
    let mut steps = Vec::with_capacity(ps.len());
    for (&i, p) in indices.iter().zip(ps) {
        let st = &mut state[i];
        if st.device_step.is_none() {
            // The count before this step: the kernel call increments it.
            st.device_step = Some(Tensor::f_full([], (st.step - 1) as f64, (Kind::Float, p.device()))?);
        }
        steps.push(st.device_step.as_ref().map(Tensor::shallow_clone).expect("set above"));
    }
    kernels::fused_adam(ps, gs, &refs(&exp_avgs), &refs(&exp_avg_sqs), &refs(&steps), &k).map_err(kernel_error)
}

fn refs(ts: &[Tensor]) -> Vec<&Tensor> {
    ts.iter().collect()
}
