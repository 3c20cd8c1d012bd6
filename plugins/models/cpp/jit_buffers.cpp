// The buffers of a TorchScript module (BatchNorm's running statistics), which tch 0.24 does not
// expose: `torch::jit::Module::named_buffers`, called on the module a `tch::CModule` holds.
#include <torch/csrc/jit/api/module.h>

#include <cstdlib>
#include <cstring>
#include <exception>

extern "C" {

typedef void (*torchfit_jit_buffer_fn)(void* data, const char* name, at::Tensor* tensor);

// Calls `f` with each buffer of `module` (a `torch::jit::Module*`), submodules' included, under
// its dotted name. Each tensor is a new `at::Tensor*` sharing the buffer's storage, owned by the
// receiver. Returns null, or an error message the caller frees with `torchfit_jit_free`.
char* torchfit_jit_named_buffers(void* module, void* data, torchfit_jit_buffer_fn f) {
  try {
    auto* m = static_cast<torch::jit::Module*>(module);
    for (const auto& b : m->named_buffers(/*recurse=*/true)) {
      f(data, b.name.c_str(), new at::Tensor(b.value));
    }
    return nullptr;
  } catch (const std::exception& e) {
    return strdup(e.what());
  } catch (...) {
    return strdup("unknown C++ exception");
  }
}

void torchfit_jit_free(char* message) { free(message); }
}
