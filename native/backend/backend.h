/*
 * The backend interface: everything taskmerge asks of a compute device, as a
 * C-ABI table of function pointers (in the spirit of ggml's ggml-backend-impl.h),
 * so that a backend compiled on its own (a dlopen'ed CUDA library, built with
 * another compiler) can implement it. Nothing of the C++ standard library
 * crosses it: plain structs, fixed-width integers, pointers and sizes.
 *
 * Who does what:
 *  - The ops (native/kernels/) parse and check their arguments once (native/
 *    boundary/), pick a backend per call from the op's `device` argument, and
 *    call the entries below. Nothing above this header knows which device runs.
 *  - A backend owns device memory (tm_buffer) and runs the kernels on pointers
 *    into it. "Backend addresses" below are pointers a backend's kernels accept:
 *    host pointers for the CPU backend, device pointers (buffer_data of a
 *    tm_buffer, plus an offset) for a GPU one. Arguments documented as "host"
 *    are always host memory, whatever the backend (small per-task arrays,
 *    scalar results).
 *  - Selection state (TIES / top-k histograms, sign differences, the window's
 *    sample, candidate lists, cursors and tabled counts: the "backend" arrays
 *    of magnitude_hist, magnitude_pick, ties_sample and ties_window) lives in
 *    buffers of the backend that runs the selection, allocated by the host
 *    (native/boundary/state_buffer.h: buffer_host_view over zeroed host memory
 *    where the backend has host views, else buffer_alloc + buffer_fill) and
 *    kept across calls: JS holds them as handles and frees them when its
 *    selection ends (op state_free; a finalizer frees a dropped handle). They
 *    never cross the boundary per chunk; the host copies back (copy_to_host)
 *    only what it reads, once per selection. A backend keeps no state itself.
 *  - What stays on the host, over state copied back once: the sample
 *    statistics of the TIES window (ties_window_bounds sorts the sample;
 *    ties_window_pick reads the cursors, tables and the used part of each
 *    candidate list), the Gram plausibility check (gram_check) and file-format work.
 *    Small per-task arrays (prefix, lo/hi, tables of values, above, atHi,
 *    thresholds, multi lists) and sign sums are host arguments.
 *    Every other op computes through the entries below; the dense ones
 *    (gram_accumulate, gram_products_accumulate, gram_solve, drift_linear) are
 *    compositions of the linear-algebra entries, whose float64 conversions of
 *    the inputs and row updates around those calls still run on the host
 *    (native/linalg/solve.cpp, native/kernels/).
 *  - Every result must be bit-identical to the CPU backend's (the merged
 *    files are compared byte for byte): same float32/float64 operations in the
 *    same order per element, sums over tasks t in order, round-to-nearest-even
 *    narrowing. A backend that cannot honour an entry returns TM_UNSUPPORTED.
 *
 * A separately built backend exports
 *     extern "C" int tm_backend_init(int abi_version, const tm_host_services* host, tm_backend** out);
 * returning TM_OK and a backend whose iface->abi_version equals the host's
 * TM_BACKEND_ABI_VERSION, or an error status (TM_ABI_MISMATCH when it was built
 * for another version). The host loads `taskmerge_cuda.so` from the addon's own
 * directory when that file exists (native/backend/loader.cpp).
 *
 * Compatibility: the version changes only when an existing entry or struct
 * changes. New entries are appended to the end of tm_backend_iface and to the
 * end of argument structs; iface->table_bytes tells the host how much of the
 * table a backend filled, so an older backend's missing tail reads as NULL
 * (the host then runs that op on the CPU backend: native/boundary/device_call.h).
 */
#ifndef TASKMERGE_BACKEND_H
#define TASKMERGE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TM_BACKEND_ABI_VERSION 1

/* ---- status, errors ---------------------------------------------------- */

typedef enum tm_status {
  TM_OK = 0,
  TM_INPUT = 1,         /* bad input data or arguments: see tm_error.role/index/element */
  TM_UNSUPPORTED = 2,   /* this backend does not implement the entry or these dtypes */
  TM_NO_DEVICE = 3,     /* no usable device (driver missing, no GPU) */
  TM_OUT_OF_MEMORY = 4,
  TM_DEVICE_ERROR = 5,  /* a device call failed (tm_error.message says which) */
  TM_ABI_MISMATCH = 6,  /* tm_backend_init: built for another TM_BACKEND_ABI_VERSION */
  TM_NOT_PD = 7         /* cholesky: the matrix is not (numerically) positive definite */
} tm_status;

