// "compare" mode (needs a GPU): every implemented entry of the CUDA backend
// against the CPU ops (the same native/ sources the addon is built from,
// called through the op registry) on random data in several dtypes.
// Elementwise outputs, masks, DARE, histograms, the L1 sums and the window
// pass's counts must be bit-identical;
// dense linear algebra (float64) within the tolerances of docs/cuda.md.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "core/counter_rng.h"
#include "core/dtype.h"
#include "core/op.h"
#include "core/trim.h"

namespace tmcheck {

namespace tm = taskmerge;

namespace {

size_t failures = 0, checks = 0;

void report(bool ok, const std::string& what) {
  checks++;
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) failures++;
}

using Bytes = std::vector<uint8_t>;

tm::Bytes view(Bytes& b) { return tm::Bytes{b.data(), b.size()}; }

const char* dtypeName(tm_dtype t) { return t == TM_F64 ? "F64" : t == TM_F32 ? "F32" : t == TM_F16 ? "F16" : "BF16"; }
size_t dsize(tm_dtype t) { return t == TM_F64 ? 8 : t == TM_F32 ? 4 : 2; }

// n values of dtype t: θ0-like values plus small perturbations when `around` is given.
Bytes randomTensor(std::mt19937_64& rng, size_t n, tm_dtype t, const std::vector<float>* around) {
  std::normal_distribution<float> g(0, 1);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; i++) v[i] = around ? (*around)[i] + 0.01f * g(rng) * float(1 + rng() % 3) : 0.05f * g(rng);
  Bytes b(n * dsize(t));
  tm::fromF32(v.data(), n, tm::DType(int(t)), b.data());
  return b;
}

std::vector<float> asF32(const Bytes& b, tm_dtype t) {
  std::vector<float> v(b.size() / dsize(t));
  tm::toF32(b.data(), tm::DType(int(t)), v.size(), v.data());
  return v;
}

// The device side: buffers uploaded from and read back into host bytes.
struct Dev {
  Loaded& l;
  std::vector<tm_buffer*> bufs;
  explicit Dev(Loaded& l) : l(l) {}
  ~Dev() {
    for (auto* b : bufs) l.be->iface->buffer_free(l.be, b);
  }
  void* up(const Bytes& b) {
    tm_buffer* buf = nullptr;
    tm_error err{};
    if (l.be->iface->buffer_alloc(l.be, b.size(), &buf, &err) != TM_OK ||
        l.be->iface->copy_to_backend(l.be, buf, 0, b.data(), b.size(), &err) != TM_OK) {
      std::fprintf(stderr, "upload failed: %s\n", err.message);
      std::exit(1);
    }
    bufs.push_back(buf);
    return l.be->iface->buffer_data(l.be, buf);
  }
  void* zeros(size_t bytes) { return up(Bytes(bytes, 0)); }
  tm_buffer* find(void* p) {
    for (auto* b : bufs)
      if (l.be->iface->buffer_data(l.be, b) == p) return b;
    std::fprintf(stderr, "unknown buffer\n");
    std::exit(1);
  }
  void clear(void* p, size_t bytes) {
    tm_error err{};
    if (l.be->iface->buffer_fill(l.be, find(p), 0, bytes, 0, &err) != TM_OK) {
      std::fprintf(stderr, "buffer_fill failed: %s\n", err.message);
      std::exit(1);
    }
  }
  Bytes down(void* p, size_t bytes) {
    for (auto* b : bufs)
      if (l.be->iface->buffer_data(l.be, b) == p) {
        Bytes out(bytes);
        tm_error err{};
        if (l.be->iface->copy_to_host(l.be, out.data(), b, 0, bytes, &err) != TM_OK) {
          std::fprintf(stderr, "download failed: %s\n", err.message);
          std::exit(1);
        }
        return out;
      }
    std::fprintf(stderr, "download: unknown buffer\n");
    std::exit(1);
  }
};

tm::OpResult cpuOp(const std::string& name, const tm::OpArgs& a) {
  tm::OpResult r;
  tm::OpFn fn = tm::findOp(name);
  if (!fn) {
    std::fprintf(stderr, "the CPU build has no op %s\n", name.c_str());
    std::exit(1);
  }
  fn(a, r);
  return r;
}

// A chunk of T experts around a base, on host and device.
struct Case {
  size_t n, T;
  uint64_t offset;
  tm_dtype bt, ot;
  std::vector<tm_dtype> et;
  Bytes base, out;
  std::vector<Bytes> experts;
  // device
  void* dBase = nullptr;
  void* dOut = nullptr;
  std::vector<const void*> dExperts;
  std::string label;

  tm::OpArgs args() {
    tm::OpArgs a;
    a.nums["n"] = double(n);
    a.nums["offset"] = double(offset);
    a.strs["baseDtype"] = dtypeName(bt);
    a.bufs["base"] = view(base);
    std::vector<std::string> names;
    for (size_t t = 0; t < T; t++) {
      a.bufLists["experts"].push_back(view(experts[t]));
      names.push_back(dtypeName(et[t]));
    }
    a.strLists["expertDtypes"] = names;
    a.strs["outDtype"] = dtypeName(ot);
    a.bufs["out"] = view(out);
    return a;
  }
  tm_chunk chunk(bool withOut = true) const {
    return tm_chunk{dBase, bt, T, dExperts.data(), et.data(), n, offset, withOut ? dOut : nullptr, ot};
  }
};

Case makeCase(std::mt19937_64& rng, Dev& d, size_t n, size_t T, tm_dtype bt, tm_dtype et, tm_dtype ot) {
  Case c;
  c.n = n;
  c.T = T;
  c.offset = (rng() % 1000) * 8;
  c.bt = bt;
  c.ot = ot;
  c.base = randomTensor(rng, n, bt, nullptr);
  const std::vector<float> b = asF32(c.base, bt);
  for (size_t t = 0; t < T; t++) {
    c.et.push_back(t % 2 ? TM_F32 : et);
    c.experts.push_back(randomTensor(rng, n, c.et[t], &b));
  }
  c.out.assign(n * dsize(ot), 0);
  c.dBase = d.up(c.base);
  c.dOut = d.zeros(c.out.size());
  for (auto& e : c.experts) c.dExperts.push_back(d.up(e));
  c.label = std::string("n=") + std::to_string(n) + " T=" + std::to_string(T) + " " + dtypeName(bt) + "/" + dtypeName(et) + "→" + dtypeName(ot);
  return c;
}

