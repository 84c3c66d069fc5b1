// mergekit's generalized task arithmetic and its helpers (the L1 rescale
// norms, the exactly-k tie cut) and the breadcrumbs kernels, as the CPU
// backend's merge_kernels.cpp and breadcrumbs_kernels.cpp compute them (the
// per-entry maths in element.h).
//
// The L1 norms and the tie cut depend on the order of entries: the CPU sums
// each block of 4096 entries in index order and adds the block sums in block
// order, and finds the need-th tied entry in index order. Here one thread
// walks one (block, task) pair in index order, and the host adds the block
// results in block order (element.h: l1Block, addBlockSums, tieCutBlock).
#include <vector>

#include "entries.h"
#include "kernels_common.cuh"

namespace tmcuda {

namespace {

// ---- mergekit_gta ---------------------------------------------------------------

struct GtaDev {
  const double* w;
  const double* s;
  int sum, normalize;
  double lambda, divisor, baseScale;
};

__global__ void gtaKernel(ChunkDev c, GtaDev g) {
  TM_GRID_STRIDE(i, c.n) {
    float base;
    if (!loadEntry(c, i, base)) continue;
    const TrimmedTau hat{c, i, base};
    const double mixed = mixTasks(c.T, [&](int t) { return gtaTask(g.w[t], g.s[t], hat(t)); }, g.w, g.sum != 0, g.normalize != 0, g.divisor);
    storeF32(c.out, c.outType, i, gtaMerged(base, g.baseScale, g.lambda, mixed));
  }
}

// ---- breadcrumbs ------------------------------------------------------------------

struct SetsDev {
  const uint32_t* dropBits;
  const double* dropCuts;
  const uint32_t* keepBits;
  const double* keepCuts;
  __device__ bool kept(int t, float tau, uint64_t index) const {
    return breadcrumbsKept(tau, index, dropBits[t], dropCuts[t], keepBits[t], keepCuts[t]);
  }
};

struct BreadcrumbsDev {
  SetsDev sets;
  const double* w;
  const double* s;
  int consensus, normalize;
  double lambda, divisor;
};

__global__ void breadcrumbsKernel(ChunkDev c, BreadcrumbsDev b) {
  TM_GRID_STRIDE(i, c.n) {
    float base;
    if (!loadEntry(c, i, base)) continue;
    const RawTau tau{c, i, base};
    const uint64_t index = c.offset + i;
    auto d = [&](int t) {
      const float x = tau(t);
      return breadcrumbsTask(b.sets.kept(t, x, index), b.w[t], b.s[t], x);
    };
    const double mixed = mixTasks(c.T, d, b.w, b.consensus != 0, b.normalize != 0, b.divisor);
    storeF32(c.out, c.outType, i, breadcrumbsMerged(base, b.lambda, mixed));
  }
}

// The top sets of a call in its CallArgs.
struct SetsAt {
  size_t dropBits, dropCuts, keepBits, keepCuts;
};
SetsAt putSets(CallArgs& args, const tm_top_sets& s, size_t T) {
  return {args.put(s.drop_bits, T), args.put(s.drop_cuts, T), args.put(s.keep_bits, T), args.put(s.keep_cuts, T)};
}
SetsDev setsDev(const CallArgs& args, const SetsAt& at) {
  return {args.at<const uint32_t>(at.dropBits), args.at<const double>(at.dropCuts), args.at<const uint32_t>(at.keepBits),
          args.at<const double>(at.keepCuts)};
}
bool setsGiven(const tm_top_sets* s) { return s && s->drop_bits && s->drop_cuts && s->keep_bits && s->keep_cuts; }

// ---- per-(block, task) walks: L1 sums and tie counts ------------------------------

// One thread per (block of kSumBlock entries, task), task fastest: thread j
// walks block j / T of task j % T.
__device__ __forceinline__ void blockTask(const ChunkDev& c, uint64_t j, uint64_t& start, uint64_t& len, int& t) {
  t = int(j % uint64_t(c.T));
  start = j / uint64_t(c.T) * kSumBlock;
  len = c.n - start < kSumBlock ? c.n - start : kSumBlock;
}

// τt of entry i, reporting a non-finite θ0 or θt as loadEntry does (the smallest key wins).
__device__ __forceinline__ float checkedTau(const ChunkDev& c, int t, uint64_t i) {
  const float base = loadF32(c.base, c.baseType, i), x = loadF32(c.experts[t], c.types[t], i);
  if (nonFinite(base)) reportBad(c.bad, i, 0);
  if (nonFinite(x)) reportBad(c.bad, i, 1 + t);
  return x - base;
}

// part[(b·T + t)·2 + {0, 1}] = block b's Σ|τt| and Σ|τ̂t| (trim_l1) or Σ|τt|
// over the kept entries (breadcrumbs_l1, useSets).
__global__ void l1Kernel(ChunkDev c, SetsDev sets, int useSets, double* part) {
  const uint64_t blocks = (c.n + kSumBlock - 1) / kSumBlock;
  TM_GRID_STRIDE(j, blocks * uint64_t(c.T)) {
    uint64_t start, len;
    int t;
    blockTask(c, j, start, len, t);
    auto tau = [&](uint64_t q) { return checkedTau(c, t, start + q); };
    double a, k;
    if (useSets)
      l1Block(len, tau, [&](uint64_t q, float x) { return sets.kept(t, x, c.offset + start + q) ? x : 0.0f; }, a, k);
    else
      l1Block(len, tau, [&](uint64_t q, float x) { return trimEntry(c.trimMode, c.trims[t], c.density, x, c.offset + start + q); }, a, k);
    part[2 * j] = a;
    part[2 * j + 1] = k;
  }
}

// counts[b·T + t] = entries of block b with bits(|τt|) == thr[t].
__global__ void tieCountKernel(ChunkDev c, const uint32_t* thr, uint32_t* counts) {
  const uint64_t blocks = (c.n + kSumBlock - 1) / kSumBlock;
  TM_GRID_STRIDE(j, blocks * uint64_t(c.T)) {
    uint64_t start, len;
    int t;
    blockTask(c, j, start, len, t);
    uint32_t n = 0;
    for (uint64_t q = 0; q < len; q++) n += absBits(checkedTau(c, t, start + q)) == thr[t];
    counts[j] = n;
  }
}

// For task t with a target block (block[t] ≥ 0): at[t] = chunk index + 1 of its
// rank[t]-th entry at the threshold, in index order.
__global__ void tieFindKernel(ChunkDev c, const uint32_t* thr, const int64_t* block, const double* rank, double* at) {
  TM_GRID_STRIDE(t, uint64_t(c.T)) {
    if (block[t] < 0) continue;
    const uint64_t start = uint64_t(block[t]) * kSumBlock, len = c.n - start < kSumBlock ? c.n - start : kSumBlock;
    const int64_t q = nthTie(len, [&](uint64_t p) { return loadF32(c.experts[t], c.types[t], start + p) - loadF32(c.base, c.baseType, start + p); },
                             thr[t], rank[t]);
    if (q >= 0) at[t] = double(start + uint64_t(q) + 1);
  }
}

// The L1 sums of a chunk (trim or sets), added to l1 and kept in block order.
tm_status l1Sums(tm_backend* be, const tm_chunk* ch, const tm_trim* trim, const tm_top_sets* sets, double* l1, double* kept,
                 tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  CallArgs args(c);
  ChunkArgs at;
  TM_CHECK(prepareChunk(ch, trim, args, at, err));
  SetsAt sAt{};
  if (sets) sAt = putSets(args, *sets, ch->T);
  const size_t T = ch->T, blocks = (ch->n + kSumBlock - 1) / kSumBlock;
  CallScratch part(c);
  TM_CHECK(part.alloc(blocks * 2 * T * sizeof(double), err));
  TM_CHECK(args.upload(err));
  const SetsDev sd = sets ? setsDev(args, sAt) : SetsDev{};
  const ChunkDev d = chunkDev(ch, trim, args, at);
  if (blocks) l1Kernel<<<gridFor(blocks * T), kThreads, 0, c.compute>>>(d, sd, sets != nullptr, part.as<double>());
  TM_CHECK(finishCall(args, ch->offset, chunkInputName, nullptr, nullptr, err));
  std::vector<double> p(blocks * 2 * T);
  TM_CHECK(readBack(c, p.data(), part.as<double>(), p.size() * sizeof(double), err));
  for (size_t t = 0; t < T; t++) {
    l1[t] = addBlockSums(l1[t], p.data() + 2 * t, blocks, 2 * T);
    kept[t] = addBlockSums(kept[t], p.data() + 2 * t + 1, blocks, 2 * T);
  }
  return TM_OK;
}

}  // namespace

tm_status mergekitGta(tm_backend* be, const tm_chunk* ch, const tm_trim* trim, const tm_gta_args* a, tm_work, tm_error* err) {
  if (!a->weights || !a->scales) return fail(err, TM_INPUT, "mergekit_gta: weights and scales are required");
  std::vector<double> ws(a->weights, a->weights + ch->T);
  ws.insert(ws.end(), a->scales, a->scales + ch->T);
  const size_t T = ch->T;
  return runChunk(be, ch, trim, ws.data(), ws.size() * sizeof(double), true, nullptr, err,
                  [&](const ChunkDev& d, const double* x, cudaStream_t s) {
                    const GtaDev g{x, x + T, a->consensus_sum, a->normalize, a->lambda, a->divisor, a->base_scale};
                    gtaKernel<<<gridFor(d.n), kThreads, 0, s>>>(d, g);
                  });
}

tm_status trimL1(tm_backend* be, const tm_chunk* ch, const tm_trim* trim, double* l1, double* kept, tm_work, tm_error* err) {
  return l1Sums(be, ch, trim, nullptr, l1, kept, err);
}

tm_status breadcrumbsL1(tm_backend* be, const tm_chunk* ch, const tm_top_sets* sets, double* l1, double* kept, tm_work, tm_error* err) {
  if (!setsGiven(sets)) return fail(err, TM_INPUT, "breadcrumbs_l1: the four top-set lists are required");
  return l1Sums(be, ch, nullptr, sets, l1, kept, err);
}

tm_status breadcrumbsMerge(tm_backend* be, const tm_chunk* ch, const tm_breadcrumbs_args* a, tm_work, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  if (!ch->out) return fail(err, TM_INPUT, "breadcrumbs_merge: missing out buffer");
  if (!setsGiven(&a->sets) || !a->weights || !a->scales) return fail(err, TM_INPUT, "breadcrumbs_merge: sets, weights and scales are required");
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  CallArgs args(c);
  ChunkArgs at;
  TM_CHECK(prepareChunk(ch, nullptr, args, at, err));
  const SetsAt sAt = putSets(args, a->sets, ch->T);
  const size_t wAt = args.put(a->weights, ch->T), sc = args.put(a->scales, ch->T);
  TM_CHECK(args.upload(err));
  const BreadcrumbsDev b{setsDev(args, sAt), args.at<const double>(wAt), args.at<const double>(sc), a->consensus, a->normalize,
                         a->lambda, a->divisor};
  const ChunkDev d = chunkDev(ch, nullptr, args, at);
  if (ch->n) breadcrumbsKernel<<<gridFor(ch->n), kThreads, 0, c.compute>>>(d, b);
  return finishCall(args, ch->offset, chunkInputName, nullptr, nullptr, err);
}

tm_status magnitudeTieCut(tm_backend* be, const tm_chunk* ch, const uint32_t* thresholds, const double* need, double* count, double* at,
                          tm_work, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  if (!thresholds || !need) return fail(err, TM_INPUT, "magnitude_tie_cut: thresholds and need are required");
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  const size_t T = ch->T, blocks = (ch->n + kSumBlock - 1) / kSumBlock;
  CallArgs args(c);
  ChunkArgs ca;
  TM_CHECK(prepareChunk(ch, nullptr, args, ca, err));
  const size_t thrAt = args.put(thresholds, T);
  // The second pass's targets, filled in once the counts are known.
  const std::vector<int64_t> none(T, -1);
  const std::vector<double> zeros(T, 0.0);
  const size_t blockAt = args.put(none.data(), T), rankAt = args.put(zeros.data(), T), atAt = args.put(zeros.data(), T);
  CallScratch counts(c);
  TM_CHECK(counts.alloc(blocks * T * sizeof(uint32_t), err));
  TM_CHECK(args.upload(err));
  const ChunkDev d = chunkDev(ch, nullptr, args, ca);
  if (blocks) tieCountKernel<<<gridFor(blocks * T), kThreads, 0, c.compute>>>(d, args.at<const uint32_t>(thrAt), counts.as<uint32_t>());
  TM_CHECK(finishCall(args, ch->offset, chunkInputName, nullptr, nullptr, err));
  std::vector<uint32_t> h(blocks * T);
  TM_CHECK(readBack(c, h.data(), counts.as<uint32_t>(), h.size() * sizeof(uint32_t), err));
  std::vector<int64_t> block(T);
  std::vector<double> rank(T, 0.0);
  bool any = false;
  for (size_t t = 0; t < T; t++) {
    block[t] = tieCutBlock(h.data() + t, blocks, T, need[t], count[t], rank[t]);
    at[t] = 0;
    any = any || block[t] >= 0;
  }
  if (!any) return TM_OK;
  TM_CUDA_TRY(cudaMemcpyAsync(args.at<int64_t>(blockAt), block.data(), T * sizeof(int64_t), cudaMemcpyHostToDevice, c.compute));
  TM_CUDA_TRY(cudaMemcpyAsync(args.at<double>(rankAt), rank.data(), T * sizeof(double), cudaMemcpyHostToDevice, c.compute));
  tieFindKernel<<<gridFor(T), kThreads, 0, c.compute>>>(d, args.at<const uint32_t>(thrAt), args.at<const int64_t>(blockAt),
                                                        args.at<const double>(rankAt), args.at<double>(atAt));
  TM_CUDA_TRY(cudaGetLastError());
  return readBack(c, at, args.at<double>(atAt), T * sizeof(double), err);
}

}  // namespace tmcuda
