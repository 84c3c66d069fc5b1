// Exact TIES thresholds and majority sign in one streamed pass, given a
// window per task that a sample says holds the k-th largest |τt|.
//
// For non-negative floats the IEEE bits order like the values, so the window
// is a range of float32 bits [lo_t, hi_t]. If the threshold lies in it (checked
// after the pass), entries at or above hi_t are kept whatever its exact value
// and entries below lo_t dropped; only the few in [lo_t, hi_t) are undecided
// (none at all when the window is one heavily tied value, lo = hi). One pass
// counts, per task, the entries at or above hi_t (and those equal to it) and
// collects the bits of every undecided |τ| (a
// caller-owned list of `capacity` entries per task), which pins the k-th
// largest exactly once the pass is over. The majority sign Σ sign(Σt τ̂t)
// comes with it: an entry with no task inside its window has a known elected
// sign (added to signBase); one with a single task u inside adds s_drop to
// signBase and stores s_keep − s_drop next to u's collected bits, so the exact
// sum is signBase plus the stored differences of the entries kept; entries
// with several tasks inside are returned whole (multi: T float32 τ per entry,
// at most multiCap entries, else overflow).
//
// Op "ties_sample": chunk arguments + bits (T regions of m uint32) + m + at →
//   writes the float32 bits of |τt| of the chunk's entries to region t at `at`.
// Op "ties_window_bounds": bits (as above, in sample order) + m + blockLens +
//   p (= k/n) + z → lo, hi per task: the sample's ranks p·m ∓ z·se, where se is
//   the larger of the binomial and the block-to-block standard error of the
//   sample fraction above the sample's own threshold; table (T × 16): the
//   window's distinct sample values when there are few and heavily tied;
//   inWindow: the sample entries inside each window that the table does not
//   cover (sizes the candidate lists).
//   Heavily tied windows (bf16 task vectors take few distinct values) get a
//   table of up to 16 values per task (−1 = none), counted per value.
// Op "ties_window": chunk arguments + lo, hi, table, tableCounts / tableDiffs
//   (T × 16 uint64 / int64), capacity C, cand (T × C uint32), candDiff (T × C
//   int8), used (T uint64 cursors), multiCap → above (per task), signBase,
//   atHi (per task: entries equal to hi), multi, overflow (multi), full (a
//   candidate list overflowed).
// Op "ties_window_pick": cand, candDiff, used, capacity, table, tableCounts,
//   tableDiffs, above, atHi, k → thresholds (bits), ok (per task: 0 when the k-th
//   largest lies outside the window), diffSum.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <mutex>

#include "../core/parallel.h"
#include "../core/simd.h"
#include "../core/trim.h"