/* Which input an error is about; the host turns this into the file and key. */
typedef enum tm_role {
  TM_ROLE_NONE = 0,  /* not about one input (an argument, a device failure) */
  TM_ROLE_BASE = 1,
  TM_ROLE_EXPERT = 2,
  TM_ROLE_STATS = 3,
  TM_ROLE_BUNDLE = 4 /* a TALL bundle's stored τMTL ("tau") or masks */
} tm_role;

/*
 * Filled by an entry that returns a status other than TM_OK (the caller
 * zero-initialises it). For an input error: role, index (position among the
 * inputs of that role, −1 when the role has one input), element (tensor index
 * of the offending element, −1 when unknown), arg (the input's name as the
 * message names it: "base", "expert", "tau", ...) and message (the detail
 * without its subject: "holds a non-finite value (NaN or Inf) at element 5").
 * Otherwise message is the whole message and role TM_ROLE_NONE.
 */
typedef struct tm_error {
  tm_role role;
  int64_t index;
  int64_t element;
  char arg[32];
  char message[480];
} tm_error;

/* ---- data types -------------------------------------------------------- */

/* Float dtypes of safetensors files (the values match taskmerge::DType). */
typedef enum tm_dtype { TM_F64 = 0, TM_F32 = 1, TM_F16 = 2, TM_BF16 = 3 } tm_dtype;

/* Device memory owned by a backend; opaque to the host. */
typedef struct tm_buffer tm_buffer;

/*
 * Work memory for one kernel call: at least work_bytes(kernel, T, n) bytes at
 * a backend address, 64-byte aligned, owned by the caller (who may reuse it
 * across calls of one job). Replaces per-thread hidden scratch: a backend
 * keeps no state between calls beyond what its buffers hold.
 */
typedef struct tm_work {
  void* data;
  size_t bytes;
} tm_work;

/*
 * One chunk of one tensor: the base θ0 and T experts θt, n elements each
 * starting at tensor index `offset` (the counter-based RNG and error messages
 * use tensor indices). Block kernels convert each to float32, check it is
 * finite (an error names the input and the element), form τt = θt − θ0 in
 * float32 and write the merged float32 block to `out` in out_dtype
 * (round to nearest even). Pointers are backend addresses; `experts` and
 * `expert_dtypes` are host arrays of T entries.
 */
typedef struct tm_chunk {
  const void* base;
  tm_dtype base_dtype;
  size_t T;
  const void* const* experts;
  const tm_dtype* expert_dtypes;
  size_t n;
  uint64_t offset;
  void* out; /* NULL for kernels that only gather statistics */
  tm_dtype out_dtype;
} tm_chunk;

/*
 * How task vectors are trimmed before a kernel combines them (τ̂):
 *  NONE           τ̂ = τ
 *  MAGNITUDE      τ̂ = τ where bits(|τ|) ≥ thresholds[t], else +0        (TIES)
 *  DARE           keep where u(seed, key, t, i) < density, τ̂ = float(double(τ)/density), else +0
 *  BERNOULLI      τ̂ = τ where u < densities[t] (densities[t] ≥ 1 keeps all), else +0
 *  MAGNITUDE_CUT  τ̂ = τ where bits(|τ|) > thresholds[t], or = it at a tensor index < cuts[t]
 * u is the counter-based uniform of native/core/counter_rng.h:
 *   stream = sm(sm(sm(seed) ^ key_hash) ^ t), u(i) = (sm(stream + i·γ) >> 11)·2⁻⁵³,
 *   compared as bits53 < ceil(p·2⁵³); key_hash = fnv1a64(tensor key).
 * Arrays are host arrays of T entries (NULL where the mode does not use them).
 */
typedef enum tm_trim_mode {
  TM_TRIM_NONE = 0,
  TM_TRIM_MAGNITUDE = 1,
  TM_TRIM_DARE = 2,
  TM_TRIM_BERNOULLI = 3,
  TM_TRIM_MAGNITUDE_CUT = 4
} tm_trim_mode;

typedef struct tm_trim {
  tm_trim_mode mode;
  const uint32_t* thresholds;
  const double* cuts;
  double density;
  const double* densities;
  uint64_t seed;
  uint64_t key_hash;
} tm_trim;

/* The kernels that take work memory (for work_bytes). */
typedef enum tm_kernel {
  TM_K_LINEAR_COMBINE = 0,
  TM_K_TIES_MERGE,
  TM_K_TIES_SIGNS,
  TM_K_CONSENSUS,
  TM_K_TALL_COMPRESS,
  TM_K_TALL_MASK,
  TM_K_TALL_APPLY,
  TM_K_MERGEKIT_GTA,
  TM_K_TRIM_L1,
  TM_K_MAGNITUDE_TIE_CUT,
  TM_K_LOT_NORM,
  TM_K_MAGNITUDE_HIST,
  TM_K_MAGNITUDE_SMALL,
  TM_K_TIES_SAMPLE,
  TM_K_TIES_WINDOW,
  TM_K_EIGH,
  TM_K_CHOLESKY,
  TM_K_BREADCRUMBS /* breadcrumbs_merge, breadcrumbs_l1 (added in ABI 1) */
} tm_kernel;

