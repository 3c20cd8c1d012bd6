//! `torch.optim.Adam` and `torch.optim.AdamW` updates (no amsgrad).

use super::optimizer::ParamState;
use super::settings::Hyper;
use crate::Result;
use tch::Tensor;

pub(super) fn update(p: &mut Tensor, grad: Tensor, state: &mut ParamState, h: &Hyper, decoupled: bool) -> Result<()> {
    let grad = if decoupled {
        if h.weight_decay != 0.0 {
            let _ = p.f_mul_scalar_(1.0 - h.lr * h.weight_decay)?;
        }
        grad
    } else if h.weight_decay != 0.0 {
        grad.f_add(&p.f_mul_scalar(h.weight_decay)?)?
    } else {
        grad
    };
    let [beta1, beta2] = h.betas;
    let step = state.step as f64;
    let exp_avg = state.buffer("exp_avg", || Ok(grad.f_zeros_like()?))?;
    let _ = exp_avg.f_lerp_(&grad, 1.0 - beta1)?;
    let exp_avg = exp_avg.shallow_clone();
    let exp_avg_sq = state.buffer("exp_avg_sq", || Ok(grad.f_zeros_like()?))?;
    let _ = exp_avg_sq.f_mul_scalar_(beta2)?;
    let _ = exp_avg_sq.f_addcmul_(&grad.f_mul_scalar(1.0 - beta2)?, &grad)?;
    let bias_correction1 = 1.0 - beta1.powf(step);
    let bias_correction2 = 1.0 - beta2.powf(step);
    let step_size = h.lr / bias_correction1;
    let denom = exp_avg_sq.f_sqrt()?.f_div_scalar(bias_correction2.sqrt())?.f_add_scalar(h.eps)?;
    let _ = p.f_addcdiv_(&exp_avg.f_mul_scalar(-step_size)?, &denom)?;
    Ok(())
}