bool call(tm_status st, const tm_error& err, const char* what) {
  if (st == TM_OK) return true;
  std::fprintf(stderr, "%s: status %d: %s %s\n", what, st, err.arg, err.message);
  return false;
}

std::vector<double> thresholdsFor(const Case& c) {
  // The 30th-percentile-ish magnitude bits per task: any value works for equality.
  std::vector<double> th;
  const std::vector<float> b = asF32(c.base, c.bt);
  for (size_t t = 0; t < c.T; t++) {
    const std::vector<float> x = asF32(c.experts[t], c.et[t]);
    std::vector<uint32_t> bits(c.n);
    for (size_t i = 0; i < c.n; i++) bits[i] = tm::absBits(x[i] - b[i]);
    std::nth_element(bits.begin(), bits.begin() + c.n / 3, bits.end(), std::greater<uint32_t>());
    th.push_back(double(bits[c.n / 3]));
  }
  return th;
}

void elementwise(Loaded& l, std::mt19937_64& rng) {
  const tm_backend_iface* f = l.be->iface;
  tm_backend* be = l.be;
  const tm_work w{nullptr, 0};
  for (tm_dtype bt : {TM_F32, TM_BF16, TM_F16}) {
    for (tm_dtype ot : {TM_F32, TM_BF16, TM_F16}) {
      Dev d(l);
      const size_t n = 1000003 + (rng() % 8) * 8, T = 2 + rng() % 4;
      Case c = makeCase(rng, d, n, T, bt, bt == TM_F32 ? TM_BF16 : bt, ot);
      tm_error err{};
      std::vector<double> coeffs;
      for (size_t t = 0; t < T; t++) coeffs.push_back(0.3 + 0.1 * double(t));
      const tm_chunk ch = c.chunk();
      // task arithmetic
      {
        tm::OpArgs a = c.args();
        a.numLists["coeffs"] = coeffs;
        cpuOp("task_arithmetic", a);
        const tm_trim none{TM_TRIM_NONE, nullptr, nullptr, 1, nullptr, 0, 0};
        const bool ok = call(f->linear_combine(be, &ch, &none, coeffs.data(), w, &err), err, "linear_combine");
        report(ok && d.down(c.dOut, c.out.size()) == c.out, "task_arithmetic " + c.label);
      }
      // DARE
      {
        tm::OpArgs a = c.args();
        a.numLists["coeffs"] = coeffs;
        a.strs["trim"] = "dare";
        a.nums["density"] = 0.37;
        a.nums["seed"] = 1234;
        a.strs["key"] = "model.layers.7.mlp.down_proj.weight";
        cpuOp("dare_linear", a);
        const tm_trim dare{TM_TRIM_DARE, nullptr, nullptr, 0.37, nullptr, 1234, tm::fnv1a64(a.strs["key"])};
        const bool ok = call(f->linear_combine(be, &ch, &dare, coeffs.data(), w, &err), err, "linear_combine (dare)");
        report(ok && d.down(c.dOut, c.out.size()) == c.out, "dare_linear " + c.label);
      }
      // TIES merge and signs with magnitude thresholds
      const std::vector<double> th = thresholdsFor(c);
      std::vector<uint32_t> thBits(th.begin(), th.end());
      const tm_trim mag{TM_TRIM_MAGNITUDE, thBits.data(), nullptr, 1, nullptr, 0, 0};
      {
        tm::OpArgs a = c.args();
        a.strs["trim"] = "magnitude";
        a.numLists["thresholds"] = th;
        a.nums["majority"] = -1;
        a.strs["merge"] = "mean";
        a.nums["lambda"] = 0.9;
        cpuOp("ties_merge", a);
        const tm_ties_merge_args ta{-1, 1, 0.9};
        const bool ok = call(f->ties_merge(be, &ch, &mag, &ta, w, &err), err, "ties_merge");
        report(ok && d.down(c.dOut, c.out.size()) == c.out, "ties_merge " + c.label);
        a.bufs.erase("out");  // a statistics op: no out buffer
        const double want = cpuOp("ties_signs", a).nums["signSum"];
        int64_t got = 0;
        const bool ok2 = call(f->ties_signs(be, &ch, &mag, &got, w, &err), err, "ties_signs");
        report(ok2 && double(got) == want, "ties_signs " + c.label);
      }
      // consensus, both kinds
      for (int ties : {0, 1}) {
        tm::OpArgs a = c.args();
        a.strs["kind"] = ties ? "ties" : "sum";
        if (ties) {
          a.strs["trim"] = "magnitude";
          a.numLists["thresholds"] = th;
        }
        a.nums["majority"] = 1;
        a.nums["tallLambda"] = 0.4;
        a.nums["lambda"] = 0.3;
        a.nums["k"] = 2;
        cpuOp("consensus", a);
        const tm_consensus_args ca{ties, 1, 0.4, 0.3, 2};
        const tm_trim none{TM_TRIM_NONE, nullptr, nullptr, 1, nullptr, 0, 0};
        const bool ok = call(f->consensus(be, &ch, ties ? &mag : &none, &ca, w, &err), err, "consensus");
        report(ok && d.down(c.dOut, c.out.size()) == c.out, std::string("consensus ") + (ties ? "ties " : "sum ") + c.label);
      }
      // TALL: compress (τMTL + masks), masks from the stored τMTL, apply from masks and on the fly
      {
        const tm_dtype tt = bt;
        Bytes tau(n * dsize(tt));
        std::vector<Bytes> masks(T, Bytes((n + 7) / 8));
        std::vector<double> lambdas;
        for (size_t t = 0; t < T; t++) lambdas.push_back(0.2 + 0.1 * double(t));
        tm::OpArgs a = c.args();
        a.bufs.erase("out");
        a.strs["kind"] = "sum";
        a.strs["tauDtype"] = dtypeName(tt);
        a.bufs["tau"] = view(tau);
        a.numLists["lambdas"] = lambdas;
        for (auto& m : masks) a.bufLists["masks"].push_back(view(m));
        cpuOp("tall_compress", a);
        void* dTau = d.zeros(tau.size());
        std::vector<uint8_t*> dMasks;
        for (auto& m : masks) dMasks.push_back(static_cast<uint8_t*>(d.zeros(m.size())));
        const tm_tall_compress_args tca{0, 1, dTau, tt, lambdas.data(), dMasks.data()};
        const tm_trim none{TM_TRIM_NONE, nullptr, nullptr, 1, nullptr, 0, 0};
        const tm_chunk noOut = c.chunk(false);
        bool ok = call(f->tall_compress(be, &noOut, &none, &tca, w, &err), err, "tall_compress");
        ok = ok && d.down(dTau, tau.size()) == tau;
        for (size_t t = 0; ok && t < T; t++) ok = d.down(dMasks[t], masks[t].size()) == masks[t];
        report(ok, "tall_compress " + c.label);
        for (size_t t = 0; t < T; t++) d.clear(dMasks[t], masks[t].size());  // tall_mask must rewrite them
        ok = call(f->tall_mask(be, &noOut, dTau, tt, lambdas.data(), dMasks.data(), w, &err), err, "tall_mask");
        for (size_t t = 0; ok && t < T; t++) ok = d.down(dMasks[t], masks[t].size()) == masks[t];
        report(ok, "tall_mask " + c.label);
        for (int fromMask : {1, 0}) {
          tm::OpArgs ap;
          ap.nums["n"] = double(n);
          ap.nums["offset"] = double(c.offset);
          ap.strs["baseDtype"] = dtypeName(bt);
          ap.strs["tauDtype"] = dtypeName(tt);
          ap.strs["outDtype"] = dtypeName(ot);
          ap.bufs["base"] = view(c.base);
          ap.bufs["tau"] = view(tau);
          ap.bufs["out"] = view(c.out);
          if (fromMask) {
            ap.bufs["mask"] = view(masks[1]);
          } else {
            ap.bufs["expert"] = view(c.experts[1]);
            ap.strs["expertDtype"] = dtypeName(c.et[1]);
            ap.nums["lambda"] = 0.3;
          }
          cpuOp("tall_apply", ap);
          const tm_tall_apply_args taa{c.dBase, bt, dTau, tt, fromMask ? dMasks[1] : nullptr, c.dExperts[1], c.et[1], 0.3,
                                       n, c.offset, c.dOut, ot};
          ok = call(f->tall_apply(be, &taa, w, &err), err, "tall_apply");
          report(ok && d.down(c.dOut, c.out.size()) == c.out, std::string("tall_apply ") + (fromMask ? "mask " : "on the fly ") + c.label);
        }
      }
      // the exact selection histograms, both levels
      {
        const size_t bins0 = 1 << 15, bins1 = 1 << 16;
        std::vector<double> h0(T * bins0, 0.0), h1(T * bins1, 0.0);
        tm::OpArgs a = c.args();
        a.nums["level"] = 0;
        Bytes hb0(h0.size() * 8, 0);
        a.bufs["hist"] = view(hb0);
        cpuOp("magnitude_hist", a);
        double* dh0 = static_cast<double*>(d.zeros(hb0.size()));
        const tm_hist_args ha{0, nullptr, dh0, nullptr, 0, nullptr};
        tm_hist_result hr{};
        const tm_chunk noOut = c.chunk(false);
        bool ok = call(f->magnitude_hist(be, &noOut, &ha, &hr, w, &err), err, "magnitude_hist 0");
        report(ok && d.down(dh0, hb0.size()) == hb0, "magnitude_hist level 0 " + c.label);
        std::vector<double> ks(T, double(n / 5)), bin(T), rank(T);
        ok = call(f->magnitude_pick(be, dh0, bins0, T, ks.data(), bin.data(), rank.data(), &err), err, "magnitude_pick");
        tm::OpArgs pa;
        pa.nums["bins"] = double(bins0);
        pa.numLists["ks"] = ks;
        pa.bufs["hist"] = view(hb0);
        tm::OpResult pr = cpuOp("magnitude_pick", pa);
        report(ok && pr.numLists["bin"] == bin && pr.numLists["rank"] == rank, "magnitude_pick " + c.label);
        std::vector<int64_t> prefix(bin.begin(), bin.end());
        prefix[0] = -1;  // a skipped task
        Bytes hb1(h1.size() * 8, 0);
        tm::OpArgs a1 = c.args();
        a1.nums["level"] = 1;
        a1.numLists["prefix"] = std::vector<double>(prefix.begin(), prefix.end());
        a1.bufs["hist"] = view(hb1);
        cpuOp("magnitude_hist", a1);
        double* dh1 = static_cast<double*>(d.zeros(hb1.size()));
        const tm_hist_args ha1{1, prefix.data(), dh1, nullptr, 0, nullptr};
        ok = call(f->magnitude_hist(be, &noOut, &ha1, &hr, w, &err), err, "magnitude_hist 1");
        report(ok && d.down(dh1, hb1.size()) == hb1, "magnitude_hist level 1 " + c.label);
        // level 1 with the fused majority-sign reduction (every task has a prefix)
        prefix[0] = int64_t(bin[0]);
        const size_t cap = 1 << 16;
        Bytes hb2(h1.size() * 8, 0), sd(T * bins1 * 8, 0);
        tm::OpArgs a2 = c.args();
        a2.bufs.erase("out");
        a2.nums["level"] = 1;
        a2.numLists["prefix"] = std::vector<double>(prefix.begin(), prefix.end());
        a2.bufs["hist"] = view(hb2);
        a2.bufs["signDiff"] = view(sd);
        a2.nums["multiCap"] = double(cap);
        tm::OpResult fr = cpuOp("magnitude_hist", a2);
        double* dh2 = static_cast<double*>(d.zeros(hb2.size()));
        double* dsd = static_cast<double*>(d.zeros(sd.size()));
        std::vector<float> multi(cap * T);
        const tm_hist_args ha2{1, prefix.data(), dh2, dsd, cap, multi.data()};
        ok = call(f->magnitude_hist(be, &noOut, &ha2, &hr, w, &err), err, "magnitude_hist fused");
        // multi: the same entries, in any order (the host only sums their signs)
        std::vector<std::vector<float>> gotRows, wantRows;
        const float* wm = reinterpret_cast<const float*>(fr.bufs["multi"].data());
        for (size_t e = 0; e < fr.bufs["multi"].size() / (4 * T); e++) wantRows.emplace_back(wm + e * T, wm + (e + 1) * T);
        for (size_t e = 0; ok && e < hr.multi_count; e++) gotRows.emplace_back(multi.data() + e * T, multi.data() + (e + 1) * T);
        std::sort(gotRows.begin(), gotRows.end());
        std::sort(wantRows.begin(), wantRows.end());
        report(ok && d.down(dh2, hb2.size()) == hb2 && d.down(dsd, sd.size()) == sd && double(hr.sign_base) == fr.nums["signBase"] &&
                   double(hr.overflow) == fr.nums["overflow"] && gotRows == wantRows,
               "magnitude_hist level 1 with the sign reduction (" + std::to_string(wantRows.size()) + " multi entries) " + c.label);
      }
      // a non-finite expert entry: the same input and element as the CPU names
      {
        std::vector<float> e = asF32(c.experts[T - 1], c.et[T - 1]);
        const size_t at = n / 2 + 3;
        e[at] = NAN;
        e[at + 100] = INFINITY;
        Bytes bad(n * dsize(c.et[T - 1]));
        tm::fromF32(e.data(), n, tm::DType(int(c.et[T - 1])), bad.data());
        Case c2 = c;
        c2.experts[T - 1] = bad;
        c2.dExperts[T - 1] = d.up(bad);
        tm::OpArgs a = c2.args();
        a.numLists["coeffs"] = coeffs;
        std::string cpuRole;
        long long cpuIndex = -2, cpuElement = -2;
        try {
          cpuOp("task_arithmetic", a);
        } catch (const tm::InputError& x) {
          cpuRole = x.role;
          cpuIndex = x.index;
          cpuElement = x.element;
        }
        const tm_chunk ch2 = c2.chunk();
        const tm_trim none{TM_TRIM_NONE, nullptr, nullptr, 1, nullptr, 0, 0};
        tm_error e2{};
        const tm_status st = f->linear_combine(be, &ch2, &none, coeffs.data(), w, &e2);
        report(st == TM_INPUT && cpuRole == "expert" && e2.role == TM_ROLE_EXPERT && e2.index == cpuIndex && e2.element == cpuElement,
               "non-finite expert reported as the CPU does " + c.label);
        int64_t first = -2;
        tm::OpArgs fa;
        fa.strs["dtype"] = dtypeName(c.et[T - 1]);
        fa.bufs["data"] = view(bad);
        const double want = cpuOp("check_finite", fa).nums["bad"];
        const bool ok = call(f->check_finite(be, c2.dExperts[T - 1], c.et[T - 1], n, &first, &e2), e2, "check_finite");
        report(ok && double(first) == want, "check_finite " + c.label);
      }
      // conversion through float64
      for (tm_dtype to : {TM_F64, TM_F32, TM_F16, TM_BF16}) {
        Bytes dst(n * dsize(to));
        tm::OpArgs a;
        a.strs["fromDtype"] = dtypeName(c.et[1]);
        a.strs["toDtype"] = dtypeName(to);
        a.bufs["src"] = view(c.experts[1]);
        a.bufs["dst"] = view(dst);
        cpuOp("convert", a);
        void* dd = d.zeros(dst.size());
        const bool ok = call(f->convert(be, c.dExperts[1], c.et[1], dd, to, n, &err), err, "convert");
        report(ok && d.down(dd, dst.size()) == dst, std::string("convert F32→") + dtypeName(to));
      }
    }
  }
}


