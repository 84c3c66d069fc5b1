#include "device_call.h"

#include <mutex>
#include <unordered_map>

#include "../backend/registry.h"
#include "../backend/status.h"
#include "../core/dtype.h"
#include "staging_pool.h"

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
  for (auto& s : staged_)
    if (s.pooled) giveStaging(*be_, s.buf);
    else be_->iface->buffer_free(be_, s.buf);
  for (tm_buffer* w : work_) giveWork(*be_, w);
}

bool DeviceCall::mayFallBack() const { return !ran_ && be_ != &backend::select("cpu"); }

void DeviceCall::missing(const char* name) const {
  if (mayFallBack()) throw CpuFallback(name);
  throw Error(std::string(name) + ": not supported by the '" + be_->iface->name(be_) + "' backend");
}

void runOp(OpFn fn, const OpArgs& a, OpResult& r) {
  try {
    fn(a, r);
  } catch (const CpuFallback& f) {
    OpArgs cpu = a;
    cpu.strs["device"] = "cpu";
    r = OpResult();
    fn(cpu, r);
    r.strs["deviceFallback"] = f.entry;
  }
}

void* DeviceCall::address(void* host, size_t bytes, bool copyIn, bool copyOut) {
  if (!host) return nullptr;
  tm_buffer* b = nullptr;
  if (hostViews_ && be_->iface->buffer_host_view) {
    tm_error e{};
    tm_status s = be_->iface->buffer_host_view(be_, host, bytes, &b, &e);
    if (s == TM_OK) {
      staged_.push_back({b, host, bytes, false, false});
      return be_->iface->buffer_data(be_, b);
    }
    if (s != TM_UNSUPPORTED) backend::raise(s, e, "buffer_host_view");
    hostViews_ = false;
  }
  hostViews_ = false;
  entry(be_->iface->buffer_alloc, "buffer_alloc");
  if (copyIn) entry(be_->iface->copy_to_backend, "copy_to_backend");
  if (copyOut) entry(be_->iface->copy_to_host, "copy_to_host");
  b = takeStaging(*be_, bytes);
  staged_.push_back({b, host, bytes, copyOut, true});
  if (copyIn) backend::check(be_->iface->copy_to_backend(be_, b, 0, host, bytes, &err_), err_, "copy_to_backend");
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
      backend::check(be_->iface->copy_to_host(be_, s.host, s.buf, 0, s.bytes, &err_), err_, "copy_to_host");
    }
}

