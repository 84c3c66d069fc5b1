// TIES's exact top-k selection (kernels/magnitude_select.cpp): histograms of
// the float32 bits of |τt|, high 16 bits then low 16 bits inside the chosen
// high bin, over every chunk of the scope (all float tensors for the global
// scope), then the pick of the bin holding the k-th largest. Counts are
// float64 in a backend buffer, added with atomics (exact below 2⁵³); so are
// the integer sign differences of the fused reduction.
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

// The level-1 pass with the majority-sign reduction for thresholds known only
// by their high 16 bits (magnitude_select.cpp, fusedSigns): per entry, the
// sums in task order with the tasks above their bin (sum) and above or inside
// it (keep); an entry with no task inside its bin adds its elected sign to
// sign_base, one with a single task u inside adds s_drop to sign_base and
// s_keep − s_drop to sign_diff[u][low bits of |τu|], one with several is
// appended to multi (T float32 τ) while there is room. The CPU appends them
// in block order, the atomics here in any order: the host only sums their signs.
struct FusedDev {
  double* signDiff;
  float* multi;
  unsigned long long* multiCount;
  uint64_t cap;
};

__global__ void fusedHistKernel(ChunkDev c, const int64_t* prefix, double* hist, FusedDev f) {
  __shared__ long long part[kThreads];
  long long s = 0;
  TM_GRID_STRIDE(i, c.n) {
    float base;
    if (!loadEntry(c, i, base)) continue;
    double sum = 0, keep = 0;
    uint32_t nunc = 0, unc = 0;
    for (int t = 0; t < c.T; t++) {
      const float x = loadF32(c.experts[t], c.types[t], i) - base;
      const uint32_t u = bitsOf(x) & 0x7fffffffu, h = u >> 16, p = uint32_t(prefix[t]);
      if (h == p) atomicAdd(hist + t * kLowBins + (u & 0xffffu), 1.0);
      const uint32_t in = h == p, above = h > p;
      sum += double(x) * double(above);
      keep += double(x) * double(above | in);
      nunc += in;
      unc = in ? uint32_t(t) : unc;
    }
    const int sDrop = (sum > 0) - (sum < 0);
    if (nunc == 0) {
      s += sDrop;
    } else if (nunc == 1) {
      const int sKeep = (keep > 0) - (keep < 0);
      s += sDrop;
      const float x = loadF32(c.experts[unc], c.types[unc], i) - base;
      if (sKeep != sDrop) atomicAdd(f.signDiff + unc * kLowBins + (bitsOf(x) & 0xffffu), double(sKeep - sDrop));
    } else {
      const unsigned long long at = atomicAdd(f.multiCount, 1ull);
      if (at < f.cap)
        for (int t = 0; t < c.T; t++) f.multi[at * c.T + t] = loadF32(c.experts[t], c.types[t], i) - base;
    }
  }
  part[threadIdx.x] = s;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w /= 2) {
    if (int(threadIdx.x) < w) part[threadIdx.x] += part[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) atomicAdd(c.sum, (unsigned long long)part[0]);
}

tm_status magnitudeHist(tm_backend* be, const tm_chunk* ch, const tm_hist_args* a, tm_hist_result* r, tm_work, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  if (a->level != 0 && a->level != 1) return fail(err, TM_INPUT, "magnitude_hist: level must be 0 or 1");
  const bool fused = a->level == 1 && a->sign_diff;
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  CallArgs args(c);
  ChunkArgs at;
  TM_CHECK(prepareChunk(ch, nullptr, args, at, err));
  std::vector<int64_t> prefix(ch->T, 0);
  if (a->level == 1) {
    if (!a->prefix) return fail(err, TM_INPUT, "magnitude_hist: one prefix per expert");
    prefix.assign(a->prefix, a->prefix + ch->T);
    for (size_t t = 0; fused && t < ch->T; t++)
      if (prefix[t] < 0) return fail(err, TM_INPUT, "magnitude_hist: the sign reduction needs a prefix for every expert");
  }
  if (fused && a->multi_cap && !a->multi) return fail(err, TM_INPUT, "magnitude_hist: multi is required with multi_cap");
  const size_t pAt = args.put(prefix.data(), ch->T);
  const uint64_t zero = 0;
  const size_t countAt = args.put(&zero, 1);
  float* multi = nullptr;
  if (fused && a->multi_cap) TM_CUDA_TRY(cudaMallocAsync(&multi, a->multi_cap * ch->T * sizeof(float), c.compute));
  struct FreeMulti {
    Context& c;
    float*& p;
    ~FreeMulti() { if (p) cudaFreeAsync(p, c.compute); }
  } freeMulti{c, multi};
  TM_CHECK(args.upload(err));
  const ChunkDev d = chunkDev(ch, nullptr, args, at);
  const int64_t* devPrefix = args.at<const int64_t>(pAt);
  if (ch->n && fused) {
    const FusedDev f{a->sign_diff, multi, args.at<unsigned long long>(countAt), a->multi_cap};
    fusedHistKernel<<<gridFor(ch->n), kThreads, 0, c.compute>>>(d, devPrefix, a->hist, f);
  } else if (ch->n) {
    histKernel<<<gridFor(ch->n), kThreads, 0, c.compute>>>(d, devPrefix, a->level, a->hist);
  }
  uint64_t signBase = 0;
  TM_CHECK(finishCall(args, ch->offset, chunkInputName, nullptr, &signBase, err));
  tm_hist_result res{0, 0, 0};
  if (fused) {
    uint64_t count = 0;
    TM_CUDA_TRY(cudaMemcpyAsync(&count, args.at<uint64_t>(countAt), 8, cudaMemcpyDeviceToHost, c.compute));
    TM_CUDA_TRY(cudaStreamSynchronize(c.compute));
    res.sign_base = int64_t(signBase);
    res.overflow = count > a->multi_cap;
    res.multi_count = res.overflow ? 0 : size_t(count);
    if (res.multi_count)
      TM_CUDA_TRY(cudaMemcpy(a->multi, multi, res.multi_count * ch->T * sizeof(float), cudaMemcpyDeviceToHost));
  }
  if (r) *r = res;
  return TM_OK;
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