// The bits of the q-quantile-th largest |τt| of a case, per task.
std::vector<uint32_t> quantiles(const Case& c, double q) {
  std::vector<uint32_t> out;
  const std::vector<float> b = asF32(c.base, c.bt);
  for (size_t t = 0; t < c.T; t++) {
    const std::vector<float> x = asF32(c.experts[t], c.et[t]);
    std::vector<uint32_t> bits(c.n);
    for (size_t i = 0; i < c.n; i++) bits[i] = tm::absBits(x[i] - b[i]);
    const size_t r = std::min(c.n - 1, size_t(q * double(c.n)));
    std::nth_element(bits.begin(), bits.begin() + r, bits.end(), std::greater<uint32_t>());
    out.push_back(bits[r]);
  }
  return out;
}

std::vector<double> doublesOfBits(const std::vector<uint32_t>& v) { return std::vector<double>(v.begin(), v.end()); }

template <class V>
Bytes rawBytes(const std::vector<V>& v) {
  Bytes b(v.size() * sizeof(V));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}
template <class V>
std::vector<V> rawValues(const Bytes& b) {
  std::vector<V> v(b.size() / sizeof(V));
  std::memcpy(v.data(), b.data(), b.size());
  return v;
}

// mergekit_gta, trim_l1, magnitude_tie_cut, breadcrumbs_merge / _l1,
// magnitude_small, ties_sample, ties_window against the CPU ops. Candidate
// lists and multi entries (whose order is the threads') compare as multisets.
void mergekitAndWindow(Loaded& l, std::mt19937_64& rng) {
  const tm_backend_iface* f = l.be->iface;
  tm_backend* be = l.be;
  const tm_work w{nullptr, 0};
  for (tm_dtype bt : {TM_F32, TM_BF16, TM_F16}) {
    Dev d(l);
    const size_t n = 1000003 + (rng() % 8) * 8, T = 2 + rng() % 4;
    Case c = makeCase(rng, d, n, T, bt, bt == TM_F32 ? TM_BF16 : bt, bt);
    const tm_chunk ch = c.chunk(), noOut = c.chunk(false);
    tm_error err{};
    std::vector<double> wt, sc;
    for (size_t t = 0; t < T; t++) wt.push_back(t == 1 ? -0.4 : 0.3 + 0.2 * double(t)), sc.push_back(1.0 + 0.125 * double(t));
    const std::vector<uint32_t> th = quantiles(c, 0.3);
    std::vector<double> cuts;
    for (size_t t = 0; t < T; t++) cuts.push_back(double(c.offset + rng() % n));
    const std::string key = "model.layers.3.mlp.up_proj.weight";
    std::vector<double> dens;
    for (size_t t = 0; t < T; t++) dens.push_back(t == 0 ? 1.0 : 0.3 + 0.1 * double(t));
    // mergekit_gta (magnitude_cut and bernoulli trims, both consensus modes) and trim_l1
    for (int sum : {0, 1}) {
      tm::OpArgs a = c.args();
      const tm_trim trim = sum ? tm_trim{TM_TRIM_MAGNITUDE_CUT, th.data(), cuts.data(), 1, nullptr, 0, 0}
                               : tm_trim{TM_TRIM_BERNOULLI, nullptr, nullptr, 1, dens.data(), 99, tm::fnv1a64(key)};
      if (sum) {
        a.strs["trim"] = "magnitude_cut";
        a.numLists["thresholds"] = doublesOfBits(th);
        a.numLists["cuts"] = cuts;
      } else {
        a.strs["trim"] = "bernoulli";
        a.numLists["densities"] = dens;
        a.nums["seed"] = 99;
        a.strs["key"] = key;
      }
      a.numLists["weights"] = wt;
      a.numLists["scales"] = sc;
      a.strs["consensus"] = sum ? "sum" : "none";
      a.nums["normalize"] = 1;
      a.nums["lambda"] = 0.8;
      a.nums["divisor"] = 1.5;
      a.nums["baseScale"] = sum ? 1.0 : 0.5;
      cpuOp("mergekit_gta", a);
      const tm_gta_args ga{wt.data(), sc.data(), sum, 1, 0.8, 1.5, sum ? 1.0 : 0.5};
      bool ok = call(f->mergekit_gta(be, &ch, &trim, &ga, w, &err), err, "mergekit_gta");
      report(ok && d.down(c.dOut, c.out.size()) == c.out, std::string("mergekit_gta ") + (sum ? "sum " : "none ") + c.label);
      a.bufs.erase("out");
      tm::OpResult r = cpuOp("trim_l1", a);
      std::vector<double> l1(T, 0.0), kept(T, 0.0);
      ok = call(f->trim_l1(be, &noOut, &trim, l1.data(), kept.data(), w, &err), err, "trim_l1");
      report(ok && l1 == r.numLists["l1"] && kept == r.numLists["l1Kept"], std::string("trim_l1 (exact doubles) ") + a.strs["trim"] + " " + c.label);
    }
    // magnitude_tie_cut: the need-th tie at a threshold, first, last, past the end
    {
      const std::vector<uint32_t> tb = quantiles(c, 0.2);
      tm::OpArgs a = c.args();
      a.bufs.erase("out");
      a.numLists["thresholds"] = doublesOfBits(tb);
      a.numLists["need"] = std::vector<double>(T, 1.0);
      const double total = cpuOp("magnitude_tie_cut", a).numLists["count"][0];
      std::vector<double> need;
      for (size_t t = 0; t < T; t++) need.push_back(t == 0 ? total : t == 1 ? total + 1 : double(1 + rng() % 3));
      a.numLists["need"] = need;
      tm::OpResult r = cpuOp("magnitude_tie_cut", a);
      std::vector<double> count(T), at(T);
      const bool ok = call(f->magnitude_tie_cut(be, &noOut, tb.data(), need.data(), count.data(), at.data(), w, &err), err, "magnitude_tie_cut");
      report(ok && count == r.numLists["count"] && at == r.numLists["at"], "magnitude_tie_cut (" + std::to_string(size_t(total)) + " ties) " + c.label);
    }
    // breadcrumbs: keep ranks [5%, 40%) by |τ|, ties cut by index; one task keeps all
    for (int consensus : {0, 1}) {
      std::vector<uint32_t> dropB = quantiles(c, 0.05), keepB = quantiles(c, 0.4);
      std::vector<double> dropC, keepC;
      for (size_t t = 0; t < T; t++) dropC.push_back(double(c.offset + rng() % n)), keepC.push_back(double(c.offset + rng() % n));
      dropB[T - 1] = 0x7f800000u, dropC[T - 1] = 0, keepB[T - 1] = 0, keepC[T - 1] = double(c.offset + n);
      tm::OpArgs a = c.args();
      a.numLists["dropBits"] = doublesOfBits(dropB);
      a.numLists["dropCuts"] = dropC;
      a.numLists["keepBits"] = doublesOfBits(keepB);
      a.numLists["keepCuts"] = keepC;
      a.numLists["weights"] = wt;
      a.numLists["scales"] = sc;
      a.nums["consensus"] = consensus;
      a.nums["normalize"] = consensus;
      a.nums["lambda"] = 0.7;
      a.nums["divisor"] = 2;
      cpuOp("breadcrumbs_merge", a);
      const tm_top_sets sets{dropB.data(), dropC.data(), keepB.data(), keepC.data()};
      const tm_breadcrumbs_args ba{sets, wt.data(), sc.data(), consensus, consensus, 0.7, 2};
      bool ok = call(f->breadcrumbs_merge(be, &ch, &ba, w, &err), err, "breadcrumbs_merge");
      report(ok && d.down(c.dOut, c.out.size()) == c.out, std::string("breadcrumbs_merge ") + (consensus ? "consensus " : "") + c.label);
      a.bufs.erase("out");
      tm::OpResult r = cpuOp("breadcrumbs_l1", a);
      std::vector<double> l1(T, 0.0), kept(T, 0.0);
      ok = call(f->breadcrumbs_l1(be, &noOut, &sets, l1.data(), kept.data(), w, &err), err, "breadcrumbs_l1");
      report(ok && l1 == r.numLists["l1"] && kept == r.numLists["l1Kept"], "breadcrumbs_l1 (exact doubles) " + c.label);
    }
    // ties_sample into a region at `at`
    {
      const size_t m = n + 64, at = 40;
      Bytes bits(T * m * 4, 0);
      tm::OpArgs a = c.args();
      a.bufs.erase("out");
      a.bufs["bits"] = view(bits);
      a.nums["m"] = double(m);
      a.nums["at"] = double(at);
      cpuOp("ties_sample", a);
      void* dBits = d.zeros(bits.size());
      const bool ok = call(f->ties_sample(be, &noOut, static_cast<uint32_t*>(dBits), m, at, w, &err), err, "ties_sample");
      report(ok && d.down(dBits, bits.size()) == bits, "ties_sample " + c.label);
    }
    // ties_window around the 30% magnitude; half the tasks with tabled values
    {
      constexpr size_t W = 16;
      const std::vector<uint32_t> hi = quantiles(c, 0.28), lo = quantiles(c, 0.32);
      std::vector<uint32_t> table(T * W, 0xffffffffu);
      for (size_t t = 0; t < T; t += 2)
        for (size_t j = 0; j < 4 && lo[t] + j < hi[t]; j++) table[t * W + j] = lo[t] + uint32_t(j);
      const size_t C = n / 8, cap = n / 4;
      std::vector<double> tab;
      for (uint32_t v : table) tab.push_back(v == 0xffffffffu ? -1.0 : double(v));
      Bytes cand(T * C * 4, 0), candDiff(T * C, 0), used(T * 8, 0), tc(T * W * 8, 0), td(T * W * 8, 0);
      tm::OpArgs a = c.args();
      a.bufs.erase("out");
      a.numLists["lo"] = doublesOfBits(lo);
      a.numLists["hi"] = doublesOfBits(hi);
      a.numLists["table"] = tab;
      a.nums["capacity"] = double(C);
      a.bufs["cand"] = view(cand);
      a.bufs["candDiff"] = view(candDiff);
      a.bufs["used"] = view(used);
      a.bufs["tableCounts"] = view(tc);
      a.bufs["tableDiffs"] = view(td);
      a.nums["multiCap"] = double(cap);
      tm::OpResult r = cpuOp("ties_window", a);
      void* dCand = d.zeros(cand.size());
      void* dDiff = d.zeros(candDiff.size());
      void* dUsed = d.zeros(used.size());
      void* dTc = d.zeros(tc.size());
      void* dTd = d.zeros(td.size());
      std::vector<float> multi(cap * T);
      std::vector<uint64_t> above(T, 0), atHi(T, 0);
      const tm_window_args wa{lo.data(), hi.data(), table.data(), C, static_cast<uint32_t*>(dCand), static_cast<int8_t*>(dDiff),
                              static_cast<uint64_t*>(dUsed), static_cast<uint64_t*>(dTc), static_cast<int64_t*>(dTd), cap, multi.data()};
      tm_window_result wr{above.data(), atHi.data(), 0, 0, 0, 0};
      bool ok = call(f->ties_window(be, &noOut, &wa, &wr, w, &err), err, "ties_window");
      const std::vector<uint64_t> usedGot = ok ? rawValues<uint64_t>(d.down(dUsed, used.size())) : std::vector<uint64_t>();
      ok = ok && usedGot == rawValues<uint64_t>(used) && d.down(dTc, tc.size()) == tc && d.down(dTd, td.size()) == td;
      ok = ok && double(wr.sign_base) == r.nums["signBase"] && double(wr.full) == r.nums["full"] && double(wr.overflow) == r.nums["overflow"];
      for (size_t t = 0; ok && t < T; t++) ok = double(above[t]) == r.numLists["above"][t] && double(atHi[t]) == r.numLists["atHi"][t];
      // each task's candidates as a multiset of (bits, sign difference)
      const Bytes gc = d.down(dCand, cand.size()), gd = d.down(dDiff, candDiff.size());
      const std::vector<uint32_t> gcv = rawValues<uint32_t>(gc), wcv = rawValues<uint32_t>(cand);
      for (size_t t = 0; ok && t < T; t++) {
        std::vector<std::pair<uint32_t, int8_t>> got, want;
        for (size_t j = 0; j < std::min<uint64_t>(usedGot[t], C); j++) {
          got.push_back({gcv[t * C + j], int8_t(gd[t * C + j])});
          want.push_back({wcv[t * C + j], int8_t(candDiff[t * C + j])});
        }
        std::sort(got.begin(), got.end());
        std::sort(want.begin(), want.end());
        ok = got == want;
      }
      std::vector<std::vector<float>> gotRows, wantRows;
      const float* wm = reinterpret_cast<const float*>(r.bufs["multi"].data());
      for (size_t e = 0; e < r.bufs["multi"].size() / (4 * T); e++) wantRows.emplace_back(wm + e * T, wm + (e + 1) * T);
      for (size_t e = 0; ok && e < wr.multi_count; e++) gotRows.emplace_back(multi.data() + e * T, multi.data() + (e + 1) * T);
      std::sort(gotRows.begin(), gotRows.end());
      std::sort(wantRows.begin(), wantRows.end());
      uint64_t listed = 0;
      for (uint64_t u : usedGot) listed += u;
      report(ok && gotRows == wantRows, "ties_window (" + std::to_string(listed) + " candidates, " + std::to_string(wantRows.size()) + " multi) " + c.label);
    }
    // magnitude_small on a whole small tensor (offset 0)
    {
      Case s = makeCase(rng, d, 40000 + 8 * (rng() % 100), T, bt, bt == TM_F32 ? TM_BF16 : bt, bt);
      s.offset = 0;
      const size_t k = s.n / 5;
      tm::OpArgs a = s.args();
      a.bufs.erase("out");
      a.nums["k"] = double(k);
      tm::OpResult r = cpuOp("magnitude_small", a);
      std::vector<uint32_t> thr(T);
      int64_t sum = 0;
      const tm_chunk sc2 = s.chunk(false);
      const bool ok = call(f->magnitude_small(be, &sc2, k, thr.data(), &sum, w, &err), err, "magnitude_small");
      report(ok && doublesOfBits(thr) == r.numLists["thresholds"] && double(sum) == r.nums["signSum"], "magnitude_small " + s.label);
    }
  }
}

