// "bench" mode (needs a GPU), run by bench/gpu_check.sh: writes DIR/bench.json.
//  - cuBLAS GEMM rates on device-resident 8192² matrices: DGEMM, SGEMM, TF32;
//  - LOT per layer on the shapes of bench/lot_bench.js (ViT-B/32 blocks with 8
//    experts, a Llama-7B block with 2), driven through the table as the host
//    does: upload each expert's float32 Gram and task vector, convert to
//    float64, A += Gt, Bᵀ += Tt Gt (GEMM), Cholesky, solve, result back.
//    Achieved TFLOP/s (the GEMM and factorisation flops over the wall time)
//    against the DGEMM rate; also the time with the statistics already on the
//    device (the solve alone);
//  - the batched host-memory solver (solve_psd_rows_batched) per shape in
//    float64, float32 and tf32, with the low-precision error against float64;
//  - streaming methods on 8 bf16 experts (64 Mi entries a chunk): GB/s of
//    input bytes on device-resident data and end to end from host memory,
//    against the read floor (host → device copy of the same bytes).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "check.h"
#include "core/dtype.h"

namespace tmcheck {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Ctx {
  Loaded& l;
  const tm_backend_iface* f;
  tm_backend* be;
  std::vector<tm_buffer*> bufs;
  explicit Ctx(Loaded& l) : l(l), f(l.be->iface), be(l.be) {}
  ~Ctx() { freeAll(); }
  void freeAll() {
    for (auto* b : bufs) f->buffer_free(be, b);
    bufs.clear();
  }
  void ok(tm_status st, const tm_error& err, const char* what) {
    if (st == TM_OK) return;
    std::fprintf(stderr, "bench: %s failed (%d): %s\n", what, st, err.message);
    std::exit(1);
  }
  tm_buffer* alloc(size_t bytes) {
    tm_buffer* b = nullptr;
    tm_error err{};
    ok(f->buffer_alloc(be, bytes, &b, &err), err, "buffer_alloc");
    bufs.push_back(b);
    return b;
  }
  void* data(tm_buffer* b) { return f->buffer_data(be, b); }
  void put(tm_buffer* b, const void* src, size_t bytes) {
    tm_error err{};
    ok(f->copy_to_backend(be, b, 0, src, bytes, &err), err, "copy_to_backend");
  }
  void get(void* dst, tm_buffer* b, size_t bytes) {
    tm_error err{};
    ok(f->copy_to_host(be, dst, b, 0, bytes, &err), err, "copy_to_host");
  }
  void sync() {
    tm_error err{};
    ok(f->synchronize(be, &err), err, "synchronize");
  }
};

std::vector<float> gram(size_t n, uint32_t seed) {  // symmetric, diagonally dominant (bench/lot_bench.js's makeGram)
  std::vector<float> G(n * n);
  uint32_t x = seed * 2246822519u;
  if (!x) x = 1;
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < i; j++) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      const float v = float(x) / 4294967296.0f - 0.5f;
      G[i * n + j] = G[j * n + i] = v;
    }
  for (size_t i = 0; i < n; i++) G[i * n + i] = float(n) * (1 + float(i % 5) * 0.1f);
  return G;
}

std::vector<float> values(size_t n, uint32_t seed, float scale) {
  std::vector<float> v(n);
  std::mt19937 r(seed);
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  for (auto& x : v) x = u(r) * scale;
  return v;
}

struct Layer {
  const char* name;
  size_t out, in, count;
};

