#include "elementwise.h"

#include <cstring>
#include <string>

#include "simd.h"

namespace taskmerge {

static void checkSize(const Bytes& b, size_t n, DType t, const std::string& what) {
  if (b.size != n * dtypeSize(t))
    throw Error(what + ": expected " + std::to_string(n * dtypeSize(t)) + " bytes, got " +
                std::to_string(b.size));
  if (!isFloat(t)) throw Error(what + ": not a floating-point tensor");
}

ElementwiseChunk parseChunk(const OpArgs& a) {
  ElementwiseChunk c;
  c.n = size_t(a.num("n"));
  c.offset = size_t(a.num("offset", 0));
  c.baseType = parseDType(a.str("baseDtype"));
  Bytes base = a.buf("base");
  checkSize(base, c.n, c.baseType, "base");
  c.base = base.data;
  const auto& experts = a.bufList("experts");
  const auto& types = a.strList("expertDtypes");
  if (experts.empty()) throw Error("no experts given");
  if (experts.size() != types.size()) throw Error("experts and expertDtypes differ in length");
  for (size_t t = 0; t < experts.size(); t++) {
    DType dt = parseDType(types[t]);
    checkSize(experts[t], c.n, dt, "expert " + std::to_string(t));
    c.experts.push_back(experts[t].data);
    c.expertTypes.push_back(dt);
  }
  if (a.bufs.count("out")) {
    c.outType = parseDType(a.str("outDtype"));
    Bytes out = a.buf("out");
    checkSize(out, c.n, c.outType, "out");
    c.out = out.data;
  }
  return c;
}

TM_SIMD bool allFinite(const float* x, size_t n) {
  uint32_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    std::memcpy(&u, x + i, 4);
    bad |= uint32_t((u & 0x7f800000u) == 0x7f800000u);
  }
  return !bad;
}

TM_SIMD bool subtractFinite(float* x, const float* base, size_t n) {
  uint32_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    std::memcpy(&u, x + i, 4);
    bad |= uint32_t((u & 0x7f800000u) == 0x7f800000u);
    x[i] -= base[i];
  }
  return !bad;
}

}  // namespace taskmerge
