#include "kernels_common.cuh"

namespace tmcuda {

static bool floatDtype(int t) { return t >= F64 && t <= BF16; }

tm_status prepareChunk(const tm_chunk* c, const tm_trim* trim, CallArgs& args, ChunkArgs& at, tm_error* err) {
  if (c->T == 0) return fail(err, TM_INPUT, "no experts given");
  if (!floatDtype(c->base_dtype) || (c->out && !floatDtype(c->out_dtype)))
    return fail(err, TM_UNSUPPORTED, "the CUDA backend converts only F64, F32, F16 and BF16");
  std::vector<int> types(c->T);
  for (size_t t = 0; t < c->T; t++) {
    if (!floatDtype(c->expert_dtypes[t])) return fail(err, TM_UNSUPPORTED, "the CUDA backend converts only F64, F32, F16 and BF16");
    types[t] = int(c->expert_dtypes[t]);
  }
  std::vector<TaskTrim> trims(c->T, TaskTrim{});
  const int mode = trim ? int(trim->mode) : TRIM_NONE;
  for (size_t t = 0; t < c->T; t++) {
    TaskTrim& tt = trims[t];
    switch (mode) {
      case TRIM_NONE: break;
      case TRIM_MAGNITUDE:
      case TRIM_MAGNITUDE_CUT:
        if (!trim->thresholds || (mode == TRIM_MAGNITUDE_CUT && !trim->cuts))
          return fail(err, TM_INPUT, "trim: thresholds (and cuts) are required");
        tt.threshold = trim->thresholds[t];
        tt.cut = mode == TRIM_MAGNITUDE_CUT ? trim->cuts[t] : 0;
        break;
      case TRIM_DARE:
        if (!(trim->density > 0 && trim->density <= 1)) return fail(err, TM_INPUT, "dare: density must be in (0, 1]");
        tt.stream = rngStream(trim->seed, trim->key_hash, t);
        tt.bound = uniformBelowBound(trim->density);
        break;
      case TRIM_BERNOULLI:
        if (!trim->densities) return fail(err, TM_INPUT, "trim: one density per expert is required");
        tt.stream = rngStream(trim->seed, trim->key_hash, t);
        tt.keepAll = trim->densities[t] >= 1;
        tt.bound = tt.keepAll ? 0 : uniformBelowBound(trim->densities[t]);
        break;
      default: return fail(err, TM_UNSUPPORTED, "unknown trim mode %d", mode);
    }
  }
  at.experts = args.put(c->experts, c->T);
  at.types = args.put(types.data(), c->T);
  at.trims = args.put(trims.data(), c->T);
  return TM_OK;
}

ChunkDev chunkDev(const tm_chunk* c, const tm_trim* trim, const CallArgs& args, const ChunkArgs& at) {
  ChunkDev d;
  d.base = c->base;
  d.baseType = int(c->base_dtype);
  d.T = int(c->T);
  d.experts = args.at<const void* const>(at.experts);
  d.types = args.at<const int>(at.types);
  d.n = c->n;
  d.offset = c->offset;
  d.out = c->out;
  d.outType = int(c->out_dtype);
  d.trimMode = trim ? int(trim->mode) : TRIM_NONE;
  d.density = trim ? trim->density : 1.0;
  d.trims = args.at<const TaskTrim>(at.trims);
  d.bad = args.at<unsigned long long>(0);
  d.sum = args.at<unsigned long long>(8);
  return d;
}

InputName chunkInputName(uint32_t input, const void*) {
  if (input == 0) return {TM_ROLE_BASE, -1, "base"};
  return {TM_ROLE_EXPERT, int64_t(input) - 1, "expert"};
}

tm_status finishCall(CallArgs& args, uint64_t offset, InputName (*name)(uint32_t, const void*), const void* nameCtx,
                     uint64_t* sum, tm_error* err) {
  uint64_t slots[2];
  TM_CHECK(args.results(slots, err));
  if (sum) *sum = slots[1];
  if (slots[0] == kNoBad) return TM_OK;
  const uint64_t i = (slots[0] >> 32) * kReportBlock + (slots[0] & 0xfff);
  const InputName in = name(uint32_t((slots[0] >> 12) & 0xfffff), nameCtx);
  return nonFiniteInput(err, in.role, in.index, int64_t(offset + i), in.arg);
}

}  // namespace tmcuda
