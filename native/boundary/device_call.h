// One op's use of a backend: which backend (the op's `device` argument,
// "cpu" when absent), backend addresses for the op's host buffers (views
// where the backend can read host memory, else copies in and, for outputs,
// back, into buffers pooled across calls: staging_pool.h), work memory from a
// per-backend pool, block kernels run in overlapped sub-blocks (blocks()),
// failed entries turned back into exceptions, and an entry the backend lacks
// run on the CPU instead (CpuFallback). Ops hold one for the duration of their call.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "../backend/backend.h"
#include "../core/op.h"
#include "args.h"

namespace taskmerge {
namespace boundary {

// Thrown by DeviceCall when a backend other than the CPU lacks an entry (a NULL
// slot, or TM_UNSUPPORTED from it) and the call has not yet run one (so host
// memory is untouched): runOp runs the whole op again on the CPU backend and
// reports the fallback.
struct CpuFallback : Error {
  explicit CpuFallback(const std::string& entry) : Error(entry + ": falls back to the CPU"), entry(entry) {}
  std::string entry;
};

// Runs op `fn`; when it throws CpuFallback, runs it again with device "cpu" and
// sets r.strs["deviceFallback"] to the entry that was missing.
void runOp(OpFn fn, const OpArgs& a, OpResult& r);

// Elements per sub-block of blocks(): a multiple of 4096, so that the first
// non-finite input found is the one a whole-chunk call reports.
constexpr size_t kSubBlock = size_t(1) << 20;

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

  // The entry `fn` of the table; when this backend lacks it, CpuFallback (see
  // there) or, once an entry has run, an error naming it.
  template <class F>
  F entry(F fn, const char* name) const {
    if (!fn) missing(name);
    return fn;
  }

  // Runs a block kernel whose results are the chunk's `out` elements alone
  // (each depends only on its own index): call(chunk, work) runs the entry on
  // a chunk of backend addresses and returns its status. One call over the
  // whole chunk, except on a backend with asynchronous copies (no host views),
  // where sub-blocks of kSubBlock elements run in order while the next one is
  // uploaded and the previous one downloaded; every result is in host memory
  // when it returns.
  void blocks(const tm_chunk& host, tm_kernel kernel, const char* name,
              const std::function<tm_status(const tm_chunk&, tm_work)>& call);

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
  [[noreturn]] void missing(const char* name) const;
  // Not the CPU, and no entry has run yet: host memory is as the op received it.
  bool mayFallBack() const;
  void* address(void* host, size_t bytes, bool copyIn, bool copyOut);
  // The overlapped path of blocks(): all four asynchronous copy entries present.
  bool asyncCopies() const;
  // Pooled buffers for the chunk's inputs and output, nothing copied yet (staged_ order: base, experts, out).
  tm_chunk stage(const tm_chunk& host);
  tm_chunk subBlock(const tm_chunk& whole, size_t i);
  void upload(const tm_chunk& host, size_t i);
  void download(const tm_chunk& host, size_t i);
  void waitForCopies();
  void synchronize();

  tm_backend* be_;
  bool hostViews_ = true;
  bool ran_ = false;     // an entry has run: host memory may have changed, no CPU fallback any more
  struct Staged {
    tm_buffer* buf;
    void* host;
    size_t bytes;
    bool copyOut;
    bool pooled;  // from staging_pool.h (else a host view)
  };
  std::vector<Staged> staged_;
  std::vector<tm_buffer*> work_;
  std::vector<std::vector<const void*>> expertAddrs_;
  tm_error err_{};
};


}  // namespace boundary
}  // namespace taskmerge
