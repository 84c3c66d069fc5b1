// "host" mode: the CUDA kernels' per-element maths (native/cuda/element.h),
// compiled here for the host, against the CPU code it mirrors, bit for bit:
// every float16 value, a stride through all float32 bit patterns and the
// rounding boundaries for the narrowing conversions, random doubles, the
// counter-based RNG, every trim mode, and the combining functions on random
// task vectors against the CPU ops (task_arithmetic, dare_linear, ties_merge,
// ties_signs, consensus, tall_compress) through the op registry. It checks the
// source the kernels are compiled from, not the device compiler's output (that
// is the GPU comparison, mode "compare").
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "core/counter_rng.h"
#include "core/dtype.h"
#include "core/op.h"
#include "boundary/state_buffer.h"
#include "cuda/element.h"

namespace tmcheck {

namespace tm = taskmerge;

static size_t failures = 0, checks = 0;
static std::map<std::string, size_t> failedBy;  // check name → failures

template <class A, class B>
static void same(const char* what, A got, B want, double where) {
  static_assert(sizeof(A) == sizeof(B), "same: compare values of one size");
  checks++;
  if (std::memcmp(&got, &want, sizeof got) == 0) return;
  if (failedBy[what]++ == 0) std::fprintf(stderr, "host: %s differs first at %.17g\n", what, where);
  failures++;
}

static float bitsFloat(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
static double bitsDouble(uint64_t u) { double d; std::memcpy(&d, &u, 8); return d; }

static void conversions(std::mt19937_64& rng) {
  for (uint32_t h = 0; h < 65536; h++) {
    same("halfToFloat", tmcuda::halfToFloat(uint16_t(h)), tm::halfToFloat(uint16_t(h)), h);
    same("bf16ToFloat", tmcuda::bf16ToFloat(uint16_t(h)), tm::bf16ToFloat(uint16_t(h)), h);
  }
  // float32 → float16 / bfloat16: a stride through all patterns, and every
  // value next to a rounding boundary (the midpoints between neighbours).
  std::vector<float> fs;
  for (uint64_t u = 0; u < (1ull << 32); u += 4093) fs.push_back(bitsFloat(uint32_t(u)));
  for (uint32_t h = 0; h < 65536; h++) {
    const uint32_t mid16 = (uint32_t(h) << 16) | 0x8000u;  // bf16 midpoints
    for (int d = -1; d <= 1; d++) fs.push_back(bitsFloat(mid16 + d));
    const float a = tm::halfToFloat(uint16_t(h)), b = tm::halfToFloat(uint16_t(h + 1));
    if (std::isfinite(a) && std::isfinite(b)) {
      const float m = float((double(a) + double(b)) / 2);
      fs.push_back(m);
      fs.push_back(std::nextafter(m, -INFINITY));
      fs.push_back(std::nextafter(m, INFINITY));
    }
  }
  std::vector<uint16_t> half(fs.size()), bf(fs.size());
  tm::fromF32(fs.data(), fs.size(), tm::DType::F16, half.data());
  tm::fromF32(fs.data(), fs.size(), tm::DType::BF16, bf.data());  // the vectorised bf16 loop
  for (size_t i = 0; i < fs.size(); i++) {
    same("floatToHalf", tmcuda::floatToHalf(fs[i]), half[i], fs[i]);
    same("floatToBf16", tmcuda::floatToBf16(fs[i]), bf[i], fs[i]);
    same("floatToBf16 (scalar)", tmcuda::floatToBf16(fs[i]), tm::floatToBf16(fs[i]), fs[i]);
  }
  // float64 → float16 / bfloat16 / float32: random bit patterns and values near the float32 grid.
  std::vector<double> ds;
  for (int i = 0; i < 400000; i++) ds.push_back(bitsDouble(rng()));
  std::uniform_real_distribution<double> u(-70000, 70000);
  for (int i = 0; i < 400000; i++) {
    const double x = u(rng) * std::ldexp(1.0, int(rng() % 60) - 40);
    ds.push_back(x);
    ds.push_back(double(float(x)));
    ds.push_back(std::nextafter(double(float(x)), 0.0));
  }
  // The midpoints between neighbouring float16 / bfloat16 values and the
  // doubles just beside them: where rounding through float32 first would differ.
  for (uint32_t h = 0; h < 65535; h++) {
    const double pairs[2][2] = {{tm::halfToFloat(uint16_t(h)), tm::halfToFloat(uint16_t(h + 1))},
                                {tm::bf16ToFloat(uint16_t(h)), tm::bf16ToFloat(uint16_t(h + 1))}};
    for (const auto& p : pairs) {
      if (!std::isfinite(p[0]) || !std::isfinite(p[1])) continue;
      const double m = (p[0] + p[1]) / 2;
      for (double x : {m, std::nextafter(m, -INFINITY), std::nextafter(m, INFINITY), std::nextafter(std::nextafter(m, INFINITY), INFINITY)})
        ds.push_back(x);
    }
  }
  std::vector<uint16_t> dh(ds.size()), db(ds.size());
  std::vector<float> df(ds.size());
  tm::fromF64(ds.data(), ds.size(), tm::DType::F16, dh.data());
  tm::fromF64(ds.data(), ds.size(), tm::DType::BF16, db.data());
  tm::fromF64(ds.data(), ds.size(), tm::DType::F32, df.data());
  for (size_t i = 0; i < ds.size(); i++) {
    uint16_t h, b;
    float f;
    tmcuda::storeF64(&h, tmcuda::F16, 0, ds[i]);
    tmcuda::storeF64(&b, tmcuda::BF16, 0, ds[i]);
    tmcuda::storeF64(&f, tmcuda::F32, 0, ds[i]);
    same("doubleToHalf", h, dh[i], ds[i]);
    same("doubleToBf16", b, db[i], ds[i]);
    same("doubleToFloat", f, df[i], ds[i]);
  }
}

static void randomNumbers(std::mt19937_64& rng) {
  for (int k = 0; k < 2000; k++) {
    const uint64_t seed = rng() >> (rng() % 64), key = tm::fnv1a64("layer." + std::to_string(k) + ".weight"), t = rng() % 16;
    const tm::CounterRng cpu(seed, key, t);
    const uint64_t stream = tmcuda::rngStream(seed, key, t);
    same("rngStream", stream, cpu.stream, double(k));
    for (int j = 0; j < 200; j++) {
      const uint64_t i = j < 100 ? uint64_t(j) : rng() >> 20;
      same("rngBits53", tmcuda::rngBits53(stream, i), cpu.bits53(i), double(i));
    }
    const double p = k == 0 ? 0.0 : k == 1 ? 1.0 : std::ldexp(double(rng() >> 11), -53);
    same("uniformBelowBound", tmcuda::uniformBelowBound(p), tm::uniformBelowBound(p), p);
  }
}

// Random θ values: magnitudes over many binades, exact zeros and −0, repeats.
static std::vector<float> randomValues(std::mt19937_64& rng, size_t n) {
  std::vector<float> v(n);
  std::normal_distribution<float> g(0, 1);
  for (size_t i = 0; i < n; i++) {
    const int kind = int(rng() % 16);
    v[i] = kind == 0 ? 0.0f : kind == 1 ? -0.0f : kind == 2 ? 0.5f : g(rng) * std::ldexp(1.0f, int(rng() % 24) - 16);
  }
  return v;
}

static tm::Bytes view(std::vector<float>& v) { return tm::Bytes{reinterpret_cast<uint8_t*>(v.data()), v.size() * 4}; }
static tm::Bytes view(std::vector<uint8_t>& v) { return tm::Bytes{v.data(), v.size()}; }

static tm::OpResult cpuOp(const char* name, const tm::OpArgs& a) {
  tm::OpResult r;
  tm::OpFn fn = tm::findOp(name);
  if (!fn) {
    std::fprintf(stderr, "host: the CPU build has no op %s\n", name);
    std::exit(1);
  }
  fn(a, r);
  return r;
}

// A zeroed CPU state buffer (what the selection ops take for their state) as
// argument `key` of `a`; on the CPU its memory is host memory, read in place.
template <class V>
static V* cpuState(tm::OpArgs& a, const char* key, size_t count) {
  tm::OpArgs sa;
  sa.strs["device"] = "cpu";
  sa.nums["bytes"] = double(count * sizeof(V));
  tm::OpResult r = cpuOp("state_alloc", sa);
  a.states[key] = r.states["state"];
  return static_cast<V*>(a.states[key]->get()->host());
}

// One float32 chunk of T experts around a base, its op arguments, and the
// kernels' trim parameters built from the same values as kernels_common.cu does.
struct Chunk {
  size_t n, T, offset;
  std::vector<float> base, out;
  std::vector<std::vector<float>> experts;
  int mode = tmcuda::TRIM_NONE;
  double density = 1;
  std::vector<tmcuda::TaskTrim> trims;

  tm::OpArgs args() {
    tm::OpArgs a;
    a.nums["n"] = double(n);
    a.nums["offset"] = double(offset);
    a.strs["baseDtype"] = "F32";
    a.bufs["base"] = view(base);
    for (auto& e : experts) a.bufLists["experts"].push_back(view(e));
    a.strLists["expertDtypes"] = std::vector<std::string>(T, "F32");
    a.strs["outDtype"] = "F32";
    a.bufs["out"] = view(out);
    return a;
  }
  float tau(size_t t, size_t i) const { return experts[t][i] - base[i]; }
  float hat(size_t t, size_t i) const { return tmcuda::trimEntry(mode, trims[t], density, tau(t, i), offset + i); }
};

static Chunk makeChunk(std::mt19937_64& rng, size_t T) {
  Chunk c;
  c.n = 4096 * 3 + 8 * (rng() % 100);
  c.T = T;
  c.offset = size_t(rng() % 100000) * 8;
  c.base = randomValues(rng, c.n);
  for (size_t t = 0; t < T; t++) {
    std::vector<float> d = randomValues(rng, c.n);
    for (size_t i = 0; i < c.n; i++) d[i] += c.base[i];
    c.experts.push_back(d);
  }
  c.out.assign(c.n, 0.0f);
  c.trims.assign(T, tmcuda::TaskTrim{});
  return c;
}

// Sets the trim `mode` on the op arguments and, identically, on the kernels' side.
static void setTrim(Chunk& c, tm::OpArgs& a, const std::string& mode, std::mt19937_64& rng) {
  const uint64_t seed = rng() % 100000;
  const std::string key = "blocks.3.mlp.fc1.weight";
  a.strs["trim"] = mode;
  a.strs["key"] = key;
  a.nums["seed"] = double(seed);
  c.density = 0.3 + 0.1 * double(rng() % 7);
  a.nums["density"] = c.density;
  std::vector<double> th, cuts, dens;
  for (size_t t = 0; t < c.T; t++) {
    tmcuda::TaskTrim& k = c.trims[t];
    const float x = std::ldexp(1.0f, -int(rng() % 10));
    std::memcpy(&k.threshold, &x, 4);
    k.cut = double(c.offset + rng() % c.n);
    const double d = t == 0 ? 1.0 : 0.2 * double(1 + rng() % 5);
    k.stream = tmcuda::rngStream(seed, tm::fnv1a64(key), t);
    k.keepAll = d >= 1;
    k.bound = mode == "dare" ? tmcuda::uniformBelowBound(c.density) : k.keepAll ? 0 : tmcuda::uniformBelowBound(d);
    th.push_back(double(k.threshold));
    cuts.push_back(k.cut);
    dens.push_back(d);
  }
  a.numLists["thresholds"] = th;
  a.numLists["cuts"] = cuts;
  a.numLists["densities"] = dens;
  c.mode = mode == "magnitude" ? tmcuda::TRIM_MAGNITUDE : mode == "dare" ? tmcuda::TRIM_DARE : mode == "bernoulli" ? tmcuda::TRIM_BERNOULLI
         : mode == "magnitude_cut" ? tmcuda::TRIM_MAGNITUDE_CUT : tmcuda::TRIM_NONE;
}

// The ops the kernels reproduce, run on the CPU, against element.h entry by entry.
static void combining(std::mt19937_64& rng) {
  for (size_t T : {1, 2, 3, 8}) {
    // linear combine (task_arithmetic; dare_linear with the DARE trim)
    for (const char* mode : {"none", "dare"}) {
      Chunk c = makeChunk(rng, T);
      tm::OpArgs a = c.args();
      std::vector<double> coeffs;
      for (size_t t = 0; t < T; t++) coeffs.push_back(0.1 + 0.37 * double(t));
      a.numLists["coeffs"] = coeffs;
      if (std::string(mode) == "dare") setTrim(c, a, mode, rng);
      cpuOp(std::string(mode) == "dare" ? "dare_linear" : "task_arithmetic", a);
      for (size_t i = 0; i < c.n; i++)
        same(mode[0] == 'd' ? "dare_linear" : "task_arithmetic",
             tmcuda::linearCombine(c.base[i], coeffs.data(), int(T), [&](int t) { return c.hat(t, i); }), c.out[i], double(i));
    }
    // TIES merge (mean and sum) and the sign reduction, under every trim mode
    for (const char* mode : {"none", "magnitude", "dare", "bernoulli", "magnitude_cut"}) {
      for (int mean : {1, 0}) {
        Chunk c = makeChunk(rng, T);
        tm::OpArgs a = c.args();
        setTrim(c, a, mode, rng);
        const int maj = mean ? -1 : 1;
        a.nums["majority"] = maj;
        a.strs["merge"] = mean ? "mean" : "sum";
        a.nums["lambda"] = 0.7;
        cpuOp("ties_merge", a);
        tm::OpArgs sa = a;
        sa.bufs.erase("out");  // a statistics op: with an out buffer the CPU would store its scratch there
        const double signs = cpuOp("ties_signs", sa).nums["signSum"];
        int64_t s = 0;
        for (size_t i = 0; i < c.n; i++) {
          auto hat = [&](int t) { return c.hat(t, i); };
          same((std::string("ties_merge ") + mode).c_str(), tmcuda::addScaled(c.base[i], tmcuda::tiesAggregate(int(T), maj, mean, hat), 0.7),
               c.out[i], double(i));
          s += tmcuda::electedSign(int(T), hat);
        }
        same((std::string("ties_signs ") + mode).c_str(), double(s), signs, double(T));
      }
    }
    // consensus, both kinds
    for (int ties : {0, 1}) {
      Chunk c = makeChunk(rng, T);
      tm::OpArgs a = c.args();
      a.strs["kind"] = ties ? "ties" : "sum";
      if (ties) setTrim(c, a, "magnitude", rng);
      a.nums["majority"] = 1;
      a.nums["tallLambda"] = 0.4;
      a.nums["lambda"] = 0.3;
      a.nums["k"] = 2;
      cpuOp("consensus", a);
      const std::vector<double> lam(T, 0.3);
      for (size_t i = 0; i < c.n; i++) {
        auto hat = [&](int t) { return c.hat(t, i); };
        auto raw = [&](int t) { return c.tau(t, i); };
        const double mtl = ties ? tmcuda::tiesAggregate(int(T), 1, false, hat) : tmcuda::sumTasks(int(T), raw);
        const float merged = ties ? tmcuda::addScaled(c.base[i], mtl, 0.3) : tmcuda::linearCombine(c.base[i], lam.data(), int(T), raw);
        double cnt = 0;
        for (size_t t = 0; t < T; t++) cnt += double(tmcuda::tallBit(raw(int(t)), float(mtl), 0.4));
        same(ties ? "consensus ties" : "consensus sum", tmcuda::selectBits(cnt >= 2, merged, c.base[i]), c.out[i], double(i));
      }
    }
    // TALL compression: τMTL stored in bf16 and the packed masks from it
    {
      Chunk c = makeChunk(rng, T);
      tm::OpArgs a = c.args();
      a.bufs.erase("out");
      a.strs["kind"] = "sum";
      a.strs["tauDtype"] = "BF16";
      std::vector<uint8_t> tau(c.n * 2);
      a.bufs["tau"] = view(tau);
      std::vector<double> lambdas;
      for (size_t t = 0; t < T; t++) lambdas.push_back(0.2 + 0.1 * double(t));
      a.numLists["lambdas"] = lambdas;
      std::vector<std::vector<uint8_t>> masks(T, std::vector<uint8_t>((c.n + 7) / 8));
      for (auto& m : masks) a.bufLists["masks"].push_back(view(m));
      cpuOp("tall_compress", a);
      for (size_t i = 0; i < c.n; i++) {
        uint16_t stored;
        tmcuda::storeF32(&stored, tmcuda::BF16, 0, float(tmcuda::sumTasks(int(T), [&](int t) { return c.tau(t, i); })));
        uint16_t cpu;
        std::memcpy(&cpu, tau.data() + 2 * i, 2);
        same("tall_compress tau", stored, cpu, double(i));
        const float mtl = tmcuda::loadF32(&stored, tmcuda::BF16, 0);
        for (size_t t = 0; t < T; t++)
          same("tall_compress mask", tmcuda::tallBit(c.tau(t, i), mtl, lambdas[t]), bool((masks[t][i / 8] >> (7 - i % 8)) & 1), double(i));
      }
    }
  }
  // selectBits as tall_apply uses it
  for (int k = 0; k < 1000; k++) {
    const float a = float(k) * 0.25f, b = -float(k);
    same("selectBits", tmcuda::selectBits(k % 3 == 0, a, b), k % 3 == 0 ? a : b, double(k));
  }
}

// ---- the entries of mergekit, breadcrumbs and the TIES window/small selection ----

// θ values with the hard cases: ±0, subnormals, huge magnitudes (|θ| ≤ 2¹²⁶,
// so τ stays finite), exact repeats, and ordinary values.
static std::vector<float> hardValues(std::mt19937_64& rng, size_t n) {
  std::vector<float> v = randomValues(rng, n);
  for (size_t i = 0; i < n; i++) {
    const int kind = int(rng() % 12);
    const uint32_t sign = uint32_t(rng() & 1) << 31;
    if (kind == 0) v[i] = bitsFloat(sign | uint32_t(1 + rng() % 0x7fffff));                 // subnormal
    else if (kind == 1) v[i] = bitsFloat(sign | uint32_t((253u - rng() % 20) << 23) | uint32_t(rng() % 0x800000));  // huge
    else if (kind == 2) v[i] = sign ? -0.25f : 0.25f;
  }
  return v;
}

// A chunk whose task vectors are exact and heavily tied: θ0 small dyadic
// values, τ from {0, ±0.25, ±0.5, ±1} (so ties at any threshold).
static Chunk tiedChunk(std::mt19937_64& rng, size_t T, size_t n) {
  Chunk c;
  c.n = n;
  c.T = T;
  c.offset = size_t(rng() % 1000) * 8;
  const float steps[] = {0.0f, 0.25f, -0.25f, 0.5f, -0.5f, 1.0f, -1.0f, 0.5f};
  c.base.resize(n);
  for (size_t i = 0; i < n; i++) c.base[i] = float(int(rng() % 64) - 32) * 0.125f;
  for (size_t t = 0; t < T; t++) {
    std::vector<float> e(n);
    for (size_t i = 0; i < n; i++) e[i] = c.base[i] + steps[rng() % 8];
    c.experts.push_back(e);
  }
  c.out.assign(n, 0.0f);
  c.trims.assign(T, tmcuda::TaskTrim{});
  return c;
}

static Chunk hardChunk(std::mt19937_64& rng, size_t T) {
  Chunk c = makeChunk(rng, T);
  c.base = hardValues(rng, c.n);
  for (size_t t = 0; t < T; t++) {
    std::vector<float> d = hardValues(rng, c.n);
    for (size_t i = 0; i < c.n; i++) c.experts[t][i] = (rng() % 5 == 0) ? c.base[i] : c.base[i] + d[i] * 0.5f;
  }
  return c;
}

// The bits of the q-quantile-th largest |τt| (a threshold with entries on both sides).
static uint32_t quantileBits(const Chunk& c, size_t t, double q) {
  std::vector<uint32_t> b(c.n);
  for (size_t i = 0; i < c.n; i++) b[i] = tmcuda::absBits(c.tau(t, i));
  const size_t r = std::min(c.n - 1, size_t(q * double(c.n)));
  std::nth_element(b.begin(), b.begin() + r, b.end(), std::greater<uint32_t>());
  return b[r];
}

static std::vector<double> asDoubles(const std::vector<uint32_t>& v) { return std::vector<double>(v.begin(), v.end()); }

static void mergekitEntries(std::mt19937_64& rng) {
  for (size_t T : {1, 2, 3, 8}) {
    for (int variant = 0; variant < 2; variant++) {
      // mergekit_gta under its trims, both consensus modes, with and without normalize
      for (const char* mode : {"none", "magnitude_cut", "bernoulli", "dare"}) {
        for (int sum : {0, 1}) {
          Chunk c = variant ? hardChunk(rng, T) : makeChunk(rng, T);
          tm::OpArgs a = c.args();
          if (std::string(mode) != "none") setTrim(c, a, mode, rng);
          std::vector<double> w, sc;
          for (size_t t = 0; t < T; t++) w.push_back(t == 1 ? -0.4 : 0.3 + 0.21 * double(t)), sc.push_back(t == 2 ? 0.0 : 1.0 + 0.37 * double(t));
          const int normalize = int(rng() % 2);
          const double lambda = 0.85, divisor = 1.7, baseScale = sum ? 1.0 : 0.5;
          a.numLists["weights"] = w;
          a.numLists["scales"] = sc;
          a.strs["consensus"] = sum ? "sum" : "none";
          a.nums["normalize"] = normalize;
          a.nums["lambda"] = lambda;
          a.nums["divisor"] = divisor;
          a.nums["baseScale"] = baseScale;
          cpuOp("mergekit_gta", a);
          const std::string what = std::string("mergekit_gta ") + mode + (sum ? " sum" : " none");
          for (size_t i = 0; i < c.n; i++) {
            auto d = [&](int t) { return tmcuda::gtaTask(w[t], sc[t], c.hat(t, i)); };
            same(what.c_str(), tmcuda::gtaMerged(c.base[i], baseScale, lambda, tmcuda::mixTasks(int(T), d, w.data(), sum != 0, normalize != 0, divisor)),
                 c.out[i], double(i));
          }
          // trim_l1 of the same chunk and trim: block sums in index order, added in block order
          tm::OpArgs la = a;
          la.bufs.erase("out");
          tm::OpResult lr = cpuOp("trim_l1", la);
          std::vector<double> part;
          for (size_t b = 0; b * tmcuda::kSumBlock < c.n; b++)
            for (size_t t = 0; t < T; t++) {
              const size_t start = b * tmcuda::kSumBlock, len = std::min<size_t>(tmcuda::kSumBlock, c.n - start);
              double x, k;
              tmcuda::l1Block(len, [&](uint64_t q) { return c.tau(t, start + q); },
                              [&](uint64_t q, float v) { return tmcuda::trimEntry(c.mode, c.trims[t], c.density, v, c.offset + start + q); }, x, k);
              part.push_back(x);
              part.push_back(k);
            }
          for (size_t t = 0; t < T; t++) {
            const uint64_t blocks = part.size() / (2 * T);
            same((std::string("trim_l1 ") + mode).c_str(), tmcuda::addBlockSums(0.0, part.data() + 2 * t, blocks, 2 * T), lr.numLists["l1"][t], double(t));
            same((std::string("trim_l1 kept ") + mode).c_str(), tmcuda::addBlockSums(0.0, part.data() + 2 * t + 1, blocks, 2 * T),
                 lr.numLists["l1Kept"][t], double(t));
          }
        }
      }
      // breadcrumbs: top sets at quantiles (with ties cut by index), the empty set and the whole tensor
      for (int consensus : {0, 1}) {
        // ordinary values in the first variant, then ties, then the hard cases
        Chunk c = variant == 0 ? makeChunk(rng, T) : consensus ? tiedChunk(rng, T, 4096 * 2 + 8 * (rng() % 300)) : hardChunk(rng, T);
        tm::OpArgs a = c.args();
        std::vector<uint32_t> dropBits, keepBits;
        std::vector<double> dropCuts, keepCuts, w, sc;
        for (size_t t = 0; t < T; t++) {
          const int kind = int((t + rng()) % 4);
          const uint32_t hiB = quantileBits(c, t, 0.05), loB = quantileBits(c, t, 0.4);
          dropBits.push_back(kind == 0 ? 0x7f800000u : hiB);
          dropCuts.push_back(kind == 0 ? 0.0 : double(c.offset + rng() % c.n));
          keepBits.push_back(kind == 3 ? 0u : loB);
          keepCuts.push_back(kind == 3 ? double(c.offset + c.n) : double(c.offset + rng() % c.n));
          w.push_back(0.5 + 0.3 * double(t));
          sc.push_back(1.0 + 0.37 * double(t % 3));  // rescale factors are arbitrary ratios
        }
        a.numLists["dropBits"] = asDoubles(dropBits);
        a.numLists["dropCuts"] = dropCuts;
        a.numLists["keepBits"] = asDoubles(keepBits);
        a.numLists["keepCuts"] = keepCuts;
        a.numLists["weights"] = w;
        a.numLists["scales"] = sc;
        const int normalize = int(rng() % 2);
        a.nums["consensus"] = consensus;
        a.nums["normalize"] = normalize;
        a.nums["lambda"] = 0.6;
        a.nums["divisor"] = 2.5;
        cpuOp("breadcrumbs_merge", a);
        auto kept = [&](size_t t, float x, uint64_t index) {
          return tmcuda::breadcrumbsKept(x, index, dropBits[t], dropCuts[t], keepBits[t], keepCuts[t]);
        };
        const char* what = consensus ? "breadcrumbs_merge consensus" : "breadcrumbs_merge";
        for (size_t i = 0; i < c.n; i++) {
          auto d = [&](int t) { return tmcuda::breadcrumbsTask(kept(t, c.tau(t, i), c.offset + i), w[t], sc[t], c.tau(t, i)); };
          same(what, tmcuda::breadcrumbsMerged(c.base[i], 0.6, tmcuda::mixTasks(int(T), d, w.data(), consensus != 0, normalize != 0, 2.5)), c.out[i],
               double(i));
        }
        tm::OpArgs la = a;
        la.bufs.erase("out");
        tm::OpResult lr = cpuOp("breadcrumbs_l1", la);
        const uint64_t blocks = (c.n + tmcuda::kSumBlock - 1) / tmcuda::kSumBlock;
        for (size_t t = 0; t < T; t++) {
          std::vector<double> pa, pk;
          for (uint64_t b = 0; b < blocks; b++) {
            const size_t start = b * tmcuda::kSumBlock, len = std::min<size_t>(tmcuda::kSumBlock, c.n - start);
            double x, k;
            tmcuda::l1Block(len, [&](uint64_t q) { return c.tau(t, start + q); },
                            [&](uint64_t q, float v) { return kept(t, v, c.offset + start + q) ? v : 0.0f; }, x, k);
            pa.push_back(x);
            pk.push_back(k);
          }
          same("breadcrumbs_l1", tmcuda::addBlockSums(0.0, pa.data(), blocks, 1), lr.numLists["l1"][t], double(t));
          same("breadcrumbs_l1 kept", tmcuda::addBlockSums(0.0, pk.data(), blocks, 1), lr.numLists["l1Kept"][t], double(t));
        }
      }
    }
  }
}

// magnitude_tie_cut: per-block counts, the block and rank of the need-th tie, the walk inside it.
static void tieCuts(std::mt19937_64& rng) {
  for (size_t T : {1, 3, 8}) {
    for (int rep = 0; rep < 6; rep++) {
      Chunk c = rep % 3 == 2 ? hardChunk(rng, T) : tiedChunk(rng, T, 4096 * (1 + rep) + 8 * (rng() % 500));
      std::vector<uint32_t> thr;
      std::vector<double> need;
      for (size_t t = 0; t < T; t++) {
        thr.push_back(quantileBits(c, t, 0.1 + 0.2 * double(t % 3)));
        size_t total = 0;
        for (size_t i = 0; i < c.n; i++) total += tmcuda::absBits(c.tau(t, i)) == thr[t];
        const size_t pick = (rep + t) % 6;  // first, last, past the end, none, 0, one in the middle
        need.push_back(pick == 0 ? 1.0 : pick == 1 ? double(total) : pick == 2 ? double(total + 1) : pick == 3 ? 0.0 : pick == 4 ? 2.5
                                                                                                       : double(1 + rng() % std::max<size_t>(total, 1)));
      }
      tm::OpArgs a = c.args();
      a.bufs.erase("out");
      a.numLists["thresholds"] = asDoubles(thr);
      a.numLists["need"] = need;
      tm::OpResult r = cpuOp("magnitude_tie_cut", a);
      const uint64_t blocks = (c.n + tmcuda::kSumBlock - 1) / tmcuda::kSumBlock;
      std::vector<uint32_t> counts(blocks * T);
      for (uint64_t b = 0; b < blocks; b++)
        for (size_t t = 0; t < T; t++)
          for (size_t i = b * tmcuda::kSumBlock; i < std::min<size_t>(c.n, (b + 1) * tmcuda::kSumBlock); i++)
            counts[b * T + t] += tmcuda::absBits(c.tau(t, i)) == thr[t];
      for (size_t t = 0; t < T; t++) {
        double count = -1, rank = 0, at = 0;
        const int64_t b = tmcuda::tieCutBlock(counts.data() + t, blocks, T, need[t], count, rank);
        if (b >= 0) {
          const uint64_t start = uint64_t(b) * tmcuda::kSumBlock, len = std::min<uint64_t>(tmcuda::kSumBlock, c.n - start);
          const int64_t q = tmcuda::nthTie(len, [&](uint64_t p) { return c.tau(t, start + p); }, thr[t], rank);
          if (q >= 0) at = double(start + uint64_t(q) + 1);
        }
        same("magnitude_tie_cut count", count, r.numLists["count"][t], double(t));
        same("magnitude_tie_cut at", at, r.numLists["at"][t], need[t]);
      }
    }
  }
}

// magnitude_small (the k-th largest |τt| and the elected signs with those thresholds) and ties_sample.
static void smallAndSample(std::mt19937_64& rng) {
  for (size_t T : {1, 2, 5, 8}) {
    for (int rep = 0; rep < 4; rep++) {
      Chunk c = rep == 0 ? tiedChunk(rng, T, 5000 + rng() % 3000) : rep == 1 ? hardChunk(rng, T) : makeChunk(rng, T);
      c.offset = 0;
      tm::OpArgs a = c.args();
      a.bufs.erase("out");
      const size_t k = rep == 3 ? c.n : 1 + size_t(rng() % c.n);
      a.nums["k"] = double(k);
      tm::OpResult r = cpuOp("magnitude_small", a);
      std::vector<uint32_t> thr(T);
      for (size_t t = 0; t < T; t++) {
        std::vector<uint32_t> b(c.n);
        for (size_t i = 0; i < c.n; i++) b[i] = tmcuda::absBits(c.tau(t, i));
        std::sort(b.begin(), b.end(), std::greater<uint32_t>());  // the device's segmented sort, descending
        thr[t] = b[k - 1];
        same("magnitude_small threshold", double(thr[t]), r.numLists["thresholds"][t], double(k));
      }
      int64_t s = 0;
      for (size_t i = 0; i < c.n; i++) s += tmcuda::thresholdSign(int(T), [&](int t) { return c.tau(t, i); }, thr.data());
      same("magnitude_small signSum", double(s), r.nums["signSum"], double(k));
      // ties_sample into a region at `at` of m entries
      const size_t m = c.n + 100, at = 37;
      std::vector<uint32_t> want(T * m, 0);
      tm::OpArgs sa = c.args();
      sa.bufs.erase("out");
      const uint32_t* sampled = cpuState<uint32_t>(sa, "bits", T * m);
      sa.nums["m"] = double(m);
      sa.nums["at"] = double(at);
      cpuOp("ties_sample", sa);
      const std::vector<uint32_t> bits(sampled, sampled + T * m);
      for (size_t t = 0; t < T; t++)
        for (size_t i = 0; i < c.n; i++) want[t * m + at + i] = tmcuda::absBits(c.tau(t, i));
      size_t diff = 0;
      for (size_t j = 0; j < bits.size(); j++) diff += bits[j] != want[j];
      same("ties_sample", diff, size_t(0), double(T));
    }
  }
}

// ties_window: the kernel's per-entry logic (windowEntry, tableSlot, signOf)
// run sequentially here; lists and multi entries compared as multisets.
static void window(std::mt19937_64& rng) {
  constexpr size_t W = tmcuda::kWindowTable;
  for (size_t T : {1, 2, 4, 8}) {
    for (int tied = 0; tied < 2; tied++) {
      Chunk c = tied ? tiedChunk(rng, T, 4096 * 3 + 8 * (rng() % 300)) : hardChunk(rng, T);
      std::vector<uint32_t> lo(T), hi(T), table(T * W, 0xffffffffu);
      for (size_t t = 0; t < T; t++) {
        hi[t] = quantileBits(c, t, tied ? 0.2 : 0.28);
        lo[t] = quantileBits(c, t, tied ? 0.7 : 0.32);
        if (tied && t % 2 == 0) {  // the window's values tabled (one left out, so it goes to the list)
          std::vector<uint32_t> vals;
          for (size_t i = 0; i < c.n; i++) {
            const uint32_t u = tmcuda::absBits(c.tau(t, i));
            if (u >= lo[t] && u < hi[t]) vals.push_back(u);
          }
          std::sort(vals.begin(), vals.end());
          vals.erase(std::unique(vals.begin(), vals.end()), vals.end());
          // from the last slot down, so every slot is searched
          for (size_t j = 1; j < vals.size() && j <= W; j++) table[t * W + W - j] = vals[j];
        }
      }
      const size_t C = c.n, cap = c.n;
      tm::OpArgs a = c.args();
      a.bufs.erase("out");
      a.numLists["lo"] = asDoubles(lo);
      a.numLists["hi"] = asDoubles(hi);
      std::vector<double> tab;
      for (uint32_t v : table) tab.push_back(v == 0xffffffffu ? -1.0 : double(v));
      a.numLists["table"] = tab;
      a.nums["capacity"] = double(C);
      // The window's state, as the ops take it: CPU state buffers, read in place below.
      const uint32_t* cand = cpuState<uint32_t>(a, "cand", T * C);
      const int8_t* candDiff = cpuState<int8_t>(a, "candDiff", T * C);
      const uint64_t* used = cpuState<uint64_t>(a, "used", T);
      const uint64_t* tableCounts = cpuState<uint64_t>(a, "tableCounts", T * W);
      const int64_t* tableDiffs = cpuState<int64_t>(a, "tableDiffs", T * W);
      a.nums["multiCap"] = double(cap);
      tm::OpResult r = cpuOp("ties_window", a);
      // the kernel's logic, entry by entry
      std::vector<uint64_t> above(T, 0), atHi(T, 0), tc(T * W, 0);
      std::vector<int64_t> td(T * W, 0);
      std::vector<std::vector<std::pair<uint32_t, int>>> lists(T);
      std::vector<std::vector<float>> multi;
      int64_t signBase = 0;
      auto record = [&](size_t t, uint32_t x, int d) {
        const int j = tmcuda::tableSlot(table.data() + t * W, x);
        if (j >= 0) {
          tc[t * W + size_t(j)]++;
          td[t * W + size_t(j)] += d;
        } else {
          lists[t].push_back({x, d});
        }
      };
      for (size_t i = 0; i < c.n; i++) {
        auto tau = [&](int t) { return c.tau(size_t(t), i); };
        const tmcuda::WindowEntry e = tmcuda::windowEntry(int(T), tau, lo.data(), hi.data());
        for (size_t t = 0; t < T; t++) {
          const uint32_t u = tmcuda::absBits(tau(int(t)));
          above[t] += u >= hi[t];
          atHi[t] += u == hi[t];
        }
        if (e.nin == 0) {
          signBase += tmcuda::signOf(e.sum);
        } else if (e.nin == 1) {
          const int sDrop = tmcuda::signOf(e.sum), sKeep = tmcuda::signOf(e.keep);
          signBase += sDrop;
          record(size_t(e.last), tmcuda::absBits(tau(e.last)), sKeep - sDrop);
        } else {
          std::vector<float> row;
          for (size_t t = 0; t < T; t++) {
            const uint32_t x = tmcuda::absBits(tau(int(t)));
            if (x >= lo[t] && x < hi[t]) record(t, x, 0);
            row.push_back(tau(int(t)));
          }
          multi.push_back(row);
        }
      }
      same("ties_window signBase", double(signBase), r.nums["signBase"], double(T));
      same("ties_window full", 0.0, r.nums["full"], double(T));
      same("ties_window overflow", 0.0, r.nums["overflow"], double(T));
      for (size_t t = 0; t < T; t++) {
        same("ties_window above", double(above[t]), r.numLists["above"][t], double(t));
        same("ties_window atHi", double(atHi[t]), r.numLists["atHi"][t], double(t));
        same("ties_window used", uint64_t(lists[t].size()), used[t], double(t));
        std::vector<std::pair<uint32_t, int>> got;
        for (size_t j = 0; j < std::min<size_t>(used[t], C); j++) got.push_back({cand[t * C + j], candDiff[t * C + j]});
        std::sort(got.begin(), got.end());
        std::sort(lists[t].begin(), lists[t].end());
        same("ties_window candidates", got == lists[t], true, double(t));
      }
      for (size_t j = 0; j < T * W; j++) {
        same("ties_window tableCounts", tc[j], tableCounts[j], double(j));
        same("ties_window tableDiffs", td[j], tableDiffs[j], double(j));
      }
      std::vector<std::vector<float>> got;
      const float* mf = reinterpret_cast<const float*>(r.bufs["multi"].data());
      for (size_t e = 0; e < r.bufs["multi"].size() / (4 * T); e++) got.emplace_back(mf + e * T, mf + (e + 1) * T);
      auto rowLess = [](const std::vector<float>& x, const std::vector<float>& y) {
        return std::lexicographical_compare(x.begin(), x.end(), y.begin(), y.end(), [](float p, float q) { return tmcuda::bitsOf(p) < tmcuda::bitsOf(q); });
      };
      std::sort(got.begin(), got.end(), rowLess);
      std::sort(multi.begin(), multi.end(), rowLess);
      bool rows = got.size() == multi.size();
      for (size_t e = 0; rows && e < got.size(); e++)
        for (size_t t = 0; rows && t < T; t++) rows = tmcuda::bitsOf(got[e][t]) == tmcuda::bitsOf(multi[e][t]);
      same("ties_window multi", rows, true, double(multi.size()));
    }
  }
}

int runHost() {
  std::mt19937_64 rng(20261201);
  conversions(rng);
  randomNumbers(rng);
  combining(rng);
  mergekitEntries(rng);
  tieCuts(rng);
  smallAndSample(rng);
  window(rng);
  for (const auto& f : failedBy) std::fprintf(stderr, "host: %s: %zu failures\n", f.first.c_str(), f.second);
  std::printf("{\"checks\":%zu,\"failures\":%zu}\n", checks, failures);
  return failures ? 1 : 0;
}

}  // namespace tmcheck
