// C functions over libtorch's automatic mixed precision, for torchfit-amp (src/lib.rs): the
// thread's autocast state for one device type, and the ATen kernel `torch.amp.GradScaler`
// unscales gradients with. Errors come back as guard.hpp's malloc'd messages.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>

#include <vector>

#include "guard.hpp"

extern "C" {

void tf_amp_free_error(char* e) { std::free(e); }

// Whether autocast is on for `device_type` (a c10::DeviceType) in this thread, and its dtype
// (a c10::ScalarType).
char* tf_amp_autocast_state(int device_type, int* enabled, int* dtype) {
  return guard([&] {
    auto d = static_cast<c10::DeviceType>(device_type);
    *enabled = at::autocast::is_autocast_enabled(d) ? 1 : 0;
    *dtype = static_cast<int>(at::autocast::get_autocast_dtype(d));
  });
}

// Enters (`enter` = 1) or leaves an autocast region for `device_type` with `dtype`, as
// `torch.autocast.__enter__`/`__exit__` do: the state is set for this thread, the nesting
// counted, and the cache of casted weights cleared when the outermost region is left.
char* tf_amp_autocast_set(int device_type, int enabled, int dtype, int enter) {
  return guard([&] {
    auto d = static_cast<c10::DeviceType>(device_type);
    at::autocast::set_autocast_enabled(d, enabled != 0);
    at::autocast::set_autocast_dtype(d, static_cast<c10::ScalarType>(dtype));
    if (enter) {
      at::autocast::increment_nesting();
    } else if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
  });
}

// at::_amp_foreach_non_finite_check_and_unscale_: multiplies every gradient by `inv_scale` in
// place and sets `found_inf` to 1 when any element of any of them is inf or NaN (all on the
// device of `found_inf`, one dtype).
char* tf_amp_unscale(at::Tensor** grads, size_t n, at::Tensor* found_inf, const at::Tensor* inv_scale) {
  return guard([&] {
    std::vector<at::Tensor> v;
    v.reserve(n);
    for (size_t i = 0; i < n; ++i) v.push_back(*grads[i]);
    at::_amp_foreach_non_finite_check_and_unscale_(v, *found_inf, *inv_scale);
  });
}

}  // extern "C"
