// Op "convert": float dtype conversion of a buffer (used for --dtype and for
// pass-through of float tensors), multi-threaded, rounding to nearest even.
#include <algorithm>
#include <vector>

#include "../core/dtype.h"
#include "../core/op.h"
#include "../core/parallel.h"

namespace taskmerge {

static void convertOp(const OpArgs& a, OpResult&) {
  DType from = parseDType(a.str("fromDtype")), to = parseDType(a.str("toDtype"));
  if (!isFloat(from) || !isFloat(to)) throw Error("convert: both dtypes must be floating point");
  Bytes src = a.buf("src"), dst = a.buf("dst");
  size_t n = src.size / dtypeSize(from);
  if (src.size % dtypeSize(from) || dst.size != n * dtypeSize(to))
    throw Error("convert: buffer sizes do not match the dtypes");
  const size_t block = 1 << 14;
  parallelFor((n + block - 1) / block, 1, [&](size_t b0, size_t b1) {
    std::vector<double> tmp(block);
    for (size_t b = b0; b < b1; b++) {
      size_t start = b * block, len = std::min(block, n - start);
      // Through float64 so every pair converts with one rounding.
      toF64(src.data + start * dtypeSize(from), from, len, tmp.data());
      fromF64(tmp.data(), len, to, dst.data + start * dtypeSize(to));
    }
  });
}

TM_REGISTER_OP("convert", convertOp);

}  // namespace taskmerge
