#include "dtype.h"

#include <cmath>
#include <cstring>

#include "op.h"
#include "simd.h"

namespace taskmerge {

DType parseDType(const std::string& s) {
  if (s == "F64") return DType::F64;
  if (s == "F32") return DType::F32;
  if (s == "F16") return DType::F16;
  if (s == "BF16") return DType::BF16;
  if (s == "I64") return DType::I64;
  if (s == "I32") return DType::I32;
  if (s == "I16") return DType::I16;
  if (s == "I8") return DType::I8;
  if (s == "U8") return DType::U8;
  if (s == "BOOL") return DType::BOOL;
  throw Error("unknown dtype '" + s + "'");
}

size_t dtypeSize(DType t) {
  switch (t) {
    case DType::F64: case DType::I64: return 8;
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: case DType::I16: return 2;
    default: return 1;
  }
}

bool isFloat(DType t) {
  return t == DType::F64 || t == DType::F32 || t == DType::F16 || t == DType::BF16;
}

static inline uint32_t bitsOf(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
static inline float floatOf(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
static inline uint64_t bitsOf(double d) { uint64_t u; std::memcpy(&u, &d, 8); return u; }

float halfToFloat(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  if (exp == 0x1f) return floatOf(sign | 0x7f800000u | (man << 13));  // inf / nan
  if (exp == 0) {
    // zero or subnormal: value = man * 2^-24, exact in float32
    float v = float(man) * 5.9604644775390625e-08f;
    return sign ? -v : v;
  }
  return floatOf(sign | ((exp + 112) << 23) | (man << 13));
}

// Rounds the magnitude |d| (finite, non-negative) to a binary16 bit pattern.
// Works in double so one routine serves float and double sources exactly.
static uint16_t halfMagnitude(double a) {
  if (a >= 65520.0) return 0x7c00;  // rounds to infinity (65504 + half ulp)
  if (a < 6.103515625e-05) {
    // subnormal range: units of 2^-24, round half to even
    double q = a * 16777216.0;
    double r = std::nearbyint(q);  // default rounding mode: ties to even
    return uint16_t(r);            // 1024 becomes the smallest normal: correct
  }
  int e;
  double m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5,1)
  // 11 significant bits: scale mantissa to [1024, 2048)
  double q = std::nearbyint(std::ldexp(m, 11));
  if (q >= 2048.0) { q /= 2; e += 1; }
  int biased = e - 1 + 15;
  if (biased >= 31) return 0x7c00;
  return uint16_t((biased << 10) | (uint32_t(q) - 1024));
}

static uint16_t toHalfImpl(double d, bool isNan) {
  bool neg = std::signbit(d);
  uint16_t sign = neg ? 0x8000 : 0;
  if (isNan) return sign | 0x7e00;
  double a = std::fabs(d);
  if (std::isinf(a)) return sign | 0x7c00;
  return sign | halfMagnitude(a);
}

uint16_t floatToHalf(float f) { return toHalfImpl(double(f), std::isnan(f)); }
uint16_t doubleToHalf(double d) { return toHalfImpl(d, std::isnan(d)); }

float bf16ToFloat(uint16_t b) { return floatOf(uint32_t(b) << 16); }

uint16_t floatToBf16(float f) {
  uint32_t u = bitsOf(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040);  // quiet NaN
  uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);  // ties to even
  return uint16_t((u + rounding) >> 16);
}

uint16_t doubleToBf16(double d) {
  if (std::isnan(d)) return std::signbit(d) ? 0xffc0 : 0x7fc0;
  // Round double to bf16 directly (not via float) to avoid double rounding.
  uint64_t u = bitsOf(d);
  uint16_t sign = (u >> 63) ? 0x8000 : 0;
  double a = std::fabs(d);
  if (std::isinf(a)) return sign | 0x7f80;
  if (a == 0) return sign;
  int e;
  double m = std::frexp(a, &e);  // a = m*2^e
  int exp = e - 1;               // a = 1.x * 2^exp
  if (exp >= -126) {
    double q = std::nearbyint(std::ldexp(m, 8));  // 8 significant bits
    if (q >= 256.0) { q /= 2; exp += 1; }
    if (exp > 127) return sign | 0x7f80;
    return sign | uint16_t(((exp + 127) << 7) | (uint32_t(q) - 128));
  }
  // subnormal: units of 2^-133
  double q = std::nearbyint(std::ldexp(a, 133));
  return sign | uint16_t(q);  // q == 128 gives the smallest normal, correctly
}

// The bf16 conversions are the hot ends of every bf16 merge: plain loops
// over bits that vectorise (select instead of a NaN branch).
TM_SIMD static void bf16ToF32(const uint16_t* s, size_t n, float* dst) {
  uint32_t* d = reinterpret_cast<uint32_t*>(dst);
  for (size_t i = 0; i < n; i++) d[i] = uint32_t(s[i]) << 16;
}

TM_SIMD static void f32ToBf16(const float* src, size_t n, uint16_t* d) {
  const uint32_t* s = reinterpret_cast<const uint32_t*>(src);
  for (size_t i = 0; i < n; i++) {
    const uint32_t u = s[i];
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;  // ties to even
    const uint32_t quiet = (u >> 16) | 0x0040u;                        // NaN stays NaN
    d[i] = uint16_t((u & 0x7fffffffu) > 0x7f800000u ? quiet : rounded);
  }
}

void toF32(const void* src, DType t, size_t n, float* dst) {
  switch (t) {
    case DType::F32: std::memcpy(dst, src, n * 4); return;
    case DType::F64: {
      const double* s = static_cast<const double*>(src);
      for (size_t i = 0; i < n; i++) dst[i] = float(s[i]);
      return;
    }
    case DType::F16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; i++) dst[i] = halfToFloat(s[i]);
      return;
    }
    case DType::BF16: return bf16ToF32(static_cast<const uint16_t*>(src), n, dst);
    default: throw Error("toF32: not a float dtype");
  }
}

