// How the C functions over libtorch report errors (shim.cpp here, and engine/nccl's nccl.cpp):
// `guard` runs a body and returns NULL, or the C++ exception it threw as a malloc'd message that
// the Rust side frees with `free`.
#pragma once

#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

static char* message(const char* what) {
  std::string m(what);
  // libtorch appends C++ frames and "Exception raised from ..." to its messages.
  auto cut = m.find("\nException raised from");
  if (cut != std::string::npos) m.resize(cut);
  char* out = static_cast<char*>(std::malloc(m.size() + 1));
  if (out) std::memcpy(out, m.c_str(), m.size() + 1);
  return out;
}

template <class F>
static char* guard(F f) {
  try {
    f();
    return nullptr;
  } catch (const c10::Error& e) {
    return message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return message(e.what());
  } catch (...) {
    return message("unknown C++ exception");
  }
}
