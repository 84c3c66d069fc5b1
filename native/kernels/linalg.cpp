// Ops exposing the backend's linear algebra directly, for tests and benchmarks:
//  "linalg_gemm", "linalg_syrk", "linalg_cholesky", "linalg_eigh", "linalg_solve", "linalg_axpy".
// Inputs are float64 buffers; results come back as new float64 buffers, and
// "seconds" is the time spent in the linear algebra call itself.
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../boundary/args.h"
#include "../boundary/dense.h"
#include "../core/op.h"
#include "../linalg/linalg.h"
#include "../linalg/solve.h"

namespace taskmerge {

static const double* in64(const OpArgs& a, const std::string& k, size_t n) { return boundary::typed<double>(a, k, n); }

static std::vector<double> copy64(const OpArgs& a, const std::string& k, size_t n) {
  const double* p = in64(a, k, n);
  return std::vector<double>(p, p + n);
}

static void put(OpResult& r, const std::string& k, const std::vector<double>& v) {
  auto& out = r.bufs[k];
  out.resize(v.size() * 8);
  std::memcpy(out.data(), v.data(), out.size());
}

template <class F>
static double timed(F&& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

static void gemmOp(const OpArgs& a, OpResult& r) {
  linalg::ScopedBuiltin forced(a.str("linalg", "") == "builtin");
  boundary::DeviceCall d(a);
  boundary::Dense la(d);
  size_t m = size_t(a.num("m")), n = size_t(a.num("n")), k = size_t(a.num("k"));
  bool tA = a.num("transA", 0) != 0, tB = a.num("transB", 0) != 0;
  const double* A = in64(a, "A", m * k);
  const double* B = in64(a, "B", k * n);
  std::vector<double> C = a.has("C") ? copy64(a, "C", m * n) : std::vector<double>(m * n);
  double alpha = a.num("alpha", 1.0), beta = a.num("beta", 0.0);
  r.nums["seconds"] = timed([&] { la.gemm(tA, tB, m, n, k, alpha, A, tA ? m : k, B, tB ? k : n, beta, C.data(), n); });
  put(r, "C", C);
}

static void syrkOp(const OpArgs& a, OpResult& r) {
  linalg::ScopedBuiltin forced(a.str("linalg", "") == "builtin");
  boundary::DeviceCall d(a);
  boundary::Dense la(d);
  size_t n = size_t(a.num("n")), k = size_t(a.num("k"));
  const double* X = in64(a, "X", k * n);
  std::vector<double> C = a.has("C") ? copy64(a, "C", n * n) : std::vector<double>(n * n);
  double beta = a.num("beta", 0.0);
  r.nums["seconds"] = timed([&] { la.syrkRows(n, k, a.num("alpha", 1.0), X, n, beta, C.data(), n); });
  put(r, "C", C);
}

static void choleskyOp(const OpArgs& a, OpResult& r) {
  linalg::ScopedBuiltin forced(a.str("linalg", "") == "builtin");
  boundary::DeviceCall d(a);
  boundary::Dense la(d);
  size_t n = size_t(a.num("n"));
  auto A = copy64(a, "A", n * n);
  bool ok = false;
  r.nums["seconds"] = timed([&] { ok = la.cholesky(n, A.data(), n); });
  r.nums["ok"] = ok ? 1 : 0;
  put(r, "L", A);
}

static void eighOp(const OpArgs& a, OpResult& r) {
  linalg::ScopedBuiltin forced(a.str("linalg", "") == "builtin");
  boundary::DeviceCall d(a);
  boundary::Dense la(d);
  size_t n = size_t(a.num("n"));
  auto A = copy64(a, "A", n * n);
  std::vector<double> w(n);
  r.nums["seconds"] = timed([&] { la.eigh(n, A.data(), n, w.data()); });
  put(r, "w", w);
  put(r, "V", A);
}

static void solveOp(const OpArgs& a, OpResult& r) {
  linalg::ScopedBuiltin forced(a.str("linalg", "") == "builtin");
  boundary::DeviceCall d(a);
  boundary::Dense la(d);
  size_t n = size_t(a.num("n")), nrhs = size_t(a.num("nrhs"));
  auto A = copy64(a, "A", n * n);
  auto B = copy64(a, "B", nrhs * n);
  linalg::SolveInfo info;
  r.nums["seconds"] = timed([&] {
    info = linalg::solvePsdRows(n, A.data(), nrhs, B.data(), linalg::parseSolver(a.str("solver", "auto")),
                                a.num("ridge", 0.0), a.num("rcond", 0.0), la);
  });
  r.nums["eigh"] = info.usedEigh ? 1 : 0;
  r.nums["rank"] = double(info.rank);
  put(r, "X", B);
}

// Y = y + alpha·x through the backend's axpy entry.
static void axpyOp(const OpArgs& a, OpResult& r) {
  boundary::DeviceCall d(a);
  boundary::Dense la(d);
  const size_t n = boundary::count(a, "n");
  const double* x = in64(a, "x", n);
  std::vector<double> y = copy64(a, "y", n);
  const double alpha = a.num("alpha", 1.0);
  r.nums["seconds"] = timed([&] { la.axpy(n, alpha, x, y.data()); });
  put(r, "Y", y);
}

TM_REGISTER_OP("linalg_gemm", gemmOp);
TM_REGISTER_OP("linalg_axpy", axpyOp);
TM_REGISTER_OP("linalg_syrk", syrkOp);
TM_REGISTER_OP("linalg_cholesky", choleskyOp);
TM_REGISTER_OP("linalg_eigh", eighOp);
TM_REGISTER_OP("linalg_solve", solveOp);

}  // namespace taskmerge