// One layer through the table; returns {end-to-end seconds, solve-only seconds}.
std::pair<double, double> lotLayer(Ctx& c, const Layer& L, size_t T, const std::vector<std::vector<float>>& G,
                                   const std::vector<std::vector<float>>& tau) {
  const size_t in = L.in, out = L.out;
  tm_error err{};
  tm_buffer* g32 = c.alloc(in * in * 4);
  tm_buffer* t32 = c.alloc(out * in * 4);
  tm_buffer* g = c.alloc(in * in * 8);
  tm_buffer* t = c.alloc(out * in * 8);
  tm_buffer* A = c.alloc(in * in * 8);
  tm_buffer* BT = c.alloc(out * in * 8);
  c.sync();
  const auto t0 = Clock::now();
  c.ok(c.f->buffer_fill(c.be, A, 0, in * in * 8, 0, &err), err, "fill");
  c.ok(c.f->buffer_fill(c.be, BT, 0, out * in * 8, 0, &err), err, "fill");
  for (size_t k = 0; k < T; k++) {
    c.put(g32, G[k].data(), in * in * 4);
    c.ok(c.f->convert(c.be, c.data(g32), TM_F32, c.data(g), TM_F64, in * in, &err), err, "convert");
    c.put(t32, tau[k].data(), out * in * 4);
    c.ok(c.f->convert(c.be, c.data(t32), TM_F32, c.data(t), TM_F64, out * in, &err), err, "convert");
    c.ok(c.f->axpy(c.be, in * in, 1.0, static_cast<double*>(c.data(g)), static_cast<double*>(c.data(A)), &err), err, "axpy");
    // Bᵀ[out,in] += T[out,in] · G[in,in]ᵀ
    c.ok(c.f->gemm(c.be, 0, 1, out, in, in, 1.0, static_cast<double*>(c.data(t)), in, static_cast<double*>(c.data(g)), in, 1.0,
                   static_cast<double*>(c.data(BT)), in, &err),
         err, "gemm");
  }
  c.sync();
  const auto t1 = Clock::now();
  const tm_work w{nullptr, 0};
  c.ok(c.f->cholesky(c.be, in, static_cast<double*>(c.data(A)), in, w, &err), err, "cholesky");
  c.ok(c.f->cholesky_solve_rows(c.be, in, static_cast<double*>(c.data(A)), in, out, static_cast<double*>(c.data(BT)), in, &err), err,
       "cholesky_solve_rows");
  c.sync();
  const double solve = since(t1);
  std::vector<double> result(out * in);
  c.get(result.data(), BT, out * in * 8);
  const double total = since(t0);
  c.freeAll();
  return {total, solve};
}

std::string lot(Ctx& c, double dgemm) {
  const Layer vit[] = {{"vit.qkv", 2304, 768, 12}, {"vit.out", 768, 768, 12}, {"vit.fc1", 3072, 768, 12}, {"vit.fc2", 768, 3072, 12}};
  const Layer llama[] = {{"llama.qkvo", 4096, 4096, 4}, {"llama.gate_up", 11008, 4096, 2}, {"llama.down", 4096, 11008, 1}};
  std::ostringstream js;
  js << "[";
  bool first = true;
  double vitTotal = 0;
  for (int model = 0; model < 2; model++) {
    const size_t T = model == 0 ? 8 : 2;
    const Layer* layers = model == 0 ? vit : llama;
    const size_t count = model == 0 ? 4 : 3;
    for (size_t li = 0; li < count; li++) {
      const Layer& L = layers[li];
      std::vector<std::vector<float>> G, tau;
      for (size_t k = 0; k < T; k++) {
        G.push_back(gram(L.in, uint32_t(k + 1)));
        tau.push_back(values(L.out * L.in, uint32_t(100 + k), 0.01f));
      }
      lotLayer(c, L, T, G, tau);  // warm-up (pool, handles, JIT)
      const auto r = lotLayer(c, L, T, G, tau);
      const double in = double(L.in), out = double(L.out);
      const double flops = double(T) * 2 * out * in * in + in * in * in / 3 + 2 * out * in * in;
      const double tflops = flops / r.first / 1e12;
      if (model == 0) vitTotal += r.first * double(L.count);
      std::printf("LOT %-14s T=%zu %5zux%-5zu  %.4f s/layer (solve %.4f s)  %.2f TFLOP/s = %.0f%% of DGEMM\n", L.name, T, L.out, L.in,
                  r.first, r.second, tflops, 100 * tflops / dgemm);
      js << (first ? "" : ",") << "{\"layer\":\"" << L.name << "\",\"experts\":" << T << ",\"out\":" << L.out << ",\"in\":" << L.in
         << ",\"perModel\":" << L.count << ",\"seconds\":" << r.first << ",\"solveSeconds\":" << r.second << ",\"tflops\":" << tflops
         << ",\"fractionOfDgemm\":" << tflops / dgemm << "}";
      first = false;
    }
  }
  std::printf("LOT ViT-B/32, 8 experts, 12 blocks: %.3f s for the linear layers (target < 1 s)\n", vitTotal);
  js << "],\"lotVitSeconds\":" << vitTotal;
  return js.str();
}

