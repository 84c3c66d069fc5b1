// Selection state that lives across op calls (TIES / top-k histograms, sign
// differences, window candidate lists and cursors, the window's sample) in
// memory of the backend that runs the ops, so that a chunk op passes a handle
// instead of copying the state in and out with every chunk.
//
// Where the memory lies: on a backend that reads host memory (buffer_host_view
// works: the CPU backend) the state is plain zeroed host memory viewed by the
// backend, so host-side ops and reads touch it in place and nothing is
// copied; elsewhere it is one buffer_alloc'ed buffer, zeroed with
// buffer_fill, and the host reads only the bytes it asks for (copy_to_host).
//
// Who frees it: JS holds a StateHandle (a Napi external, native/napi/addon.cpp)
// and frees it explicitly with the op state_free when its job is done with it;
// the external's finalizer is a safety net for a handle dropped unfreed. An op
// in flight keeps the buffer alive (shared ownership) until it ends, so a free
// while an op uses the state releases the memory after that op.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../backend/backend.h"

namespace taskmerge {
namespace boundary {

class StateBuffer {
 public:
  // `bytes` of zeroed state on backend `be`.
  StateBuffer(tm_backend& be, size_t bytes);
  ~StateBuffer();
  StateBuffer(const StateBuffer&) = delete;
  StateBuffer& operator=(const StateBuffer&) = delete;

  tm_backend& backend() const { return *be_; }
  std::string device() const;
  size_t bytes() const { return bytes_; }
  // The backend address kernels take.
  void* address() const;
  // The state's host memory where the backend reads host memory, else nullptr.
  void* host() const { return host_; }

  // Sets [offset, offset + bytes) to `value`.
  void fill(size_t offset, size_t bytes, uint8_t value);
  // Copies [offset, offset + bytes) into host memory `dst`.
  void read(size_t offset, size_t bytes, void* dst) const;
  // [offset, offset + bytes) readable on the host: the state itself where it is
  // host memory, else a copy in `keep`.
  const void* view(size_t offset, size_t bytes, std::vector<uint8_t>& keep) const;

 private:
  void range(size_t offset, size_t bytes, const char* what) const;

  tm_backend* be_;
  size_t bytes_;
  void* host_ = nullptr;
  tm_buffer* buf_ = nullptr;
};

// What a JS handle holds: the buffer until state_free (then empty: a use or a
// second free is refused with a clear error).
class StateHandle {
 public:
  explicit StateHandle(std::shared_ptr<StateBuffer> b) : buf_(std::move(b)) {}
  // The buffer, or nullptr once freed.
  std::shared_ptr<StateBuffer> get() const;
  // Drops the handle's ownership; false when it was already freed.
  bool release();

 private:
  mutable std::mutex mu_;
  std::shared_ptr<StateBuffer> buf_;
};

}  // namespace boundary
}  // namespace taskmerge
