// The CPU backend's entries of the tm_backend_iface table, one file per group:
// merge_kernels.cpp (the methods' block kernels), tall_kernels.cpp (TALL
// masks), select_kernels.cpp (TIES / top-k selection), linalg.cpp (BLAS or
// built-in dense linear algebra), breadcrumbs_kernels.cpp, stats_kernels.cpp,
// mergekit_lowp_kernels.cpp. cpu_backend.cpp assembles the table.
#pragma once
#include "../backend.h"

namespace taskmerge {
namespace cpu {

// *firstBad = index of the first NaN/±Inf, or −1 (finite.cpp).
tm_status finiteCheck(tm_backend*, const void* data, tm_dtype dtype, size_t n, int64_t* firstBad, tm_error* err);

tm_status linearCombine(tm_backend*, const tm_chunk* c, const tm_trim* trim, const double* coeffs, tm_work work, tm_error* err);
tm_status tiesMerge(tm_backend*, const tm_chunk* c, const tm_trim* trim, const tm_ties_merge_args* a, tm_work work, tm_error* err);
tm_status tiesSigns(tm_backend*, const tm_chunk* c, const tm_trim* trim, int64_t* signSum, tm_work work, tm_error* err);
tm_status consensus(tm_backend*, const tm_chunk* c, const tm_trim* trim, const tm_consensus_args* a, tm_work work, tm_error* err);
tm_status mergekitGta(tm_backend*, const tm_chunk* c, const tm_trim* trim, const tm_gta_args* a, tm_work work, tm_error* err);
tm_status trimL1(tm_backend*, const tm_chunk* c, const tm_trim* trim, double* l1, double* l1Kept, tm_work work, tm_error* err);
tm_status magnitudeTieCut(tm_backend*, const tm_chunk* c, const uint32_t* thresholds, const double* need, double* count, double* at, tm_work work, tm_error* err);
tm_status lotNorm(tm_backend*, const tm_chunk* c, const void* const* scales, const tm_dtype* scaleDtypes, size_t total, double lambda, tm_work work, tm_error* err);

tm_status breadcrumbsMerge(tm_backend*, const tm_chunk* c, const tm_breadcrumbs_args* a, tm_work work, tm_error* err);
tm_status breadcrumbsL1(tm_backend*, const tm_chunk* c, const tm_top_sets* sets, double* l1, double* l1Kept, tm_work work, tm_error* err);

tm_status tallCompress(tm_backend*, const tm_chunk* c, const tm_trim* trim, const tm_tall_compress_args* a, tm_work work, tm_error* err);
tm_status tallMask(tm_backend*, const tm_chunk* c, const void* tau, tm_dtype tauDtype, const double* lambdas, uint8_t* const* masks, tm_work work, tm_error* err);
tm_status tallApply(tm_backend*, const tm_tall_apply_args* a, tm_work work, tm_error* err);

tm_status magnitudeHist(tm_backend*, const tm_chunk* c, const tm_hist_args* a, tm_hist_result* r, tm_work work, tm_error* err);
tm_status magnitudePick(tm_backend*, const double* hist, size_t bins, size_t T, const double* ks, double* bin, double* rank, tm_error* err);
tm_status magnitudeSmall(tm_backend*, const tm_chunk* c, size_t k, uint32_t* thresholds, int64_t* signSum, tm_work work, tm_error* err);
tm_status tiesSample(tm_backend*, const tm_chunk* c, uint32_t* bits, size_t m, size_t at, tm_work work, tm_error* err);
tm_status tiesWindow(tm_backend*, const tm_chunk* c, const tm_window_args* a, tm_window_result* r, tm_work work, tm_error* err);

tm_status gemm(tm_backend*, int transA, int transB, size_t m, size_t n, size_t k, double alpha, const double* A, size_t lda,
               const double* B, size_t ldb, double beta, double* C, size_t ldc, tm_error* err);
tm_status syrkRows(tm_backend*, size_t n, size_t k, double alpha, const double* X, size_t ldx, double beta, double* C, size_t ldc, tm_error* err);
tm_status cholesky(tm_backend*, size_t n, double* A, size_t lda, tm_work work, tm_error* err);
tm_status choleskySolveRows(tm_backend*, size_t n, const double* L, size_t lda, size_t nrhs, double* B, size_t ldb, tm_error* err);
tm_status eigh(tm_backend*, size_t n, double* A, size_t lda, double* w, tm_work work, tm_error* err);
const char* linalgName(tm_backend*);
tm_status solvePsdRowsBatched(tm_backend*, size_t count, size_t n, double* const* A, size_t nrhs, double* const* B,
                              const tm_solve_opts* opts, tm_solve_info* info, size_t* done, tm_error* err);
tm_status axpy(tm_backend*, size_t n, double alpha, const double* x, double* y, tm_error* err);

// Norm statistics, norm drift and mergekit's low-precision ops (stats_kernels.cpp, mergekit_lowp_kernels.cpp).
tm_status normAccumulate(tm_backend*, const void* rows, tm_dtype rowsDtype, size_t count, size_t width, double* sqsum, double* sum, tm_error* err);
tm_status driftNorm(tm_backend*, size_t n, const void* merged, tm_dtype mergedDtype, const void* expert, tm_dtype expertDtype, const void* base,
                    tm_dtype baseDtype, const void* scale, tm_dtype scaleDtype, double* drift, double* baseDrift, tm_error* err);
tm_status mergekitLowpHist(tm_backend*, const tm_chunk* c, tm_dtype compute, double* hist, tm_error* err);
tm_status mergekitLowpTieCut(tm_backend*, const tm_chunk* c, tm_dtype compute, const uint32_t* thresholds, const double* need, double* count,
                             double* at, tm_error* err);
tm_status mergekitLowpL1(tm_backend*, const tm_chunk* c, tm_dtype compute, const tm_trim* trim, double* l1, double* l1Kept, tm_error* err);
tm_status mergekitLowpGta(tm_backend*, const tm_chunk* c, const tm_trim* trim, const tm_lowp_gta_args* a, tm_error* err);
tm_status mergekitLowpLinear(tm_backend*, const tm_chunk* c, const tm_lowp_linear_args* a, tm_error* err);

}  // namespace cpu
}  // namespace taskmerge
