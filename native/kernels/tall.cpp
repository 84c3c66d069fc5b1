// TALL masks (Wang et al., "Localizing Task Information for Improved Model
// Merging and Compression"): one bit per parameter per task.
//
// Op "tall_compress": chunk arguments + trim + majority + kind ("sum" | "ties")
//   + tau (n elements of tauDtype, written) [+ lambdas (per expert) + masks (T
//   buffers of ceil(n/8) bytes, written)]. Computes τMTL (Σt τt, or the TIES
//   disjoint sum of the trimmed τ̂t), stores it in tauDtype, and computes the
//   masks mt = 1{|τt| > λt·|τMTL − τt|} from the stored (rounded) τMTL, so a
//   bundle reproduces its masks from its own data. Bits are packed NumPy
//   packbits style: first element in the most significant bit. The chunk
//   offset must be a multiple of 8 so bytes align across chunks.
// Op "tall_apply": base, tau, n, offset, out (+ dtypes) and either mask
//   (packed bits) or expert + expertDtype + lambda (the mask computed on the
//   fly, for λ candidates) → out = θ0 + m ⊙ τMTL.
// Op "tall_mask": chunk arguments + tau (stored τMTL, tauDtype) + lambdas +
//   masks (T buffers, written): the masks of tall_compress from a stored τMTL
//   (used once λt has been chosen from a grid).
#include "../core/tall_mask.h"
#include "../core/trim.h"

