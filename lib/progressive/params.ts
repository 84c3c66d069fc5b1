/** The parameters a statistics method (lot, regmean) takes for progressive merging. */
import type { ParamSpec } from "../engine/context";

export const PROGRESSIVE_PARAMS = [
  {
    name: "progressive", type: "boolean", default: false,
    description: "merge layer groups in forward order, with statistics collected on the partially merged model (needs collectStats or --stats-command)",
  },
  { name: "granularity", type: "string", default: "block", choices: ["block", "module"], description: "progressive groups: one per block index, or one per module of module_order" },
  { name: "module_order", type: "string", default: "", description: "file of module names in forward order, one a line (granularity module)" },
] as const satisfies readonly ParamSpec[];
