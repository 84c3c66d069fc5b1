// The pure arithmetic of the counter-based random numbers (counter_rng.h has
// the definition and the key hash), in one header that both the CPU build
// and nvcc compile: under nvcc the functions are __host__ __device__, so the
// CUDA kernels (native/cuda/element.h) draw DARE's bits from this very code.
// Integer arithmetic modulo 2⁶⁴ and one exact ceil: the same bits on any
// compiler.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define TM_RNG_HD __host__ __device__ __forceinline__
#else
#define TM_RNG_HD inline
#endif

namespace taskmerge {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

TM_RNG_HD uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

TM_RNG_HD uint64_t splitmix64(uint64_t x) { return mix64(x + kGolden); }

// stream(seed, key, t) = sm(sm(sm(seed) ^ keyHash) ^ t)
TM_RNG_HD uint64_t rngStream(uint64_t seed, uint64_t keyHash, uint64_t task) {
  return splitmix64(splitmix64(splitmix64(seed) ^ keyHash) ^ task);
}

// The 53 random bits of element i of a stream: u(i) = bits53 · 2⁻⁵³.
TM_RNG_HD uint64_t rngBits53(uint64_t stream, uint64_t i) { return splitmix64(stream + i * kGolden) >> 11; }

// u < p ⟺ bits53 < ceil(p · 2⁵³) for p in [0, 1]: the integer form of the
// comparison (p · 2⁵³ is exact in double, so ceil is too).
TM_RNG_HD uint64_t uniformBelowBound(double p) {
  double x = std::ceil(p * 0x1p53);
  return x <= 0 ? 0 : uint64_t(x);
}

}  // namespace taskmerge
