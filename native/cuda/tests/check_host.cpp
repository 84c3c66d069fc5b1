// "host" mode: the CUDA kernels' per-element maths (native/cuda/element.h),
// compiled here for the host, against the CPU code it mirrors, bit for bit:
// every float16 value, a stride through all float32 bit patterns and the
// rounding boundaries for the narrowing conversions, random doubles, the
// counter-based RNG, every trim mode, and the combining functions on random
// task vectors. It checks the source the kernels are compiled from, not the
// device compiler's output (that is the GPU comparison, mode "compare").
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "check.h"
#include "core/counter_rng.h"
#include "core/dtype.h"
#include "core/linear_combine.h"
#include "core/tall_mask.h"
#include "core/trim.h"
#include "cuda/element.h"

namespace tmcheck {

namespace tm = taskmerge;

static size_t failures = 0, checks = 0;

template <class A, class B>
static void same(const char* what, A got, B want, double where) {
  checks++;
  if (std::memcmp(&got, &want, sizeof got) == 0) return;
  if (failures++ < 20) std::fprintf(stderr, "host: %s differs at %.17g\n", what, where);
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

// Random task-vector entries: magnitudes over many binades, exact zeros and −0, ties.
static std::vector<float> randomTaus(std::mt19937_64& rng, size_t n) {
  std::vector<float> v(n);
  std::normal_distribution<float> g(0, 1);
  for (size_t i = 0; i < n; i++) {
    const int kind = int(rng() % 16);
    v[i] = kind == 0 ? 0.0f : kind == 1 ? -0.0f : kind == 2 ? 0.5f : g(rng) * std::ldexp(1.0f, int(rng() % 24) - 16);
  }
  return v;
}

static tm::OpArgs trimArgs(const std::string& mode, size_t T, std::mt19937_64& rng) {
  tm::OpArgs a;
  a.strs["trim"] = mode;
  a.strs["key"] = "blocks.3.mlp.fc1.weight";
  a.nums["seed"] = double(rng() % 1000);
  a.nums["density"] = 0.3 + 0.1 * double(rng() % 7);
  std::vector<double> th, cuts, dens;
  for (size_t t = 0; t < T; t++) {
    uint32_t bits;
    const float x = std::ldexp(1.0f, -int(rng() % 10));
    std::memcpy(&bits, &x, 4);
    th.push_back(double(bits));
    cuts.push_back(double(rng() % 4096));
    dens.push_back(t == 0 ? 1.0 : 0.2 * double(1 + rng() % 5));
  }
  a.numLists["thresholds"] = th;
  a.numLists["cuts"] = cuts;
  a.numLists["densities"] = dens;
  return a;
}

// The kernels' TaskTrim for task t, built as kernels_common.cu builds it.
static tmcuda::TaskTrim taskTrim(const tm::Trim& tr, size_t t) {
  tmcuda::TaskTrim k{};
  if (!tr.thr.empty()) k.threshold = tr.thr[t];
  if (!tr.cuts.empty()) k.cut = tr.cuts[t];
  if (!tr.rng.empty()) k.stream = tr.rng[t].stream;
  if (tr.mode == tm::Trim::Mode::Dare) k.bound = tm::uniformBelowBound(tr.density);
  if (tr.mode == tm::Trim::Mode::Bernoulli) {
    k.keepAll = tr.densities[t] >= 1;
    k.bound = k.keepAll ? 0 : tm::uniformBelowBound(tr.densities[t]);
  }
  return k;
}

static int modeOf(tm::Trim::Mode m) {
  switch (m) {
    case tm::Trim::Mode::Magnitude: return tmcuda::TRIM_MAGNITUDE;
    case tm::Trim::Mode::Dare: return tmcuda::TRIM_DARE;
    case tm::Trim::Mode::Bernoulli: return tmcuda::TRIM_BERNOULLI;
    case tm::Trim::Mode::MagnitudeCut: return tmcuda::TRIM_MAGNITUDE_CUT;
    default: return tmcuda::TRIM_NONE;
  }
}

static void combining(std::mt19937_64& rng) {
  const size_t n = 4096;
  for (const char* mode : {"none", "magnitude", "dare", "bernoulli", "magnitude_cut"}) {
    for (size_t T : {1, 2, 3, 8}) {
      const size_t index = size_t(rng() % 100000) * 8;
      std::vector<std::vector<float>> tau;
      for (size_t t = 0; t < T; t++) tau.push_back(randomTaus(rng, n));
      const std::vector<float> base = randomTaus(rng, n);
      const tm::Trim tr = tm::Trim::parse(trimArgs(mode, T, rng), T);
      std::vector<std::vector<float>> hat(T, std::vector<float>(n));
      std::vector<const float*> tp(T), hp(T);
      std::vector<tmcuda::TaskTrim> kt;
      for (size_t t = 0; t < T; t++) {
        tr.apply(t, tau[t].data(), n, index, hat[t].data());
        tp[t] = tau[t].data();
        hp[t] = hat[t].data();
        kt.push_back(taskTrim(tr, t));
      }
      std::vector<double> coeffs;
      for (size_t t = 0; t < T; t++) coeffs.push_back(0.1 + 0.37 * double(t));
      std::vector<float> lin(n), ties(n), tiesSum(n);
      std::vector<double> agg(n), aggSum(n), mtlD(n);
      tm::linearCombine(base.data(), hp.data(), coeffs.data(), T, n, lin.data());
      tm::tiesAggregate(hp.data(), T, n, -1, true, agg.data());
      tm::tiesAggregate(hp.data(), T, n, 1, false, aggSum.data());
      tm::addScaled(base.data(), agg.data(), 0.7, n, ties.data());
      tm::tallSumTasks(tp.data(), T, n, mtlD.data());
      std::vector<float> mtl(n);
      tm::tallToFloat(mtlD.data(), n, mtl.data());
      std::vector<double> lambdas(T, 0.4);
      std::vector<std::vector<uint8_t>> masks(T, std::vector<uint8_t>(n / 8));
      std::vector<uint8_t*> mp(T);
      for (size_t t = 0; t < T; t++) mp[t] = masks[t].data();
      tm::tallMasks(tp.data(), T, mtl.data(), n, lambdas.data(), mp.data());
      for (size_t i = 0; i < n; i++) {
        auto hatAt = [&](int t) { return tmcuda::trimEntry(modeOf(tr.mode), kt[t], tr.density, tau[t][i], index + i); };
        auto rawAt = [&](int t) { return tau[t][i]; };
        for (size_t t = 0; t < T; t++) same("trimEntry", hatAt(int(t)), hat[t][i], double(i));
        same("linearCombine", tmcuda::linearCombine(base[i], coeffs.data(), int(T), hatAt), lin[i], double(i));
        same("tiesAggregate (mean)", tmcuda::tiesAggregate(int(T), -1, true, hatAt), agg[i], double(i));
        same("tiesAggregate (sum)", tmcuda::tiesAggregate(int(T), 1, false, hatAt), aggSum[i], double(i));
        same("addScaled", tmcuda::addScaled(base[i], agg[i], 0.7), ties[i], double(i));
        same("electedSign", tmcuda::electedSign(int(T), hatAt), tm::electedSign(hp.data(), T, i), double(i));
        same("sumTasks", tmcuda::sumTasks(int(T), rawAt), mtlD[i], double(i));
        for (size_t t = 0; t < T; t++) {
          const bool bit = (masks[t][i / 8] >> (7 - i % 8)) & 1;
          same("tallBit", tmcuda::tallBit(tau[t][i], mtl[i], 0.4), bit, double(i));
        }
        same("selectBits", tmcuda::selectBits(i % 3 == 0, lin[i], base[i]), tm::selectBits(i % 3 == 0, lin[i], base[i]), double(i));
      }
    }
  }
}

int runHost() {
  std::mt19937_64 rng(20261201);
  conversions(rng);
  randomNumbers(rng);
  combining(rng);
  std::printf("{\"checks\":%zu,\"failures\":%zu}\n", checks, failures);
  return failures ? 1 : 0;
}

}  // namespace tmcheck