double relDiff(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); i++) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1));
}

Bytes bytesOf(const std::vector<double>& v) {
  Bytes b(v.size() * 8);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}
std::vector<double> doublesOf(const Bytes& b) {
  std::vector<double> v(b.size() / 8);
  std::memcpy(v.data(), b.data(), b.size());
  return v;
}
std::vector<double> resultVec(tm::OpResult& r, const std::string& k) { return doublesOf(r.bufs[k]); }

// A symmetric positive definite n×n matrix with condition number about 1e3, and B.
void spd(std::mt19937_64& rng, size_t n, std::vector<double>& A) {
  std::normal_distribution<double> g(0, 1);
  std::vector<double> X(2 * n * n);
  for (auto& x : X) x = g(rng);
  A.assign(n * n, 0.0);
  for (size_t k = 0; k < 2 * n; k++)
    for (size_t i = 0; i < n; i++)
      for (size_t j = 0; j <= i; j++) A[i * n + j] += X[k * n + i] * X[k * n + j];
  for (size_t i = 0; i < n; i++) {
    A[i * n + i] += 1e-3 * double(2 * n);
    for (size_t j = 0; j < i; j++) A[j * n + i] = A[i * n + j];
  }
}

void linearAlgebra(Loaded& l, std::mt19937_64& rng) {
  const tm_backend_iface* f = l.be->iface;
  tm_backend* be = l.be;
  const tm_work w{nullptr, 0};
  std::normal_distribution<double> g(0, 1);
  tm_error err{};
  for (size_t n : {64, 500, 1024}) {
    Dev d(l);
    const size_t m = n + 37, k = n / 2 + 5;
    std::vector<double> A(m * k), B(k * n), C(m * n), X(k * n);
    for (auto* v : {&A, &B, &C, &X})
      for (auto& x : *v) x = g(rng);
    // gemm: C = 0.5·A·B + 2·C
    tm::OpArgs ga;
    ga.nums["m"] = double(m);
    ga.nums["n"] = double(n);
    ga.nums["k"] = double(k);
    ga.nums["alpha"] = 0.5;
    ga.nums["beta"] = 2;
    Bytes ab = bytesOf(A), bb = bytesOf(B), cb = bytesOf(C), xb = bytesOf(X);
    ga.bufs["A"] = view(ab);
    ga.bufs["B"] = view(bb);
    ga.bufs["C"] = view(cb);
    tm::OpResult gr = cpuOp("linalg_gemm", ga);
    double* dA = static_cast<double*>(d.up(ab));
    double* dB = static_cast<double*>(d.up(bb));
    double* dC = static_cast<double*>(d.up(cb));
    bool ok = call(f->gemm(be, 0, 0, m, n, k, 0.5, dA, k, dB, n, 2.0, dC, n, &err), err, "gemm");
    const double eg = ok ? relDiff(doublesOf(d.down(dC, cb.size())), resultVec(gr, "C")) : 1;
    report(eg < 1e-13, "gemm n=" + std::to_string(n) + " relative difference " + std::to_string(eg));
    // syrk: C = Xᵀ X
    tm::OpArgs sa;
    sa.nums["n"] = double(n);
    sa.nums["k"] = double(k);
    sa.bufs["X"] = view(xb);
    tm::OpResult sr = cpuOp("linalg_syrk", sa);
    double* dX = static_cast<double*>(d.up(xb));
    double* dS = static_cast<double*>(d.zeros(n * n * 8));
    ok = call(f->syrk_rows(be, n, k, 1.0, dX, n, 0.0, dS, n, &err), err, "syrk_rows");
    const double es = ok ? relDiff(doublesOf(d.down(dS, n * n * 8)), resultVec(sr, "C")) : 1;
    report(es < 1e-13, "syrk_rows n=" + std::to_string(n) + " relative difference " + std::to_string(es));
    // Cholesky + solve, eigh, against the CPU's solve
    std::vector<double> S;
    spd(rng, n, S);
    const size_t nrhs = n + 11;
    std::vector<double> R(nrhs * n);
    for (auto& x : R) x = g(rng);
    Bytes sb = bytesOf(S), rb = bytesOf(R);
    for (const char* solver : {"cholesky", "eigh"}) {
      tm::OpArgs va;
      va.nums["n"] = double(n);
      va.nums["nrhs"] = double(nrhs);
      va.bufs["A"] = view(sb);
      va.bufs["B"] = view(rb);
      va.strs["solver"] = solver;
      tm::OpResult vr = cpuOp("linalg_solve", va);
      const std::vector<double> want = resultVec(vr, "X");
      double* dS2 = static_cast<double*>(d.up(sb));
      double* dR = static_cast<double*>(d.up(rb));
      std::vector<double> got;
      if (std::strcmp(solver, "cholesky") == 0) {
        ok = call(f->cholesky(be, n, dS2, n, w, &err), err, "cholesky") &&
             call(f->cholesky_solve_rows(be, n, dS2, n, nrhs, dR, n, &err), err, "cholesky_solve_rows");
        got = doublesOf(d.down(dR, rb.size()));
      } else {
        // The batched entry runs the whole solvePsdRows, eigh pseudo-inverse included.
        std::vector<double> a2 = S, b2 = R;
        double* pa = a2.data();
        double* pb = b2.data();
        tm_solve_info info{};
        size_t done = 0;
        const tm_solve_opts eighOpts{2, 0.0, 0.0, TM_PRECISION_F64};
        ok = call(f->solve_psd_rows_batched(be, 1, n, &pa, nrhs, &pb, &eighOpts, &info, &done, &err), err, "solve batched (eigh)");
        ok = ok && done == 1 && info.used_eigh && double(info.rank) == vr.nums["rank"];
        got = b2;
      }
      const double ev = ok ? relDiff(got, want) : 1;
      report(ev < 1e-9, std::string(solver) + " solve n=" + std::to_string(n) + " relative difference " + std::to_string(ev));
    }
    // eigh entry: eigenvalues
    {
      tm::OpArgs ea;
      ea.nums["n"] = double(n);
      ea.bufs["A"] = view(sb);
      tm::OpResult er = cpuOp("linalg_eigh", ea);
      double* dE = static_cast<double*>(d.up(sb));
      double* dW = static_cast<double*>(d.zeros(n * 8));
      ok = call(f->eigh(be, n, dE, n, dW, w, &err), err, "eigh");
      const double ew = ok ? relDiff(doublesOf(d.down(dW, n * 8)), resultVec(er, "w")) : 1;
      report(ew < 1e-12, "eigh eigenvalues n=" + std::to_string(n) + " relative difference " + std::to_string(ew));
    }
    // batched Cholesky solves of 5 equal-size systems
    {
      std::vector<std::vector<double>> As(5, S), Bs(5, R);
      std::vector<double*> pa, pb;
      for (size_t i = 0; i < 5; i++) {
        As[i][0] += double(i);  // different systems
        pa.push_back(As[i].data());
        pb.push_back(Bs[i].data());
      }
      std::vector<tm_solve_info> info(5);
      std::vector<std::vector<double>> want;
      for (size_t i = 0; i < 5; i++) {
        Bytes ai = bytesOf(As[i]);
        tm::OpArgs va;
        va.nums["n"] = double(n);
        va.nums["nrhs"] = double(nrhs);
        va.bufs["A"] = view(ai);
        va.bufs["B"] = view(rb);
        va.nums["ridge"] = 1e-6;
        tm::OpResult vr = cpuOp("linalg_solve", va);
        want.push_back(resultVec(vr, "X"));
      }
      const tm_solve_opts autoOpts{0, 1e-6, 0.0, TM_PRECISION_F64};
      size_t done = 0;
      ok = call(f->solve_psd_rows_batched(be, 5, n, pa.data(), nrhs, pb.data(), &autoOpts, info.data(), &done, &err), err, "solve batched");
      double worst = 0;
      for (size_t i = 0; ok && i < 5; i++) worst = std::max(worst, relDiff(Bs[i], want[i]));
      report(ok && done == 5 && worst < 1e-9, "batched auto solves n=" + std::to_string(n) + " worst relative difference " + std::to_string(worst));
      // float32 and tf32: within docs/cuda.md's first-order bound n·κ·2⁻²⁴ of the float64 result
      // (κ from the CPU's eigenvalues); the eigh path within κ·(n·2⁻²⁴)·√n, tf32 adding 2·2⁻¹⁰ per product.
      tm::OpArgs ea;
      ea.nums["n"] = double(n);
      ea.bufs["A"] = view(sb);
      tm::OpResult er = cpuOp("linalg_eigh", ea);
      const std::vector<double> w = resultVec(er, "w");
      const double kappa = w.back() / w.front(), u = std::ldexp(1.0, -24);
      for (tm_precision p : {TM_PRECISION_F32, TM_PRECISION_TF32})
        for (int solver : {1, 2}) {
          std::vector<std::vector<double>> A2(As), B2(5, R);
          std::vector<double*> qa, qb;
          for (size_t i = 0; i < 5; i++) {
            qa.push_back(A2[i].data());
            qb.push_back(B2[i].data());
          }
          const tm_solve_opts po{solver, solver == 1 ? 1e-6 : 0.0, 0.0, p};
          ok = call(f->solve_psd_rows_batched(be, 5, n, qa.data(), nrhs, qb.data(), &po, info.data(), &done, &err), err, "solve batched low precision");
          double wst = 0;
          for (size_t i = 0; ok && i < 5; i++) wst = std::max(wst, relDiff(B2[i], want[i]));
          const double bound = solver == 1 ? double(n) * kappa * u
                                           : kappa * ((p == TM_PRECISION_TF32 ? 2 * std::ldexp(1.0, -10) : 0) + double(n) * u) * std::sqrt(double(n));
          report(ok && done == 5 && wst < bound, std::string(p == TM_PRECISION_F32 ? "float32" : "tf32") + (solver == 1 ? " cholesky" : " eigh") +
                                                   " batched solves n=" + std::to_string(n) + " worst relative difference " + std::to_string(wst) +
                                                   " (bound " + std::to_string(bound) + ", kappa " + std::to_string(kappa) + ")");
        }
      // A failure stops the batch: system 2 not positive definite (solver cholesky) leaves 0 and 1 solved.
      {
        std::vector<std::vector<double>> A3(As), B3(5, R);
        for (size_t j = 0; j < n; j++) A3[2][j * n + j] = -1.0;
        std::vector<double*> qa, qb;
        for (size_t i = 0; i < 5; i++) {
          qa.push_back(A3[i].data());
          qb.push_back(B3[i].data());
        }
        const tm_solve_opts co{1, 1e-6, 0.0, TM_PRECISION_F64};
        tm_error e2{};
        const tm_status st = f->solve_psd_rows_batched(be, 5, n, qa.data(), nrhs, qb.data(), &co, info.data(), &done, &e2);
        const double d0 = std::max(relDiff(B3[0], want[0]), relDiff(B3[1], want[1]));
        report(st == TM_NOT_PD && done == 2 && d0 < 1e-9, "batched solve stops at a failing system: status " + std::to_string(st) +
                                                            ", done " + std::to_string(done) + ", earlier ones within " + std::to_string(d0));
      }
    }
    // axpy: y += α·x, bit-identical to the CPU (one rounding of α·x, one of the sum, no FMA)
    {
      std::vector<double> x(n * n), y(n * n);
      for (auto& v : x) v = g(rng);
      for (auto& v : y) v = g(rng);
      std::vector<double> want(y);
      for (size_t i = 0; i < want.size(); i++) want[i] += 0.37 * x[i];
      Bytes xb2 = bytesOf(x), yb2 = bytesOf(y);
      double* dx = static_cast<double*>(d.up(xb2));
      double* dy = static_cast<double*>(d.up(yb2));
      ok = call(f->axpy(be, n * n, 0.37, dx, dy, &err), err, "axpy");
      report(ok && doublesOf(d.down(dy, yb2.size())) == want, "axpy n=" + std::to_string(n * n) + " bit-identical");
    }
  }
}

