// "host" mode: the CUDA kernels' per-element maths (native/cuda/element.h),
// compiled here for the host, against the CPU code it mirrors, bit for bit:
// every float16 value, a stride through all float32 bit patterns and the
// rounding boundaries for the narrowing conversions, random doubles, the
// counter-based RNG, every trim mode, and the combining functions on random
// task vectors against the CPU ops (task_arithmetic, dare_linear, ties_merge,
// ties_signs, consensus, tall_compress) through the op registry. It checks the
// source the kernels are compiled from, not the device compiler's output (that
// is the GPU comparison, mode "compare").
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

int runHost() {
  std::mt19937_64 rng(20261201);
  conversions(rng);
  randomNumbers(rng);
  combining(rng);
  for (const auto& f : failedBy) std::fprintf(stderr, "host: %s: %zu failures\n", f.first.c_str(), f.second);
  std::printf("{\"checks\":%zu,\"failures\":%zu}\n", checks, failures);
  return failures ? 1 : 0;
}

}  // namespace tmcheck