/* ---- argument structs of the block kernels ----------------------------- */

/* ties_merge: out = float(θ0 + λ·agg), agg = Σ (or mean, mean != 0) of the τ̂t whose
 * sign equals the elected sign sign(Σt τ̂t) (majority ±1 where that is 0). */
typedef struct tm_ties_merge_args {
  int majority;
  int mean;
  double lambda;
} tm_ties_merge_args;

/* consensus: τMTL = Σt τt (ties == 0) or the TIES disjoint sum of τ̂t (ties != 0,
 * majority); TALL masks |τt| > tall_lambda·|float(τMTL) − τt| in double; entries
 * at least k masks hold get exactly task_arithmetic's (ct = λ) or ties_merge
 * "sum"'s value, the others θ0. */
typedef struct tm_consensus_args {
  int ties;
  int majority;
  double tall_lambda;
  double lambda;
  double k;
} tm_consensus_args;

/* tall_compress: writes τMTL (as consensus) in tau_dtype to `tau` (backend, n
 * elements) and, when masks != NULL, the packed TALL masks of the stored
 * (rounded) τMTL with per-task lambdas (host, T) into masks[t] (backend,
 * ceil(n/8) bytes, first element in the most significant bit). chunk.offset
 * must be a multiple of 8. */
typedef struct tm_tall_compress_args {
  int ties;
  int majority;
  void* tau;
  tm_dtype tau_dtype;
  const double* lambdas;
  uint8_t* const* masks;
} tm_tall_compress_args;

/* tall_apply: out = θ0 + m ⊙ τMTL with m the packed mask (mask != NULL, offset a
 * multiple of 8) or computed on the fly from expert and lambda (mask == NULL).
 * Non-finite base / tau / expert are input errors (roles base, bundle "tau", expert 0). */
typedef struct tm_tall_apply_args {
  const void* base;
  tm_dtype base_dtype;
  const void* tau;
  tm_dtype tau_dtype;
  const uint8_t* mask;
  const void* expert;
  tm_dtype expert_dtype;
  double lambda;
  size_t n;
  uint64_t offset;
  void* out;
  tm_dtype out_dtype;
} tm_tall_apply_args;

/* mergekit_gta: dt = wt·(st·τ̂t) in double; consensus_sum: m = (Σ dt ≥ 0 ? +1 : −1),
 * mixed = Σ_{sign dt = m} dt, divided when normalize by Σ_{sign dt = m} wt (1 if 0);
 * else mixed = Σ dt, divided when normalize by divisor.
 * out = float(base_scale·θ0 + λ·mixed). weights, scales: host, T. */
typedef struct tm_gta_args {
  const double* weights;
  const double* scales;
  int consensus_sum;
  int normalize;
  double lambda;
  double divisor;
  double base_scale;
} tm_gta_args;

/* ---- argument structs of mergekit's low-precision ops (added in ABI 1) -- */

/*
 * mergekit computed in bfloat16 or float16 (its `dtype`), as torch runs it on
 * the CPU. P is `compute` (TM_BF16 or TM_F16; any other value: TM_UNSUPPORTED)
 * and P(x) rounds a float32 x to P, to nearest, ties to even, back in float32.
 * Every input is converted to float32, checked finite (an input error naming
 * base or expert t and the element), then rounded to P; τt = P(P(θt) − P(θ0)).
 * Each torch op is one float32 operation on P operands rounded once to P; a
 * sum over the models is a float32 sum in model order, rounded once. The
 * output block holds P values, stored in out_dtype (round to nearest even).
 */
/* mergekit_lowp_gta: τ̂t = trim(τt) (thresholds: float32 bits of P values),
 * vt = P(τ̂t·st) (only where st ≠ 1, else τ̂t), dt = P(vt·wt);
 * consensus_sum: m = (P(Σt dt) ≥ 0 ? +1 : −1), mixed = P(Σ_{sign dt = m} dt),
 * div = P(Σ_{sign dt = m} wt) (1 where 0); else mixed = P(Σt dt), div = divisor;
 * normalize: mixed = P(mixed / div); λ ≠ 1: mixed = P(mixed·λ); out = P(P(θ0) + mixed).
 * Sums over t in float32 in order. weights, scales: host, T float32 values. */