namespace taskmerge {

// Values a task's window holds in bulk (ties, as bf16 task vectors have):
// counted per value instead of one list entry each.
constexpr size_t kTable = 16;

static std::vector<uint32_t> bitsList(const OpArgs& a, const char* name, size_t T) {
  const auto& v = a.numList(name);
  if (v.size() != T) throw Error(std::string("ties_window: one ") + name + " per expert");
  std::vector<uint32_t> out;
  for (double x : v) {
    if (!(x >= 0 && x <= double(0x7f800000u)) || x != std::floor(x)) throw Error(std::string("ties_window: ") + name + " bits out of range");
    out.push_back(uint32_t(x));
  }
  return out;
}

template <class V>
static V* typed(const OpArgs& a, const char* name, size_t count) {
  Bytes b = a.buf(name);
  if (b.size != count * sizeof(V)) throw Error(std::string("ties_window: ") + name + " has the wrong size");
  if (reinterpret_cast<uintptr_t>(b.data) % alignof(V)) throw Error(std::string("ties_window: ") + name + " is misaligned");
  return reinterpret_cast<V*>(b.data);
}

static size_t capacityArg(const OpArgs& a) {
  const double c = a.num("capacity");
  if (!(c >= 0 && c <= 9007199254740992.0) || c != std::floor(c)) throw Error("ties_window: capacity out of range");
  return size_t(c);
}

static void tiesSampleOp(const OpArgs& a, OpResult&) {
  ElementwiseChunk c = parseChunk(a);
  const size_t T = c.experts.size(), m = size_t(a.num("m")), at = size_t(a.num("at"));
  Bytes bits = a.buf("bits");
  if (bits.size != T * m * 4 || at + c.n > m) throw Error("ties_sample: bits must hold T × m uint32 and the chunk must fit at `at`");
  uint32_t* out = reinterpret_cast<uint32_t*>(bits.data);
  forEachBlock(c, [&](Block& b) {
    for (size_t t = 0; t < b.T; t++) {
      uint32_t* dst = out + t * m + at + (b.index - c.offset);
      for (size_t i = 0; i < b.n; i++) dst[i] = absBits(b.tau[t][i]);
    }
  });
}

static void tiesWindowBoundsOp(const OpArgs& a, OpResult& r) {
  const size_t m = size_t(a.num("m"));
  const double p = a.num("p"), z = a.num("z");
  const auto& lens = a.numList("blockLens");
  Bytes bits = a.buf("bits");
  if (m == 0 || bits.size % (m * 4)) throw Error("ties_window_bounds: bits must hold T × m uint32");
  if (!(p > 0 && p <= 1) || !(z >= 0)) throw Error("ties_window_bounds: p must be in (0, 1] and z ≥ 0");
  double total = 0;
  for (double l : lens) total += l;
  if (total != double(m) || lens.size() < 1) throw Error("ties_window_bounds: block lengths must add up to m");
  const size_t T = bits.size / (m * 4);
  const uint32_t* all = reinterpret_cast<const uint32_t*>(bits.data);
  auto& lo = r.numLists["lo"];
  auto& hi = r.numLists["hi"];
  auto& se = r.numLists["se"];
  auto& inWindow = r.numLists["inWindow"];
  auto& table = r.numLists["table"];
  std::vector<uint32_t> sorted(m);
  // Bits at descending rank `rank` (1-based) of the sample.
  auto at = [&](size_t rank) {
    auto nth = sorted.begin() + (rank - 1);
    std::nth_element(sorted.begin(), nth, sorted.end(), std::greater<uint32_t>());
    return *nth;
  };
  for (size_t t = 0; t < T; t++) {
    const uint32_t* s = all + t * m;
    std::copy(s, s + m, sorted.begin());
    const size_t rank = std::min(m, std::max<size_t>(1, size_t(std::ceil(p * double(m)))));
    const uint32_t q = at(rank);
    // Block-to-block spread of the fraction at or above q (a cluster sample's standard error).
    const size_t B = lens.size();
    double above = 0, ss = 0;
    std::vector<double> counts(B);
    size_t pos = 0;
    for (size_t b = 0; b < B; b++) {
      const size_t len = size_t(lens[b]);
      size_t cnt = 0;
      for (size_t i = 0; i < len; i++) cnt += s[pos + i] >= q;
      counts[b] = double(cnt);
      above += double(cnt);
      pos += len;
    }
    const double ph = above / double(m), meanLen = double(m) / double(B);
    for (size_t b = 0; b < B; b++) {
      const double d = counts[b] - ph * lens[b];
      ss += d * d;
    }
    // One block (only a scope that small, or a test's tiny sample) has no spread to measure.
    const double seCluster = B > 1 ? std::sqrt(ss / (double(B) * double(B - 1))) / meanLen : 0.0;
    const double seBinomial = std::sqrt(p * (1 - p) / double(m));
    const double err = std::max(seCluster, seBinomial);
    const double delta = z * err + 4.0 / double(m);
    const double rHi = std::floor((p - delta) * double(m)), rLo = std::ceil((p + delta) * double(m));
    const uint32_t h = rHi >= 1 ? at(size_t(rHi)) : 0x7f800000u, l = rLo <= double(m) ? at(size_t(rLo)) : 0;
    // In-window values: the sample's distinct ones (when at most kTable) become
    // the task's table; inWindow counts the sample entries left for the list.
    std::vector<uint32_t> vals;
    for (size_t i = 0; i < m; i++)
      if (s[i] >= l && s[i] < h) vals.push_back(s[i]);
    std::sort(vals.begin(), vals.end());
    const size_t inside = vals.size();
    vals.erase(std::unique(vals.begin(), vals.end()), vals.end());
    const bool tabled = vals.size() <= kTable && inside >= 4 * vals.size();  // worth it only for heavy ties
    for (size_t j = 0; j < kTable; j++) table.push_back(tabled && j < vals.size() ? double(vals[j]) : -1);
    hi.push_back(double(h));
    lo.push_back(double(l));
    se.push_back(err);
    inWindow.push_back(tabled ? 0 : double(inside));
  }
}

// Per block: which side of its window each |τt| lies on, and the sums the
// elected signs need (task order, dropped entries as ±0, as electedSign).
TM_SIMD static void classifyWindow(const float* const* tau, size_t T, size_t n, const uint32_t* lo, const uint32_t* hi,
                                   double* sum, double* keep, int32_t* nin, int32_t* last, uint64_t* above, uint64_t* atHi) {
  for (size_t i = 0; i < n; i++) sum[i] = keep[i] = 0, nin[i] = last[i] = 0;
  for (size_t t = 0; t < T; t++) {
    const float* x = tau[t];
    const uint32_t l = lo[t], h = hi[t];
    const int32_t tt = int32_t(t);
    int32_t count = 0, equal = 0;
    for (size_t i = 0; i < n; i++) {
      uint32_t u;
      std::memcpy(&u, x + i, 4);
      u &= 0x7fffffffu;
      const int32_t a = u >= h, in = (u >= l) & (u < h);
      equal += u == h;
      sum[i] += double(x[i]) * double(a);
      keep[i] += double(x[i]) * double(a | in);
      nin[i] += in;
      last[i] = in ? tt : last[i];
      count += a;
    }
    above[t] += uint64_t(count);
    atHi[t] += uint64_t(equal);
  }
}

// Σ of the elected signs of the entries with no task inside its window.
TM_SIMD static int64_t decidedSigns(const double* sum, const int32_t* nin, size_t n) {
  int64_t s = 0;
  for (size_t i = 0; i < n; i++) {
    const double v = sum[i];
    const int64_t sg = int64_t(v > 0) - int64_t(v < 0);
    s += nin[i] == 0 ? sg : 0;
  }
  return s;
}

static inline int signOf(double v) { return (v > 0) - (v < 0); }

// One worker's scratch for a block of the window pass.
struct WindowScratch {
  std::vector<double> sum = std::vector<double>(kBlockElems), keep = std::vector<double>(kBlockElems);
  std::vector<int32_t> nin = std::vector<int32_t>(kBlockElems), last = std::vector<int32_t>(kBlockElems);
  std::vector<uint64_t> ab, eq;
  std::vector<std::vector<uint32_t>> bits;  // undecided |τ| bits per task (not tabled)
  std::vector<std::vector<int8_t>> diff;    // their s_keep − s_drop
  std::vector<uint32_t> tc;                 // tabled values: counts
  std::vector<int32_t> td;                  // and sign differences
  std::vector<float> multi;                 // entries with several undecided tasks

