/**
 * The --dtype option of merge, compress and extract: taskmerge's names
 * (f32, f16, bf16, f64) and mergekit's (float32, float16, bfloat16, float64),
 * the same list merge.yaml accepts.
 */
import { Option } from "commander";
import type { OutputDType } from "../safetensors/dtypes";
import { DTYPES, DTYPE_ALIASES } from "./config_schema";

export function dtypeOption(description: string): Option {
  return new Option("--dtype <dtype>", description).choices(DTYPES);
}

/** A --dtype value (already one of DTYPES) as the library's name. */
export function toOutputDType(d: string | undefined): OutputDType | undefined {
  return d === undefined ? undefined : ((DTYPE_ALIASES[d] ?? d) as OutputDType);
}
