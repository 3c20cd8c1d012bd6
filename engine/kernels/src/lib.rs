//! torch.optim's multi-tensor (`foreach=True`) and fused (`fused=True`) updates for SGD, Adam
//! and AdamW, taken from the libtorch that tch links (tch binds neither `_foreach_*` nor
//! `_fused_*`):
//!
//! - [`foreach_sgd`], [`foreach_adam`]: the `at::_foreach_*` calls of torch.optim's
//!   `_multi_tensor_sgd` / `_multi_tensor_adam`, in their order and with their scalars (a few
//!   kernels over whole lists of tensors instead of a few per parameter);
//! - [`fused_sgd`], [`fused_adam`]: `at::_fused_sgd_`, `_fused_adam_`, `_fused_adamw_`, one
//!   kernel for the whole update (CPU and CUDA implementations in PyTorch 2.11).
//!
//! A call takes the tensors of one device and one dtype; grouping them is the caller's (torch.optim
//! groups by device and dtype too). Options torch.optim has and torchfit does not (`maximize`,
//! `amsgrad`, `capturable`) are off. A C++ shim (`cpp/kernels.cpp`, built by `build.rs` against
//! the wheel's headers) forwards to libtorch and turns its exceptions into [`Error`]s.

use std::ffi::{c_char, c_int};
use tch::Tensor;

#[path = "../../build/shim_error.rs"]
mod shim_error;
pub use shim_error::{Error, Result};

type CTensor = torch_sys::C_tensor;

extern "C" {
    fn tf_kernels_free_error(e: *mut c_char);
    fn tf_foreach_sgd(
        params: *const *mut CTensor,
        grads: *const *mut CTensor,
        bufs: *const *mut CTensor,
        n: usize,
        lr: f64,
        momentum: f64,
        dampening: f64,
        weight_decay: f64,
        nesterov: c_int,
    ) -> *mut c_char;
    fn tf_fused_sgd(
        params: *const *mut CTensor,
        grads: *const *mut CTensor,
        bufs: *const *mut CTensor,
        n: usize,
        lr: f64,
        momentum: f64,
        dampening: f64,
        weight_decay: f64,
        nesterov: c_int,
        is_first_step: c_int,
    ) -> *mut c_char;
    fn tf_foreach_adam(
        params: *const *mut CTensor,
        grads: *const *mut CTensor,
        exp_avgs: *const *mut CTensor,
        exp_avg_sqs: *const *mut CTensor,
        steps: *const f64,
        n: usize,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        decoupled: c_int,
    ) -> *mut c_char;
    fn tf_fused_adam(
        params: *const *mut CTensor,
        grads: *const *mut CTensor,
        exp_avgs: *const *mut CTensor,
        exp_avg_sqs: *const *mut CTensor,
        steps: *const *mut CTensor,
        n: usize,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        decoupled: c_int,
    ) -> *mut c_char;
}

fn check(e: *mut c_char) -> Result<()> {
    shim_error::check(e, tf_kernels_free_error)
}

/// SGD's hyper-parameters (`torch.optim.SGD`'s names; `maximize` off).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor (0: no momentum buffers).
    pub momentum: f64,
    /// Dampening of the momentum.
    pub dampening: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
}

/// Adam's and AdamW's hyper-parameters (`amsgrad`, `maximize` off).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam {
    /// Learning rate.
    pub lr: f64,
    /// Coefficients of the running averages of the gradient and its square.
    pub betas: [f64; 2],
    /// Added to the denominator.
    pub eps: f64,
    /// Weight decay: an L2 penalty (Adam) or decoupled (AdamW).
    pub weight_decay: f64,
    /// AdamW's decoupled weight decay.
    pub decoupled: bool,
}

fn handles(ts: &[&Tensor]) -> Vec<*mut CTensor> {
    ts.iter().map(|t| t.as_ptr() as *mut CTensor).collect()
}

fn same_length(lists: &[usize]) -> Result<usize> {
    let n = lists[0];
    if lists.iter().any(|&m| m != n) {
        return Err(Error(format!("tensor lists of different lengths: {lists:?}")));
    }
    Ok(n)
}

/// One `torch.optim.SGD(foreach=True)` step over `params` with their `grads`. With momentum,
/// `bufs` holds one buffer per parameter; an undefined one (`Tensor::new()`) is set to a copy of
/// the (decayed) gradient, as on the first step; without momentum `bufs` is empty.
pub fn foreach_sgd(params: &[&Tensor], grads: &[&Tensor], bufs: &mut [Tensor], h: &Sgd) -> Result<()> {
    let n = same_length(&[params.len(), grads.len(), if h.momentum != 0.0 { bufs.len() } else { params.len() }])?;
    let bufs: Vec<*mut CTensor> = bufs.iter_mut().map(|t| t.as_mut_ptr()).collect();
    // SAFETY: live tensors for the call; the kernels write into the parameters' and buffers'
    // storage, and an undefined buffer's handle is replaced (`bufs` is borrowed mutably).
    check(unsafe {
        tf_foreach_sgd(
            handles(params).as_ptr(),
            handles(grads).as_ptr(),
            bufs.as_ptr(),
            n,
            h.lr,
            h.momentum,
            h.dampening,
            h.weight_decay,
            h.nesterov as c_int,
        )
    })
}

