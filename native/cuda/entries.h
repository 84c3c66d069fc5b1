// The entries of the CUDA backend's tm_backend_iface (native/backend/backend.h),
// one declaration per table slot, defined in the .cu file of their family and
// put into the table by init.cu.
#pragma once
#include "backend/backend.h"

namespace tmcuda {

struct Context;
Context* createContext();  // queries the device; "no device" is a valid outcome
void destroyContext(Context* c);

// buffers.cu
tm_status bufferAlloc(tm_backend* be, size_t bytes, tm_buffer** out, tm_error* err);
tm_status bufferHostView(tm_backend* be, void* host, size_t bytes, tm_buffer** out, tm_error* err);
void bufferFree(tm_backend* be, tm_buffer* buf);
void* bufferData(tm_backend* be, tm_buffer* buf);
size_t bufferSize(tm_backend* be, tm_buffer* buf);
tm_status copyToBackend(tm_backend* be, tm_buffer* dst, size_t offset, const void* src, size_t bytes, tm_error* err);
tm_status copyToHost(tm_backend* be, void* dst, tm_buffer* src, size_t offset, size_t bytes, tm_error* err);
tm_status bufferFill(tm_backend* be, tm_buffer* buf, size_t offset, size_t bytes, uint8_t value, tm_error* err);
tm_status synchronize(tm_backend* be, tm_error* err);
size_t workBytes(tm_backend* be, tm_kernel kernel, size_t T, size_t n);
tm_status hostRegister(tm_backend* be, void* host, size_t bytes, tm_error* err);
void hostUnregister(tm_backend* be, void* host);
tm_status copyToBackendAsync(tm_backend* be, tm_buffer* dst, size_t offset, const void* src, size_t bytes, tm_error* err);
tm_status copyToHostAsync(tm_backend* be, void* dst, tm_buffer* src, size_t offset, size_t bytes, tm_error* err);
tm_status copyWait(tm_backend* be, tm_error* err);

// kernels_merge.cu
tm_status convert(tm_backend* be, const void* src, tm_dtype from, void* dst, tm_dtype to, size_t n, tm_error* err);
tm_status checkFinite(tm_backend* be, const void* data, tm_dtype dtype, size_t n, int64_t* firstBad, tm_error* err);
tm_status linearCombine(tm_backend* be, const tm_chunk* c, const tm_trim* trim, const double* coeffs, tm_work work, tm_error* err);
tm_status tiesMerge(tm_backend* be, const tm_chunk* c, const tm_trim* trim, const tm_ties_merge_args* a, tm_work work, tm_error* err);
tm_status tiesSigns(tm_backend* be, const tm_chunk* c, const tm_trim* trim, int64_t* signSum, tm_work work, tm_error* err);
tm_status consensus(tm_backend* be, const tm_chunk* c, const tm_trim* trim, const tm_consensus_args* a, tm_work work, tm_error* err);
tm_status lotNorm(tm_backend* be, const tm_chunk* c, const void* const* scales, const tm_dtype* scaleDtypes, size_t total,
                  double lambda, tm_work work, tm_error* err);

// kernels_tall.cu
tm_status tallCompress(tm_backend* be, const tm_chunk* c, const tm_trim* trim, const tm_tall_compress_args* a, tm_work work, tm_error* err);
tm_status tallMask(tm_backend* be, const tm_chunk* c, const void* tau, tm_dtype tauDtype, const double* lambdas,
                   uint8_t* const* masks, tm_work work, tm_error* err);
tm_status tallApply(tm_backend* be, const tm_tall_apply_args* a, tm_work work, tm_error* err);

// kernels_select.cu
tm_status magnitudeHist(tm_backend* be, const tm_chunk* c, const tm_hist_args* a, tm_hist_result* r, tm_work work, tm_error* err);
tm_status magnitudePick(tm_backend* be, const double* hist, size_t bins, size_t T, const double* ks, double* bin, double* rank, tm_error* err);

// kernels_mergekit.cu
tm_status mergekitGta(tm_backend* be, const tm_chunk* c, const tm_trim* trim, const tm_gta_args* a, tm_work work, tm_error* err);
tm_status trimL1(tm_backend* be, const tm_chunk* c, const tm_trim* trim, double* l1, double* kept, tm_work work, tm_error* err);
tm_status magnitudeTieCut(tm_backend* be, const tm_chunk* c, const uint32_t* thresholds, const double* need, double* count, double* at,
                          tm_work work, tm_error* err);
tm_status breadcrumbsMerge(tm_backend* be, const tm_chunk* c, const tm_breadcrumbs_args* a, tm_work work, tm_error* err);
tm_status breadcrumbsL1(tm_backend* be, const tm_chunk* c, const tm_top_sets* sets, double* l1, double* kept, tm_work work, tm_error* err);

// kernels_window.cu
tm_status magnitudeSmall(tm_backend* be, const tm_chunk* c, size_t k, uint32_t* thresholds, int64_t* signSum, tm_work work, tm_error* err);
tm_status tiesSample(tm_backend* be, const tm_chunk* c, uint32_t* bits, size_t m, size_t at, tm_work work, tm_error* err);
tm_status tiesWindow(tm_backend* be, const tm_chunk* c, const tm_window_args* a, tm_window_result* r, tm_work work, tm_error* err);

// linalg.cu
tm_status gemm(tm_backend* be, int transA, int transB, size_t m, size_t n, size_t k, double alpha, const double* A, size_t lda,
               const double* B, size_t ldb, double beta, double* C, size_t ldc, tm_error* err);
tm_status syrkRows(tm_backend* be, size_t n, size_t k, double alpha, const double* X, size_t ldx, double beta, double* C,
                   size_t ldc, tm_error* err);
tm_status cholesky(tm_backend* be, size_t n, double* A, size_t lda, tm_work work, tm_error* err);
tm_status choleskySolveRows(tm_backend* be, size_t n, const double* L, size_t lda, size_t nrhs, double* B, size_t ldb, tm_error* err);
tm_status eigh(tm_backend* be, size_t n, double* A, size_t lda, double* w, tm_work work, tm_error* err);

// solve_batched.cu
tm_status solvePsdRowsBatched(tm_backend* be, size_t count, size_t n, double* const* A, size_t nrhs, double* const* B,
                              const tm_solve_opts* opts, tm_solve_info* info, size_t* done, tm_error* err);
tm_status axpy(tm_backend* be, size_t n, double alpha, const double* x, double* y, tm_error* err);

}  // namespace tmcuda
