//! `torch.optim.RMSprop`'s update.

use super::optimizer::ParamState;
use super::settings::Hyper;
use crate::Result;
use tch::Tensor;

pub(super) fn update(p: &mut Tensor, grad: Tensor, state: &mut ParamState, h: &Hyper) -> Result<()> {
    let grad = if h.weight_decay != 0.0 { grad.f_add(&p.f_mul_scalar(h.weight_decay)?)? } else { grad };
    let square_avg = state.buffer("square_avg", || Ok(grad.f_zeros_like()?))?;
    let _ = square_avg.f_mul_scalar_(h.alpha)?;
    let _ = square_avg.f_addcmul_(&grad.f_mul_scalar(1.0 - h.alpha)?, &grad)?;
    let square_avg = square_avg.shallow_clone();
    let avg = if h.centered {
        let grad_avg = state.buffer("grad_avg", || Ok(grad.f_zeros_like()?))?;
        let _ = grad_avg.f_lerp_(&grad, 1.0 - h.alpha)?;
        square_avg.f_sub(&grad_avg.f_mul(grad_avg)?)?.f_sqrt()?
    } else {
        square_avg.f_sqrt()?
    };
    let avg = avg.f_add_scalar(h.eps)?;
    if h.momentum > 0.0 {
        let buf = state.buffer("momentum_buffer", || Ok(grad.f_zeros_like()?))?;
        let _ = buf.f_mul_scalar_(h.momentum)?;
        let _ = buf.f_addcdiv_(&grad, &avg)?;
        let _ = p.f_add_(&buf.f_mul_scalar(-h.lr)?)?;
    } else {
        let _ = p.f_addcdiv_(&grad.f_mul_scalar(-h.lr)?, &avg)?;
    }
    Ok(())
}
