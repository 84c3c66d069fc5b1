// Checks of data the merge engine writes or reads, run on worker threads:
//  "check_finite": index of the first NaN/±Inf in `data` (dtype `dtype`), or −1.
//                  The engine runs it on every output chunk in the output dtype,
//                  so an overflow of any method (or of the final narrowing) is caught.
//                  Runs on the backend of the op's `device`.
//  "gram_check":   throws when an input Gram is not plausibly Σ x xᵀ: a non-finite
//                  entry, a negative diagonal, |G_ij − G_ji| > tol·√(G_ii G_jj), or
//                  |G_ij| > (1 + tol)·√(G_ii G_jj) (Cauchy–Schwarz). These are
//                  necessary, not sufficient, conditions for positive semidefiniteness.
//                  On the host: it reads the file's Gram as the statistics reader does.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../boundary/args.h"
#include "../boundary/device_call.h"
#include "../core/dtype.h"
#include "../core/op.h"
#include "../core/parallel.h"

namespace taskmerge {

static void checkFiniteOp(const OpArgs& a, OpResult& r) {
  const tm_dtype t = boundary::floatDtype(a, "dtype");
  Bytes b = a.buf("data");
  const size_t es = dtypeSize(DType(int(t)));
  if (b.size % es) throw ArgumentError("data", -1, "not a whole number of elements");
  boundary::DeviceCall d(a);
  int64_t bad = -1;
  auto fn = d.entry(d.iface().check_finite, "check_finite");
  d.check(fn(&d.backend(), d.in(b.data, b.size), t, b.size / es, &bad, d.err()), "check_finite");
  r.nums["bad"] = double(bad);
}

static std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

static void gramCheckOp(const OpArgs& a, OpResult&) {
  const size_t n = boundary::count(a, "n", 1 << 26);
  const double tol = a.num("tol");
  const DType t = DType(int(boundary::floatDtype(a, "gramDtype")));
  Bytes g = boundary::sized(a, "gram", n * n * dtypeSize(t));
  const size_t es = dtypeSize(t);
  auto at = [&](size_t i, size_t j) {
    double v;
    toF64(g.data + (i * n + j) * es, t, 1, &v);
    return v;
  };
  std::vector<double> d(n);
  for (size_t i = 0; i < n; i++) {
    d[i] = at(i, i);
    if (!std::isfinite(d[i])) throw Error("Gram holds a non-finite value (NaN or Inf) at [" + std::to_string(i) + ", " + std::to_string(i) + "]");
    if (d[i] < 0) throw Error("Gram has a negative diagonal entry " + num(d[i]) + " at [" + std::to_string(i) + ", " + std::to_string(i) + "], so it is not Σ x xᵀ");
  }
  // Tiles of the upper triangle against their mirror; the first problem (in row order of tiles) is reported.
  constexpr size_t B = 64;
  const size_t tiles = (n + B - 1) / B;
  std::atomic<size_t> firstBad{tiles};
  std::vector<std::string> why(tiles);
  parallelFor(tiles, 1, [&](size_t t0, size_t t1) {
    std::vector<double> up(B * B), lo(B * B);
    for (size_t I = t0; I < t1; I++) {
      const size_t i0 = I * B, ni = std::min(B, n - i0);
      for (size_t j0 = i0; j0 < n && why[I].empty(); j0 += B) {
        const size_t nj = std::min(B, n - j0);
        for (size_t i = 0; i < ni; i++) toF64(g.data + ((i0 + i) * n + j0) * es, t, nj, &up[i * B]);
        for (size_t j = 0; j < nj; j++) toF64(g.data + ((j0 + j) * n + i0) * es, t, ni, &lo[j * B]);
        for (size_t i = 0; i < ni && why[I].empty(); i++)
          for (size_t j = 0; j < nj; j++) {
            const size_t gi = i0 + i, gj = j0 + j;
            const double u = up[i * B + j], l = lo[j * B + i], scale = std::sqrt(d[gi] * d[gj]);
            if (std::isfinite(u) && std::isfinite(l) && std::fabs(u - l) <= tol * scale && std::fabs(u) <= (1 + tol) * scale)
              continue;
            auto where = [](size_t r, size_t c) { return " at [" + std::to_string(r) + ", " + std::to_string(c) + "]"; };
            if (!std::isfinite(u) || !std::isfinite(l))
              why[I] = "Gram holds a non-finite value (NaN or Inf)" + (std::isfinite(u) ? where(gj, gi) : where(gi, gj));
            else if (std::fabs(u - l) > tol * scale)
              why[I] = "Gram is not symmetric: " + num(u) + where(gi, gj) + " but " + num(l) + where(gj, gi);
            else
              why[I] = "Gram is not positive semidefinite: |" + num(u) + "|" + where(gi, gj) + " exceeds √(G_ii·G_jj) = " + num(scale);
            break;
          }
      }
      if (!why[I].empty()) {
        size_t cur = firstBad.load();
        while (I < cur && !firstBad.compare_exchange_weak(cur, I)) {
        }
      }
    }
  });
  if (firstBad < tiles) throw Error(why[firstBad]);
}

TM_REGISTER_OP("check_finite", checkFiniteOp);
TM_REGISTER_OP("gram_check", gramCheckOp);

}  // namespace taskmerge
