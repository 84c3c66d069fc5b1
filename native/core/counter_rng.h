// Counter-based random numbers for DARE: the number for element i of task t
// in tensor `key` is a pure function of (seed, key, t, i), so any thread
// count, chunking or visiting order draws the same bits.
//
//   stream(seed, key, t) = sm(sm(sm(seed) ^ fnv1a64(key)) ^ t)
//   u(i)                 = (sm(stream + i·γ) >> 11) · 2⁻⁵³      ∈ [0, 1)
//
// with sm(x) = mix(x + γ) the SplitMix64 step, γ = 0x9E3779B97F4A7C15 and
// fnv1a64 over the key's UTF-8 bytes. All arithmetic is modulo 2⁶⁴; the
// arithmetic itself is in counter_rng_core.h, which the CUDA kernels share.
#pragma once
#include <cstdint>
#include <string>

#include "counter_rng_core.h"

namespace taskmerge {

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
  CounterRng(uint64_t seed, uint64_t keyHash, uint64_t task) : stream(rngStream(seed, keyHash, task)) {}
  // The 53 random bits of element i: u(i) = bits53(i) · 2⁻⁵³.
  uint64_t bits53(uint64_t i) const { return rngBits53(stream, i); }
  // Uniform in [0, 1) with 53 random bits.
  double uniform(uint64_t i) const { return double(bits53(i)) * 0x1p-53; }
};

}  // namespace taskmerge