typedef struct tm_lowp_gta_args {
  tm_dtype compute;
  const float* weights;
  const float* scales;
  int consensus_sum;
  int normalize;
  float divisor;
  float lambda;
} tm_lowp_gta_args;

/* mergekit_lowp_linear: acc = (base_weight ≠ 0 ? P(base_weight·P(θ0)) : 0) + Σt P(wt·P(θt))
 * in float32 (the base first, then t in order), out = P(acc), then P(out / divisor) when
 * normalize. weights: host, T float32 values. */
typedef struct tm_lowp_linear_args {
  tm_dtype compute;
  const float* weights;
  float base_weight;
  int normalize;
  float divisor;
} tm_lowp_linear_args;

/*
 * Breadcrumbs (Model Breadcrumbs; mergekit's magnitude_outliers): task t keeps
 * the entries ranked [top, top + k) by |τt| (descending, ties by lower tensor
 * index), i.e. those in its top-(top + k) set and not in its top-top set. A
 * top-m set is (bits, cut): entries with bits(|τ|) > bits, or == bits at a
 * tensor index < cut. Host arrays of T entries each.
 */
typedef struct tm_top_sets {
  const uint32_t* drop_bits;
  const double* drop_cuts;
  const uint32_t* keep_bits;
  const double* keep_cuts;
} tm_top_sets;

/* breadcrumbs_merge: dt = kept ? wt·(st·τt) : 0 in double, over t in order;
 * consensus: m = (Σ dt ≥ 0 ? +1 : −1), mixed = Σ_{sign dt = m} dt, divided when
 * normalize by Σ_{sign dt = m} wt (1 where 0); else mixed = Σ dt, divided when
 * normalize by divisor. out = float(θ0 + λ·mixed). weights, scales: host, T. */
typedef struct tm_breadcrumbs_args {
  tm_top_sets sets;
  const double* weights;
  const double* scales;
  int consensus;
  int normalize;
  double lambda;
  double divisor;
} tm_breadcrumbs_args;

/* ---- argument structs of TIES / top-k selection ------------------------ */

/*
 * magnitude_hist: adds the chunk's counts of the float32 bits of |τt| to hist
 * (backend: a state buffer, T × bins float64, kept across chunks): level 0 the high 16 bits (bins 32768), level 1
 * the low 16 bits of entries whose high bits equal prefix[t] (bins 65536;
 * prefix: host, T, −1 skips task t). With sign_diff (backend: a state buffer,
 * T × 65536 float64, level 1 only) also gathers the majority-sign reduction (see
 * native/kernels/magnitude_select.cpp): sign_base, and up to multi_cap entries
 * with several undecided tasks into multi (host, multi_cap × T float32),
 * multi_count of them, overflow = 1 when more did not fit.
 */
typedef struct tm_hist_args {
  int level;
  const int64_t* prefix;
  double* hist;
  double* sign_diff;
  size_t multi_cap;
  float* multi;
} tm_hist_args;

typedef struct tm_hist_result {
  int64_t sign_base;
  size_t multi_count;
  int overflow;
} tm_hist_result;

/*
 * ties_window (native/kernels/ties_window.cpp has the algorithm): per task a
 * window [lo, hi) of float32 bits; counts entries at or above hi (above, atHi:
 * host, T, added to), collects undecided bits into cand (backend, T × capacity
 * uint32) with their sign differences cand_diff (backend, T × capacity int8)
 * at cursors used (backend, T uint64, advanced), counts tabled values
 * (table: host, T × 16, 0xffffffff = none) in table_counts / table_diffs
 * (backend, T × 16 uint64 / int64) — all five state buffers kept across the
 * pass's chunks — and returns entries with several
 * undecided tasks in multi (host, multi_cap × T float32).
 */
typedef struct tm_window_args {
  const uint32_t* lo;
  const uint32_t* hi;
  const uint32_t* table;
  size_t capacity;
  uint32_t* cand;
  int8_t* cand_diff;
  uint64_t* used;
  uint64_t* table_counts;
  int64_t* table_diffs;
  size_t multi_cap;
  float* multi;
} tm_window_args;

typedef struct tm_window_result {
  uint64_t* above; /* host, T */
  uint64_t* at_hi; /* host, T */
  int64_t sign_base;
  size_t multi_count;
  int overflow; /* multi did not fit */
  int full;     /* a candidate list overflowed */
} tm_window_result;

/* ---- the host's services to a backend ---------------------------------- */

typedef struct tm_host_services {
  uint32_t abi_version;
  /* The host's thread pool: fn(ctx, begin, end) over disjoint ranges covering [0, n). */
  void (*parallel_for)(size_t n, size_t grain, void (*fn)(void* ctx, size_t begin, size_t end), void* ctx);
  size_t (*thread_count)(void);
} tm_host_services;

