#include "op.h"

#include <mutex>

namespace taskmerge {

namespace {
std::map<std::string, OpFn>& table() {
  static std::map<std::string, OpFn> t;
  return t;
}
std::mutex& tableMutex() {
  static std::mutex m;
  return m;
}

template <class M>
const typename M::mapped_type& lookup(const M& m, const std::string& k, const char* kind) {
  auto it = m.find(k);
  if (it == m.end()) throw Error(std::string("missing ") + kind + " argument '" + k + "'");
  return it->second;
}
}  // namespace

std::string inputRole(const std::string& arg) {
  if (arg == "base" || arg == "expert" || arg == "stats") return arg;
  if (arg == "gram" || arg == "scale") return "stats";
  if (arg == "tau" || arg == "mask") return "bundle";
  return "";
}

void registerOp(const char* name, OpFn fn) {
  std::lock_guard<std::mutex> lock(tableMutex());
  table()[name] = fn;
}

OpFn findOp(const std::string& name) {
  std::lock_guard<std::mutex> lock(tableMutex());
  auto it = table().find(name);
  return it == table().end() ? nullptr : it->second;
}

std::vector<std::string> opNames() {
  std::lock_guard<std::mutex> lock(tableMutex());
  std::vector<std::string> names;
  for (auto& kv : table()) names.push_back(kv.first);
  return names;
}

bool OpArgs::has(const std::string& k) const {
  return nums.count(k) || strs.count(k) || bufs.count(k) || numLists.count(k) ||
         strLists.count(k) || bufLists.count(k) || states.count(k);
}
double OpArgs::num(const std::string& k) const { return lookup(nums, k, "number"); }
double OpArgs::num(const std::string& k, double fallback) const {
  auto it = nums.find(k);
  return it == nums.end() ? fallback : it->second;
}
const std::string& OpArgs::str(const std::string& k) const { return lookup(strs, k, "string"); }
std::string OpArgs::str(const std::string& k, const std::string& fallback) const {
  auto it = strs.find(k);
  return it == strs.end() ? fallback : it->second;
}
Bytes OpArgs::buf(const std::string& k) const { return lookup(bufs, k, "buffer"); }
const std::vector<double>& OpArgs::numList(const std::string& k) const {
  return lookup(numLists, k, "number list");
}
const std::vector<std::string>& OpArgs::strList(const std::string& k) const {
  return lookup(strLists, k, "string list");
}
const std::vector<Bytes>& OpArgs::bufList(const std::string& k) const {
  return lookup(bufLists, k, "buffer list");
}

}  // namespace taskmerge
