#include "registry.h"

#include <mutex>

#include "../core/op.h"

namespace taskmerge {
namespace backend {

namespace {
std::mutex& mu() {
  static std::mutex m;
  return m;
}
std::vector<Entry>& entries() {
  static std::vector<Entry> e;
  return e;
}
}  // namespace

void add(tm_backend* be, const std::string& origin) {
  std::lock_guard<std::mutex> lock(mu());
  entries().push_back({be, origin});
}

std::vector<Entry> list() {
  loadOptionalBackends();
  std::lock_guard<std::mutex> lock(mu());
  std::vector<Entry> out = entries();
  return out;
}

tm_backend* find(const std::string& name) {
  for (const Entry& e : list())
    if (name == e.be->iface->name(e.be)) return e.be;
  return nullptr;
}

tm_backend& select(const std::string& device) {
  const std::string name = device.empty() ? "cpu" : device;
  tm_backend* be = find(name);
  if (!be) {
    std::string known;
    for (const Entry& e : list()) known += std::string(known.empty() ? "" : ", ") + e.be->iface->name(e.be);
    throw Error("device '" + name + "' has no backend in this process (available: " + known + ")");
  }
  tm_device_info info{};
  be->iface->device(be, &info);
  if (!info.available) throw Error("device '" + name + "' is not usable: " + std::string(info.description));
  return *be;
}

}  // namespace backend
}  // namespace taskmerge
