// Conversion, the finite check and the merging block kernels: linear combine
// (task arithmetic, average, DARE), TIES merge and sign reduction, consensus,
// LOT's norm layers. Per entry they do what native/core and native/kernels do
// (see element.h for which function mirrors which).
#include "entries.h"
#include "kernels_common.cuh"

namespace tmcuda {

// ---- convert, check_finite ---------------------------------------------------

__global__ void convertKernel(const void* src, int from, void* dst, int to, uint64_t n) {
  TM_GRID_STRIDE(i, n) storeF64(dst, to, i, loadF64(src, from, i));
}

tm_status convert(tm_backend* be, const void* src, tm_dtype from, void* dst, tm_dtype to, size_t n, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  if (int(from) < F64 || int(from) > BF16 || int(to) < F64 || int(to) > BF16)
    return fail(err, TM_INPUT, "convert: both dtypes must be floating point");
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  if (n) convertKernel<<<gridFor(n), kThreads, 0, c.compute>>>(src, int(from), dst, int(to), n);
  TM_CUDA_TRY(cudaGetLastError());
  return TM_OK;
}

__global__ void firstBadKernel(const void* data, int t, uint64_t n, unsigned long long* first) {
  TM_GRID_STRIDE(i, n) {
    bool bad;
    switch (t) {
      case F64: bad = (static_cast<const uint64_t*>(data)[i] & 0x7ff0000000000000ull) == 0x7ff0000000000000ull; break;
      case F32: bad = (static_cast<const uint32_t*>(data)[i] & 0x7f800000u) == 0x7f800000u; break;
      case F16: bad = (static_cast<const uint16_t*>(data)[i] & 0x7c00u) == 0x7c00u; break;
      default: bad = (static_cast<const uint16_t*>(data)[i] & 0x7f80u) == 0x7f80u; break;
    }
    if (bad) atomicMin(first, (unsigned long long)i);
  }
}

tm_status checkFinite(tm_backend* be, const void* data, tm_dtype dtype, size_t n, int64_t* firstBad, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  if (int(dtype) < F64 || int(dtype) > BF16) return fail(err, TM_INPUT, "check_finite: not a floating-point dtype");
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  CallArgs args(c);
  TM_CHECK(args.upload(err));
  if (n) firstBadKernel<<<gridFor(n), kThreads, 0, c.compute>>>(data, int(dtype), n, args.at<unsigned long long>(0));
  uint64_t slots[2];
  TM_CHECK(args.results(slots, err));
  *firstBad = slots[0] == kNoBad ? -1 : int64_t(slots[0]);
  return TM_OK;
}

// ---- the merging kernels --------------------------------------------------------

__global__ void linearKernel(ChunkDev c, const double* coeffs) {
  TM_GRID_STRIDE(i, c.n) {
    float base;
    if (!loadEntry(c, i, base)) continue;
    storeF32(c.out, c.outType, i, linearCombine(base, coeffs, c.T, TrimmedTau{c, i, base}));
  }
}

__global__ void tiesMergeKernel(ChunkDev c, int maj, int mean, double lambda) {
  TM_GRID_STRIDE(i, c.n) {
    float base;
    if (!loadEntry(c, i, base)) continue;
    const double agg = tiesAggregate(c.T, maj, mean != 0, TrimmedTau{c, i, base});
    storeF32(c.out, c.outType, i, addScaled(base, agg, lambda));
  }
}

// Σ sign(Σt τ̂t) over the chunk: per-block sums, one 64-bit atomic per block
// (two's complement wraps, so signed sums add correctly as unsigned).
__global__ void tiesSignsKernel(ChunkDev c) {
  __shared__ long long part[kThreads];
  long long s = 0;
  TM_GRID_STRIDE(i, c.n) {
    float base;
    if (!loadEntry(c, i, base)) continue;
    s += electedSign(c.T, TrimmedTau{c, i, base});
  }
  part[threadIdx.x] = s;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w /= 2) {
    if (int(threadIdx.x) < w) part[threadIdx.x] += part[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) atomicAdd(c.sum, (unsigned long long)part[0]);
}

// consensus.cpp: the kept value is exactly task_arithmetic's (ct = λ) or
// ties_merge "sum"'s; the masks compare the untrimmed τt with float(τMTL).
__global__ void consensusKernel(ChunkDev c, const double* lam, int ties, int maj, double tallLambda, double lambda, double k) {
  TM_GRID_STRIDE(i, c.n) {
    float base;
    if (!loadEntry(c, i, base)) continue;
    double mtl;
    float merged;
    if (ties) {
      mtl = tiesAggregate(c.T, maj, false, TrimmedTau{c, i, base});
      merged = addScaled(base, mtl, lambda);
    } else {
      mtl = sumTasks(c.T, RawTau{c, i, base});
      merged = linearCombine(base, lam, c.T, RawTau{c, i, base});
    }
    const float mtlF = float(mtl);
    double cnt = 0;
    RawTau tau{c, i, base};
    for (int t = 0; t < c.T; t++) cnt += double(tallBit(tau(t), mtlF, tallLambda));
    storeF32(c.out, c.outType, i, selectBits(cnt >= k, merged, base));
  }
}

tm_status linearCombine(tm_backend* be, const tm_chunk* ch, const tm_trim* trim, const double* coeffs, tm_work, tm_error* err) {
  return runChunk(be, ch, trim, coeffs, ch->T * sizeof(double), true, nullptr, err,
                  [&](const ChunkDev& d, const double* co, cudaStream_t s) { linearKernel<<<gridFor(d.n), kThreads, 0, s>>>(d, co); });
}

tm_status tiesMerge(tm_backend* be, const tm_chunk* ch, const tm_trim* trim, const tm_ties_merge_args* a, tm_work, tm_error* err) {
  const int maj = a->majority < 0 ? -1 : 1;
  return runChunk(be, ch, trim, nullptr, 0, true, nullptr, err, [&](const ChunkDev& d, const double*, cudaStream_t s) {
    tiesMergeKernel<<<gridFor(d.n), kThreads, 0, s>>>(d, maj, a->mean, a->lambda);
  });
}

tm_status tiesSigns(tm_backend* be, const tm_chunk* ch, const tm_trim* trim, int64_t* signSum, tm_work, tm_error* err) {
  uint64_t sum = 0;
  tm_status st = runChunk(be, ch, trim, nullptr, 0, false, &sum, err, [&](const ChunkDev& d, const double*, cudaStream_t s) {
    tiesSignsKernel<<<gridFor(d.n), kThreads, 0, s>>>(d);
  });
  if (st == TM_OK) *signSum = int64_t(sum);
  return st;
}

tm_status consensus(tm_backend* be, const tm_chunk* ch, const tm_trim* trim, const tm_consensus_args* a, tm_work, tm_error* err) {
  const std::vector<double> lam(ch->T, a->lambda);
  const int maj = a->majority < 0 ? -1 : 1;
  return runChunk(be, ch, trim, lam.data(), lam.size() * sizeof(double), true, nullptr, err,
                  [&](const ChunkDev& d, const double* l, cudaStream_t s) {
                    consensusKernel<<<gridFor(d.n), kThreads, 0, s>>>(d, l, a->ties, maj, a->tall_lambda, a->lambda, a->k);
                  });
}

// ---- LOT's norm layers (kernels/lot.cpp, lotNormOp) --------------------------------

struct ScaleDev {
  const void* const* scales;
  const int* types;
};

__global__ void lotNormKernel(ChunkDev c, ScaleDev s, double lambda) {
  TM_GRID_STRIDE(i, c.n) {
    float base;
    if (!loadEntry(c, i, base)) continue;
    RawTau tau{c, i, base};
    double num = 0, den = 0, mean = 0;
    for (int t = 0; t < c.T; t++) {
      const double st = loadF64(s.scales[t], s.types[t], c.offset + i);
      const float x = tau(t);
      num += st * x;
      den += st;
      mean += x;
    }
    const double tstar = den > 0 ? num / den : mean / double(c.T);
    storeF32(c.out, c.outType, i, float(double(base) + lambda * tstar));
  }
}

tm_status lotNorm(tm_backend* be, const tm_chunk* ch, const void* const* scales, const tm_dtype* scaleDtypes, size_t total,
                  double lambda, tm_work, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  if (!ch->out) return fail(err, TM_INPUT, "lot_norm: missing out buffer");
  if (ch->offset + ch->n > total) return fail(err, TM_INPUT, "lot_norm: the chunk lies outside the scale tensors");
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  CallArgs args(c);
  ChunkArgs at;
  TM_CHECK(prepareChunk(ch, nullptr, args, at, err));
  std::vector<int> types(ch->T);
  for (size_t t = 0; t < ch->T; t++) types[t] = int(scaleDtypes[t]);
  const size_t sAt = args.put(scales, ch->T), tAt = args.put(types.data(), ch->T);
  TM_CHECK(args.upload(err));
  const ChunkDev d = chunkDev(ch, nullptr, args, at);
  if (ch->n) lotNormKernel<<<gridFor(ch->n), kThreads, 0, c.compute>>>(d, ScaleDev{args.at<const void* const>(sAt), args.at<const int>(tAt)}, lambda);
  return finishCall(args, ch->offset, chunkInputName, nullptr, nullptr, err);
}

}  // namespace tmcuda
