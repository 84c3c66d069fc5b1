// taskmerge_cuda_check: checks of the CUDA backend that do not go through Node.
//
//   taskmerge_cuda_check info LIB      loads LIB (taskmerge_cuda.so) with dlopen and
//                                      tm_backend_init, prints its name, ABI, device
//                                      and implemented entries as JSON
//   taskmerge_cuda_check refuse LIB    without a device: every implemented entry must
//                                      return TM_NO_DEVICE with a message (JSON report)
//   taskmerge_cuda_check host          the kernels' per-element maths (element.h),
//                                      compiled for the host, against the CPU code
//   taskmerge_cuda_check compare LIB   on a GPU: every implemented entry against the
//                                      CPU ops on random data (exit 3 without a device)
//   taskmerge_cuda_check bench LIB DIR on a GPU: GEMM rates, LOT solves, streaming
//                                      rates, written to DIR/bench.json
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "check.h"

namespace tmcheck {

static void parallelFor(size_t n, size_t grain, void (*fn)(void*, size_t, size_t), void* ctx) {
  const size_t threads = std::max<size_t>(1, std::thread::hardware_concurrency());
  const size_t step = std::max(grain ? grain : 1, (n + threads - 1) / threads);
  std::vector<std::thread> pool;
  for (size_t b = 0; b < n; b += step) pool.emplace_back(fn, ctx, b, std::min(n, b + step));
  for (auto& t : pool) t.join();
}
static size_t threadCount() { return std::max<size_t>(1, std::thread::hardware_concurrency()); }

const tm_host_services* hostServices() {
  static const tm_host_services s{TM_BACKEND_ABI_VERSION, parallelFor, threadCount};
  return &s;
}

std::string jsonString(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
      continue;
    }
    o += c;
  }
  return o + "\"";
}

bool load(const std::string& lib, Loaded& l) {
  l.handle = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!l.handle) {
    std::fprintf(stderr, "cannot load %s: %s\n", lib.c_str(), dlerror());
    return false;
  }
  auto init = reinterpret_cast<tm_backend_init_fn>(dlsym(l.handle, "tm_backend_init"));
  l.entries = reinterpret_cast<tm_cuda_entries_fn>(dlsym(l.handle, "tm_cuda_entries"));
  l.gemmRate = reinterpret_cast<tm_cuda_gemm_rate_fn>(dlsym(l.handle, "tm_cuda_gemm_rate"));
  if (!init || !l.entries || !l.gemmRate) {
    std::fprintf(stderr, "%s does not export tm_backend_init and the tm_cuda_* extras\n", lib.c_str());
    return false;
  }
  const int st = init(TM_BACKEND_ABI_VERSION, hostServices(), &l.be);
  if (st != TM_OK || !l.be || l.be->iface->abi_version != TM_BACKEND_ABI_VERSION) {
    std::fprintf(stderr, "tm_backend_init failed (status %d)\n", st);
    return false;
  }
  l.be->iface->device(l.be, &l.device);
  return true;
}

static int runInfo(Loaded& l, void* handle) {
  const tm_backend_iface* f = l.be->iface;
  tm_backend* other = nullptr;
  auto init = reinterpret_cast<tm_backend_init_fn>(dlsym(handle, "tm_backend_init"));
  const int mismatch = init(TM_BACKEND_ABI_VERSION + 1, hostServices(), &other);
  std::printf("{\"name\":%s,\"abi\":%u,\"tableBytes\":%u,\"hostTableBytes\":%zu,\"linalg\":%s,", jsonString(f->name(l.be)).c_str(),
              f->abi_version, f->table_bytes, sizeof(tm_backend_iface), jsonString(f->linalg(l.be)).c_str());
  std::printf("\"device\":{\"available\":%d,\"description\":%s,\"memoryBytes\":%llu},", l.device.available,
              jsonString(l.device.description).c_str(), (unsigned long long)l.device.memory_bytes);
  std::printf("\"otherAbiStatus\":%d,\"entries\":[", mismatch);
  const char* const* e = l.entries();
  for (size_t i = 0; e[i]; i++) std::printf("%s%s", i ? "," : "", jsonString(e[i]).c_str());
  std::printf("]}\n");
  return 0;
}