// The batched solve entry (solve_psd_rows_batched) on each LOT shape, from host memory as
// the gram_solve op calls it: SOLVE_BATCH.layers (4, lib/methods/closed_form.ts) systems
// per call, or the layer's count per model when smaller; float64, float32, tf32. Seconds
// per system, TFLOP/s of the solve flops (in³/3 + 2·out·in²) against DGEMM, and the
// low-precision results' relative difference to float64 (docs/cuda.md's bound).
std::string batched(Ctx& c, double dgemm) {
  const Layer layers[] = {{"vit.qkv", 2304, 768, 12}, {"vit.out", 768, 768, 12}, {"vit.fc1", 3072, 768, 12}, {"vit.fc2", 768, 3072, 12},
                          {"llama.qkvo", 4096, 4096, 4}, {"llama.gate_up", 11008, 4096, 2}, {"llama.down", 4096, 11008, 1}};
  std::ostringstream js;
  js << "[";
  bool first = true;
  for (const Layer& L : layers) {
    const size_t count = L.count < 4 ? L.count : 4, in = L.in, out = L.out;
    // A = Σ of two Grams, B = a task vector times it: the systems a LOT merge solves.
    std::vector<float> g = gram(in, 1);
    std::vector<double> A0(in * in), B0(out * in);
    for (size_t i = 0; i < in * in; i++) A0[i] = 2.0 * double(g[i]);
    std::vector<float> t = values(out * in, 100, 0.01f);
    for (size_t i = 0; i < out * in; i++) B0[i] = double(t[i]) * double(in);
    std::vector<double> f64;
    const char* names[3] = {"float64", "float32", "tf32"};
    double secs[3] = {}, diff[3] = {};
    for (int p = 0; p < 3; p++) {
      std::vector<std::vector<double>> As(count, A0), Bs(count, B0);
      std::vector<double*> pa, pb;
      for (size_t i = 0; i < count; i++) {
        pa.push_back(As[i].data());
        pb.push_back(Bs[i].data());
      }
      std::vector<tm_solve_info> info(count);
      size_t done = 0;
      tm_error err{};
      const tm_solve_opts o{1, 1e-6, 0.0, tm_precision(p)};
      const auto t0 = Clock::now();
      c.ok(c.f->solve_psd_rows_batched(c.be, count, in, pa.data(), out, pb.data(), &o, info.data(), &done, &err), err, "solve_psd_rows_batched");
      secs[p] = since(t0) / double(count);
      if (p == 0) f64 = Bs[0];
      double num = 0, den = 0;
      for (size_t i = 0; i < f64.size(); i++) {
        num += (Bs[0][i] - f64[i]) * (Bs[0][i] - f64[i]);
        den += f64[i] * f64[i];
      }
      diff[p] = std::sqrt(num / (den > 0 ? den : 1));
    }
    const double flops = double(in) * double(in) * double(in) / 3 + 2.0 * double(out) * double(in) * double(in);
    std::printf("batched solve %-14s %5zux%-5zu x%zu: float64 %.4f s (%.2f TFLOP/s = %.0f%% of DGEMM), float32 %.4f s (rel. diff %.1e), tf32 %.4f s (%.1e)\n",
                L.name, out, in, count, secs[0], flops / secs[0] / 1e12, 100 * flops / secs[0] / 1e12 / dgemm, secs[1], diff[1], secs[2], diff[2]);
    js << (first ? "" : ",") << "{\"layer\":\"" << L.name << "\",\"systems\":" << count << ",\"out\":" << out << ",\"in\":" << in;
    for (int p = 0; p < 3; p++)
      js << ",\"" << names[p] << "\":{\"seconds\":" << secs[p] << ",\"tflops\":" << flops / secs[p] / 1e12 << ",\"relDiffToFloat64\":" << diff[p] << "}";
    js << "}";
    first = false;
  }
  js << "]";
  return js.str();
}

