// The CUDA backend's check program (see check_main.cpp for its modes).
#pragma once
#include <string>

#include "backend/backend.h"
#include "cuda/extras.h"

namespace tmcheck {

// taskmerge_cuda.so opened with dlopen and initialised as the addon's loader does.
struct Loaded {
  void* handle = nullptr;
  tm_backend* be = nullptr;
  tm_device_info device{};
  tm_cuda_entries_fn entries = nullptr;
  tm_cuda_gemm_rate_fn gemmRate = nullptr;
};

// Loads lib or prints why not to stderr and returns false.
bool load(const std::string& lib, Loaded& out);
const tm_host_services* hostServices();

std::string jsonString(const std::string& s);

int runHost();                                      // check_host.cpp
int runCompare(Loaded& l);                          // check_compare.cpp
int runBench(Loaded& l, const std::string& outDir); // check_bench.cpp

}  // namespace tmcheck
