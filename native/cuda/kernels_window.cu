// TIES's sampled-window selection (kernels/ties_window.cpp has the algorithm)
// and the in-memory selection of small tensors, as the CPU backend's
// select_kernels.cpp computes them (per-entry maths in element.h).
//
// Order: ties_window appends the undecided entries to the candidate lists and
// the entries with several undecided tasks to `multi` in whatever order the
// threads reach them; so does the CPU (its blocks claim list space through an
// atomic cursor). The host consumes only order-free functions of them:
// ties_window_pick sorts a task's candidates by bits and sums counts and sign
// differences over whole runs of equal bits, and the multi entries' elected
// signs are summed. Counts, sign sums, table counts and the cursors `used`
// are integer sums, the same in any order.
#include <cub/device/device_segmented_radix_sort.cuh>
#include <vector>

#include "entries.h"
#include "kernels_common.cuh"

namespace tmcuda {

namespace {

// ---- ties_sample ------------------------------------------------------------------

__global__ void sampleKernel(ChunkDev c, uint32_t* bits, uint64_t m, uint64_t at) {
  TM_GRID_STRIDE(i, c.n) {
    float base;
    if (!loadEntry(c, i, base)) continue;
    const RawTau tau{c, i, base};
    for (int t = 0; t < c.T; t++) bits[uint64_t(t) * m + at + i] = absBits(tau(t));
  }
}

// ---- ties_window --------------------------------------------------------------------

struct WindowDev {
  const uint32_t* lo;
  const uint32_t* hi;
  const uint32_t* table;  // T × kWindowTable
  uint64_t capacity;
  uint32_t* cand;
  int8_t* candDiff;
  unsigned long long* used;
  unsigned long long* tableCounts;
  unsigned long long* tableDiffs;  // int64 added as two's complement
  unsigned long long* counts;      // above[T], atHi[T] (device, this call)
  unsigned long long* full;
  float* multi;
  unsigned long long* multiCount;
  uint64_t multiCap;
};

// The tabled value is counted in place; any other goes to task t's list.
__device__ __forceinline__ void record(const WindowDev& w, unsigned long long* tc, unsigned long long* td, int t, uint32_t x, int d) {
  const int j = tableSlot(w.table + uint64_t(t) * kWindowTable, x);
  if (j >= 0) {
    atomicAdd(tc + t * kWindowTable + j, 1ull);
    if (d) atomicAdd(td + t * kWindowTable + j, (unsigned long long)(long long)d);
    return;
  }
  const unsigned long long at = atomicAdd(w.used + t, 1ull);
  if (at >= w.capacity) {
    atomicExch(w.full, 1ull);
    return;
  }
  w.cand[uint64_t(t) * w.capacity + at] = x;
  w.candDiff[uint64_t(t) * w.capacity + at] = int8_t(d);
}

// Local: per-block counters in shared memory (above, atHi, table counts and
// differences: 2T + 2·16T values), added to the call's once per block; else
// straight into the call's (many experts).
template <bool Local>
__global__ void windowKernel(ChunkDev c, WindowDev w) {
  extern __shared__ unsigned long long sh[];
  __shared__ long long part[kThreads];
  const int T = c.T;
  unsigned long long* counts = Local ? sh : w.counts;
  unsigned long long* tc = Local ? sh + 2 * T : w.tableCounts;
  unsigned long long* td = Local ? sh + 2 * T + T * kWindowTable : w.tableDiffs;
  const int local = 2 * T + 2 * T * kWindowTable;
  if (Local) {
    for (int j = threadIdx.x; j < local; j += blockDim.x) sh[j] = 0;
    __syncthreads();
  }
  long long s = 0;
  TM_GRID_STRIDE(i, c.n) {
    float base;
    if (!loadEntry(c, i, base)) continue;
    const RawTau tau{c, i, base};
    const WindowEntry e = windowEntry(T, tau, w.lo, w.hi);
    for (int t = 0; t < T; t++) {
      const uint32_t u = absBits(tau(t));
      if (u >= w.hi[t]) atomicAdd(counts + t, 1ull);
      if (u == w.hi[t]) atomicAdd(counts + T + t, 1ull);
    }
    if (e.nin == 0) {
      s += signOf(e.sum);
    } else if (e.nin == 1) {
      const int sDrop = signOf(e.sum), sKeep = signOf(e.keep);
      s += sDrop;
      record(w, tc, td, e.last, absBits(tau(e.last)), sKeep - sDrop);
    } else {
      for (int t = 0; t < T; t++) {
        const uint32_t x = absBits(tau(t));
        if (x >= w.lo[t] && x < w.hi[t]) record(w, tc, td, t, x, 0);
      }
      const unsigned long long at = atomicAdd(w.multiCount, 1ull);
      if (at < w.multiCap)
        for (int t = 0; t < T; t++) w.multi[at * T + t] = tau(t);
    }
  }
  part[threadIdx.x] = s;
  __syncthreads();
  for (int k = kThreads / 2; k > 0; k /= 2) {
    if (int(threadIdx.x) < k) part[threadIdx.x] += part[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) atomicAdd(c.sum, (unsigned long long)part[0]);
  if (Local) {
    for (int j = threadIdx.x; j < 2 * T; j += blockDim.x)
      if (sh[j]) atomicAdd(w.counts + j, sh[j]);
    for (int j = threadIdx.x; j < T * kWindowTable; j += blockDim.x) {
      if (tc[j]) atomicAdd(w.tableCounts + j, tc[j]);
      if (td[j]) atomicAdd(w.tableDiffs + j, td[j]);
    }
  }
}

constexpr size_t kLocalWindowBytes = 40 << 10;  // shared memory for the per-block counters

// ---- magnitude_small ----------------------------------------------------------------

// Whole-tensor order for a non-finite input (the CPU checks all of θ0, then
// all of θ0's experts in turn): the key is (input, entry).
__device__ __forceinline__ void reportWhole(unsigned long long* bad, uint64_t i, uint32_t input) {
  atomicMin(bad, (unsigned long long)((uint64_t(input) << 40) | i));
}

// bits[t·n + i] = bits(|τt[i]|), reporting non-finite inputs in whole-tensor order.
__global__ void smallBitsKernel(ChunkDev c, uint32_t* bits) {
  TM_GRID_STRIDE(i, c.n) {
    const float base = loadF32(c.base, c.baseType, i);
    if (nonFinite(base)) reportWhole(c.bad, i, 0);
    for (int t = 0; t < c.T; t++) {
      const float x = loadF32(c.experts[t], c.types[t], i);
      if (nonFinite(x)) reportWhole(c.bad, i, 1 + t);
      bits[uint64_t(t) * c.n + i] = absBits(x - base);
    }
  }
}

// thr[t] = sorted[t·n + k − 1]: the k-th largest of task t (segments sorted descending).
__global__ void smallPickKernel(const uint32_t* sorted, uint64_t n, uint64_t k, int T, uint32_t* thr) {
  TM_GRID_STRIDE(t, uint64_t(T)) thr[t] = sorted[t * n + k - 1];
}

__global__ void smallSignKernel(ChunkDev c, const uint32_t* thr) {
  __shared__ long long part[kThreads];
  long long s = 0;
  TM_GRID_STRIDE(i, c.n) {
    const float base = loadF32(c.base, c.baseType, i);
    s += thresholdSign(c.T, RawTau{c, i, base}, thr);
  }
  part[threadIdx.x] = s;
  __syncthreads();
  for (int k = kThreads / 2; k > 0; k /= 2) {
    if (int(threadIdx.x) < k) part[threadIdx.x] += part[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) atomicAdd(c.sum, (unsigned long long)part[0]);
}

}  // namespace

tm_status tiesSample(tm_backend* be, const tm_chunk* ch, uint32_t* bits, size_t m, size_t at, tm_work, tm_error* err) {
  if (at + ch->n > m) return fail(err, TM_INPUT, "ties_sample: the chunk must fit in the sample of m entries at `at`");
  return runChunk(be, ch, nullptr, nullptr, 0, false, nullptr, err, [&](const ChunkDev& d, const double*, cudaStream_t s) {
    sampleKernel<<<gridFor(d.n), kThreads, 0, s>>>(d, bits, m, at);
  });
}

tm_status tiesWindow(tm_backend* be, const tm_chunk* ch, const tm_window_args* a, tm_window_result* r, tm_work, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  const size_t T = ch->T;
  if (!a->lo || !a->hi || !a->table) return fail(err, TM_INPUT, "ties_window: lo, hi and table are required");
  if (a->multi_cap && !a->multi) return fail(err, TM_INPUT, "ties_window: multi is required with multi_cap");
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  CallArgs args(c);
  ChunkArgs ca;
  TM_CHECK(prepareChunk(ch, nullptr, args, ca, err));
  const size_t loAt = args.put(a->lo, T), hiAt = args.put(a->hi, T), tableAt = args.put(a->table, T * kWindowTable);
  const std::vector<uint64_t> zeros(2 * T + 2, 0);
  const size_t countsAt = args.put(zeros.data(), zeros.size());  // above, atHi, full, multi count
  CallScratch multi(c);
  TM_CHECK(multi.alloc(a->multi_cap * T * sizeof(float), err));
  TM_CHECK(args.upload(err));
  unsigned long long* counts = args.at<unsigned long long>(countsAt);
  const WindowDev w{args.at<const uint32_t>(loAt), args.at<const uint32_t>(hiAt), args.at<const uint32_t>(tableAt), a->capacity,
                    a->cand, a->cand_diff, reinterpret_cast<unsigned long long*>(a->used),
                    reinterpret_cast<unsigned long long*>(a->table_counts), reinterpret_cast<unsigned long long*>(a->table_diffs),
                    counts, counts + 2 * T, multi.as<float>(), counts + 2 * T + 1, a->multi_cap};
  const ChunkDev d = chunkDev(ch, nullptr, args, ca);
  const size_t localBytes = (2 * T + 2 * T * kWindowTable) * sizeof(unsigned long long);
  if (ch->n && localBytes <= kLocalWindowBytes)
    windowKernel<true><<<gridFor(ch->n), kThreads, localBytes, c.compute>>>(d, w);
  else if (ch->n)
    windowKernel<false><<<gridFor(ch->n), kThreads, 0, c.compute>>>(d, w);
  uint64_t signBase = 0;
  TM_CHECK(finishCall(args, ch->offset, chunkInputName, nullptr, &signBase, err));
  std::vector<uint64_t> h(2 * T + 2);
  TM_CHECK(readBack(c, h.data(), counts, h.size() * sizeof(uint64_t), err));
  for (size_t t = 0; t < T; t++) r->above[t] += h[t], r->at_hi[t] += h[T + t];
  r->sign_base = int64_t(signBase);
  r->full = h[2 * T] ? 1 : 0;
  r->overflow = h[2 * T + 1] > a->multi_cap ? 1 : 0;
  r->multi_count = r->overflow ? 0 : size_t(h[2 * T + 1]);
  return readBack(c, a->multi, multi.as<float>(), r->multi_count * T * sizeof(float), err);
}

tm_status magnitudeSmall(tm_backend* be, const tm_chunk* ch, size_t k, uint32_t* thresholds, int64_t* signSum, tm_work, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  const size_t T = ch->T, n = ch->n;
  if (ch->offset != 0) return fail(err, TM_INPUT, "magnitude_small: the chunk must be the whole tensor (offset 0)");
  if (k < 1 || k > n) return fail(err, TM_INPUT, "magnitude_small: k must be in 1..n");
  if (T * n > size_t(INT32_MAX)) return fail(err, TM_UNSUPPORTED, "magnitude_small: the tensor is too large for the in-memory selection");
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  CallArgs args(c);
  ChunkArgs ca;
  TM_CHECK(prepareChunk(ch, nullptr, args, ca, err));
  std::vector<int> offsets(T + 1);
  for (size_t t = 0; t <= T; t++) offsets[t] = int(t * n);
  const size_t offAt = args.put(offsets.data(), T + 1);
  const std::vector<uint32_t> none(T, 0);
  const size_t thrAt = args.put(none.data(), T);
  TM_CHECK(args.upload(err));
  const ChunkDev d = chunkDev(ch, nullptr, args, ca);
  CallScratch bits(c), sorted(c), temp(c);
  TM_CHECK(bits.alloc(T * n * sizeof(uint32_t), err));
  TM_CHECK(sorted.alloc(T * n * sizeof(uint32_t), err));
  smallBitsKernel<<<gridFor(n), kThreads, 0, c.compute>>>(d, bits.as<uint32_t>());
  uint64_t slots[2];
  TM_CHECK(args.results(slots, err));
  if (slots[0] != kNoBad) {
    const uint32_t input = uint32_t(slots[0] >> 40);
    const int64_t i = int64_t(slots[0] & ((uint64_t(1) << 40) - 1));
    const InputName in = chunkInputName(input, nullptr);
    return nonFiniteInput(err, in.role, in.index, i, in.arg);
  }
  // The k-th largest of each task: its segment sorted in descending order (the value does not depend on the order of ties).
  const int* dOff = args.at<const int>(offAt);
  size_t tempBytes = 0;
  TM_CUDA_TRY(cub::DeviceSegmentedRadixSort::SortKeysDescending(nullptr, tempBytes, bits.as<uint32_t>(), sorted.as<uint32_t>(), int(T * n),
                                                                 int(T), dOff, dOff + 1, 0, 31, c.compute));
  TM_CHECK(temp.alloc(tempBytes, err));
  TM_CUDA_TRY(cub::DeviceSegmentedRadixSort::SortKeysDescending(temp.as<void>(), tempBytes, bits.as<uint32_t>(), sorted.as<uint32_t>(),
                                                                 int(T * n), int(T), dOff, dOff + 1, 0, 31, c.compute));
  uint32_t* dThr = args.at<uint32_t>(thrAt);
  smallPickKernel<<<1, kThreads, 0, c.compute>>>(sorted.as<uint32_t>(), n, k, int(T), dThr);
  smallSignKernel<<<gridFor(n), kThreads, 0, c.compute>>>(d, dThr);
  TM_CHECK(args.results(slots, err));
  *signSum = int64_t(slots[1]);
  return readBack(c, thresholds, dThr, T * sizeof(uint32_t), err);
}

}  // namespace tmcuda
