// Guided ReLU (Springenberg et al. 2015): a ReLU whose backward passes only the positive part of
// the incoming gradient. The forward is `at::relu`; a tensor hook (torch's own mechanism, which
// tch 0.24 does not bind) clamps the gradient that reaches the ReLU's output, and the ReLU's
// own backward then masks it where the input was not positive.
#include <ATen/ATen.h>

#include <cstdlib>
#include <cstring>
#include <exception>

extern "C" {

// Sets `*out` to a new `at::Tensor*` holding relu(`*x`), with the hook registered when the
// result requires a gradient. Returns null, or an error message the caller frees with
// `torchfit_jit_free`.
char* torchfit_guided_relu(const at::Tensor* x, at::Tensor** out) {
  try {
    at::Tensor y = at::relu(*x);
    if (y.requires_grad()) {
      y.register_hook([](const at::Tensor& grad) { return grad.clamp_min(0); });
    }
    *out = new at::Tensor(std::move(y));
    return nullptr;
  } catch (const std::exception& e) {
    return strdup(e.what());
  } catch (...) {
    return strdup("unknown C++ exception");
  }
}
}
