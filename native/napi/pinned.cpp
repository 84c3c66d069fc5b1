// The memory is the addon's (page-aligned, registered whole), never a JS
// ArrayBuffer's backing store: the Buffer's finalizer unregisters it and only
// then frees it, so a registered range never outlives its memory, whatever the
// garbage collector does. undefined where the backend has no host_register or
// refuses (no device, out of page-lockable memory): the caller allocates
// ordinary memory, and copies from it are staged.
#include "pinned.h"

#include <cstdlib>

#include "../backend/registry.h"

namespace taskmerge {
namespace napi {

Napi::Value PinnedBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsString())
    throw Napi::TypeError::New(env, "pinnedBuffer(bytes: number, device: string)");
  const double want = info[0].As<Napi::Number>().DoubleValue();
  if (!(want > 0) || want > 1e15) throw Napi::RangeError::New(env, "pinnedBuffer: bytes must be positive");
  tm_backend* be = backend::find(info[1].As<Napi::String>().Utf8Value());
  if (!be || !be->iface->host_register || !be->iface->host_unregister) return env.Undefined();
  const size_t bytes = size_t(want), page = 4096, cap = (bytes + page - 1) / page * page;
  void* p = std::aligned_alloc(page, cap);
  if (!p) return env.Undefined();
  tm_error err{};
  if (be->iface->host_register(be, p, cap, &err) != TM_OK) {
    std::free(p);
    return env.Undefined();
  }
  return Napi::Buffer<uint8_t>::New(
      env, static_cast<uint8_t*>(p), bytes,
      [](Napi::Env, uint8_t* data, tm_backend* b) {
        b->iface->host_unregister(b, data);
        std::free(data);
      },
      be);
}

}  // namespace napi
}  // namespace taskmerge