// Streaming: 8 bf16 experts + base, 64 Mi entries, through several kernels.
std::string streaming(Ctx& c) {
  const size_t n = size_t(64) << 20, T = 8;
  const size_t inBytes = (T + 1) * n * 2;
  std::vector<uint16_t> host((T + 1) * n);
  std::mt19937 r(3);
  for (auto& x : host) x = uint16_t(0x3c00 + (r() & 0x3ff));  // bf16 values around 0.008
  std::vector<tm_buffer*> in;
  for (size_t k = 0; k <= T; k++) in.push_back(c.alloc(n * 2));
  tm_buffer* out = c.alloc(n * 2);
  std::vector<uint16_t> result(n);
  // The read floor: the inputs copied host → device.
  c.sync();
  auto t0 = Clock::now();
  for (size_t k = 0; k <= T; k++) c.put(in[k], host.data() + k * n, n * 2);
  c.sync();
  const double floor = double(inBytes) / since(t0) / 1e9;
  std::vector<const void*> experts;
  std::vector<tm_dtype> types(T, TM_BF16);
  for (size_t k = 1; k <= T; k++) experts.push_back(c.data(in[k]));
  const tm_chunk ch{c.data(in[0]), TM_BF16, T, experts.data(), types.data(), n, 0, c.data(out), TM_BF16};
  std::vector<double> coeffs(T, 0.3);
  std::vector<uint32_t> thr(T, 0x3b000000u);
  const tm_trim none{TM_TRIM_NONE, nullptr, nullptr, 1, nullptr, 0, 0};
  const tm_trim dare{TM_TRIM_DARE, nullptr, nullptr, 0.5, nullptr, 7, 0x1234};
  const tm_trim mag{TM_TRIM_MAGNITUDE, thr.data(), nullptr, 1, nullptr, 0, 0};
  const tm_ties_merge_args ta{1, 1, 1.0};
  const tm_work w{nullptr, 0};
  struct Method {
    const char* name;
    std::function<tm_status(tm_error*)> run;
  };
  const Method methods[] = {
      {"task_arithmetic", [&](tm_error* e) { return c.f->linear_combine(c.be, &ch, &none, coeffs.data(), w, e); }},
      {"dare_linear", [&](tm_error* e) { return c.f->linear_combine(c.be, &ch, &dare, coeffs.data(), w, e); }},
      {"ties_merge", [&](tm_error* e) { return c.f->ties_merge(c.be, &ch, &mag, &ta, w, e); }},
  };
  std::ostringstream js;
  js << "{\"entries\":" << n << ",\"experts\":" << T << ",\"dtype\":\"bf16\",\"readFloorGBs\":" << floor << ",\"methods\":[";
  std::printf("streaming: 8 bf16 experts, %zu Mi entries a chunk; read floor (host→device) %.1f GB/s\n", n >> 20, floor);
  bool first = true;
  for (const Method& m : methods) {
    tm_error err{};
    c.ok(m.run(&err), err, m.name);  // warm-up
    c.sync();
    t0 = Clock::now();
    for (int k = 0; k < 5; k++) c.ok(m.run(&err), err, m.name);
    c.sync();
    const double kernel = 5.0 * double(inBytes) / since(t0) / 1e9;
    t0 = Clock::now();
    for (size_t k = 0; k <= T; k++) c.put(in[k], host.data() + k * n, n * 2);
    c.ok(m.run(&err), err, m.name);
    c.get(result.data(), out, n * 2);
    const double e2e = double(inBytes) / since(t0) / 1e9;
    std::printf("  %-16s kernel %.0f GB/s, end to end %.1f GB/s = %.0f%% of the read floor\n", m.name, kernel, e2e, 100 * e2e / floor);
    js << (first ? "" : ",") << "{\"method\":\"" << m.name << "\",\"kernelGBs\":" << kernel << ",\"endToEndGBs\":" << e2e
       << ",\"fractionOfFloor\":" << e2e / floor << "}";
    first = false;
  }
  js << "]}";
  c.freeAll();
  return js.str();
}

}  // namespace

int runBench(Loaded& l, const std::string& outDir) {
  Ctx c(l);
  tm_error err{};
  double rate[3] = {};
  const char* names[3] = {"dgemm", "sgemm", "tf32"};
  for (int p = 0; p < 3; p++) {
    c.ok(l.gemmRate(l.be, 8192, p, 1.0, &rate[p], &err), err, names[p]);
    std::printf("cuBLAS %s 8192³: %.1f TFLOP/s\n", names[p], rate[p]);
  }
  std::ostringstream js;
  js << "{\"device\":\"" << l.device.description << "\",\"gemmTflops\":{\"dgemm\":" << rate[0] << ",\"sgemm\":" << rate[1]
     << ",\"tf32\":" << rate[2] << "},\"lot\":" << lot(c, rate[0]) << ",\"batchedSolve\":" << batched(c, rate[0])
     << ",\"streaming\":" << streaming(c) << "}\n";
  std::ofstream(outDir + "/bench.json") << js.str();
  return 0;
}

}  // namespace tmcheck
