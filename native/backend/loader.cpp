// Loads the optional backends: taskmerge_cuda.so from the addon's own
// directory (or the file TASKMERGE_CUDA_LIBRARY names) when it exists. An
// absent file is normal; a file that does not load, lacks tm_backend_init,
// fails to initialise or was built for another ABI version is noted for
// info() and skipped — never an error of the op that triggered loading. The
// default library is not opened where the CUDA driver reports no device.
#include <dlfcn.h>
#include <sys/stat.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "../core/parallel.h"
#include "registry.h"

namespace taskmerge {
namespace backend {

namespace {

std::vector<LoadNote> notes;

void hostParallelFor(size_t n, size_t grain, void (*fn)(void*, size_t, size_t), void* ctx) {
  parallelFor(n, grain, [&](size_t b, size_t e) { fn(ctx, b, e); });
}

size_t hostThreads() { return threadCount(); }

const tm_host_services kHost{TM_BACKEND_ABI_VERSION, hostParallelFor, hostThreads};

// The directory of the shared object this code is in (the addon).
std::string ownDirectory() {
  Dl_info info{};
  if (!dladdr(reinterpret_cast<void*>(&ownDirectory), &info) || !info.dli_fname) return ".";
  std::string p = info.dli_fname;
  size_t slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

std::string loadOne(const std::string& path) {
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* why = dlerror();
    return std::string("does not load: ") + (why ? why : "unknown error");
  }
  auto init = reinterpret_cast<tm_backend_init_fn>(dlsym(lib, "tm_backend_init"));
  if (!init) {
    dlclose(lib);
    return "does not export tm_backend_init";
  }
  tm_backend* be = nullptr;
  const int s = init(TM_BACKEND_ABI_VERSION, &kHost, &be);
  if (s != TM_OK || !be || !be->iface) {
    dlclose(lib);
    return s == TM_ABI_MISMATCH ? "built for another backend ABI version (this addon: " + std::to_string(TM_BACKEND_ABI_VERSION) + ")"
                                : "tm_backend_init failed (status " + std::to_string(s) + ")";
  }
  if (be->iface->abi_version != TM_BACKEND_ABI_VERSION) {
    return "built for backend ABI version " + std::to_string(be->iface->abi_version) + ", this addon has " +
           std::to_string(TM_BACKEND_ABI_VERSION);
  }
  if (be->iface->table_bytes < offsetof(tm_backend_iface, linalg) || !be->iface->name || !be->iface->device)
    return "does not fill the name and device entries of its table";
  if (be->iface->table_bytes < sizeof(tm_backend_iface)) {
    // An older backend: the entries it does not know read as NULL (unsupported).
    auto* full = new tm_backend_iface{};
    std::memcpy(full, be->iface, be->iface->table_bytes);
    be->iface = full;
  }
  add(be, path);  // stays loaded for the life of the process
  return "loaded";
}

// Why no CUDA device can exist here, or "" when the driver reports one. Asked of
// the driver (libcuda.so.1, the one library a GPU machine always has) before
// taskmerge_cuda.so is opened: mapping cuBLAS and cuSOLVER alone adds about
// 190 MB to the resident size of every process, which a machine without a
// GPU should not pay.
std::string noCudaDevice() {
  void* drv = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!drv) return "no CUDA driver on this machine (libcuda.so.1 not found), so no device";
  using InitFn = int (*)(unsigned);
  using CountFn = int (*)(int*);
  auto cuInit = reinterpret_cast<InitFn>(dlsym(drv, "cuInit"));
  auto cuDeviceGetCount = reinterpret_cast<CountFn>(dlsym(drv, "cuDeviceGetCount"));
  if (!cuInit || !cuDeviceGetCount) return "libcuda.so.1 lacks cuInit/cuDeviceGetCount";
  if (int r = cuInit(0)) return "the CUDA driver does not initialise (cuInit returned " + std::to_string(r) + "), so no device";
  int count = 0;
  if (int r = cuDeviceGetCount(&count)) return "the CUDA driver cannot count devices (cuDeviceGetCount returned " + std::to_string(r) + ")";
  if (count == 0) return "the CUDA driver reports no device";
  return "";  // the driver stays loaded: the CUDA runtime uses it next
}

}  // namespace

void loadOptionalBackends() {
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("TASKMERGE_CUDA_LIBRARY");
    const std::string path = env && *env ? std::string(env) : ownDirectory() + "/taskmerge_cuda.so";
    struct stat st{};
    std::string status;
    if (stat(path.c_str(), &st) != 0) {
      status = "absent";
    } else {
      // A library named by TASKMERGE_CUDA_LIBRARY is always opened (the caller asked
      // for it; tests load stand-in backends that way); the default one only where
      // the driver reports a device.
      const std::string why = env && *env ? "" : noCudaDevice();
      status = why.empty() ? loadOne(path) : "was not loaded: " + why;
    }
    notes.push_back({"cuda", path, status});
  });
}

const std::vector<LoadNote>& loadNotes() {
  loadOptionalBackends();
  return notes;
}

}  // namespace backend
}  // namespace taskmerge
