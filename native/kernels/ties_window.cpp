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
// The lists, cursors, tabled counts and the sample are state buffers (handles
// from state_alloc, on the op's device): they stay there for the whole pass,
// and the host-side ops (bounds, pick) read back once per selection only what
// they use (on the CPU backend they read them in place).
//
// Op "ties_sample": chunk arguments + bits (state: T regions of m uint32) + m +
//   at → writes the float32 bits of |τt| of the chunk's entries to region t at `at`.
// Op "ties_window_bounds": bits (state, as above, in sample order) + m + blockLens +
//   p (= k/n) + z → lo, hi per task: the sample's ranks p·m ∓ z·se, where se is
//   the larger of the binomial and the block-to-block standard error of the
//   sample fraction above the sample's own threshold; table (T × 16): the
//   window's distinct sample values when there are few and heavily tied;
//   inWindow: the sample entries inside each window that the table does not
//   cover (sizes the candidate lists).
//   Heavily tied windows (bf16 task vectors take few distinct values) get a
//   table of up to 16 values per task (−1 = none), counted per value.
// Op "ties_window": chunk arguments + lo, hi, table, tableCounts / tableDiffs
//   (states: T × 16 uint64 / int64), capacity C, cand (state: T × C uint32),
//   candDiff (state: T × C int8), used (state: T uint64 cursors), multiCap →
//   above (per task), signBase,
//   atHi (per task: entries equal to hi), multi, overflow (multi), full (a
//   candidate list overflowed).
// Op "ties_window_pick": cand, candDiff, used, tableCounts, tableDiffs (the
//   states of ties_window; of each task's list only the used[t] entries are
//   read), capacity, table, above, atHi, k → thresholds (bits), ok (per task: 0
//   when the k-th largest lies outside the window), diffSum.
#include <algorithm>
#include <memory>
#include <atomic>
#include <cmath>
#include <functional>
#include <mutex>

#include <cstring>

#include "../boundary/args.h"
#include "../boundary/device_call.h"
#include "../core/parallel.h"

