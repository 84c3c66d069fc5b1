#include "device_call.h"

#include <mutex>
#include <unordered_map>

#include "../backend/registry.h"
#include "../backend/status.h"
#include "../core/dtype.h"

namespace taskmerge {
namespace boundary {

namespace {

// Work buffers kept per backend between calls (large kernels page-fault a
// fresh allocation; a pool reuses them). At most kKeep idle per backend.
constexpr size_t kKeep = 8;
std::mutex poolMu;
std::unordered_map<tm_backend*, std::vector<tm_buffer*>>& pool() {
  static auto* p = new std::unordered_map<tm_backend*, std::vector<tm_buffer*>>();  // leaked: outlives workers
  return *p;
}

tm_buffer* takeWork(tm_backend& be, size_t bytes, tm_error* err) {
  {
    std::lock_guard<std::mutex> lock(poolMu);
    auto& free = pool()[&be];
    for (size_t i = 0; i < free.size(); i++)
      if (be.iface->buffer_size(&be, free[i]) >= bytes) {
        tm_buffer* b = free[i];
        free.erase(free.begin() + long(i));
        return b;
      }
  }
  tm_buffer* b = nullptr;
  backend::check(be.iface->buffer_alloc(&be, bytes, &b, err), *err, "buffer_alloc");
  return b;
}

void giveWork(tm_backend& be, tm_buffer* b) {
  std::lock_guard<std::mutex> lock(poolMu);
  auto& free = pool()[&be];
  free.push_back(b);
  if (free.size() > kKeep) {
    // Drop the smallest: the large ones are the expensive ones to fault in again.
    size_t s = 0;
    for (size_t i = 1; i < free.size(); i++)
      if (be.iface->buffer_size(&be, free[i]) < be.iface->buffer_size(&be, free[s])) s = i;
    be.iface->buffer_free(&be, free[s]);
    free.erase(free.begin() + long(s));
  }
}

}  // namespace

DeviceCall::DeviceCall(const OpArgs& a) : be_(&backend::select(a.str("device", "cpu"))) {}

DeviceCall::~DeviceCall() {
  for (auto& s : staged_) be_->iface->buffer_free(be_, s.buf);
  for (tm_buffer* w : work_) giveWork(*be_, w);
}

void DeviceCall::unsupported(const char* name) const {
  throw Error(std::string(name) + ": not supported by the '" + be_->iface->name(be_) + "' backend");
}

void* DeviceCall::address(void* host, size_t bytes, bool copyIn, bool copyOut) {
  if (!host) return nullptr;
  tm_buffer* b = nullptr;
  if (hostViews_ && be_->iface->buffer_host_view) {
    tm_error e{};
    tm_status s = be_->iface->buffer_host_view(be_, host, bytes, &b, &e);
    if (s == TM_OK) {
      staged_.push_back({b, host, bytes, false});
      return be_->iface->buffer_data(be_, b);
    }
    if (s != TM_UNSUPPORTED) backend::raise(s, e, "buffer_host_view");
    hostViews_ = false;
  }
  hostViews_ = false;
  // backend::check, not check(): check() also copies the outputs staged so far back (finish),
  // which before the kernel runs would return them unwritten and never after.
  backend::check(entry(be_->iface->buffer_alloc, "buffer_alloc")(be_, bytes, &b, &err_), err_, "buffer_alloc");
  staged_.push_back({b, host, bytes, copyOut});
  if (copyIn) backend::check(entry(be_->iface->copy_to_backend, "copy_to_backend")(be_, b, 0, host, bytes, &err_), err_, "copy_to_backend");
  return be_->iface->buffer_data(be_, b);
}

const void* DeviceCall::in(const void* host, size_t bytes) { return address(const_cast<void*>(host), bytes, true, false); }
void* DeviceCall::out(void* host, size_t bytes) { return address(host, bytes, false, true); }
void* DeviceCall::inout(void* host, size_t bytes) { return address(host, bytes, true, true); }

tm_chunk DeviceCall::chunk(const tm_chunk& h) {
  tm_chunk c = h;
  auto size = [](tm_dtype t) { return dtypeSize(DType(int(t))); };
  c.base = in(h.base, h.n * size(h.base_dtype));
  expertAddrs_.emplace_back(h.T);
  for (size_t t = 0; t < h.T; t++) expertAddrs_.back()[t] = in(h.experts[t], h.n * size(h.expert_dtypes[t]));
  c.experts = expertAddrs_.back().data();
  c.out = out(h.out, h.n * size(h.out_dtype));
  return c;
}

tm_work DeviceCall::work(tm_kernel kernel, size_t T, size_t n) {
  const size_t bytes = be_->iface->work_bytes ? be_->iface->work_bytes(be_, kernel, T, n) : 0;
  if (bytes == 0) return tm_work{nullptr, 0};
  tm_buffer* b = takeWork(*be_, bytes, &err_);
  work_.push_back(b);
  return tm_work{be_->iface->buffer_data(be_, b), be_->iface->buffer_size(be_, b)};
}

void DeviceCall::finish() {
  for (auto& s : staged_)
    if (s.copyOut) {
      s.copyOut = false;
      check(entry(be_->iface->copy_to_host, "copy_to_host")(be_, s.host, s.buf, 0, s.bytes, &err_), "copy_to_host");
    }
}

void DeviceCall::check(tm_status s, const char* entry) {
  if (s != TM_OK) backend::raise(s, err_, entry);
  finish();
}

// -- state buffers ------------------------------------------------------------

void* DeviceCall::state(const State& s) const {
  if (&s.buffer().backend() != be_)
    throw ArgumentError(s.arg(), -1, "a state buffer of device '" + s.buffer().device() + "' passed to an op on device '" +
                                         be_->iface->name(be_) + "'");
  return s.buffer().address();
}

}  // namespace boundary
}  // namespace taskmerge