void DeviceCall::check(tm_status s, const char* entry) {
  // An entry that refuses has done nothing: the first one may still run on the CPU.
  if (s == TM_UNSUPPORTED && mayFallBack()) throw CpuFallback(entry);
  ran_ = true;
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

// ---- overlapped sub-blocks ---------------------------------------------------------

bool DeviceCall::asyncCopies() const {
  const tm_backend_iface& f = *be_->iface;
  return f.copy_to_backend_async && f.copy_to_host_async && f.copy_wait && f.synchronize && f.buffer_alloc;
}

tm_chunk DeviceCall::stage(const tm_chunk& h) {
  hostViews_ = false;
  auto size = [](tm_dtype t) { return dtypeSize(DType(int(t))); };
  auto put = [&](const void* host, size_t bytes, bool copyOut) -> void* {
    if (!host) return nullptr;
    tm_buffer* b = takeStaging(*be_, bytes);
    staged_.push_back({b, const_cast<void*>(host), bytes, copyOut, true});
    return be_->iface->buffer_data(be_, b);
  };
  tm_chunk c = h;
  c.base = put(h.base, h.n * size(h.base_dtype), false);
  expertAddrs_.emplace_back(h.T);
  for (size_t t = 0; t < h.T; t++) expertAddrs_.back()[t] = put(h.experts[t], h.n * size(h.expert_dtypes[t]), false);
  c.experts = expertAddrs_.back().data();
  c.out = put(h.out, h.n * size(h.out_dtype), true);
  return c;
}

// Sub-block i of a staged chunk: its pointers advanced, its offset the tensor index of its first element.
tm_chunk DeviceCall::subBlock(const tm_chunk& whole, size_t i) {
  auto size = [](tm_dtype t) { return dtypeSize(DType(int(t))); };
  const size_t at = i * kSubBlock;
  auto shift = [&](const void* p, tm_dtype t) -> const void* { return p ? static_cast<const uint8_t*>(p) + at * size(t) : nullptr; };
  tm_chunk c = whole;
  c.n = std::min(kSubBlock, whole.n - at);
  c.offset = whole.offset + at;
  c.base = shift(whole.base, whole.base_dtype);
  expertAddrs_.emplace_back(whole.T);
  for (size_t t = 0; t < whole.T; t++) expertAddrs_.back()[t] = shift(whole.experts[t], whole.expert_dtypes[t]);
  c.experts = expertAddrs_.back().data();
  c.out = const_cast<void*>(shift(whole.out, whole.out_dtype));
  return c;
}

// Queues the copies of sub-block i's inputs (staged_ holds base, experts, out in that order).
void DeviceCall::upload(const tm_chunk& h, size_t i) {
  const size_t at = i * kSubBlock, n = std::min(kSubBlock, h.n - at);
  size_t k = 0;
  auto up = [&](const void* host, tm_dtype t) {
    if (!host) return;
    const size_t es = dtypeSize(DType(int(t)));
    const Staged& s = staged_[k++];
    backend::check(be_->iface->copy_to_backend_async(be_, s.buf, at * es, static_cast<const uint8_t*>(host) + at * es, n * es, &err_), err_,
                   "copy_to_backend_async");
  };
  up(h.base, h.base_dtype);
  for (size_t t = 0; t < h.T; t++) up(h.experts[t], h.expert_dtypes[t]);
}

void DeviceCall::download(const tm_chunk& h, size_t i) {
  if (!h.out) return;
  const size_t at = i * kSubBlock, n = std::min(kSubBlock, h.n - at), es = dtypeSize(DType(int(h.out_dtype)));
  const Staged& s = staged_.back();
  backend::check(be_->iface->copy_to_host_async(be_, static_cast<uint8_t*>(h.out) + at * es, s.buf, at * es, n * es, &err_), err_,
                 "copy_to_host_async");
}

void DeviceCall::waitForCopies() { backend::check(be_->iface->copy_wait(be_, &err_), err_, "copy_wait"); }

void DeviceCall::synchronize() {
  tm_error e{};
  backend::check(be_->iface->synchronize(be_, &e), e, "synchronize");
}

void DeviceCall::blocks(const tm_chunk& host, tm_kernel kernel, const char* name,
                        const std::function<tm_status(const tm_chunk&, tm_work)>& call) {
  if (!asyncCopies() || host.n <= kSubBlock) {
    tm_chunk c = chunk(host);
    check(call(c, work(kernel, host.T, host.n)), name);
    return;
  }
  const tm_chunk whole = stage(host);
  const tm_work w = work(kernel, host.T, kSubBlock);
  const size_t count = (host.n + kSubBlock - 1) / kSubBlock;
  // Host memory must not be read or freed while a copy is in flight: wait for them whatever happens.
  struct Drain {
    DeviceCall& d;
    ~Drain() {
      tm_error e{};
      d.be_->iface->synchronize(d.be_, &e);
    }
  } drain{*this};
  upload(host, 0);
  for (size_t i = 0; i < count; i++) {
    waitForCopies();  // block i's inputs are on the device before its kernel runs
    if (i + 1 < count) upload(host, i + 1);
    const tm_chunk sub = subBlock(whole, i);
    const tm_status s = call(sub, w);
    if (s == TM_UNSUPPORTED && i == 0 && mayFallBack()) throw CpuFallback(name);  // nothing downloaded yet: host memory untouched
    ran_ = true;
    if (s != TM_OK) backend::raise(s, err_, name);
    download(host, i);
  }
  synchronize();
}

}  // namespace boundary
}  // namespace taskmerge