namespace taskmerge {

// Values a task's window holds in bulk (ties, as bf16 task vectors have):
// counted per value instead of one list entry each.
constexpr size_t kTable = 16;

static void tiesSampleOp(const OpArgs& a, OpResult&) {
  boundary::Chunk c(a, boundary::Out::None);
  const size_t T = c.T(), m = boundary::count(a, "m"), at = boundary::count(a, "at");
  if (at + c.n() > m) throw ArgumentError("at", -1, "the chunk must fit in the sample of m entries at `at`");
  const boundary::State bits = boundary::state(a, "bits", T * m * sizeof(uint32_t));
  boundary::DeviceCall d(a);
  tm_chunk dc = d.chunk(c.get());
  auto fn = d.entry(d.iface().ties_sample, "ties_sample");
  d.check(fn(&d.backend(), &dc, d.state<uint32_t>(bits), m, at, d.work(TM_K_TIES_SAMPLE, T, c.n()), d.err()), "ties_sample");
}

static void tiesWindowBoundsOp(const OpArgs& a, OpResult& r) {
  const size_t m = boundary::count(a, "m");
  const double p = a.num("p"), z = a.num("z");
  const auto& lens = a.numList("blockLens");
  const boundary::State bits = boundary::state(a, "bits");
  const size_t bytes = bits.buffer().bytes();
  if (m == 0 || bytes % (m * 4)) throw ArgumentError("bits", -1, "must hold T × m uint32");
  if (!(p > 0 && p <= 1) || !(z >= 0)) throw ArgumentError("p", -1, "p must be in (0, 1] and z ≥ 0");
  double total = 0;
  for (double l : lens) total += l;
  if (total != double(m) || lens.size() < 1) throw ArgumentError("blockLens", -1, "block lengths must add up to m");
  const size_t T = bytes / (m * 4);
  std::vector<uint8_t> copy;
  const uint32_t* all = static_cast<const uint32_t*>(bits.buffer().view(0, bytes, copy));
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

static void tiesWindowOp(const OpArgs& a, OpResult& r) {
  boundary::Chunk c(a, boundary::Out::None);
  const size_t T = c.T();
  const std::vector<uint32_t> lo = boundary::bitsPerExpert(a, "lo", T), hi = boundary::bitsPerExpert(a, "hi", T);
  for (size_t t = 0; t < T; t++)
    if (hi[t] < lo[t]) throw ArgumentError("hi", (long long)t, "below lo");
  const size_t C = boundary::count(a, "capacity");
  const boundary::State cand = boundary::state(a, "cand", T * C * 4), candDiff = boundary::state(a, "candDiff", T * C),
                        used = boundary::state(a, "used", T * 8);
  const auto& tableArg = a.numList("table");
  if (tableArg.size() != T * kTable) throw ArgumentError("table", -1, "must hold T × 16 values (−1 for none)");
  std::vector<uint32_t> table(T * kTable, 0xffffffffu);  // no |τ| has these bits
  for (size_t j = 0; j < T * kTable; j++)
    if (tableArg[j] >= 0) table[j] = uint32_t(tableArg[j]);
  const boundary::State tableCounts = boundary::state(a, "tableCounts", T * kTable * 8),
                        tableDiffs = boundary::state(a, "tableDiffs", T * kTable * 8);
  const size_t cap = std::min(size_t(std::max(0.0, a.num("multiCap"))), c.n());
  // Room for `cap` entries, left uninitialised: the kernel writes only the
  // multi_count it returns, and zeroing up to T × chunk floats per chunk (a
  // fresh mmap each time) cost TIES global about 10% of its wall time.
  std::unique_ptr<float[]> multi(new float[cap * T]);
  std::vector<uint64_t> above(T, 0), atHi(T, 0);
  boundary::DeviceCall d(a);
  tm_chunk dc = d.chunk(c.get());
  const tm_window_args args{lo.data(), hi.data(), table.data(), C, d.state<uint32_t>(cand), d.state<int8_t>(candDiff), d.state<uint64_t>(used),
                            d.state<uint64_t>(tableCounts), d.state<int64_t>(tableDiffs), cap, multi.get()};
  tm_window_result res{above.data(), atHi.data(), 0, 0, 0, 0};
  auto fn = d.entry(d.iface().ties_window, "ties_window");
  d.check(fn(&d.backend(), &dc, &args, &res, d.work(TM_K_TIES_WINDOW, T, c.n()), d.err()), "ties_window");
  auto& ab = r.numLists["above"];
  auto& eqs = r.numLists["atHi"];
  for (size_t t = 0; t < T; t++) ab.push_back(double(above[t])), eqs.push_back(double(atHi[t]));
  r.nums["signBase"] = double(res.sign_base);
  r.nums["overflow"] = res.overflow ? 1 : 0;
  r.nums["full"] = res.full ? 1 : 0;
  auto& out = r.bufs["multi"];
  out.resize(res.multi_count * T * sizeof(float));
  if (!out.empty()) std::memcpy(out.data(), multi.get(), out.size());
}

static void tiesWindowPickOp(const OpArgs& a, OpResult& r) {
  const auto& above = a.numList("above");
  const auto& atHi = a.numList("atHi");
  const size_t T = above.size();
  const std::vector<uint32_t> hi = boundary::bitsPerExpert(a, "hi", T);
  boundary::perExpert(a, "atHi", T);
  const size_t C = boundary::count(a, "capacity");
  const double k = a.num("k");
  if (!(k >= 1)) throw ArgumentError("k", -1, "must be at least 1");
  const boundary::State candState = boundary::state(a, "cand", T * C * 4), candDiffState = boundary::state(a, "candDiff", T * C);
  const auto& table = a.numList("table");
  if (table.size() != T * kTable) throw ArgumentError("table", -1, "must hold T × 16 values");
  // Read back once per selection: the cursors and tables, then each list's used part only.
  std::vector<uint8_t> usedCopy, countsCopy, diffsCopy;
  const uint64_t* used = static_cast<const uint64_t*>(boundary::state(a, "used", T * 8).buffer().view(0, T * 8, usedCopy));
  const uint64_t* tableCounts =
      static_cast<const uint64_t*>(boundary::state(a, "tableCounts", T * kTable * 8).buffer().view(0, T * kTable * 8, countsCopy));
  const int64_t* tableDiffs =
      static_cast<const int64_t*>(boundary::state(a, "tableDiffs", T * kTable * 8).buffer().view(0, T * kTable * 8, diffsCopy));
  for (size_t t = 0; t < T; t++)
    if (used[t] > C) throw ArgumentError("used", (long long)t, "a candidate list overflowed");
  std::vector<std::vector<uint8_t>> candCopy(T), diffCopy(T);
  std::vector<const uint32_t*> cands(T);
  std::vector<const int8_t*> candDiffs(T);
  for (size_t t = 0; t < T; t++) {
    cands[t] = static_cast<const uint32_t*>(candState.buffer().view(t * C * 4, size_t(used[t]) * 4, candCopy[t]));
    candDiffs[t] = static_cast<const int8_t*>(candDiffState.buffer().view(t * C, size_t(used[t]), diffCopy[t]));
  }
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
      const uint32_t* ct = cands[t];
      const int8_t* dt = candDiffs[t];
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
