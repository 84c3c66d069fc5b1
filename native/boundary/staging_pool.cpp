#include "staging_pool.h"

#include <deque>
#include <mutex>
#include <unordered_map>

#include "../backend/status.h"

namespace taskmerge {
namespace boundary {

namespace {

constexpr size_t kMinClass = size_t(64) << 10;
constexpr size_t kIdleBytes = size_t(8) << 30;

size_t sizeClass(size_t bytes) {
  size_t c = kMinClass;
  while (c < bytes) c <<= 1;
  return c;
}

struct Idle {
  std::deque<tm_buffer*> buffers;  // oldest first
  size_t bytes = 0;
};

std::mutex mu;
std::unordered_map<tm_backend*, Idle>& idle() {
  static auto* p = new std::unordered_map<tm_backend*, Idle>();  // leaked: outlives workers
  return *p;
}

}  // namespace

tm_buffer* takeStaging(tm_backend& be, size_t bytes) {
  const size_t cls = sizeClass(bytes);
  {
    std::lock_guard<std::mutex> lock(mu);
    Idle& free = idle()[&be];
    for (auto it = free.buffers.begin(); it != free.buffers.end(); ++it)
      if (be.iface->buffer_size(&be, *it) == cls) {
        tm_buffer* b = *it;
        free.buffers.erase(it);
        free.bytes -= cls;
        return b;
      }
  }
  if (!be.iface->buffer_alloc) throw Error(std::string("buffer_alloc: not supported by the '") + be.iface->name(&be) + "' backend");
  tm_buffer* b = nullptr;
  tm_error err{};
  backend::check(be.iface->buffer_alloc(&be, cls, &b, &err), err, "buffer_alloc");
  return b;
}

void giveStaging(tm_backend& be, tm_buffer* b) {
  std::lock_guard<std::mutex> lock(mu);
  Idle& free = idle()[&be];
  free.buffers.push_back(b);
  free.bytes += be.iface->buffer_size(&be, b);
  while (free.bytes > kIdleBytes && free.buffers.size() > 1) {
    tm_buffer* old = free.buffers.front();
    free.buffers.pop_front();
    free.bytes -= be.iface->buffer_size(&be, old);
    be.iface->buffer_free(&be, old);
  }
}

size_t releaseStaging(tm_backend& be) {
  std::deque<tm_buffer*> drop;
  {
    std::lock_guard<std::mutex> lock(mu);
    Idle& free = idle()[&be];
    drop.swap(free.buffers);
    free.bytes = 0;
  }
  for (tm_buffer* b : drop) be.iface->buffer_free(&be, b);
  return drop.size();
}

}  // namespace boundary
}  // namespace taskmerge
