// Node-API glue: converts a JS argument object to taskmerge::OpArgs on the main
// thread, runs the named op on a libuv worker thread, and resolves a promise
// with its scalars and buffers. No kernel code lives here.
#include <napi.h>

#include <cstring>
#include <memory>
#include <optional>

#include "../backend/registry.h"
#include "../boundary/device_call.h"
#include "../boundary/state_buffer.h"
#include "../core/op.h"
#include "../core/parallel.h"
#include "../linalg/linalg.h"
#include "pinned.h"

namespace {

taskmerge::Bytes bytesOf(const Napi::Value& v) {
  if (v.IsBuffer()) {
    auto b = v.As<Napi::Buffer<uint8_t>>();
    return {b.Data(), b.Length()};
  }
  if (v.IsTypedArray()) {
    auto t = v.As<Napi::TypedArray>();
    auto ab = t.ArrayBuffer();
    return {static_cast<uint8_t*>(ab.Data()) + t.ByteOffset(), t.ByteLength()};
  }
  auto ab = v.As<Napi::ArrayBuffer>();
  return {static_cast<uint8_t*>(ab.Data()), ab.ByteLength()};
}

bool isBytes(const Napi::Value& v) { return v.IsBuffer() || v.IsTypedArray() || v.IsArrayBuffer(); }

// State buffers reach JS as externals tagged as ours (nothing else can pass
// for one) holding a shared StateHandle; the finalizer drops that share, so a
// handle JS loses without state_free still frees its buffer.
using StateRef = std::shared_ptr<taskmerge::boundary::StateHandle>;
constexpr napi_type_tag kStateTag = {0x7461736b6d657267ULL, 0x7374617465627566ULL};

bool isState(const Napi::Value& v) { return v.IsExternal() && v.As<Napi::External<StateRef>>().CheckTypeTag(&kStateTag); }

Napi::Value wrapState(Napi::Env env, const StateRef& s) {
  auto ext = Napi::External<StateRef>::New(env, new StateRef(s), [](Napi::Env, StateRef* p) { delete p; });
  ext.TypeTag(&kStateTag);
  return ext;
}

void convertArgs(const Napi::Object& obj, taskmerge::OpArgs& a) {
  Napi::Env env = obj.Env();
  Napi::Array names = obj.GetPropertyNames();
  for (uint32_t i = 0; i < names.Length(); i++) {
    std::string k = names.Get(i).ToString();
    Napi::Value v = obj.Get(k);
    if (v.IsUndefined() || v.IsNull()) continue;
    if (v.IsNumber()) a.nums[k] = v.As<Napi::Number>().DoubleValue();
    else if (v.IsBoolean()) a.nums[k] = v.As<Napi::Boolean>().Value() ? 1 : 0;
    else if (v.IsString()) a.strs[k] = v.As<Napi::String>().Utf8Value();
    else if (isBytes(v)) a.bufs[k] = bytesOf(v);
    else if (isState(v)) a.states[k] = *v.As<Napi::External<StateRef>>().Data();
    else if (v.IsArray()) {
      Napi::Array arr = v.As<Napi::Array>();
      uint32_t n = arr.Length();
      // The first element decides the list kind; an empty list is a number list.
      Napi::Value first = n ? arr.Get(0u) : Napi::Value();
      if (n == 0 || first.IsNumber()) {
        auto& l = a.numLists[k];
        for (uint32_t j = 0; j < n; j++) {
          Napi::Value e = arr.Get(j);
          if (!e.IsNumber()) throw Napi::TypeError::New(env, "argument '" + k + "' mixes types");
          l.push_back(e.As<Napi::Number>().DoubleValue());
        }
      } else if (first.IsString()) {
        auto& l = a.strLists[k];
        for (uint32_t j = 0; j < n; j++) l.push_back(arr.Get(j).ToString().Utf8Value());
      } else if (isBytes(first)) {
        auto& l = a.bufLists[k];
        for (uint32_t j = 0; j < n; j++) {
          Napi::Value e = arr.Get(j);
          if (!isBytes(e)) throw Napi::TypeError::New(env, "argument '" + k + "' mixes types");
          l.push_back(bytesOf(e));
        }
      } else {
        throw Napi::TypeError::New(env, "argument '" + k + "' has an unsupported element type");
      }
    } else {
      throw Napi::TypeError::New(env, "argument '" + k + "' has an unsupported type");
    }
  }
}

class OpWorker : public Napi::AsyncWorker {
 public:
  OpWorker(Napi::Env env, taskmerge::OpFn fn, const Napi::Object& args)
      : Napi::AsyncWorker(env, "taskmerge"), fn_(fn), deferred_(Napi::Promise::Deferred::New(env)) {
    // The argument object (and so every buffer in it) stays alive until the op ends.
    argsRef_ = Napi::Persistent(args);
    convertArgs(args, args_);
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      taskmerge::boundary::runOp(fn_, args_, result_);
    } catch (const taskmerge::InputError& e) {
      input_ = e;
      SetError(e.what());
    } catch (const taskmerge::ArgumentError& e) {
      argument_ = e;
      SetError(e.what());
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object out = Napi::Object::New(env);
    for (auto& kv : result_.nums) out.Set(kv.first, Napi::Number::New(env, kv.second));
    for (auto& kv : result_.strs) out.Set(kv.first, Napi::String::New(env, kv.second));
    for (auto& kv : result_.numLists) {
      Napi::Array arr = Napi::Array::New(env, kv.second.size());
      for (size_t i = 0; i < kv.second.size(); i++) arr.Set(uint32_t(i), kv.second[i]);
      out.Set(kv.first, arr);
    }
    for (auto& kv : result_.states) out.Set(kv.first, wrapState(env, kv.second));
    for (auto& kv : result_.bufs) {
      auto* vec = new std::vector<uint8_t>(std::move(kv.second));
      out.Set(kv.first, Napi::Buffer<uint8_t>::New(env, vec->data(), vec->size(),
                                                   [](Napi::Env, uint8_t*, std::vector<uint8_t>* v) { delete v; },
                                                   vec));
    }
    deferred_.Resolve(out);
  }

