/*
 * Entries the CUDA backend exports beside the tm_backend_iface table, for
 * what the table (native/backend/backend.h, ABI 1) has no slot for yet:
 * batched solves of equal-size systems, and the cuBLAS rate the device check
 * compares the solves with. Looked up with dlsym; plain C.
 */
#ifndef TASKMERGE_CUDA_EXTRAS_H
#define TASKMERGE_CUDA_EXTRAS_H

#include "backend/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tm_solve_info {
  int used_eigh; /* the eigen-decomposition pseudo-inverse was used */
  size_t rank;   /* eigenvalues kept (eigh), or n (Cholesky) */
} tm_solve_info;

/*
 * For i < count: solves X A_i = B_i for the nrhs rows of B_i ([nrhs, n],
 * overwritten by X) with A_i symmetric positive semi-definite ([n, n],
 * destroyed), exactly as linalg::solvePsdRows (native/linalg/solve.h):
 * solver 0 auto (Cholesky of A + ridge·mean(diag A)·I, else the eigh
 * pseudo-inverse), 1 cholesky (failure is an error), 2 eigh (eigenvalues ≤
 * rcond·max|λ| dropped; rcond ≤ 0: n·ε). A_i and B_i are HOST memory; float64
 * on the device. Matrix i+1 is staged and uploaded on the copy stream while
 * matrix i is factored. info: host, count entries.
 */
tm_status tm_cuda_solve_psd_rows_batched(tm_backend* be, size_t count, size_t n, double* const* A, size_t nrhs, double* const* B,
                                         int solver, double ridge, double rcond, tm_solve_info* info, tm_error* err);
typedef tm_status (*tm_cuda_solve_psd_rows_batched_fn)(tm_backend*, size_t, size_t, double* const*, size_t, double* const*, int,
                                                       double, double, tm_solve_info*, tm_error*);

/* The rate of an n×n×n GEMM on device-resident data: precision 0 DGEMM,
 * 1 SGEMM, 2 SGEMM on TF32 tensor cores; repeated for about `seconds`. */
tm_status tm_cuda_gemm_rate(tm_backend* be, size_t n, int precision, double seconds, double* tflops, tm_error* err);
typedef tm_status (*tm_cuda_gemm_rate_fn)(tm_backend*, size_t, int, double, double*, tm_error*);

/* y[0..n) += alpha·x on the device (float64): the accumulation A += G of
 * the LOT/RegMean statistics, which the table has no entry for. */
tm_status tm_cuda_axpy(tm_backend* be, size_t n, double alpha, const double* x, double* y, tm_error* err);
typedef tm_status (*tm_cuda_axpy_fn)(tm_backend*, size_t, double, const double*, double*, tm_error*);

/* The names of the tm_backend_iface entries this build implements (the
 * others return TM_UNSUPPORTED), NULL-terminated. */
const char* const* tm_cuda_entries(void);
typedef const char* const* (*tm_cuda_entries_fn)(void);

#ifdef __cplusplus
}
#endif

#endif
