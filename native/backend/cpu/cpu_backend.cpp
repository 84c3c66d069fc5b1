// The CPU backend: the tm_backend_iface table over host memory (buffers are
// aligned heap blocks or views of caller memory, copies are memcpy), today's
// kernels underneath (cpu_kernels.h), registered at static initialisation
// as "cpu" — always present, so every op has a backend to run on.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "../../core/dtype.h"
#include "../../core/parallel.h"
#include "../registry.h"
#include "../status.h"
#include "cpu_kernels.h"
#include "work_size.h"

struct tm_buffer {
  void* data;
  size_t bytes;
  bool owned;
};

namespace taskmerge {
namespace cpu {
namespace {

using backend::guarded;

const char* name(tm_backend*) { return "cpu"; }

void device(tm_backend*, tm_device_info* info) {
  *info = tm_device_info{};
  info->available = 1;
  std::snprintf(info->description, sizeof info->description, "host CPU, %zu threads", threadCount());
}

void destroy(tm_backend*) {}  // static

tm_status bufferAlloc(tm_backend*, size_t bytes, tm_buffer** out, tm_error* err) {
  return guarded(err, [&] {
    void* p = std::aligned_alloc(64, (bytes + 63) & ~size_t(63));
    if (!p && bytes) throw std::bad_alloc();
    *out = new tm_buffer{p, bytes, true};
  });
}

tm_status bufferHostView(tm_backend*, void* host, size_t bytes, tm_buffer** out, tm_error* err) {
  return guarded(err, [&] { *out = new tm_buffer{host, bytes, false}; });
}

void bufferFree(tm_backend*, tm_buffer* b) {
  if (!b) return;
  if (b->owned) std::free(b->data);
  delete b;
}

void* bufferData(tm_backend*, tm_buffer* b) { return b->data; }
size_t bufferSize(tm_backend*, tm_buffer* b) { return b->bytes; }

tm_status copyToBackend(tm_backend*, tm_buffer* dst, size_t offset, const void* src, size_t bytes, tm_error* err) {
  return guarded(err, [&] {
    if (offset + bytes > dst->bytes) throw Error("copy_to_backend: past the end of the buffer");
    std::memcpy(static_cast<uint8_t*>(dst->data) + offset, src, bytes);
  });
}

tm_status copyToHost(tm_backend*, void* dst, tm_buffer* src, size_t offset, size_t bytes, tm_error* err) {
  return guarded(err, [&] {
    if (offset + bytes > src->bytes) throw Error("copy_to_host: past the end of the buffer");
    std::memcpy(dst, static_cast<const uint8_t*>(src->data) + offset, bytes);
  });
}

tm_status bufferFill(tm_backend*, tm_buffer* b, size_t offset, size_t bytes, uint8_t value, tm_error* err) {
  return guarded(err, [&] {
    if (offset + bytes > b->bytes) throw Error("buffer_fill: past the end of the buffer");
    std::memset(static_cast<uint8_t*>(b->data) + offset, value, bytes);
  });
}

tm_status synchronize(tm_backend*, tm_error*) { return TM_OK; }  // every entry is synchronous

size_t workBytes(tm_backend*, tm_kernel kernel, size_t T, size_t n) { return blockWorkers(n) * slabBytes(kernel, T); }

tm_status convert(tm_backend*, const void* src, tm_dtype from, void* dst, tm_dtype to, size_t n, tm_error* err) {
  return guarded(err, [&] {
    const DType f = dtypeOf(from), t = dtypeOf(to);
    const uint8_t* s = static_cast<const uint8_t*>(src);
    uint8_t* d = static_cast<uint8_t*>(dst);
    const size_t block = 1 << 14;
    parallelFor((n + block - 1) / block, 1, [&](size_t b0, size_t b1) {
      std::vector<double> tmp(block);
      for (size_t b = b0; b < b1; b++) {
        size_t start = b * block, len = std::min(block, n - start);
        // Through float64 so every pair converts with one rounding.
        toF64(s + start * dtypeSize(f), f, len, tmp.data());
        fromF64(tmp.data(), len, t, d + start * dtypeSize(t));
      }
    });
  });
}

const tm_backend_iface kIface = [] {
  tm_backend_iface f{};
  f.abi_version = TM_BACKEND_ABI_VERSION;
  f.table_bytes = sizeof(tm_backend_iface);
  f.name = name;
  f.device = device;
  f.linalg = linalgName;
  f.destroy = destroy;
  f.buffer_alloc = bufferAlloc;
  f.buffer_host_view = bufferHostView;
  f.buffer_free = bufferFree;
  f.buffer_data = bufferData;
  f.buffer_size = bufferSize;
  f.copy_to_backend = copyToBackend;
  f.copy_to_host = copyToHost;
  f.buffer_fill = bufferFill;
  f.synchronize = synchronize;
  f.work_bytes = workBytes;
  f.convert = convert;
  f.check_finite = finiteCheck;
  f.linear_combine = linearCombine;
  f.ties_merge = tiesMerge;
  f.ties_signs = tiesSigns;
  f.consensus = consensus;
  f.tall_compress = tallCompress;
  f.tall_mask = tallMask;
  f.tall_apply = tallApply;
  f.mergekit_gta = mergekitGta;
  f.trim_l1 = trimL1;
  f.magnitude_tie_cut = magnitudeTieCut;
  f.lot_norm = lotNorm;
  f.magnitude_hist = magnitudeHist;
  f.magnitude_pick = magnitudePick;
  f.magnitude_small = magnitudeSmall;
  f.ties_sample = tiesSample;
  f.ties_window = tiesWindow;
  f.gemm = gemm;
  f.syrk_rows = syrkRows;
  f.cholesky = cholesky;
  f.cholesky_solve_rows = choleskySolveRows;
  f.eigh = eigh;
  f.breadcrumbs_merge = breadcrumbsMerge;
  f.breadcrumbs_l1 = breadcrumbsL1;
  // Norm statistics, norm drift and mergekit's low precision.
  f.norm_accumulate = normAccumulate;
  f.drift_norm = driftNorm;
  f.mergekit_lowp_hist = mergekitLowpHist;
  f.mergekit_lowp_tie_cut = mergekitLowpTieCut;
  f.mergekit_lowp_l1 = mergekitLowpL1;
  f.mergekit_lowp_gta = mergekitLowpGta;
  f.mergekit_lowp_linear = mergekitLowpLinear;
  // Batched closed-form solves, A += G.
  f.solve_psd_rows_batched = solvePsdRowsBatched;
  f.axpy = axpy;
  return f;
}();

tm_backend kBackend{&kIface, nullptr};

const backend::Registrar kRegistered(&kBackend, "built in");

}  // namespace
}  // namespace cpu
}  // namespace taskmerge

// The CPU backend's table, exported (the addon's only symbol besides Node-API's):
// a backend built apart may run the CPU kernels behind buffers of its own.
// test/fixtures/backends/fake_backend.c does, to count the bytes that cross the
// boundary on a backend without host views.
extern "C" __attribute__((visibility("default"))) const tm_backend_iface* taskmerge_cpu_iface(void) {
  return &taskmerge::cpu::kIface;
}