// Calls every implemented entry with small, otherwise valid arguments.
static int runRefuse(Loaded& l) {
  const tm_backend_iface* f = l.be->iface;
  tm_backend* be = l.be;
  float base[8] = {}, ex[8] = {}, out[8] = {};
  const void* experts[1] = {ex};
  const tm_dtype types[1] = {TM_F32};
  const tm_chunk c{base, TM_F32, 1, experts, types, 8, 0, out, TM_F32};
  const tm_trim none{TM_TRIM_NONE, nullptr, nullptr, 1.0, nullptr, 0, 0};
  const double coeffs[1] = {1.0}, lambdas[1] = {0.4};
  uint8_t mask[1] = {};
  uint8_t* masks[1] = {mask};
  double hist[1] = {}, d1 = 0, d2 = 0, A[1] = {1}, B[1] = {1};
  int64_t i64 = 0;
  const int64_t prefix[1] = {0};
  tm_buffer* buf = nullptr;
  const tm_ties_merge_args tma{1, 1, 1.0};
  const tm_consensus_args ca{0, 1, 0.4, 1.0, 2};
  const tm_tall_compress_args tca{0, 1, out, TM_F32, lambdas, masks};
  const tm_tall_apply_args taa{base, TM_F32, ex, TM_F32, mask, nullptr, TM_F32, 0, 8, 0, out, TM_F32};
  const tm_hist_args ha{0, prefix, hist, nullptr, 0, nullptr};
  tm_hist_result hr{};
  const void* scales[1] = {ex};
  const tm_work w{nullptr, 0};
  struct Call {
    const char* name;
    tm_status status;
    std::string message;
  };
  std::vector<Call> calls;
  auto call = [&](const char* name, auto&& fn) {
    tm_error err{};
    const tm_status st = fn(&err);
    calls.push_back({name, st, err.message});
  };
  call("buffer_alloc", [&](tm_error* e) { return f->buffer_alloc(be, 64, &buf, e); });
  call("copy_to_backend", [&](tm_error* e) { return f->copy_to_backend(be, buf, 0, base, 8, e); });
  call("copy_to_host", [&](tm_error* e) { return f->copy_to_host(be, base, buf, 0, 8, e); });
  call("buffer_fill", [&](tm_error* e) { return f->buffer_fill(be, buf, 0, 8, 0, e); });
  call("synchronize", [&](tm_error* e) { return f->synchronize(be, e); });
  call("convert", [&](tm_error* e) { return f->convert(be, base, TM_F32, out, TM_BF16, 8, e); });
  call("check_finite", [&](tm_error* e) { return f->check_finite(be, base, TM_F32, 8, &i64, e); });
  call("linear_combine", [&](tm_error* e) { return f->linear_combine(be, &c, &none, coeffs, w, e); });
  call("ties_merge", [&](tm_error* e) { return f->ties_merge(be, &c, &none, &tma, w, e); });
  call("ties_signs", [&](tm_error* e) { return f->ties_signs(be, &c, &none, &i64, w, e); });
  call("consensus", [&](tm_error* e) { return f->consensus(be, &c, &none, &ca, w, e); });
  call("tall_compress", [&](tm_error* e) { return f->tall_compress(be, &c, &none, &tca, w, e); });
  call("tall_mask", [&](tm_error* e) { return f->tall_mask(be, &c, ex, TM_F32, lambdas, masks, w, e); });
  call("tall_apply", [&](tm_error* e) { return f->tall_apply(be, &taa, w, e); });
  call("lot_norm", [&](tm_error* e) { return f->lot_norm(be, &c, scales, types, 8, 1.0, w, e); });
  call("magnitude_hist", [&](tm_error* e) { return f->magnitude_hist(be, &c, &ha, &hr, w, e); });
  call("magnitude_pick", [&](tm_error* e) { return f->magnitude_pick(be, hist, 1, 1, coeffs, &d1, &d2, e); });
  call("gemm", [&](tm_error* e) { return f->gemm(be, 0, 0, 1, 1, 1, 1.0, A, 1, B, 1, 0.0, B, 1, e); });
  call("syrk_rows", [&](tm_error* e) { return f->syrk_rows(be, 1, 1, 1.0, A, 1, 0.0, B, 1, e); });
  call("cholesky", [&](tm_error* e) { return f->cholesky(be, 1, A, 1, w, e); });
  call("cholesky_solve_rows", [&](tm_error* e) { return f->cholesky_solve_rows(be, 1, A, 1, 1, B, 1, e); });
  call("eigh", [&](tm_error* e) { return f->eigh(be, 1, A, 1, B, w, e); });
  const tm_gta_args ga{coeffs, coeffs, 1, 0, 1.0, 1.0, 1.0};
  const uint32_t bits[1] = {0};
  const double cuts[1] = {8};
  const tm_top_sets sets{bits, cuts, bits, cuts};
  const tm_breadcrumbs_args ba{sets, coeffs, coeffs, 1, 0, 1.0, 1.0};
  uint32_t thr = 0, sample[8] = {}, cand[8] = {};
  int8_t candDiff[8] = {};
  uint64_t used = 0, above = 0, atHi = 0, tableCounts[16] = {};
  int64_t tableDiffs[16] = {};
  uint32_t table[16];
  for (uint32_t& x : table) x = 0xffffffffu;
  const uint32_t lo[1] = {0}, hi[1] = {1};
  float multi[8] = {};
  const tm_window_args wa{lo, hi, table, 8, cand, candDiff, &used, tableCounts, tableDiffs, 8, multi};
  tm_window_result wr{&above, &atHi, 0, 0, 0, 0};
  call("mergekit_gta", [&](tm_error* e) { return f->mergekit_gta(be, &c, &none, &ga, w, e); });
  call("trim_l1", [&](tm_error* e) { return f->trim_l1(be, &c, &none, &d1, &d2, w, e); });
  call("magnitude_tie_cut", [&](tm_error* e) { return f->magnitude_tie_cut(be, &c, bits, coeffs, &d1, &d2, w, e); });
  call("magnitude_small", [&](tm_error* e) { return f->magnitude_small(be, &c, 1, &thr, &i64, w, e); });
  call("ties_sample", [&](tm_error* e) { return f->ties_sample(be, &c, sample, 8, 0, w, e); });
  call("ties_window", [&](tm_error* e) { return f->ties_window(be, &c, &wa, &wr, w, e); });
  call("breadcrumbs_merge", [&](tm_error* e) { return f->breadcrumbs_merge(be, &c, &ba, w, e); });
  call("breadcrumbs_l1", [&](tm_error* e) { return f->breadcrumbs_l1(be, &c, &sets, &d1, &d2, w, e); });
  double* pa[1] = {A};
  double* pb[1] = {B};
  const tm_solve_opts so{0, 0.0, 0.0, TM_PRECISION_F64};
  tm_solve_info si[1] = {};
  size_t done = 0;
  call("solve_psd_rows_batched", [&](tm_error* e) { return f->solve_psd_rows_batched(be, 1, 1, pa, 1, pb, &so, si, &done, e); });
  call("axpy", [&](tm_error* e) { return f->axpy(be, 1, 1.0, A, B, e); });
  // pinned host memory and overlapped copies (transfers)
  call("host_register", [&](tm_error* e) { return f->host_register(be, base, sizeof base, e); });
  call("copy_to_backend_async", [&](tm_error* e) { return f->copy_to_backend_async(be, buf, 0, base, 8, e); });
  call("copy_to_host_async", [&](tm_error* e) { return f->copy_to_host_async(be, base, buf, 0, 8, e); });
  call("copy_wait", [&](tm_error* e) { return f->copy_wait(be, e); });
  int bad = 0;
  std::printf("{\"available\":%d,\"calls\":[", l.device.available);
  for (size_t i = 0; i < calls.size(); i++) {
    const bool ok = calls[i].status == TM_NO_DEVICE && !calls[i].message.empty();
    bad += !ok;
    std::printf("%s{\"entry\":%s,\"status\":%d,\"message\":%s}", i ? "," : "", jsonString(calls[i].name).c_str(), calls[i].status,
                jsonString(calls[i].message).c_str());
  }
  // Every implemented entry was called: the list above and tm_cuda_entries agree.
  size_t listed = 0;
  for (const char* const* e = l.entries(); *e; e++) listed++;
  std::printf("],\"listed\":%zu,\"called\":%zu}\n", listed, calls.size());
  if (l.device.available) {
    std::fprintf(stderr, "refuse: a device is present, so entries run instead of refusing\n");
    return 2;
  }
  return bad || listed != calls.size() ? 1 : 0;
}

}  // namespace tmcheck

int main(int argc, char** argv) {
  using namespace tmcheck;
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "host") return runHost();
  if ((mode == "info" || mode == "refuse" || mode == "compare" || mode == "bench") && argc > 2) {
    Loaded l;
    if (!load(argv[2], l)) return 1;
    if (mode == "info") return runInfo(l, l.handle);
    if (mode == "refuse") return runRefuse(l);
    if (!l.device.available) {
      std::fprintf(stderr, "%s: no CUDA device (%s)\n", mode.c_str(), l.device.description);
      return 3;
    }
    if (mode == "compare") return runCompare(l);
    if (argc > 3) return runBench(l, argv[3]);
  }
  std::fprintf(stderr, "usage: taskmerge_cuda_check info|refuse|compare LIB | bench LIB DIR | host\n");
  return 2;
}
