#include "state_buffer.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "../backend/status.h"

namespace taskmerge {
namespace boundary {

StateBuffer::StateBuffer(tm_backend& be, size_t bytes) : be_(&be), bytes_(bytes) {
  const tm_backend_iface& f = *be.iface;
  tm_error err{};
  if (f.buffer_host_view) {
    // calloc: large zeroed blocks come as fresh pages, touched only where the kernels write.
    host_ = std::calloc(bytes ? bytes : 1, 1);
    if (!host_) throw std::bad_alloc();
    const tm_status s = f.buffer_host_view(&be, host_, bytes, &buf_, &err);
    if (s == TM_OK) return;
    std::free(host_);
    host_ = nullptr;
    if (s != TM_UNSUPPORTED) backend::raise(s, err, "buffer_host_view");
  }
  if (!f.buffer_alloc || !f.buffer_fill)
    throw Error(std::string("state buffers: not supported by the '") + f.name(&be) + "' backend");
  backend::check(f.buffer_alloc(&be, bytes, &buf_, &err), err, "buffer_alloc");
  const tm_status s = f.buffer_fill(&be, buf_, 0, bytes, 0, &err);
  if (s != TM_OK) {
    f.buffer_free(&be, buf_);
    backend::raise(s, err, "buffer_fill");
  }
}

StateBuffer::~StateBuffer() {
  be_->iface->buffer_free(be_, buf_);
  std::free(host_);
}

std::string StateBuffer::device() const { return be_->iface->name(be_); }

void* StateBuffer::address() const { return be_->iface->buffer_data(be_, buf_); }

void StateBuffer::range(size_t offset, size_t bytes, const char* what) const {
  if (offset > bytes_ || bytes > bytes_ - offset)
    throw ArgumentError(what, -1, "bytes [" + std::to_string(offset) + ", " + std::to_string(offset + bytes) +
                                      ") lie outside the state buffer of " + std::to_string(bytes_) + " bytes");
}

void StateBuffer::fill(size_t offset, size_t bytes, uint8_t value) {
  range(offset, bytes, "bytes");
  tm_error err{};
  backend::check(be_->iface->buffer_fill(be_, buf_, offset, bytes, value, &err), err, "buffer_fill");
}

void StateBuffer::read(size_t offset, size_t bytes, void* dst) const {
  range(offset, bytes, "bytes");
  if (host_) {
    std::memcpy(dst, static_cast<const uint8_t*>(host_) + offset, bytes);
    return;
  }
  tm_error err{};
  backend::check(be_->iface->copy_to_host(be_, dst, buf_, offset, bytes, &err), err, "copy_to_host");
}

const void* StateBuffer::view(size_t offset, size_t bytes, std::vector<uint8_t>& keep) const {
  range(offset, bytes, "bytes");
  if (host_) return static_cast<const uint8_t*>(host_) + offset;
  keep.resize(bytes);
  read(offset, bytes, keep.data());
  return keep.data();
}

std::shared_ptr<StateBuffer> StateHandle::get() const {
  std::lock_guard<std::mutex> lock(mu_);
  return buf_;
}

bool StateHandle::release() {
  std::shared_ptr<StateBuffer> drop;
  std::lock_guard<std::mutex> lock(mu_);
  if (!buf_) return false;
  drop.swap(buf_);
  return true;
}

}  // namespace boundary
}  // namespace taskmerge
