#include "args.h"

#include <cmath>

#include "../core/counter_rng.h"

namespace taskmerge {
namespace boundary {

tm_dtype floatDtype(const std::string& name, const std::string& key, long long index) {
  DType t = parseDType(name);
  if (!isFloat(t)) throw ArgumentError(key, index, "not a floating-point tensor");
  return tm_dtype(int(t));
}

tm_dtype floatDtype(const OpArgs& a, const std::string& key) { return floatDtype(a.str(key), key); }

static size_t checkedCount(double v, const std::string& key, double max) {
  if (!(v >= 0 && v <= max) || v != std::floor(v))
    throw ArgumentError(key, -1, "must be an integer in [0, " + std::to_string((long long)max) + "]");
  return size_t(v);
}

size_t count(const OpArgs& a, const std::string& key, double max) { return checkedCount(a.num(key), key, max); }

size_t count(const OpArgs& a, const std::string& key, size_t fallback, double max) {
  return a.has(key) ? checkedCount(a.num(key), key, max) : fallback;
}

static void checkBytes(const Bytes& b, size_t bytes, const std::string& key, long long index) {
  if (b.size != bytes)
    throw ArgumentError(key, index, "expected " + std::to_string(bytes) + " bytes, got " + std::to_string(b.size));
}

Bytes sized(const OpArgs& a, const std::string& key, size_t bytes) {
  Bytes b = a.buf(key);
  checkBytes(b, bytes, key, -1);
  return b;
}

Bytes floats(const OpArgs& a, const std::string& key, size_t n, tm_dtype t) {
  return sized(a, key, n * dtypeSize(DType(int(t))));
}

std::shared_ptr<StateHandle> stateHandle(const OpArgs& a, const std::string& key) {
  auto it = a.states.find(key);
  if (it == a.states.end() || !it->second) throw ArgumentError(key, -1, "missing state buffer (a handle from state_alloc)");
  return it->second;
}

State state(const OpArgs& a, const std::string& key) {
  std::shared_ptr<StateBuffer> b = stateHandle(a, key)->get();
  if (!b) throw ArgumentError(key, -1, "the state buffer was freed (state_free) before this use");
  return State(std::move(b), key);
}

State state(const OpArgs& a, const std::string& key, size_t bytes) {
  State s = state(a, key);
  if (s.buffer().bytes() != bytes)
    throw ArgumentError(key, -1, "state buffer of " + std::to_string(s.buffer().bytes()) + " bytes, expected " + std::to_string(bytes));
  return s;
}

const std::vector<double>& perExpert(const OpArgs& a, const std::string& key, size_t T) {
  const auto& v = a.numList(key);
  if (v.size() != T) throw ArgumentError(key, -1, "expected one value per expert (" + std::to_string(T) + "), got " + std::to_string(v.size()));
  return v;
}

std::vector<uint32_t> bitsPerExpert(const OpArgs& a, const std::string& key, size_t T) {
  std::vector<uint32_t> out;
  for (double v : perExpert(a, key, T)) {
    if (!(v >= 0 && v <= double(0x7f800000u)) || v != std::floor(v))
      throw ArgumentError(key, (long long)out.size(), "float32 bits out of range");
    out.push_back(uint32_t(v));
  }
  return out;
}

Chunk::Chunk(const OpArgs& a, Out out) {
  c_.n = count(a, "n");
  c_.offset = count(a, "offset", size_t(0), 9007199254740992.0);
  c_.base_dtype = floatDtype(a, "baseDtype");
  Bytes base = a.buf("base");
  checkBytes(base, c_.n * dtypeSize(DType(int(c_.base_dtype))), "base", -1);
  c_.base = base.data;
  const auto& experts = a.bufList("experts");
  const auto& types = a.strList("expertDtypes");
  if (experts.empty()) throw ArgumentError("experts", -1, "no experts given");
  if (experts.size() != types.size()) throw ArgumentError("expertDtypes", -1, "one dtype per expert");
  for (size_t t = 0; t < experts.size(); t++) {
    tm_dtype dt = floatDtype(types[t], "expert", (long long)t);
    checkBytes(experts[t], c_.n * dtypeSize(DType(int(dt))), "expert", (long long)t);
    experts_.push_back(experts[t].data);
    types_.push_back(dt);
  }
  c_.T = experts_.size();
  c_.experts = experts_.data();
  c_.expert_dtypes = types_.data();
  c_.out = nullptr;
  c_.out_dtype = TM_F32;
  if (out == Out::Required && !a.bufs.count("out")) throw ArgumentError("out", -1, "missing out buffer");
  if (out != Out::None && a.bufs.count("out")) {
    c_.out_dtype = floatDtype(a, "outDtype");
    c_.out = floats(a, "out", c_.n, c_.out_dtype).data;
  }
}

static uint64_t seedArg(const OpArgs& a) {
  double seed = a.num("seed");
  if (!(seed >= 0 && seed <= 9007199254740992.0) || seed != std::floor(seed))
    throw ArgumentError("seed", -1, "must be a non-negative integer");
  return uint64_t(seed);
}

Trim::Trim(const OpArgs& a, size_t T) {
  t_.mode = TM_TRIM_NONE;
  t_.density = 1;
  const std::string m = a.str("trim", "none");
  if (m == "none") return;
  if (m == "magnitude" || m == "magnitude_cut") {
    t_.mode = m == "magnitude" ? TM_TRIM_MAGNITUDE : TM_TRIM_MAGNITUDE_CUT;
    thr_ = bitsPerExpert(a, "thresholds", T);
    t_.thresholds = thr_.data();
    if (m == "magnitude_cut") {
      cuts_ = perExpert(a, "cuts", T);
      t_.cuts = cuts_.data();
    }
    return;
  }
  if (m == "dare" || m == "bernoulli") {
    if (m == "dare") {
      t_.mode = TM_TRIM_DARE;
      t_.density = a.num("density");
      if (!(t_.density > 0 && t_.density <= 1)) throw ArgumentError("density", -1, "must be in (0, 1]");
    } else {
      t_.mode = TM_TRIM_BERNOULLI;
      densities_ = perExpert(a, "densities", T);
      for (size_t t = 0; t < T; t++)
        if (!(densities_[t] >= 0)) throw ArgumentError("densities", (long long)t, "must be ≥ 0");
      t_.densities = densities_.data();
    }
    t_.seed = seedArg(a);
    t_.key_hash = fnv1a64(a.str("key"));
    return;
  }
  throw ArgumentError("trim", -1, "unknown trim mode '" + m + "'");
}

int majority(const OpArgs& a) { return a.num("majority", 1) < 0 ? -1 : 1; }

}  // namespace boundary
}  // namespace taskmerge
