/*
 * What the CUDA backend exports beside the tm_backend_iface table, for its
 * check program only (native/cuda/tests): the cuBLAS rate the device check
 * compares the solves with, and the list of implemented entries. Looked up
 * with dlsym; plain C. Everything a job uses is in the table.
 */
#ifndef TASKMERGE_CUDA_EXTRAS_H
#define TASKMERGE_CUDA_EXTRAS_H

#include "backend/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The rate of an n×n×n GEMM on device-resident data: precision 0 DGEMM,
 * 1 SGEMM, 2 SGEMM on TF32 tensor cores; repeated for about `seconds`. */
tm_status tm_cuda_gemm_rate(tm_backend* be, size_t n, int precision, double seconds, double* tflops, tm_error* err);
typedef tm_status (*tm_cuda_gemm_rate_fn)(tm_backend*, size_t, int, double, double*, tm_error*);

/* The names of the tm_backend_iface entries this build implements (the
 * others return TM_UNSUPPORTED), NULL-terminated. */
const char* const* tm_cuda_entries(void);
typedef const char* const* (*tm_cuda_entries_fn)(void);

#ifdef __cplusplus
}
#endif

#endif
