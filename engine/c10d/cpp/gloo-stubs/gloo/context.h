// Declaration-only stand-in; see README.md. ProcessGroupGloo.hpp's inline setTimeout calls
// Context::setTimeout; the shim never calls it, so the declaration suffices.
#pragma once
#include <chrono>
namespace gloo {
class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);
};
} // namespace gloo
