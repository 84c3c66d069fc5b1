// Counter-based random numbers for DARE: the number for element i of task t
// in tensor `key` is a pure function of (seed, key, t, i), so any thread
// count, chunking or visiting order draws the same bits.
//
//   stream(seed, key, t) = sm(sm(sm(seed) ^ fnv1a64(key)) ^ t)
//   u(i)                 = (sm(stream + i·γ) >> 11) · 2⁻⁵³      ∈ [0, 1)
//
// with sm(x) = mix(x + γ) the SplitMix64 step, γ = 0x9E3779B97F4A7C15 and
// fnv1a64 over the key's UTF-8 bytes. All arithmetic is modulo 2⁶⁴.
#pragma once
#include <cstdint>
#include <cmath>
#include <string>

namespace taskmerge {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

inline uint64_t splitmix64(uint64_t x) { return mix64(x + kGolden); }

inline uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

struct CounterRng {
  uint64_t stream;
  CounterRng(uint64_t seed, uint64_t keyHash, uint64_t task)
      : stream(splitmix64(splitmix64(splitmix64(seed) ^ keyHash) ^ task)) {}
  // The 53 random bits of element i: u(i) = bits53(i) · 2⁻⁵³.
  uint64_t bits53(uint64_t i) const { return splitmix64(stream + i * kGolden) >> 11; }
  // Uniform in [0, 1) with 53 random bits.
  double uniform(uint64_t i) const { return double(bits53(i)) * 0x1p-53; }
};

// u < p ⟺ bits53 < ceil(p · 2⁵³) for p in [0, 1]: the integer form of the
// comparison (p · 2⁵³ is exact in double, so ceil is too).
inline uint64_t uniformBelowBound(double p) {
  double x = std::ceil(p * 0x1p53);
  return x <= 0 ? 0 : uint64_t(x);
}

}  // namespace taskmerge