  // Where the error lies travels as properties of the JS error: an InputError's
  // role (base | expert | stats | bundle), arg, index, detail and element; an
  // ArgumentError's arg and index with kind "argument".
  void OnError(const Napi::Error& e) override {
    Napi::Object err = e.Value();
    Napi::Env env = Env();
    if (input_) {
      err.Set("kind", Napi::String::New(env, "input"));
      err.Set("role", Napi::String::New(env, input_->role));
      err.Set("arg", Napi::String::New(env, input_->arg));
      if (input_->index >= 0) err.Set("index", Napi::Number::New(env, double(input_->index)));
      err.Set("detail", Napi::String::New(env, input_->detail));
      if (input_->element >= 0) err.Set("element", Napi::Number::New(env, double(input_->element)));
    } else if (argument_) {
      err.Set("kind", Napi::String::New(env, "argument"));
      err.Set("arg", Napi::String::New(env, argument_->arg));
      if (argument_->index >= 0) err.Set("index", Napi::Number::New(env, double(argument_->index)));
    }
    deferred_.Reject(err);
  }

 private:
  taskmerge::OpFn fn_;
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference argsRef_;
  taskmerge::OpArgs args_;
  taskmerge::OpResult result_;
  std::optional<taskmerge::InputError> input_;
  std::optional<taskmerge::ArgumentError> argument_;
};

Napi::Value Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject())
    throw Napi::TypeError::New(env, "run(name: string, args: object)");
  std::string name = info[0].As<Napi::String>();
  taskmerge::OpFn fn = taskmerge::findOp(name);
  if (!fn) throw Napi::Error::New(env, "unknown native op '" + name + "'");
  auto* worker = new OpWorker(env, fn, info[1].As<Napi::Object>());
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

// Which build made this binary (CMakeLists.txt or binding.gyp defines it).
#if defined(TM_BUILT_WITH_CMAKE_JS)
constexpr const char* kBuildTool = "cmake-js";
#elif defined(TM_BUILT_WITH_NODE_GYP)
constexpr const char* kBuildTool = "node-gyp";
#else
constexpr const char* kBuildTool = "unknown";
#endif

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("threads", Napi::Number::New(env, double(taskmerge::threadCount())));
  o.Set("blas", Napi::String::New(env, taskmerge::linalg::backendName()));
  // The backends ops can run on (`device`), and what the loader did with the optional ones.
  Napi::Array backends = Napi::Array::New(env);
  uint32_t i = 0;
  for (const auto& e : taskmerge::backend::list()) {
    tm_device_info dev{};
    e.be->iface->device(e.be, &dev);
    Napi::Object b = Napi::Object::New(env);
    b.Set("name", Napi::String::New(env, e.be->iface->name(e.be)));
    b.Set("origin", Napi::String::New(env, e.origin));
    b.Set("available", Napi::Boolean::New(env, dev.available != 0));
    b.Set("description", Napi::String::New(env, std::string(dev.description, strnlen(dev.description, sizeof dev.description))));
    if (dev.memory_bytes) b.Set("memoryBytes", Napi::Number::New(env, double(dev.memory_bytes)));
    b.Set("linalg", Napi::String::New(env, e.be->iface->linalg ? e.be->iface->linalg(e.be) : ""));
    backends.Set(i++, b);
  }
  o.Set("backends", backends);
  Napi::Array loads = Napi::Array::New(env);
  i = 0;
  for (const auto& n : taskmerge::backend::loadNotes()) {
    Napi::Object l = Napi::Object::New(env);
    l.Set("name", Napi::String::New(env, n.name));
    l.Set("path", Napi::String::New(env, n.path));
    l.Set("status", Napi::String::New(env, n.status));
    loads.Set(i++, l);
  }
  o.Set("backendLoads", loads);
  o.Set("build", Napi::String::New(env, kBuildTool));
  Napi::Array ops = Napi::Array::New(env);
  auto names = taskmerge::opNames();
  for (size_t i = 0; i < names.size(); i++) ops.Set(uint32_t(i), names[i]);
  o.Set("ops", ops);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("run", Napi::Function::New(env, Run));
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("pinnedBuffer", Napi::Function::New(env, taskmerge::napi::PinnedBuffer));
  return exports;
}

}  // namespace

NODE_API_MODULE(taskmerge, Init)
