// PyTorch's ProcessGroupNCCL for torchfit-c10d, which loads this library at run time (it links
// libtorch_cuda, which a process that never uses NCCL should not load). The one function
// catches C++ exceptions as torchfit-c10d's shim does (its guard.hpp): it returns NULL on
// success or a malloc'd message.
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include "guard.hpp"

// Makes `device` this process's current CUDA device (NCCL binds a communicator to it) and
// creates an NCCL backend of `size` ranks rendezvousing in `*store` (a
// `c10::intrusive_ptr<c10d::Store>`), bound to `device` as `init_process_group(device_id=...)`
// binds it (without the binding NCCL guesses the device from the global rank, which is wrong
// where a node runs fewer ranks than it has GPUs); `*out` receives it as a `c10d::Backend*`
// holding one reference.
extern "C" char* tf_nccl_backend(const void* store, int rank, int size, int64_t timeout_ms, int device, void** out) {
  return guard([&] {
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
    const auto& s = *static_cast<const c10::intrusive_ptr<c10d::Store>*>(store);
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = std::chrono::milliseconds(timeout_ms);
    auto backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(s, rank, size, options);
    backend->setBoundDeviceId(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device)));
    *out = static_cast<c10d::Backend*>(backend.release());
  });
}
