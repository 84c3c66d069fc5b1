/** taskmerge: the public library API. */
export { merge } from "./api/merge";
export type { MergeOptions, ExpertSpec, MethodSpec } from "./api/merge";
export { planMerge } from "./api/plan";
export type { MergePlan } from "./api/plan";
export type { MergeReport } from "./engine/merge";
export type { Progress } from "./engine/progress";
export { inspect } from "./api/inspect";
export type { InspectReport, InspectTensor } from "./api/inspect";
export { listMethods } from "./methods";
export type { MergeMethod, ParamSpec } from "./methods/types";
export { TaskmergeError, UsageError, AbortError } from "./errors";
export { VERSION } from "./version";
export { GramAccumulator } from "./stats/gram_accumulator";
export type { SaveOptions as GramSaveOptions } from "./stats/gram_accumulator";
export { drift } from "./api/drift";
export type { DriftOptions, DriftReport, DriftLayer, DriftTaskTotal } from "./api/drift";
