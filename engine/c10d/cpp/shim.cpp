// C functions over libtorch's c10d for the torchfit-c10d crate: a TCPStore, a Gloo process
// group (or Gloo with an NCCL backend from libtorchfit_nccl), collectives and DDP's Reducer.
// Tensors arrive as `at::Tensor*` (tch's C_tensor). Every function catches C++ exceptions
// (guard.hpp): it returns NULL on success or a malloc'd message that the caller frees with
// tf_c10d_free_error.
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/csrc/distributed/c10d/logger.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#include "guard.hpp"

#include <cstdlib>
#include <cstring>
#include <sstream>

// The sizes libtorch 2.11.0 allocates; the gloo stand-in headers must not change them.
static_assert(sizeof(c10d::ProcessGroupGloo) == 488, "ProcessGroupGloo layout differs from libtorch 2.11.0");
static_assert(sizeof(c10d::ProcessGroupGloo::Options) == 176, "ProcessGroupGloo::Options layout differs");

struct TfStore {
  c10::intrusive_ptr<c10d::Store> store;
  uint16_t port;
};
struct TfGroup {
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
};
struct TfReducer {
  std::shared_ptr<c10d::Reducer> reducer;
  // DDP's Logger: times sampled iterations of the Reducer (forward, backward, communication).
  std::shared_ptr<c10d::Logger> logger;
};

static std::vector<at::Tensor> tensors(at::Tensor** ts, size_t n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (size_t i = 0; i < n; ++i) v.push_back(*ts[i]);
  return v;
}

extern "C" {

void tf_c10d_free_error(char* e) { std::free(e); }

// libtorch's own log threshold (c10's caffe2_log_level: 0 info, 1 warning, 2 error, 3 fatal),
// which c10d's messages (socket retries, timeouts) go through.
void tf_c10d_set_log_level(int level) { FLAGS_caffe2_log_level = level; }

char* tf_c10d_tcp_store(const char* host, uint16_t port, int is_server, int64_t world_size, int64_t timeout_ms,
                        TfStore** out) {
  return guard([&] {
    c10d::TCPStoreOptions o;
    o.port = port;
    o.isServer = is_server != 0;
    if (world_size > 0) o.numWorkers = static_cast<size_t>(world_size);
    o.waitWorkers = false;
    o.timeout = std::chrono::milliseconds(timeout_ms);
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), o);
    uint16_t bound = store->getPort();
    *out = new TfStore{store, bound};
  });
}

uint16_t tf_c10d_store_port(const TfStore* s) { return s->port; }

char* tf_c10d_prefix_store(const TfStore* s, const char* prefix, TfStore** out) {
  return guard([&] {
    auto p = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), s->store);
    *out = new TfStore{p, s->port};
  });
}

char* tf_c10d_store_set(const TfStore* s, const char* key, const uint8_t* value, size_t n) {
  return guard([&] { s->store->set(std::string(key), std::vector<uint8_t>(value, value + n)); });
}

char* tf_c10d_store_check(const TfStore* s, const char* key, int* exists) {
  return guard([&] { *exists = s->store->check({std::string(key)}) ? 1 : 0; });
}

char* tf_c10d_store_add(const TfStore* s, const char* key, int64_t delta, int64_t* value) {
  return guard([&] { *value = s->store->add(std::string(key), delta); });
}

void tf_c10d_store_free(TfStore* s) { delete s; }

// A Gloo backend of `size` ranks rendezvousing in `store`.
static c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                                                int size, int64_t timeout_ms) {
  auto options = c10d::ProcessGroupGloo::Options::create(std::chrono::milliseconds(timeout_ms));
  // As torch.distributed does: GLOO_SOCKET_IFNAME names the interfaces, else the device
  // binds the address this machine's hostname resolves to (loopback when it resolves to none).
  const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
  if (ifname && *ifname) {
    std::stringstream names(ifname);
    std::string name;
    while (std::getline(names, name, ',')) {
      if (!name.empty()) options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
    }
  } else {
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options);
}

char* tf_c10d_gloo_group(const TfStore* s, int rank, int size, int64_t timeout_ms, TfGroup** out) {
  return guard([&] {
    auto backend = gloo_backend(s->store, rank, size, timeout_ms);
    auto pg = c10::make_intrusive<c10d::ProcessGroup>(s->store, rank, size);
    pg->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, backend);
    pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::GLOO, backend);
    pg->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
    *out = new TfGroup{pg};
  });
}

// The store as libtorchfit_nccl takes it: a `c10::intrusive_ptr<c10d::Store>*`.
const void* tf_c10d_store_handle(const TfStore* s) { return &s->store; }

