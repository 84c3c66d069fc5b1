// The op interface between the Node-API glue and the pure C++ kernels.
// An op reads plain values and byte buffers from OpArgs and writes scalars or
// new buffers into OpResult. Ops know nothing of Node-API: the glue converts
// JS objects to OpArgs on the main thread and runs the op on a worker thread.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace taskmerge {

namespace boundary {
class StateHandle;  // a state buffer held by JS across op calls (boundary/state_buffer.h)
}

// A view of caller-owned memory (a Node Buffer or TypedArray kept alive by the glue).
struct Bytes {
  uint8_t* data = nullptr;
  size_t size = 0;
};

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An error about one input of an op, with where it lies so that the caller can
// name the file and key without parsing the message: the input's role (base,
// expert, stats, bundle: what the caller resolves to a file), the argument as
// the message names it ("base", "expert", "tau", ...), its index among the
// inputs of that role (−1: the role has one input), and the element when
// known (−1 otherwise).
std::string inputRole(const std::string& arg);  // "base" | "expert" | "stats" | "bundle" | ""

struct InputError : Error {
  InputError(const std::string& arg, long long index, const std::string& detail, long long element = -1,
             const std::string& role = std::string())
      : Error(arg + (index >= 0 ? " " + std::to_string(index) : std::string()) + " " + detail),
        role(role.empty() ? inputRole(arg) : role), arg(arg), index(index), detail(detail), element(element) {}
  std::string role;
  std::string arg;
  long long index;
  std::string detail;
  long long element;
};

// An op argument of the wrong size, type, alignment or range: a caller's
// mistake, not a bad file. Names the argument (and its position in a list).
struct ArgumentError : Error {
  ArgumentError(const std::string& arg, long long index, const std::string& detail)
      : Error(arg + (index >= 0 ? " " + std::to_string(index) : std::string()) + ": " + detail), arg(arg), index(index) {}
  std::string arg;
  long long index;
};

class OpArgs {
 public:
  std::map<std::string, double> nums;
  std::map<std::string, std::string> strs;
  std::map<std::string, Bytes> bufs;
  std::map<std::string, std::vector<double>> numLists;
  std::map<std::string, std::vector<std::string>> strLists;
  std::map<std::string, std::vector<Bytes>> bufLists;
  std::map<std::string, std::shared_ptr<boundary::StateHandle>> states;

  bool has(const std::string& k) const;
  double num(const std::string& k) const;
  double num(const std::string& k, double fallback) const;
  const std::string& str(const std::string& k) const;
  std::string str(const std::string& k, const std::string& fallback) const;
  Bytes buf(const std::string& k) const;
  const std::vector<double>& numList(const std::string& k) const;
  const std::vector<std::string>& strList(const std::string& k) const;
  const std::vector<Bytes>& bufList(const std::string& k) const;
};

struct OpResult {
  std::map<std::string, double> nums;
  std::map<std::string, std::string> strs;
  std::map<std::string, std::vector<double>> numLists;
  std::map<std::string, std::vector<uint8_t>> bufs;
  std::map<std::string, std::shared_ptr<boundary::StateHandle>> states;  // new handles (state_alloc)
};

using OpFn = void (*)(const OpArgs&, OpResult&);

// Ops register themselves at static-initialisation time, so adding a kernel
// file adds an op without touching a central table.
void registerOp(const char* name, OpFn fn);
OpFn findOp(const std::string& name);
std::vector<std::string> opNames();

struct OpRegistrar {
  OpRegistrar(const char* name, OpFn fn) { registerOp(name, fn); }
};

}  // namespace taskmerge

#define TM_CONCAT_(a, b) a##b
#define TM_CONCAT(a, b) TM_CONCAT_(a, b)
#define TM_REGISTER_OP(name, fn) \
  static ::taskmerge::OpRegistrar TM_CONCAT(tm_op_registrar_, __LINE__)(name, fn)
