// The declarations use Node's types (Buffer): the reference makes a consumer's
// tsc load @types/node, a dependency so it is installed with taskmerge
// (preserve: TypeScript 5.5+ drops the directive from .d.ts files otherwise).
/// <reference types="node" preserve="true" />
/** taskmerge: the public library API. */
export { merge } from "./api/merge";
export type { MergeOptions, ExpertSpec, MethodName, MethodSpec, MergekitMethodSpec, OutputDType, CollectStats, CollectStatsRequest } from "./api/merge";
export { planMerge } from "./api/plan";
export type { MergePlan } from "./api/plan";
export type { MergeReport } from "./job/merge";
export type { Progress } from "./engine/progress";
export { inspect } from "./api/inspect";
export type { InspectReport, InspectTensor } from "./api/inspect";
export { listMethods } from "./methods";
export type { MergeMethod, ParamSpec } from "./engine/context";
export { TaskmergeError, UsageError, AbortError } from "./errors";
export { VERSION } from "./version";
export { GramAccumulator } from "./stats/gram_accumulator";
export type { SaveOptions as GramSaveOptions } from "./stats/gram_accumulator";
export { drift } from "./api/drift";
export type { DriftOptions, DriftReport, DriftLayer, DriftTaskTotal } from "./api/drift";
export { compress } from "./api/compress";
export type { CompressOptions, CompressReport, LambdaSearch } from "./api/compress";
export { extract } from "./api/extract";
export type { ExtractOptions, ExtractReport } from "./api/extract";