// The overlapped copies of DeviceCall::blocks: page-locked host memory, three
// asynchronous uploads at offsets, copy_wait, a kernel reading them (convert
// F32→F64), an asynchronous download into page-locked memory, synchronize;
// the bytes must be the CPU conversion's.
void transfers(Loaded& l, std::mt19937_64& rng) {
  const tm_backend_iface* f = l.be->iface;
  tm_backend* be = l.be;
  const size_t n = (size_t(3) << 20) + 123, page = 4096;
  auto pinned = [&](size_t bytes) {
    const size_t cap = (bytes + page - 1) / page * page;
    void* p = std::aligned_alloc(page, cap);
    tm_error err{};
    const bool ok = p && f->host_register(be, p, cap, &err) == TM_OK;
    if (!ok) std::fprintf(stderr, "host_register failed: %s\n", err.message);
    return ok ? static_cast<uint8_t*>(p) : nullptr;
  };
  const Bytes src = randomTensor(rng, n, TM_F32, nullptr);
  Bytes want(n * 8);
  tm::OpArgs a;
  a.strs["fromDtype"] = "F32";
  a.strs["toDtype"] = "F64";
  Bytes srcCopy = src;
  a.bufs["src"] = view(srcCopy);
  a.bufs["dst"] = view(want);
  cpuOp("convert", a);
  uint8_t* hs = pinned(src.size());
  uint8_t* hd = pinned(want.size());
  bool ok = hs && hd;
  tm_buffer *ds = nullptr, *dd = nullptr;
  tm_error err{};
  if (ok) {
    std::memcpy(hs, src.data(), src.size());
    std::memset(hd, 0xab, want.size());
    ok = f->buffer_alloc(be, src.size(), &ds, &err) == TM_OK && f->buffer_alloc(be, want.size(), &dd, &err) == TM_OK;
    const size_t third = src.size() / 3 / 4 * 4;
    for (size_t at = 0; ok && at < src.size(); at += third)
      ok = f->copy_to_backend_async(be, ds, at, hs + at, std::min(third, src.size() - at), &err) == TM_OK;
    ok = ok && f->copy_wait(be, &err) == TM_OK &&
         f->convert(be, f->buffer_data(be, ds), TM_F32, f->buffer_data(be, dd), TM_F64, n, &err) == TM_OK &&
         f->copy_to_host_async(be, hd, dd, 0, want.size(), &err) == TM_OK && f->synchronize(be, &err) == TM_OK;
    if (!ok) std::fprintf(stderr, "transfers: %s\n", err.message);
  }
  report(ok && std::memcmp(hd, want.data(), want.size()) == 0, "copy_to_backend_async, copy_wait, copy_to_host_async from pinned memory");
  if (ds) f->buffer_free(be, ds);
  if (dd) f->buffer_free(be, dd);
  for (uint8_t* p : {hs, hd})
    if (p) {
      f->host_unregister(be, p);
      std::free(p);
    }
}

}  // namespace

int runCompare(Loaded& l) {
  std::printf("device: %s\n", l.device.description);
  std::mt19937_64 rng(7);
  elementwise(l, rng);
  mergekitAndWindow(l, rng);
  transfers(l, rng);
  linearAlgebra(l, rng);
  std::printf("%zu checks, %zu failed\n", checks, failures);
  return failures ? 1 : 0;
}

}  // namespace tmcheck
