// Rows of activations (GramAccumulator's statistics): `count` rows of `width`
// float32 or float64 values, and their conversion to float64 with the check
// every statistics kernel makes first (a NaN/±Inf names its row).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "dtype.h"
#include "op.h"

namespace taskmerge {

struct Rows {
  const uint8_t* data;
  DType type;
  size_t count, width;
};

// Converts rows [r0, r0+n) to float64, rejecting NaN/Inf.
inline void rowsToF64(const Rows& r, size_t r0, size_t n, double* dst) {
  toF64(r.data + r0 * r.width * dtypeSize(r.type), r.type, n * r.width, dst);
  for (size_t i = 0; i < n * r.width; i++)
    if (!std::isfinite(dst[i]))
      throw Error("input row " + std::to_string(r0 + i / r.width) + " holds a non-finite value (NaN or Inf)");
}

}  // namespace taskmerge
