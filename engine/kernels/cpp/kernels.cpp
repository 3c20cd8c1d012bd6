// C functions over torch.optim's multi-tensor and fused updates, for torchfit-kernels
// (src/lib.rs). The foreach functions issue the `at::_foreach_*` calls torch.optim's
// `_multi_tensor_sgd` / `_multi_tensor_adam` issue (capturable = false, maximize = false,
// amsgrad = false), in the same order and with the same scalars, so that the results are
// torch.optim's with `foreach=True`; the fused ones call `at::_fused_sgd_` / `_fused_adam_` /
// `_fused_adamw_` as `fused=True` does. Every tensor list is one device and one dtype (the Rust
// side groups them as torch.optim does). Errors come back as guard.hpp's malloc'd messages.
#include <ATen/ATen.h>

#include <cmath>
#include <vector>

#include "guard.hpp"

namespace {

std::vector<at::Tensor> list(at::Tensor** ts, size_t n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (size_t i = 0; i < n; ++i) v.push_back(*ts[i]);
  return v;
}

}  // namespace

extern "C" {

void tf_kernels_free_error(char* e) { std::free(e); }

// torch.optim.SGD(foreach=True).step() over one device's parameters. `bufs` is null when
// momentum is 0; otherwise it holds one momentum buffer per parameter, undefined for a parameter
// that has none yet (it is set here to a copy of the decayed gradient, as torch does).
char* tf_foreach_sgd(at::Tensor** params, at::Tensor** grads, at::Tensor** bufs, size_t n, double lr,
                     double momentum, double dampening, double weight_decay, int nesterov) {
  return guard([&] {
    auto ps = list(params, n);
    auto gs = list(grads, n);
    if (weight_decay != 0) gs = at::_foreach_add(gs, ps, weight_decay);
    if (momentum != 0) {
      bool all = true;
      for (size_t i = 0; i < n; ++i) all = all && bufs[i]->defined();
      std::vector<at::Tensor> bs;
      bs.reserve(n);
      if (all) {
        bs = list(bufs, n);
        at::_foreach_mul_(bs, momentum);
        at::_foreach_add_(bs, gs, 1 - dampening);
      } else {
        for (size_t i = 0; i < n; ++i) {
          if (!bufs[i]->defined()) {
            *bufs[i] = gs[i].detach().clone();
          } else {
            bufs[i]->mul_(momentum).add_(gs[i], 1 - dampening);
          }
          bs.push_back(*bufs[i]);
        }
      }
      if (nesterov) {
        at::_foreach_add_(gs, bs, momentum);
      } else {
        gs = bs;
      }
    }
    at::_foreach_add_(ps, gs, -lr);
  });
}

// torch.optim.SGD(fused=True).step(): `bufs` as for tf_foreach_sgd, but every buffer exists
// (empty ones on the first step, `is_first_step` = 1, which the kernel fills).
char* tf_fused_sgd(at::Tensor** params, at::Tensor** grads, at::Tensor** bufs, size_t n, double lr,
                   double momentum, double dampening, double weight_decay, int nesterov, int is_first_step) {
  return guard([&] {
    std::vector<at::Tensor> bs = momentum != 0 ? list(bufs, n) : std::vector<at::Tensor>{};
    at::_fused_sgd_(list(params, n), list(grads, n), bs, weight_decay, momentum, lr, dampening, nesterov != 0,
                    false, is_first_step != 0);
  });
}

// torch.optim.Adam / AdamW (`decoupled` = 1) with foreach=True: `steps` holds each parameter's
// step count after this step's increment.
char* tf_foreach_adam(at::Tensor** params, at::Tensor** grads, at::Tensor** exp_avgs, at::Tensor** exp_avg_sqs,
                      const double* steps, size_t n, double lr, double beta1, double beta2, double weight_decay,
                      double eps, int decoupled) {
  return guard([&] {
    auto ps = list(params, n);
    auto gs = list(grads, n);
    auto m = list(exp_avgs, n);
    auto v = list(exp_avg_sqs, n);
    if (weight_decay != 0) {
      if (decoupled) {
        at::_foreach_mul_(ps, 1 - lr * weight_decay);
      } else {
        gs = at::_foreach_add(gs, ps, weight_decay);
      }
    }
    at::_foreach_lerp_(m, gs, 1 - beta1);
    at::_foreach_mul_(v, beta2);
    at::_foreach_addcmul_(v, gs, gs, 1 - beta2);
    std::vector<at::Scalar> step_size, bias_correction2_sqrt;
    step_size.reserve(n);
    bias_correction2_sqrt.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      step_size.emplace_back((lr / (1 - std::pow(beta1, steps[i]))) * -1);
      bias_correction2_sqrt.emplace_back(std::pow(1 - std::pow(beta2, steps[i]), 0.5));
    }
    auto denom = at::_foreach_sqrt(v);
    at::_foreach_div_(denom, bias_correction2_sqrt);
    at::_foreach_add_(denom, eps);
    at::_foreach_addcdiv_(ps, m, denom, step_size);
  });
}

// torch.optim.Adam / AdamW (`decoupled` = 1) with fused=True: `steps` are the parameters'
// float32 step tensors on their device, incremented here before the kernel reads them.
char* tf_fused_adam(at::Tensor** params, at::Tensor** grads, at::Tensor** exp_avgs, at::Tensor** exp_avg_sqs,
                    at::Tensor** steps, size_t n, double lr, double beta1, double beta2, double weight_decay,
                    double eps, int decoupled) {
  return guard([&] {
    auto st = list(steps, n);
    at::_foreach_add_(st, 1);
    if (decoupled) {
      at::_fused_adamw_(list(params, n), list(grads, n), list(exp_avgs, n), list(exp_avg_sqs, n), {}, st, lr, beta1,
                        beta2, weight_decay, eps, false, false);
    } else {
      at::_fused_adam_(list(params, n), list(grads, n), list(exp_avgs, n), list(exp_avg_sqs, n), {}, st, lr, beta1,
                       beta2, weight_decay, eps, false, false);
    }
  });
}

}  // extern "C"
