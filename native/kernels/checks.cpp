// Checks of data the merge engine writes or reads, run on worker threads:
//  "check_finite": index of the first NaN/±Inf in `data` (dtype `dtype`), or −1.
//                  The engine runs it on every output chunk in the output dtype,
//                  so an overflow of any method (or of the final narrowing) is caught.
//  "gram_check":   throws when an input Gram is not plausibly Σ x xᵀ: a non-finite
//                  entry, a negative diagonal, |G_ij − G_ji| > tol·√(G_ii G_jj), or
//                  |G_ij| > (1 + tol)·√(G_ii G_jj) (Cauchy–Schwarz). These are
//                  necessary, not sufficient, conditions for positive semidefiniteness.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../core/dtype.h"
#include "../core/op.h"
#include "../core/parallel.h"

namespace taskmerge {

// Index of the first element of x[0..n) whose exponent bits are all ones (NaN or ±Inf), or n.
// U is the element's bit type; the scan ORs a flag per block so that clean data costs one pass.
template <class U>
static size_t firstNonFinite(const uint8_t* x, size_t n, U mask) {
  constexpr size_t B = 4096;
  for (size_t i0 = 0; i0 < n; i0 += B) {
    const size_t i1 = std::min(n, i0 + B);
    U bad = 0;
    for (size_t i = i0; i < i1; i++) {
      U u;
      std::memcpy(&u, x + i * sizeof(U), sizeof(U));
      bad |= U((u & mask) == mask);
    }
    if (!bad) continue;
    for (size_t i = i0; i < i1; i++) {
      U u;
      std::memcpy(&u, x + i * sizeof(U), sizeof(U));
      if ((u & mask) == mask) return i;
    }
  }
  return n;
}

static size_t firstNonFinite(const uint8_t* x, size_t n, DType t) {
  switch (t) {
    case DType::F64: return firstNonFinite<uint64_t>(x, n, 0x7ff0000000000000ull);
    case DType::F32: return firstNonFinite<uint32_t>(x, n, 0x7f800000u);
    case DType::F16: return firstNonFinite<uint16_t>(x, n, 0x7c00u);
    case DType::BF16: return firstNonFinite<uint16_t>(x, n, 0x7f80u);
    default: return n;
  }
}

static void checkFiniteOp(const OpArgs& a, OpResult& r) {
  DType t = parseDType(a.str("dtype"));
  if (!isFloat(t)) throw Error("check_finite: not a floating-point dtype");
  Bytes b = a.buf("data");
  const size_t es = dtypeSize(t), n = b.size / es;
  if (b.size % es) throw Error("check_finite: data is not a whole number of elements");
  std::atomic<size_t> first{n};
  parallelFor(n, 1 << 18, [&](size_t i0, size_t i1) {
    size_t i = i0 + firstNonFinite(b.data + i0 * es, i1 - i0, t);
    if (i == i1) return;
    size_t cur = first.load();
    while (i < cur && !first.compare_exchange_weak(cur, i)) {
    }
  });
  r.nums["bad"] = first == n ? -1.0 : double(first.load());
}

static std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

static void gramCheckOp(const OpArgs& a, OpResult&) {
  const size_t n = size_t(a.num("n"));
  const double tol = a.num("tol");
  DType t = parseDType(a.str("gramDtype"));
  Bytes g = a.buf("gram");
  const size_t es = dtypeSize(t);
  if (!isFloat(t) || g.size != n * n * es) throw Error("gram_check: expected a float [n, n] Gram");
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
