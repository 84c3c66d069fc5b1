// Work memory the CPU backend's block kernels need (tm_work): one slab per
// worker (blockWorkers(n) of them), each holding forEachBlock's own blocks,
// the trimmed task vectors, and the kernel's per-block arrays.
#pragma once
#include <cstddef>

#include "../../core/elementwise.h"
#include "../../core/trim.h"

namespace taskmerge {
namespace cpu {

constexpr size_t kWindowTable = 16;  // tabled values per task of the TIES window pass

// Bytes of one worker's slab for `kernel` with T experts.
constexpr size_t slabBytes(tm_kernel kernel, size_t T) {
  const size_t B = kBlockElems;
  const size_t common = blockScratchBytes(T), trim = Trim::scratchBytesFor(T);
  const size_t dbl = scratchBytes<double>(B), flt = scratchBytes<float>(B);
  switch (kernel) {
    case TM_K_LINEAR_COMBINE: return common + trim + dbl;
    case TM_K_TIES_MERGE: return common + trim + dbl + scratchBytes<double>(3 * B);
    case TM_K_TIES_SIGNS: return common + trim;
    case TM_K_CONSENSUS: return common + trim + 2 * dbl + 2 * flt + scratchBytes<double>(3 * B);
    case TM_K_TALL_COMPRESS: return common + trim + dbl + scratchBytes<double>(3 * B) + scratchBytes<uint8_t*>(T);
    case TM_K_TALL_MASK: return common + scratchBytes<uint8_t*>(T);
    case TM_K_MERGEKIT_GTA: return common + trim + scratchBytes<double>(T);
    case TM_K_BREADCRUMBS: return common + scratchBytes<double>(T);
    case TM_K_TRIM_L1: return common + trim;
    case TM_K_MAGNITUDE_TIE_CUT:
    case TM_K_LOT_NORM:
    case TM_K_TIES_SAMPLE: return common;
    case TM_K_TIES_WINDOW:
      return common + 2 * dbl + 2 * scratchBytes<int32_t>(B) + 2 * scratchBytes<uint64_t>(T) +
             scratchBytes<uint32_t>(T * B) + scratchBytes<int8_t>(T * B) + scratchBytes<size_t>(T) +
             scratchBytes<uint32_t>(T * kWindowTable) + scratchBytes<int32_t>(T * kWindowTable) +
             scratchBytes<float>(T * B);
    default: return 0;
  }
}

}  // namespace cpu
}  // namespace taskmerge
