/** The public planMerge() call: a dry run of merge() that checks every input and writes nothing. */
import { engineOptions, MergeOptions } from "./merge";
import { planMerge as planEngine, MergePlan } from "../job/plan";

export type { MergePlan };

export function planMerge(opts: MergeOptions): Promise<MergePlan> {
  return planEngine(engineOptions(opts));
}
