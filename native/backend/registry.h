// The backends this process can run ops on: the CPU backend (always, built
// in) and those the loader found (loader.cpp: taskmerge_cuda.so beside the
// addon). Ops pick one per call by name from their `device` argument.
#pragma once
#include <string>
#include <vector>

#include "backend.h"

namespace taskmerge {
namespace backend {

struct Entry {
  tm_backend* be;
  std::string origin;  // "built in", or the shared library's path
};

// What the loader did with an optional backend library, for info().
struct LoadNote {
  std::string name;    // "cuda"
  std::string path;    // where it looked
  std::string status;  // "absent", "loaded", or why it did not load
};

void add(tm_backend* be, const std::string& origin);

// Registers a built-in backend at static initialisation.
struct Registrar {
  Registrar(tm_backend* be, const char* origin) { add(be, origin); }
};

// Every backend (optional libraries loaded on first use), the CPU first.
std::vector<Entry> list();
const std::vector<LoadNote>& loadNotes();
tm_backend* find(const std::string& name);

// The backend for an op's `device` argument ("" = "cpu"): throws a clear
// error for an unknown name and for a backend that reports no device.
tm_backend& select(const std::string& device);

// Runs the loader once (list/find/select call it): loader.cpp.
void loadOptionalBackends();

}  // namespace backend
}  // namespace taskmerge