/// One `torch.optim.SGD(fused=True)` step. With momentum every parameter has a buffer in
/// `bufs`: on the first step (`is_first_step`), uninitialized ones (`Tensor::empty_like`) that
/// the kernel fills; without momentum `bufs` is empty.
pub fn fused_sgd(params: &[&Tensor], grads: &[&Tensor], bufs: &[&Tensor], h: &Sgd, is_first_step: bool) -> Result<()> {
    let n = same_length(&[params.len(), grads.len(), if h.momentum != 0.0 { bufs.len() } else { params.len() }])?;
    // SAFETY: live tensors for the call; the kernel writes into the parameters' and buffers'
    // storage.
    check(unsafe {
        tf_fused_sgd(
            handles(params).as_ptr(),
            handles(grads).as_ptr(),
            handles(bufs).as_ptr(),
            n,
            h.lr,
            h.momentum,
            h.dampening,
            h.weight_decay,
            h.nesterov as c_int,
            is_first_step as c_int,
        )
    })
}

/// One `torch.optim.Adam(foreach=True)` (AdamW with `h.decoupled`) step; `steps` is each
/// parameter's step count including this step.
pub fn foreach_adam(
    params: &[&Tensor],
    grads: &[&Tensor],
    exp_avgs: &[&Tensor],
    exp_avg_sqs: &[&Tensor],
    steps: &[f64],
    h: &Adam,
) -> Result<()> {
    let n = same_length(&[params.len(), grads.len(), exp_avgs.len(), exp_avg_sqs.len(), steps.len()])?;
    let [beta1, beta2] = h.betas;
    // SAFETY: live tensors for the call; the kernels write into the parameters' and the
    // averages' storage.
    check(unsafe {
        tf_foreach_adam(
            handles(params).as_ptr(),
            handles(grads).as_ptr(),
            handles(exp_avgs).as_ptr(),
            handles(exp_avg_sqs).as_ptr(),
            steps.as_ptr(),
            n,
            h.lr,
            beta1,
            beta2,
            h.weight_decay,
            h.eps,
            h.decoupled as c_int,
        )
    })
}

/// One `torch.optim.Adam(fused=True)` (AdamW with `h.decoupled`) step. `steps` are the
/// parameters' step counts as float32 scalars on their device (as torch keeps them for the
/// fused kernels): each is incremented, then read by the kernel.
pub fn fused_adam(
    params: &[&Tensor],
    grads: &[&Tensor],
    exp_avgs: &[&Tensor],
    exp_avg_sqs: &[&Tensor],
    steps: &[&Tensor],
    h: &Adam,
) -> Result<()> {
    let n = same_length(&[params.len(), grads.len(), exp_avgs.len(), exp_avg_sqs.len(), steps.len()])?;
    let [beta1, beta2] = h.betas;
    // SAFETY: live tensors for the call; the kernels write into the parameters', the averages'
    // and the steps' storage.
    check(unsafe {
        tf_fused_adam(
            handles(params).as_ptr(),
            handles(grads).as_ptr(),
            handles(exp_avgs).as_ptr(),
            handles(exp_avg_sqs).as_ptr(),
            handles(steps).as_ptr(),
            n,
            h.lr,
            beta1,
            beta2,
            h.weight_decay,
            h.eps,
            h.decoupled as c_int,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_slice(v)
    }

    #[test]
    fn foreach_sgd_with_momentum_starts_the_buffer_from_the_gradient_and_then_accumulates() {
        let p = t(&[1.0, 2.0]);
        let g = t(&[0.5, -1.0]);
        let mut bufs = vec![Tensor::new()];
        let h = Sgd { lr: 0.1, momentum: 0.9, dampening: 0.0, weight_decay: 0.0, nesterov: false };
        foreach_sgd(&[&p], &[&g], &mut bufs, &h).unwrap();
        assert_eq!(Vec::<f32>::try_from(&bufs[0]).unwrap(), [0.5, -1.0]);
        assert_eq!(Vec::<f32>::try_from(&p).unwrap(), [0.95, 2.1]);
        foreach_sgd(&[&p], &[&g], &mut bufs, &h).unwrap();
        assert_eq!(Vec::<f32>::try_from(&bufs[0]).unwrap(), [0.95, -1.9]);
    }

    #[test]
    fn fused_adam_increments_its_steps_and_moves_against_the_gradient() {
        let p = t(&[1.0, -1.0]);
        let g = t(&[1.0, -1.0]);
        let (m, v) = (p.zeros_like(), p.zeros_like());
        let step = Tensor::zeros([], (Kind::Float, Device::Cpu));
        let h = Adam { lr: 0.1, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.0, decoupled: false };
        fused_adam(&[&p], &[&g], &[&m], &[&v], &[&step], &h).unwrap();
        assert_eq!(step.double_value(&[]), 1.0);
        // Adam's first step moves every coordinate by lr against the gradient's sign.
        let moved = Vec::<f32>::try_from(&p).unwrap();
        assert!((moved[0] - 0.9).abs() < 1e-6 && (moved[1] + 0.9).abs() < 1e-6, "{moved:?}");
    }

    #[test]
    fn lists_of_different_lengths_are_refused() {
        let p = t(&[1.0]);
        let h = Adam { lr: 0.1, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.0, decoupled: true };
        let err = foreach_adam(&[&p], &[], &[&p], &[&p], &[1.0], &h).unwrap_err();
        assert!(err.0.contains("different lengths"), "{err}");
    }

    #[test]
    fn a_libtorch_refusal_is_an_error_in_one_line() {
        let p = t(&[1.0, 2.0]);
        let g = t(&[1.0, 2.0, 3.0]);
        let h = Sgd { lr: 0.1, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false };
        let err = foreach_sgd(&[&p], &[&g], &mut [], &h).unwrap_err();
        assert!(!err.0.is_empty() && !err.0.contains("Exception raised from"), "{err}");
    }
}