/* ---- batched closed-form solves (LOT / RegMean; added in ABI 1) -------- */

/* The precision of a batched solve, per call: float64 (what the CPU backend
 * does), float32 (factor and solves in float32, converted on the device), or
 * float32 with the GEMMs on TF32 tensor cores. docs/cuda.md gives the error
 * bounds; a backend without one returns TM_UNSUPPORTED. */
typedef enum tm_precision { TM_PRECISION_F64 = 0, TM_PRECISION_F32 = 1, TM_PRECISION_TF32 = 2 } tm_precision;

/* How each system of solve_psd_rows_batched is solved, as linalg::solvePsdRows
 * (native/linalg/solve.h): solver 0 auto (Cholesky of A + ridge·mean(diag A)·I,
 * else the eigh pseudo-inverse), 1 cholesky (a failure is an error), 2 eigh
 * (eigenvalues ≤ rcond·max|λ| dropped; rcond ≤ 0: n·ε). */
typedef struct tm_solve_opts {
  int solver;
  double ridge;
  double rcond;
  tm_precision precision;
} tm_solve_opts;

typedef struct tm_solve_info {
  int used_eigh; /* the eigen-decomposition pseudo-inverse was used */
  size_t rank;   /* eigenvalues kept (eigh), or n (Cholesky) */
} tm_solve_info;

/* ---- the backend ------------------------------------------------------- */

typedef struct tm_backend tm_backend;

/* What a backend reports about its device. available == 0 ("no device") is a
 * valid answer, with the reason in description. */
typedef struct tm_device_info {
  int available;
  char description[160]; /* "NVIDIA H200, 139 GiB" / "no CUDA device: ..." / "x86-64, 16 threads" */
  uint64_t memory_bytes; /* 0 when unknown */
} tm_device_info;

/*
 * The table. Every entry takes the backend first; entries that can fail
 * return a tm_status and fill the tm_error (never NULL) on failure. Entries
 * may run asynchronously on a device as long as results the host reads
 * (host arguments, copy_to_host) are complete when the entry returns.
 */
