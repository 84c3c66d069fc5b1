// Float sums over a chunk that do not depend on the thread schedule: each
// block of kBlockElems entries sums in index order into its own slot, and the
// slots are added in block order once every block is done. trim_l1 and
// breadcrumbs_l1 use it; the CUDA backend reproduces the same order
// (native/cuda/element.h, l1Block / addBlockSums).
#pragma once
#include <cstddef>
#include <vector>

#include "../../core/elementwise.h"

namespace taskmerge {
namespace cpu {

inline size_t blockCount(size_t n) { return (n + kBlockElems - 1) / kBlockElems; }

// part: per block 2·T sums (task t's pair at 2t, 2t + 1); a[t] += the first of
// each pair and b[t] += the second, over the blocks in order.
inline void addBlockSums(const std::vector<double>& part, size_t T, double* a, double* b) {
  const size_t blocks = T ? part.size() / (2 * T) : 0;
  for (size_t t = 0; t < T; t++)
    for (size_t blk = 0; blk < blocks; blk++) {
      a[t] += part[blk * 2 * T + 2 * t];
      b[t] += part[blk * 2 * T + 2 * t + 1];
    }
}

}  // namespace cpu
}  // namespace taskmerge
