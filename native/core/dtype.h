// Safetensors dtypes and conversions between file dtypes and float32/float64.
// Narrowing conversions round to nearest, ties to even; NaN stays NaN.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace taskmerge {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

DType parseDType(const std::string& name);  // throws taskmerge::Error on unknown names
size_t dtypeSize(DType t);
bool isFloat(DType t);

float halfToFloat(uint16_t h);
uint16_t floatToHalf(float f);
float bf16ToFloat(uint16_t b);
uint16_t floatToBf16(float f);
uint16_t doubleToHalf(double d);
uint16_t doubleToBf16(double d);

// n elements of a float dtype to float32 / float64, and back.
void toF32(const void* src, DType t, size_t n, float* dst);
void fromF32(const float* src, size_t n, DType t, void* dst);
void toF64(const void* src, DType t, size_t n, double* dst);
void fromF64(const double* src, size_t n, DType t, void* dst);

}  // namespace taskmerge
