//! `torch.optim.SGD`'s update.

use super::optimizer::ParamState;
use super::settings::Hyper;
use crate::Result;
use tch::Tensor;

/// `neg_lr` is `-h.lr` as a 0-dim tensor: a scalar operand on any device that keeps the
/// parameter's dtype.
pub(super) fn update(p: &mut Tensor, grad: Tensor, state: &mut ParamState, h: &Hyper, neg_lr: &Tensor) -> Result<()> {
    let mut d = if h.weight_decay != 0.0 { grad.f_add(&p.f_mul_scalar(h.weight_decay)?)? } else { grad };
    if h.momentum != 0.0 {
        let fresh = state.buffers.is_empty();
        let buf = state.buffer("momentum_buffer", || Ok(d.f_detach_copy()?))?;
        if !fresh {
            let _ = buf.f_mul_scalar_(h.momentum)?;
            let _ = if h.dampening == 0.0 {
                buf.f_add_(&d)?
            } else {
                buf.f_addcmul_(&d, &Tensor::from(1.0 - h.dampening))?
            };
        }
        d = if h.nesterov { d.f_add(&buf.f_mul_scalar(h.momentum)?)? } else { buf.shallow_clone() };
    }
    // p += d * (-lr) in one kernel, without a temporary the size of the parameter.
    let _ = p.f_addcmul_(&d, neg_lr)?;
    Ok(())
}