  void reset(size_t T) {
    ab.assign(T, 0);
    eq.assign(T, 0);
    bits.resize(T);
    diff.resize(T);
    for (size_t t = 0; t < T; t++) bits[t].clear(), diff[t].clear();
    tc.assign(T * kTable, 0);
    td.assign(T * kTable, 0);
    multi.clear();
  }
};

static void tiesWindowOp(const OpArgs& a, OpResult& r) {
  ElementwiseChunk c = parseChunk(a);
  const size_t T = c.experts.size();
  const std::vector<uint32_t> lo = bitsList(a, "lo", T), hi = bitsList(a, "hi", T);
  for (size_t t = 0; t < T; t++)
    if (hi[t] < lo[t]) throw Error("ties_window: hi below lo");
  const size_t C = capacityArg(a);
  uint32_t* cand = typed<uint32_t>(a, "cand", T * C);
  int8_t* candDiff = typed<int8_t>(a, "candDiff", T * C);
  uint64_t* used = typed<uint64_t>(a, "used", T);
  const auto& tableArg = a.numList("table");
  if (tableArg.size() != T * kTable) throw Error("ties_window: table must hold T × 16 values (−1 for none)");
  std::vector<uint32_t> table(T * kTable, 0xffffffffu);  // no |τ| has these bits
  for (size_t j = 0; j < T * kTable; j++)
    if (tableArg[j] >= 0) table[j] = uint32_t(tableArg[j]);
  uint64_t* tableCounts = typed<uint64_t>(a, "tableCounts", T * kTable);
  int64_t* tableDiffs = typed<int64_t>(a, "tableDiffs", T * kTable);
  const size_t cap = size_t(std::max(0.0, a.num("multiCap")));
  std::vector<std::atomic<uint64_t>> above(T), atHi(T);
  std::atomic<int64_t> signBase{0};
  std::atomic<bool> full{false};
  std::mutex mu;
  std::vector<float> multi;
  bool overflow = false;
  forEachBlock(c, [&](Block& b) {
    // Per-thread block scratch, reused: no allocation per block.
    thread_local WindowScratch sc;
    sc.reset(T);
    double* sum = sc.sum.data();
    double* keep = sc.keep.data();
    int32_t* nin = sc.nin.data();
    int32_t* last = sc.last.data();
    std::vector<uint64_t>&ab = sc.ab, &eq = sc.eq;
    classifyWindow(b.tau, b.T, b.n, lo.data(), hi.data(), sum, keep, nin, last, ab.data(), eq.data());
    int64_t base = decidedSigns(sum, nin, b.n);
    // The undecided entries (a few percent): bits and sign differences per task.
    auto& bits = sc.bits;
    auto& diff = sc.diff;
    auto& tc = sc.tc;
    auto& td = sc.td;
    auto& lmulti = sc.multi;
    // A tabled value is counted in place; any other goes to the list.
    auto record = [&](size_t t, uint32_t x, int d) {
      const uint32_t* row = table.data() + t * kTable;
      for (size_t j = 0; j < kTable; j++)
        if (row[j] == x) {
          tc[t * kTable + j]++;
          td[t * kTable + j] += d;
          return;
        }
      bits[t].push_back(x);
      diff[t].push_back(int8_t(d));
    };
    for (size_t i = 0; i < b.n; i++) {
      if (nin[i] == 0) continue;
      if (nin[i] == 1) {
        const size_t u = size_t(last[i]);
        const int sDrop = signOf(sum[i]), sKeep = signOf(keep[i]);
        base += sDrop;
        record(u, absBits(b.tau[u][i]), sKeep - sDrop);
        continue;
      }
      for (size_t t = 0; t < b.T; t++) {
        const uint32_t x = absBits(b.tau[t][i]);
        if (x >= lo[t] && x < hi[t]) record(t, x, 0);
        lmulti.push_back(b.tau[t][i]);
      }
    }
    for (size_t j = 0; j < T * kTable; j++) {
      if (tc[j]) __atomic_fetch_add(&tableCounts[j], uint64_t(tc[j]), __ATOMIC_RELAXED);
      if (td[j]) __atomic_fetch_add(&tableDiffs[j], int64_t(td[j]), __ATOMIC_RELAXED);
    }
    for (size_t t = 0; t < T; t++) {
      above[t] += ab[t];
      atHi[t] += eq[t];
      const size_t len = bits[t].size();
      if (!len) continue;
      const uint64_t at = __atomic_fetch_add(&used[t], uint64_t(len), __ATOMIC_RELAXED);
      if (at + len > C) {
        full = true;
        continue;
      }
      std::memcpy(cand + t * C + at, bits[t].data(), len * 4);
      std::memcpy(candDiff + t * C + at, diff[t].data(), len);
    }
    signBase += base;
    if (lmulti.empty()) return;
    std::lock_guard<std::mutex> lock(mu);
    if (overflow || (multi.size() + lmulti.size()) / T > cap) overflow = true;
    else multi.insert(multi.end(), lmulti.begin(), lmulti.end());
  });
  auto& ab = r.numLists["above"];
  auto& eqs = r.numLists["atHi"];
  for (size_t t = 0; t < T; t++) ab.push_back(double(above[t].load())), eqs.push_back(double(atHi[t].load()));
  r.nums["signBase"] = double(signBase.load());
  r.nums["overflow"] = overflow ? 1 : 0;
  r.nums["full"] = full ? 1 : 0;
  auto& out = r.bufs["multi"];
  if (!overflow) {
    out.resize(multi.size() * sizeof(float));
    if (!multi.empty()) std::memcpy(out.data(), multi.data(), out.size());
  }
}

static void tiesWindowPickOp(const OpArgs& a, OpResult& r) {
  const auto& above = a.numList("above");
  const auto& atHi = a.numList("atHi");
  const size_t T = above.size();
  const std::vector<uint32_t> hi = bitsList(a, "hi", T);
  if (atHi.size() != T) throw Error("ties_window_pick: one atHi per expert");
  const size_t C = capacityArg(a);
  const double k = a.num("k");
  if (!(k >= 1)) throw Error("ties_window_pick: k must be at least 1");
  const uint32_t* cand = typed<uint32_t>(a, "cand", T * C);
  const int8_t* candDiff = typed<int8_t>(a, "candDiff", T * C);
  const uint64_t* used = typed<uint64_t>(a, "used", T);
  const auto& table = a.numList("table");
  if (table.size() != T * kTable) throw Error("ties_window_pick: table must hold T × 16 values");
  const uint64_t* tableCounts = typed<uint64_t>(a, "tableCounts", T * kTable);
  const int64_t* tableDiffs = typed<int64_t>(a, "tableDiffs", T * kTable);
  for (size_t t = 0; t < T; t++)
    if (used[t] > C) throw Error("ties_window_pick: a candidate list overflowed");
  std::vector<double> thr(T, 0), ok(T, 0), dsum(T, 0);
  parallelFor(T, 1, [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; t++) {
      // (bits, count, sign difference) of every in-window value, largest bits first.
      struct Entry {
        uint32_t bits;
        uint64_t count;
        int64_t diff;
      };
      std::vector<Entry> e;
      for (size_t j = 0; j < kTable; j++)
        if (table[t * kTable + j] >= 0 && tableCounts[t * kTable + j])
          e.push_back({uint32_t(table[t * kTable + j]), tableCounts[t * kTable + j], tableDiffs[t * kTable + j]});
      const uint32_t* ct = cand + t * C;
      const int8_t* dt = candDiff + t * C;
      for (size_t i = 0; i < size_t(used[t]); i++) e.push_back({ct[i], 1, dt[i]});
      std::sort(e.begin(), e.end(), [](const Entry& x, const Entry& y) { return x.bits > y.bits; });
      if (above[t] - atHi[t] >= k) continue;  // the threshold lies above hi: a miss
      if (above[t] >= k) {                    // it is hi itself; every undecided entry is dropped
        thr[t] = double(hi[t]);
        ok[t] = 1;
        continue;
      }
      const double rank = k - above[t];  // rank of the threshold among the undecided entries
      double seen = 0;
      int64_t d = 0;
      for (size_t i = 0; rank >= 1 && i < e.size(); i++) {
        seen += double(e[i].count);
        d += e[i].diff;
        // Entries with the threshold's bits are all kept: take the whole run of equal bits.
        if (seen >= rank && (i + 1 == e.size() || e[i + 1].bits != e[i].bits)) {
          thr[t] = double(e[i].bits);
          ok[t] = 1;
          dsum[t] = double(d);
          break;
        }
      }
    }
  });
  double diffSum = 0;
  for (size_t t = 0; t < T; t++) diffSum += dsum[t];
  r.numLists["thresholds"] = thr;
  r.numLists["ok"] = ok;
  r.nums["diffSum"] = diffSum;
}

TM_REGISTER_OP("ties_sample", tiesSampleOp);
TM_REGISTER_OP("ties_window_bounds", tiesWindowBoundsOp);
TM_REGISTER_OP("ties_window", tiesWindowOp);
TM_REGISTER_OP("ties_window_pick", tiesWindowPickOp);

}  // namespace taskmerge
