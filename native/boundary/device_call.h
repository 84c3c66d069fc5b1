// One op's use of a backend: which backend (the op's `device` argument,
// "cpu" when absent), backend addresses for the op's host buffers (views
// where the backend can read host memory, else copies in and, for outputs,
// back), work memory from a per-backend pool, and failed entries turned back
// into exceptions. Ops hold one for the duration of their call.
#pragma once
#include <string>
#include <vector>

#include "../backend/backend.h"
#include "../core/op.h"
#include "args.h"

namespace taskmerge {
namespace boundary {

class DeviceCall {
 public:
  explicit DeviceCall(const OpArgs& a);
  ~DeviceCall();
  DeviceCall(const DeviceCall&) = delete;
  DeviceCall& operator=(const DeviceCall&) = delete;

  tm_backend& backend() const { return *be_; }
  const tm_backend_iface& iface() const { return *be_->iface; }

  // Backend addresses of host memory: read by the backend (in), written (out), both (inout).
  const void* in(const void* host, size_t bytes);
  void* out(void* host, size_t bytes);
  void* inout(void* host, size_t bytes);
  template <class V>
  V* inout(V* host, size_t n) {
    return static_cast<V*>(inout(static_cast<void*>(host), n * sizeof(V)));
  }
  // A chunk whose pointers are host pointers, with backend addresses instead.
  tm_chunk chunk(const tm_chunk& host);

  // The entry `fn` of the table, or an error naming it when this backend lacks it.
  template <class F>
  F entry(F fn, const char* name) const {
    if (!fn) unsupported(name);
    return fn;
  }

  // Work memory for `kernel` (released when the call ends).
  tm_work work(tm_kernel kernel, size_t T, size_t n);

  // Throws the error of a failed entry (`entry` names it); on success copies outputs back.
  void check(tm_status s, const char* entry);
  tm_error* err() { return &err_; }

  // Copies every out/inout buffer back to host memory (check() does it on success).
  void finish();

  // -- state buffers (state_buffer.h): already backend memory, never staged --
  // The backend address of a state argument; one of another device is an ArgumentError naming it.
  void* state(const State& s) const;
  template <class V>
  V* state(const State& s) const {
    return static_cast<V*>(state(s));
  }

 private:
  [[noreturn]] void unsupported(const char* name) const;
  void* address(void* host, size_t bytes, bool copyIn, bool copyOut);

  tm_backend* be_;
  bool hostViews_ = true;
  struct Staged {
    tm_buffer* buf;
    void* host;
    size_t bytes;
    bool copyOut;
  };
  std::vector<Staged> staged_;
  std::vector<tm_buffer*> work_;
  std::vector<std::vector<const void*>> expertAddrs_;
  tm_error err_{};
};


}  // namespace boundary
}  // namespace taskmerge