typedef struct tm_backend_iface {
  uint32_t abi_version; /* TM_BACKEND_ABI_VERSION the backend was built for */
  uint32_t table_bytes; /* sizeof(tm_backend_iface) the backend was built with */

  /* -- identity ---------------------------------------------------------- */
  /* Short lower-case name ("cpu", "cuda"): what the `device` option names. */
  const char* (*name)(tm_backend* be);
  /* The device this backend drives; fills info, never fails. */
  void (*device)(tm_backend* be, tm_device_info* info);
  /* Which dense linear algebra it uses ("openblas", "builtin", "cublas+cusolver"). */
  const char* (*linalg)(tm_backend* be);
  /* Frees the backend (the host calls it once, at exit or unload). */
  void (*destroy)(tm_backend* be);

  /* -- buffers ----------------------------------------------------------- */
  /* Allocates `bytes` of backend memory, 64-byte aligned, contents undefined. */
  tm_status (*buffer_alloc)(tm_backend* be, size_t bytes, tm_buffer** out, tm_error* err);
  /* A buffer viewing caller-owned host memory without copying (the CPU
   * backend); TM_UNSUPPORTED where kernels cannot read host memory (then the
   * caller allocates and copies). The host memory outlives the view. */
  tm_status (*buffer_host_view)(tm_backend* be, void* host, size_t bytes, tm_buffer** out, tm_error* err);
  void (*buffer_free)(tm_backend* be, tm_buffer* buf);
  /* The buffer's backend address (what kernels take) and size. */
  void* (*buffer_data)(tm_backend* be, tm_buffer* buf);
  size_t (*buffer_size)(tm_backend* be, tm_buffer* buf);
  /* bytes from host memory into buf at offset / from buf at offset into host memory. */
  tm_status (*copy_to_backend)(tm_backend* be, tm_buffer* dst, size_t offset, const void* src, size_t bytes, tm_error* err);
  tm_status (*copy_to_host)(tm_backend* be, void* dst, tm_buffer* src, size_t offset, size_t bytes, tm_error* err);
  /* Sets bytes of buf from offset to `value` (zeroes histograms, counters). */
  tm_status (*buffer_fill)(tm_backend* be, tm_buffer* buf, size_t offset, size_t bytes, uint8_t value, tm_error* err);
  /* Waits until every entry called so far has finished (asynchronous copies included). */
  tm_status (*synchronize)(tm_backend* be, tm_error* err);

  /* Bytes of tm_work a kernel needs for T experts and n elements (0: none). */
  size_t (*work_bytes)(tm_backend* be, tm_kernel kernel, size_t T, size_t n);

  /* -- elementwise: dtype conversion, finite check -------------------------- */
  /* dst[0..n) = src in dtype `to`, through float64 (one rounding, nearest even). */
  tm_status (*convert)(tm_backend* be, const void* src, tm_dtype from, void* dst, tm_dtype to, size_t n, tm_error* err);
  /* *first_bad (host) = index of the first NaN/±Inf in data[0..n), or −1. */
  tm_status (*check_finite)(tm_backend* be, const void* data, tm_dtype dtype, size_t n, int64_t* first_bad, tm_error* err);

  /* -- block kernels (chunk: see tm_chunk; trim: see tm_trim) ----------------- */
  /* out = float(θ0 + Σt coeffs[t]·τ̂t), the sum in double over t in order (coeffs: host, T).
   * task_arithmetic / average (trim NONE), dare_linear (trim DARE). */
  tm_status (*linear_combine)(tm_backend* be, const tm_chunk* c, const tm_trim* trim, const double* coeffs, tm_work work, tm_error* err);
  tm_status (*ties_merge)(tm_backend* be, const tm_chunk* c, const tm_trim* trim, const tm_ties_merge_args* a, tm_work work, tm_error* err);
  /* *sign_sum (host) = Σ over the chunk of sign(Σt τ̂t): the majority-sign reduction. */
  tm_status (*ties_signs)(tm_backend* be, const tm_chunk* c, const tm_trim* trim, int64_t* sign_sum, tm_work work, tm_error* err);
  tm_status (*consensus)(tm_backend* be, const tm_chunk* c, const tm_trim* trim, const tm_consensus_args* a, tm_work work, tm_error* err);
  tm_status (*tall_compress)(tm_backend* be, const tm_chunk* c, const tm_trim* trim, const tm_tall_compress_args* a, tm_work work, tm_error* err);
  /* The masks of tall_compress from a stored τMTL (tau: backend, n of tau_dtype; lambdas host T; masks as there). */
  tm_status (*tall_mask)(tm_backend* be, const tm_chunk* c, const void* tau, tm_dtype tau_dtype, const double* lambdas, uint8_t* const* masks, tm_work work, tm_error* err);
  tm_status (*tall_apply)(tm_backend* be, const tm_tall_apply_args* a, tm_work work, tm_error* err);
  tm_status (*mergekit_gta)(tm_backend* be, const tm_chunk* c, const tm_trim* trim, const tm_gta_args* a, tm_work work, tm_error* err);
  /* l1[t] += Σ|τt|, l1_kept[t] += Σ|τ̂t| in double (host, T): each block of 4096 entries from the
   * chunk's start summed in index order from 0, the block sums added in block order. */
  tm_status (*trim_l1)(tm_backend* be, const tm_chunk* c, const tm_trim* trim, double* l1, double* l1_kept, tm_work work, tm_error* err);
  /* count[t] = entries with bits(|τt|) == thresholds[t]; at[t] = chunk index + 1 of the
   * need[t]-th of them, 0 when fewer (all host, T). */
  tm_status (*magnitude_tie_cut)(tm_backend* be, const tm_chunk* c, const uint32_t* thresholds, const double* need, double* count, double* at, tm_work work, tm_error* err);
  /* LOT's norm layers: out = float(θ0 + λ·Σt st τt / Σt st) (the mean of τ where Σ st = 0);
   * scales[t]: backend, `total` elements of scale_dtypes[t], read from chunk.offset. */
  tm_status (*lot_norm)(tm_backend* be, const tm_chunk* c, const void* const* scales, const tm_dtype* scale_dtypes, size_t total, double lambda, tm_work work, tm_error* err);

  /* -- TIES / top-k selection ---------------------------------------------- */
  tm_status (*magnitude_hist)(tm_backend* be, const tm_chunk* c, const tm_hist_args* a, tm_hist_result* r, tm_work work, tm_error* err);
  /* Per task, the bin holding the ks[t]-th largest of hist (backend: the state
   * buffer magnitude_hist filled, T × bins) and its rank from the top inside it
   * (ks, bin, rank: host, T). */
  tm_status (*magnitude_pick)(tm_backend* be, const double* hist, size_t bins, size_t T, const double* ks, double* bin, double* rank, tm_error* err);
  /* A whole small tensor (offset 0): thresholds[t] (host) = bits of the k-th largest |τt|,
   * *sign_sum (host) = the majority-sign reduction with those thresholds. */
  tm_status (*magnitude_small)(tm_backend* be, const tm_chunk* c, size_t k, uint32_t* thresholds, int64_t* sign_sum, tm_work work, tm_error* err);
  /* bits[t·m + at + i] = bits(|τt[i]|) (bits: backend, a state buffer of T × m uint32:
   * the window's sample, filled block by block, read back once by ties_window_bounds). */
  tm_status (*ties_sample)(tm_backend* be, const tm_chunk* c, uint32_t* bits, size_t m, size_t at, tm_work work, tm_error* err);
  tm_status (*ties_window)(tm_backend* be, const tm_chunk* c, const tm_window_args* a, tm_window_result* r, tm_work work, tm_error* err);

  /* -- dense linear algebra: float64, row-major, explicit leading dimensions --- */
  /* C[m,n] = α·op(A)·op(B) + β·C, op(X) = Xᵀ when its flag is set; β == 0 ignores C. */
  tm_status (*gemm)(tm_backend* be, int trans_a, int trans_b, size_t m, size_t n, size_t k, double alpha, const double* A, size_t lda,
                    const double* B, size_t ldb, double beta, double* C, size_t ldc, tm_error* err);
  /* C[n,n] = α·Xᵀ X + β·C for X of k rows of width n; writes both triangles. */
  tm_status (*syrk_rows)(tm_backend* be, size_t n, size_t k, double alpha, const double* X, size_t ldx, double beta, double* C, size_t ldc, tm_error* err);
  /* In-place A = L Lᵀ on the lower triangle (the strict upper one untouched);
   * TM_NOT_PD when A is not numerically positive definite. */
  tm_status (*cholesky)(tm_backend* be, size_t n, double* A, size_t lda, tm_work work, tm_error* err);
  /* With L from cholesky: each of the nrhs rows b of B ([nrhs, n]) becomes b A⁻¹. */
  tm_status (*cholesky_solve_rows)(tm_backend* be, size_t n, const double* L, size_t lda, size_t nrhs, double* B, size_t ldb, tm_error* err);
  /* From A's lower triangle: eigenvalues ascending into w[n] (backend), eigenvectors
   * into A's ROWS (A = Σj w[j] vj vjᵀ, vj = row j). Non-finite entries: an error. */
  tm_status (*eigh)(tm_backend* be, size_t n, double* A, size_t lda, double* w, tm_work work, tm_error* err);

  /* -- added in ABI 1 after the first table (a backend built before reads them as NULL) -- */
  /* Breadcrumbs: see tm_breadcrumbs_args. */
  tm_status (*breadcrumbs_merge)(tm_backend* be, const tm_chunk* c, const tm_breadcrumbs_args* a, tm_work work, tm_error* err);
  /* l1[t] += Σ|τt|, l1_kept[t] += Σ|τt| over the kept entries, in double (host, T): the L1 rescale,
   * summed in trim_l1's order. */
  tm_status (*breadcrumbs_l1)(tm_backend* be, const tm_chunk* c, const tm_top_sets* sets, double* l1, double* l1_kept, tm_work work, tm_error* err);

  /* -- added in ABI 1: norm statistics, norm drift and mergekit's low-precision ops, once host-only (NULL in a backend built before) -- */
  /* Statistics of norm layers (GramAccumulator): `count` rows of `width` values of rows_dtype
   * (TM_F32 or TM_F64; rows: backend) are converted to float64 (exactly) and checked first: a
   * NaN/±Inf fails naming the row ("input row 3 holds a non-finite value (NaN or Inf)") and
   * adds nothing. Then per feature j, over the rows in order, in float64:
   * sqsum[j] += x², sum[j] += x (sqsum, sum: backend, width float64 each). */
  tm_status (*norm_accumulate)(tm_backend* be, const void* rows, tm_dtype rows_dtype, size_t count, size_t width, double* sqsum, double* sum, tm_error* err);
  /* Feature drift of a norm layer (taskmerge drift): merged w, expert wt, base w0 and the expert's
   * norm_sq_sum s (backend, n values each of their dtypes) converted to float64; a negative or
   * non-finite s is an error ("statistics: norm_sq_sum holds a negative or non-finite value");
   * *drift = Σi s[i]·(w[i] − wt[i])·(w[i] − wt[i]) and *base_drift the same with w0 (host), over i
   * in order, in float64, multiplied left to right. */
  tm_status (*drift_norm)(tm_backend* be, size_t n, const void* merged, tm_dtype merged_dtype, const void* expert, tm_dtype expert_dtype,
                          const void* base, tm_dtype base_dtype, const void* scale, tm_dtype scale_dtype, double* drift, double* base_drift,
                          tm_error* err);
  /* mergekit's low-precision ops (P, τt, rounding: see tm_lowp_gta_args); only gta and linear write chunk.out.
   * They take no tm_work: a backend allocates what it needs within the call. */
  /* hist (backend, T × 32768 float64) += the counts of the 15-bit P magnitude patterns of |τt|
   * (ordered like the magnitude; for magnitude_pick). */
  tm_status (*mergekit_lowp_hist)(tm_backend* be, const tm_chunk* c, tm_dtype compute, double* hist, tm_error* err);
  /* As magnitude_tie_cut over the τt of P: count[t] = entries with bits(|τt|) == thresholds[t],
   * at[t] = chunk index + 1 of the need[t]-th of them in index order, 0 when fewer (all host, T). */
  tm_status (*mergekit_lowp_tie_cut)(tm_backend* be, const tm_chunk* c, tm_dtype compute, const uint32_t* thresholds, const double* need,
                                     double* count, double* at, tm_error* err);
  /* l1[t] += Σ|τt|, l1_kept[t] += Σ|τ̂t| in double (host, T), the τt of P, trimmed by `trim`. */
  tm_status (*mergekit_lowp_l1)(tm_backend* be, const tm_chunk* c, tm_dtype compute, const tm_trim* trim, double* l1, double* l1_kept, tm_error* err);
  tm_status (*mergekit_lowp_gta)(tm_backend* be, const tm_chunk* c, const tm_trim* trim, const tm_lowp_gta_args* a, tm_error* err);
  tm_status (*mergekit_lowp_linear)(tm_backend* be, const tm_chunk* c, const tm_lowp_linear_args* a, tm_error* err);

  /* -- batched closed-form solves and A += G (issue 14; added in ABI 1) ------- */
  /* For i < count: solves X A_i = B_i for the nrhs rows of B_i ([nrhs, n], row-major,
   * overwritten by X) with A_i symmetric positive semi-definite ([n, n], destroyed),
   * as tm_solve_opts says. A and B are HOST arrays of HOST matrices: the backend
   * stages them itself (the CUDA backend uploads system i+1 while system i is
   * factored). Systems are solved in order; the entry stops at the first that
   * fails and returns its status. *done (host) = the systems solved (count on
   * success); B_i and info[i] (host, count entries) hold the results of those. */
  tm_status (*solve_psd_rows_batched)(tm_backend* be, size_t count, size_t n, double* const* A, size_t nrhs, double* const* B,
                                      const tm_solve_opts* opts, tm_solve_info* info, size_t* done, tm_error* err);
  /* y[0..n) += alpha·x in float64 (backend addresses): the accumulation A += G̃t of
   * device-resident statistics (alpha·x rounded, then the sum: bit-identical everywhere). */
  tm_status (*axpy)(tm_backend* be, size_t n, double alpha, const double* x, double* y, tm_error* err);

  /* -- pinned host memory and overlapped copies (transfers: issue 14 item 2) --------
   * For a backend without host views; one with them (the CPU) leaves all five NULL.
   * The host pins its long-lived chunk buffers once (host_register) and streams a
   * block kernel in sub-blocks: copy_to_backend_async(i+1) ∥ kernel(i) ∥
   * copy_to_host_async(i−1), ordered by copy_wait (native/boundary/device_call.h). */
  /* Page-locks host memory [host, host + bytes) for this backend's copies (cudaHostRegister),
   * so that copies from and to it are DMA and run asynchronously. The memory stays
   * allocated until host_unregister(host) returns. */
  tm_status (*host_register)(tm_backend* be, void* host, size_t bytes, tm_error* err);
  void (*host_unregister)(tm_backend* be, void* host);
  /* As copy_to_backend / copy_to_host, queued beside the kernels and returning at once:
   * src must stay unchanged, and dst unread, until the next synchronize (which waits for
   * them). Both start after the entries called before them (a reused buffer is no longer
   * read; copy_to_host_async copies what they wrote), but later entries do not wait for
   * them unless copy_wait says so. */
  tm_status (*copy_to_backend_async)(tm_backend* be, tm_buffer* dst, size_t offset, const void* src, size_t bytes, tm_error* err);
  tm_status (*copy_to_host_async)(tm_backend* be, void* dst, tm_buffer* src, size_t offset, size_t bytes, tm_error* err);
  /* Entries called after this start only once every copy_to_backend_async queued before it is
   * done (downloads are not waited for: kernel i+1 runs while block i is downloaded). */
  tm_status (*copy_wait)(tm_backend* be, tm_error* err);
} tm_backend_iface;

/* A backend: its table and its own state. */
struct tm_backend {
  const tm_backend_iface* iface;
  void* context;
};

/* What a separately built backend exports (see the top of this file). */
typedef int (*tm_backend_init_fn)(int abi_version, const tm_host_services* host, tm_backend** out);

#ifdef __cplusplus
}
#endif

#endif /* TASKMERGE_BACKEND_H */
