// TIES's exact top-k selection (kernels/magnitude_select.cpp): histograms of
// the float32 bits of |τt|, high 16 bits then low 16 bits inside the chosen
// high bin, over every chunk of the scope (all float tensors for the global
// scope), then the pick of the bin holding the k-th largest. Counts are
// float64 in a backend buffer, added with atomics (exact below 2⁵³).
#include <vector>

#include "entries.h"
#include "kernels_common.cuh"

namespace tmcuda {

constexpr uint64_t kHighBins = 1u << 15, kLowBins = 1u << 16;

// Entries of tasks with prefix −1 are neither counted nor checked, as on the CPU.
__global__ void histKernel(ChunkDev c, const int64_t* prefix, int level, double* hist) {
  TM_GRID_STRIDE(i, c.n) {
    const float base = loadF32(c.base, c.baseType, i);
    if (nonFinite(base)) { reportBad(c.bad, i, 0); continue; }
    for (int t = 0; t < c.T; t++) {
      if (prefix[t] < 0) continue;
      const float x = loadF32(c.experts[t], c.types[t], i);
      if (nonFinite(x)) { reportBad(c.bad, i, 1 + t); break; }
      const uint32_t u = bitsOf(x - base) & 0x7fffffffu;
      if (level == 0)
        atomicAdd(hist + t * kHighBins + (u >> 16), 1.0);
      else if (int64_t(u >> 16) == prefix[t])
        atomicAdd(hist + t * kLowBins + (u & 0xffffu), 1.0);
    }
  }
}

tm_status magnitudeHist(tm_backend* be, const tm_chunk* ch, const tm_hist_args* a, tm_hist_result* r, tm_work, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  if (a->level != 0 && a->level != 1) return fail(err, TM_INPUT, "magnitude_hist: level must be 0 or 1");
  // The fused majority-sign reduction of the level-1 pass is not implemented
  // here; the host then runs ties_signs once the thresholds are exact.
  if (a->sign_diff) return fail(err, TM_UNSUPPORTED, "magnitude_hist: the CUDA backend has no fused sign reduction (sign_diff)");
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  CallArgs args(c);
  ChunkArgs at;
  TM_CHECK(prepareChunk(ch, nullptr, args, at, err));
  std::vector<int64_t> prefix(ch->T, 0);
  if (a->level == 1) {
    if (!a->prefix) return fail(err, TM_INPUT, "magnitude_hist: one prefix per expert");
    prefix.assign(a->prefix, a->prefix + ch->T);
  }
  const size_t pAt = args.put(prefix.data(), ch->T);
  TM_CHECK(args.upload(err));
  const ChunkDev d = chunkDev(ch, nullptr, args, at);
  if (ch->n) histKernel<<<gridFor(ch->n), kThreads, 0, c.compute>>>(d, args.at<const int64_t>(pAt), a->level, a->hist);
  if (r) *r = tm_hist_result{0, 0, 0};
  return finishCall(args, ch->offset, chunkInputName, nullptr, nullptr, err);
}

// The pick reads T × bins counts: copied to the host and walked there, as the CPU does.
tm_status magnitudePick(tm_backend* be, const double* hist, size_t bins, size_t T, const double* ks, double* bin, double* rank,
                        tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  if (bins == 0) return fail(err, TM_INPUT, "magnitude_pick: hist must hold T × bins counts");
  Context& c = ctx(be);
  std::vector<double> h(T * bins);
  {
    std::lock_guard<std::mutex> lock(c.mu);
    TM_CUDA_TRY(cudaMemcpyAsync(h.data(), hist, h.size() * sizeof(double), cudaMemcpyDeviceToHost, c.compute));
    TM_CUDA_TRY(cudaStreamSynchronize(c.compute));
  }
  for (size_t t = 0; t < T; t++) {
    const double* ht = h.data() + t * bins;
    const double k = ks[t];
    if (!(k >= 1)) return fail(err, TM_INPUT, "magnitude_pick: k must be at least 1");
    double above = 0;
    size_t b = bins;
    while (b > 0 && above + ht[b - 1] < k) above += ht[--b];
    if (b == 0) return fail(err, TM_INPUT, "magnitude_pick: k exceeds the number of entries of expert %zu", t);
    bin[t] = double(b - 1);
    rank[t] = k - above;
  }
  return TM_OK;
}

}  // namespace tmcuda
