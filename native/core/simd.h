// Hot elementwise loops are compiled twice, for AVX2 and for baseline x86-64,
// and the loader picks one per machine (function multi-versioning through an
// ifunc). The portable build stays portable while the 2-core build machine
// gets 8-wide float / 4-wide double loops. Only "avx2", not FMA: without FMA
// neither clone can contract a·b + c, so both give the same bits.
#pragma once

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(TM_NO_CLONES)
#define TM_SIMD __attribute__((target_clones("avx2", "default")))
#else
#define TM_SIMD
#endif