namespace taskmerge {

// Per-thread block scratch: plain pointers, no thread-local lookup per element.
struct MaskScratch {
  std::vector<double> agg = std::vector<double>(kBlockElems);
  std::vector<uint8_t*> dst;
};

static MaskScratch& maskScratch() {
  thread_local MaskScratch s;
  return s;
}

// The block's slice of every task's packed mask (blocks start at multiples of 8 entries).
static uint8_t* const* maskSlices(MaskScratch& s, const std::vector<uint8_t*>& masks, size_t localIndex) {
  s.dst.resize(masks.size());
  for (size_t t = 0; t < masks.size(); t++) s.dst[t] = masks[t] + localIndex / 8;
  return s.dst.data();
}

static void tallCompressOp(const OpArgs& a, OpResult&) {
  ElementwiseChunk c = parseChunk(a);
  const size_t T = c.experts.size();
  if (c.offset % 8) throw Error("tall_compress: chunk offset must be a multiple of 8");
  const std::string kind = a.str("kind");
  if (kind != "sum" && kind != "ties") throw Error("tall_compress: kind must be 'sum' or 'ties'");
  const bool ties = kind == "ties";
  Trim trim = Trim::parse(a, T);
  const int maj = majorityArg(a);
  const DType tauType = parseDType(a.str("tauDtype"));
  if (!isFloat(tauType)) throw Error("tall_compress: tauDtype must be a float dtype");
  Bytes tauOut = a.buf("tau");
  if (tauOut.size != c.n * dtypeSize(tauType)) throw Error("tall_compress: tau buffer size does not match n");
  const size_t maskBytes = (c.n + 7) / 8;
  std::vector<double> lambdas;
  std::vector<uint8_t*> masks;
  if (a.has("masks")) {
    lambdas = a.numList("lambdas");
    const auto& mb = a.bufList("masks");
    if (lambdas.size() != T || mb.size() != T) throw Error("tall_compress: one lambda and one mask buffer per expert");
    for (auto& m : mb) {
      if (m.size != maskBytes) throw Error("tall_compress: mask buffer must hold ceil(n/8) bytes");
      masks.push_back(m.data);
    }
  }
  forEachBlock(c, [&](Block& b) {
    MaskScratch& s = maskScratch();
    double* agg = s.agg.data();
    float* mtl = b.out;  // scratch: nothing is written from it (the op has no out)
    if (ties)
      tiesAggregate(trim.block(b), b.T, b.n, maj, false, agg);
    else
      tallSumTasks(b.tau, b.T, b.n, agg);
    tallToFloat(agg, b.n, mtl);
    const size_t local = b.index - c.offset;
    uint8_t* dst = tauOut.data + local * dtypeSize(tauType);
    fromF32(mtl, b.n, tauType, dst);
    toF32(dst, tauType, b.n, mtl);  // masks use τMTL as stored
    if (!masks.empty()) tallMasks(b.tau, b.T, mtl, b.n, lambdas.data(), maskSlices(s, masks, local));
  });
}

static void checkLen(const Bytes& b, size_t want, const char* what) {
  if (b.size != want)
    throw Error(std::string("tall_apply: ") + what + " holds " + std::to_string(b.size) + " bytes, expected " +
                std::to_string(want));
}

static void tallApplyOp(const OpArgs& a, OpResult&) {
  const size_t n = size_t(a.num("n")), offset = size_t(a.num("offset", 0));
  const DType bt = parseDType(a.str("baseDtype")), tt = parseDType(a.str("tauDtype")), ot = parseDType(a.str("outDtype"));
  Bytes base = a.buf("base"), tau = a.buf("tau"), out = a.buf("out");
  checkLen(base, n * dtypeSize(bt), "base");
  checkLen(tau, n * dtypeSize(tt), "tau");
  checkLen(out, n * dtypeSize(ot), "out");
  const bool fromMask = a.has("mask");
  Bytes mask{}, expert{};
  DType et = DType::F32;
  double lambda = 0;
  if (fromMask) {
    if (offset % 8) throw Error("tall_apply: chunk offset must be a multiple of 8");
    mask = a.buf("mask");
    checkLen(mask, (n + 7) / 8, "mask");
  } else {
    expert = a.buf("expert");
    et = parseDType(a.str("expertDtype"));
    checkLen(expert, n * dtypeSize(et), "expert");
    lambda = a.num("lambda");
  }
  const size_t blocks = (n + kBlockElems - 1) / kBlockElems;
  parallelFor(blocks, 1, [&](size_t b0, size_t b1) {
    std::vector<float> th0(kBlockElems), mtl(kBlockElems), x(kBlockElems), o(kBlockElems);
    for (size_t b = b0; b < b1; b++) {
      const size_t start = b * kBlockElems, len = std::min(kBlockElems, n - start);
      toF32(base.data + start * dtypeSize(bt), bt, len, th0.data());
      checkFinite(th0.data(), len, offset + start, "base", size_t(-1));
      toF32(tau.data + start * dtypeSize(tt), tt, len, mtl.data());
      checkFinite(mtl.data(), len, offset + start, "tau", size_t(-1));
      if (fromMask) {
        const uint8_t* m = mask.data + start / 8;
        for (size_t i = 0; i < len; i++) o[i] = selectBits((m[i >> 3] >> (7 - (i & 7))) & 1, th0[i] + mtl[i], th0[i]);
      } else {
        toF32(expert.data + start * dtypeSize(et), et, len, x.data());
        checkFinite(x.data(), len, offset + start, "expert", 0);
        for (size_t i = 0; i < len; i++) {
          float ti = x[i] - th0[i];
          o[i] = selectBits(tallBit(ti, mtl[i], lambda), th0[i] + mtl[i], th0[i]);
        }
      }
      fromF32(o.data(), len, ot, out.data + start * dtypeSize(ot));
    }
  });
}

static void tallMaskOp(const OpArgs& a, OpResult&) {
  ElementwiseChunk c = parseChunk(a);
  const size_t T = c.experts.size();
  if (c.offset % 8) throw Error("tall_mask: chunk offset must be a multiple of 8");
  const DType tauType = parseDType(a.str("tauDtype"));
  Bytes tau = a.buf("tau");
  if (!isFloat(tauType) || tau.size != c.n * dtypeSize(tauType)) throw Error("tall_mask: tau buffer does not hold n floats");
  const auto& lambdas = a.numList("lambdas");
  const auto& mb = a.bufList("masks");
  if (lambdas.size() != T || mb.size() != T) throw Error("tall_mask: one lambda and one mask buffer per expert");
  std::vector<uint8_t*> masks;
  for (auto& m : mb) {
    if (m.size != (c.n + 7) / 8) throw Error("tall_mask: mask buffer must hold ceil(n/8) bytes");
    masks.push_back(m.data);
  }
  forEachBlock(c, [&](Block& b) {
    const size_t local = b.index - c.offset;
    float* mtl = b.out;  // scratch (the op has no out)
    toF32(tau.data + local * dtypeSize(tauType), tauType, b.n, mtl);
    checkFinite(mtl, b.n, b.index, "tau", size_t(-1));
    tallMasks(b.tau, b.T, mtl, b.n, lambdas.data(), maskSlices(maskScratch(), masks, local));
  });
}

TM_REGISTER_OP("tall_compress", tallCompressOp);
TM_REGISTER_OP("tall_mask", tallMaskOp);
TM_REGISTER_OP("tall_apply", tallApplyOp);

}  // namespace taskmerge