// torch.distributed's "cpu:gloo,cuda:nccl": CUDA tensors through `nccl` (a `c10d::Backend*`
// holding one reference, which this takes), CPU tensors through Gloo rendezvousing in `cpu`.
char* tf_c10d_nccl_group(const TfStore* s, const TfStore* cpu, int rank, int size, int64_t timeout_ms, void* nccl,
                         TfGroup** out) {
  auto backend = c10::intrusive_ptr<c10d::Backend>::reclaim(static_cast<c10d::Backend*>(nccl));
  return guard([&] {
    auto gloo = gloo_backend(cpu->store, rank, size, timeout_ms);
    auto pg = c10::make_intrusive<c10d::ProcessGroup>(s->store, rank, size);
    pg->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, gloo);
    pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, backend);
    pg->setDefaultBackend(c10d::ProcessGroup::BackendType::NCCL);
    *out = new TfGroup{pg};
  });
}

void tf_c10d_group_free(TfGroup* g) { delete g; }

char* tf_c10d_all_reduce_sum(const TfGroup* g, at::Tensor* t) {
  return guard([&] {
    std::vector<at::Tensor> v{*t};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp(c10d::ReduceOp::SUM);
    auto work = g->pg->allreduce(v, o);
    work->wait();
  });
}

char* tf_c10d_broadcast_coalesced(const TfGroup* g, at::Tensor** ts, size_t n, size_t buffer_bytes, int root) {
  return guard([&] {
    auto v = tensors(ts, n);
    c10d::broadcast_coalesced(g->pg, v, buffer_bytes, root);
  });
}

char* tf_c10d_barrier(const TfGroup* g) {
  return guard([&] { g->pg->barrier()->wait(); });
}

// DDP's Reducer over `params` (all requiring grad), bucketed as DistributedDataParallel does:
// buckets of `bucket_bytes` (the first `first_bucket_bytes`) in reverse parameter order.
char* tf_c10d_reducer_new(const TfGroup* g, at::Tensor** params, const char** names, size_t n, int64_t bucket_bytes,
                          int64_t first_bucket_bytes, TfReducer** out) {
  return guard([&] {
    auto ps = tensors(params, n);
    std::vector<bool> sparse(n, false);
    std::unordered_map<size_t, std::string> param_names;
    for (size_t i = 0; i < n; ++i) param_names[i] = names[i];
    auto [indices, limits] = c10d::compute_bucket_assignment_by_size(
        ps, {static_cast<size_t>(first_bucket_bytes), static_cast<size_t>(bucket_bytes)}, sparse);
    std::reverse(indices.begin(), indices.end());
    std::vector<int64_t> caps(limits.rbegin(), limits.rend());
    auto r = std::make_shared<c10d::Reducer>(ps, indices, g->pg, sparse, bucket_bytes,
                                             /*find_unused_parameters=*/false, /*gradient_as_bucket_view=*/false,
                                             param_names, bucket_bytes, /*skip_all_reduce_unused_params=*/false,
                                             /*use_python_reducer=*/false, caps);
    auto logger = std::make_shared<c10d::Logger>(r);
    r->set_logger(logger);
    logger->set_construction_data_and_log("torchfit", {}, -1, false, false, false);
    *out = new TfReducer{r, logger};
  });
}

char* tf_c10d_reducer_prepare_for_forward(const TfReducer* r) {
  return guard([&] {
    r->logger->set_runtime_stats_and_log();  // as DDP's forward: the last sampled iteration's times
    r->reducer->prepare_for_forward();
    r->reducer->rebuild_buckets();
  });
}

char* tf_c10d_reducer_prepare_for_backward(const TfReducer* r, at::Tensor** outputs, size_t n) {
  return guard([&] { r->reducer->prepare_for_backward(tensors(outputs, n)); });
}

// DDP's Logger's averages over the sampled iterations so far, in ns (-1 before any): forward
// compute, backward compute, backward communication, their overlap; and the iteration they
// were last set at.
char* tf_c10d_reducer_stats(const TfReducer* r, int64_t* out) {
  return guard([&] {
    auto data = r->logger->get_ddp_logging_data();
    const char* keys[] = {"avg_forward_compute_time", "avg_backward_compute_time", "avg_backward_comm_time",
                          "avg_backward_compute_comm_overlap_time", "iteration"};
    for (size_t i = 0; i < 5; ++i) {
      auto it = data.ints_map.find(keys[i]);
      out[i] = it == data.ints_map.end() ? -1 : it->second;
    }
  });
}

void tf_c10d_reducer_free(TfReducer* r) { delete r; }

}  // extern "C"
