// Op "convert": float dtype conversion of a buffer (pass-through of float
// tensors in another dtype: lib/progressive/partial.ts), on the backend of the
// op's `device`, rounding to nearest even through float64.
#include "../boundary/args.h"
#include "../boundary/device_call.h"

namespace taskmerge {

static void convertOp(const OpArgs& a, OpResult&) {
  const tm_dtype from = boundary::floatDtype(a, "fromDtype"), to = boundary::floatDtype(a, "toDtype");
  Bytes src = a.buf("src");
  const size_t fs = dtypeSize(DType(int(from)));
  if (src.size % fs) throw ArgumentError("src", -1, "not a whole number of " + std::string(a.str("fromDtype")) + " elements");
  const size_t n = src.size / fs;
  Bytes dst = a.buf("dst");
  if (dst.size != n * dtypeSize(DType(int(to))))
    throw ArgumentError("dst", -1, "buffer sizes do not match the dtypes (expected " + std::to_string(n * dtypeSize(DType(int(to)))) +
                                       " bytes, got " + std::to_string(dst.size) + ")");
  boundary::DeviceCall d(a);
  auto fn = d.entry(d.iface().convert, "convert");
  d.check(fn(&d.backend(), d.in(src.data, src.size), from, d.out(dst.data, dst.size), to, n, d.err()), "convert");
}

TM_REGISTER_OP("convert", convertOp);

}  // namespace taskmerge
