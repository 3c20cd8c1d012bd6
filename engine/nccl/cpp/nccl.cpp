// PyTorch's ProcessGroupNCCL for torchfit-c10d, which loads this library at run time (it links
// libtorch_cuda, which a process that never uses NCCL should not load). The one function
// catches C++ exceptions: it returns NULL on success or a malloc'd message.
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <cstdlib>
#include <cstring>
#include <string>

static char* message(const char* what) {
  std::string m(what);
  auto cut = m.find("\nException raised from");
  if (cut != std::string::npos) m.resize(cut);
  char* out = static_cast<char*>(std::malloc(m.size() + 1));
  if (out) std::memcpy(out, m.c_str(), m.size() + 1);
  return out;
}

// Makes `device` this process's current CUDA device (NCCL binds a communicator to it) and
// creates an NCCL backend of `size` ranks rendezvousing in `*store` (a
// `c10::intrusive_ptr<c10d::Store>`); `*out` receives it as a `c10d::Backend*` holding one
// reference.
extern "C" char* tf_nccl_backend(const void* store, int rank, int size, int64_t timeout_ms, int device, void** out) {
  try {
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
    const auto& s = *static_cast<const c10::intrusive_ptr<c10d::Store>*>(store);
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = std::chrono::milliseconds(timeout_ms);
    auto backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(s, rank, size, options);
    *out = static_cast<c10d::Backend*>(backend.release());
    return nullptr;
  } catch (const c10::Error& e) {
    return message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return message(e.what());
  } catch (...) {
    return message("unknown C++ exception");
  }
}