void fromF32(const float* src, size_t n, DType t, void* dst) {
  switch (t) {
    case DType::F32: std::memcpy(dst, src, n * 4); return;
    case DType::F64: {
      double* d = static_cast<double*>(dst);
      for (size_t i = 0; i < n; i++) d[i] = src[i];
      return;
    }
    case DType::F16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; i++) d[i] = floatToHalf(src[i]);
      return;
    }
    case DType::BF16: return f32ToBf16(src, n, static_cast<uint16_t*>(dst));
    default: throw Error("fromF32: not a float dtype");
  }
}

void toF64(const void* src, DType t, size_t n, double* dst) {
  switch (t) {
    case DType::F64: std::memcpy(dst, src, n * 8); return;
    case DType::F32: {
      const float* s = static_cast<const float*>(src);
      for (size_t i = 0; i < n; i++) dst[i] = s[i];
      return;
    }
    case DType::F16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; i++) dst[i] = halfToFloat(s[i]);
      return;
    }
    case DType::BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; i++) dst[i] = bf16ToFloat(s[i]);
      return;
    }
    default: throw Error("toF64: not a float dtype");
  }
}

void fromF64(const double* src, size_t n, DType t, void* dst) {
  switch (t) {
    case DType::F64: std::memcpy(dst, src, n * 8); return;
    case DType::F32: {
      float* d = static_cast<float*>(dst);
      for (size_t i = 0; i < n; i++) d[i] = float(src[i]);
      return;
    }
    case DType::F16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; i++) d[i] = doubleToHalf(src[i]);
      return;
    }
    case DType::BF16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; i++) d[i] = doubleToBf16(src[i]);
      return;
    }
    default: throw Error("fromF64: not a float dtype");
  }
}

}  // namespace taskmerge
