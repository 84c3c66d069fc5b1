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
#include "../boundary/args.h"
#include "../boundary/device_call.h"

namespace taskmerge {

// The T packed mask buffers of ceil(n/8) bytes, as backend addresses written by the call.
static std::vector<uint8_t*> maskArgs(const OpArgs& a, size_t T, size_t n, boundary::DeviceCall& d) {
  const auto& mb = a.bufList("masks");
  if (mb.size() != T) throw ArgumentError("masks", -1, "one mask buffer per expert");
  std::vector<uint8_t*> masks;
  for (size_t t = 0; t < T; t++) {
    if (mb[t].size != (n + 7) / 8)
      throw ArgumentError("masks", (long long)t, "expected " + std::to_string((n + 7) / 8) + " bytes (ceil(n/8)), got " + std::to_string(mb[t].size));
    masks.push_back(static_cast<uint8_t*>(d.out(mb[t].data, mb[t].size)));
  }
  return masks;
}

static void checkAligned8(const boundary::Chunk& c) {
  if (c.offset() % 8) throw ArgumentError("offset", -1, "must be a multiple of 8 (mask bytes align across chunks)");
}

static void tallCompressOp(const OpArgs& a, OpResult&) {
  boundary::Chunk c(a, boundary::Out::None);
  const size_t T = c.T();
  checkAligned8(c);
  const std::string kind = a.str("kind");
  if (kind != "sum" && kind != "ties") throw ArgumentError("kind", -1, "must be 'sum' or 'ties'");
  boundary::Trim trim(a, T);
  const tm_dtype tauType = boundary::floatDtype(a, "tauDtype");
  Bytes tau = boundary::floats(a, "tau", c.n(), tauType);
  std::vector<double> lambdas;
  if (a.has("masks")) lambdas = boundary::perExpert(a, "lambdas", T);
  boundary::DeviceCall d(a);
  std::vector<uint8_t*> masks;
  if (a.has("masks")) masks = maskArgs(a, T, c.n(), d);
  tm_chunk dc = d.chunk(c.get());
  const tm_tall_compress_args args{kind == "ties", boundary::majority(a), d.out(tau.data, tau.size), tauType,
                                   lambdas.data(), masks.empty() ? nullptr : masks.data()};
  auto fn = d.entry(d.iface().tall_compress, "tall_compress");
  d.check(fn(&d.backend(), &dc, trim.get(), &args, d.work(TM_K_TALL_COMPRESS, T, c.n()), d.err()), "tall_compress");
}

static void tallApplyOp(const OpArgs& a, OpResult&) {
  const size_t n = boundary::count(a, "n"), offset = boundary::count(a, "offset", size_t(0), 9007199254740992.0);
  const tm_dtype bt = boundary::floatDtype(a, "baseDtype"), tt = boundary::floatDtype(a, "tauDtype"), ot = boundary::floatDtype(a, "outDtype");
  Bytes base = boundary::floats(a, "base", n, bt), tau = boundary::floats(a, "tau", n, tt), out = boundary::floats(a, "out", n, ot);
  const bool fromMask = a.has("mask");
  Bytes mask{}, expert{};
  tm_dtype et = TM_F32;
  double lambda = 0;
  if (fromMask) {
    if (offset % 8) throw ArgumentError("offset", -1, "must be a multiple of 8 (mask bytes align across chunks)");
    mask = boundary::sized(a, "mask", (n + 7) / 8);
  } else {
    et = boundary::floatDtype(a, "expertDtype");
    expert = boundary::floats(a, "expert", n, et);
    lambda = a.num("lambda");
  }
  boundary::DeviceCall d(a);
  const tm_tall_apply_args args{d.in(base.data, base.size), bt, d.in(tau.data, tau.size), tt,
                                static_cast<const uint8_t*>(d.in(mask.data, mask.size)), d.in(expert.data, expert.size), et,
                                lambda, n, offset, d.out(out.data, out.size), ot};
  auto fn = d.entry(d.iface().tall_apply, "tall_apply");
  d.check(fn(&d.backend(), &args, d.work(TM_K_TALL_APPLY, 1, n), d.err()), "tall_apply");
}

static void tallMaskOp(const OpArgs& a, OpResult&) {
  boundary::Chunk c(a, boundary::Out::None);
  const size_t T = c.T();
  checkAligned8(c);
  const tm_dtype tauType = boundary::floatDtype(a, "tauDtype");
  Bytes tau = boundary::floats(a, "tau", c.n(), tauType);
  const auto& lambdas = boundary::perExpert(a, "lambdas", T);
  boundary::DeviceCall d(a);
  std::vector<uint8_t*> masks = maskArgs(a, T, c.n(), d);
  tm_chunk dc = d.chunk(c.get());
  auto fn = d.entry(d.iface().tall_mask, "tall_mask");
  d.check(fn(&d.backend(), &dc, d.in(tau.data, tau.size), tauType, lambdas.data(), masks.data(), d.work(TM_K_TALL_MASK, T, c.n()), d.err()),
          "tall_mask");
}

TM_REGISTER_OP("tall_compress", tallCompressOp);
TM_REGISTER_OP("tall_mask", tallMaskOp);
TM_REGISTER_OP("tall_apply", tallApplyOp);

}  // namespace taskmerge
