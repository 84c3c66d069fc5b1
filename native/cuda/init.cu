// The exported entry point tm_backend_init and the table of the CUDA backend.
// Without a usable device (no driver, no GPU) init still succeeds: the
// backend reports "no device" and every entry refuses with TM_NO_DEVICE.
// Every entry of the table is implemented.
#include <cstring>

#include "context.h"
#include "entries.h"
#include "extras.h"

namespace tmcuda {
namespace {

const char* name(tm_backend*) { return "cuda"; }
void device(tm_backend* be, tm_device_info* info) { *info = ctx(be).info; }
const char* linalgName(tm_backend*) { return "cublas+cusolver"; }
void destroy(tm_backend* be) {
  destroyContext(&ctx(be));
  delete be;
}

tm_backend_iface makeTable() {
  tm_backend_iface t;
  std::memset(&t, 0, sizeof t);
  t.abi_version = TM_BACKEND_ABI_VERSION;
  t.table_bytes = sizeof(tm_backend_iface);
  t.name = name;
  t.device = device;
  t.linalg = linalgName;
  t.destroy = destroy;
  t.buffer_alloc = bufferAlloc;
  t.buffer_host_view = bufferHostView;
  t.buffer_free = bufferFree;
  t.buffer_data = bufferData;
  t.buffer_size = bufferSize;
  t.copy_to_backend = copyToBackend;
  t.copy_to_host = copyToHost;
  t.buffer_fill = bufferFill;
  t.synchronize = synchronize;
  t.work_bytes = workBytes;
  t.convert = convert;
  t.check_finite = checkFinite;
  t.linear_combine = linearCombine;
  t.ties_merge = tiesMerge;
  t.ties_signs = tiesSigns;
  t.consensus = consensus;
  t.tall_compress = tallCompress;
  t.tall_mask = tallMask;
  t.tall_apply = tallApply;
  t.mergekit_gta = mergekitGta;
  t.trim_l1 = trimL1;
  t.magnitude_tie_cut = magnitudeTieCut;
  t.lot_norm = lotNorm;
  t.magnitude_hist = magnitudeHist;
  t.magnitude_pick = magnitudePick;
  t.magnitude_small = magnitudeSmall;
  t.ties_sample = tiesSample;
  t.ties_window = tiesWindow;
  t.gemm = gemm;
  t.syrk_rows = syrkRows;
  t.cholesky = cholesky;
  t.cholesky_solve_rows = choleskySolveRows;
  t.eigh = eigh;
  t.breadcrumbs_merge = breadcrumbsMerge;
  t.breadcrumbs_l1 = breadcrumbsL1;
  t.solve_psd_rows_batched = solvePsdRowsBatched;
  t.axpy = axpy;
  // pinned host memory and overlapped copies (transfers)
  t.host_register = hostRegister;
  t.host_unregister = hostUnregister;
  t.copy_to_backend_async = copyToBackendAsync;
  t.copy_to_host_async = copyToHostAsync;
  t.copy_wait = copyWait;
  return t;
}

const tm_backend_iface kTable = makeTable();

const char* const kEntries[] = {"buffer_alloc", "copy_to_backend", "copy_to_host", "buffer_fill", "synchronize",
                                "convert", "check_finite", "linear_combine", "ties_merge", "ties_signs", "consensus",
                                "tall_compress", "tall_mask", "tall_apply", "lot_norm", "magnitude_hist",
                                "magnitude_pick", "gemm", "syrk_rows", "cholesky", "cholesky_solve_rows", "eigh",
                                "mergekit_gta", "trim_l1", "magnitude_tie_cut", "magnitude_small", "ties_sample", "ties_window",
                                "breadcrumbs_merge", "breadcrumbs_l1", "solve_psd_rows_batched", "axpy",
                                // pinned host memory and overlapped copies (transfers)
                                "host_register", "copy_to_backend_async", "copy_to_host_async", "copy_wait",
                                nullptr};

}  // namespace
}  // namespace tmcuda

extern "C" __attribute__((visibility("default"))) int tm_backend_init(int abi_version, const tm_host_services*, tm_backend** out) {
  *out = nullptr;
  if (abi_version != TM_BACKEND_ABI_VERSION) return TM_ABI_MISMATCH;
  tmcuda::Context* c = tmcuda::createContext();
  *out = new tm_backend{&tmcuda::kTable, c};
  return TM_OK;
}

extern "C" __attribute__((visibility("default"))) const char* const* tm_cuda_entries(void) { return tmcuda::kEntries; }
