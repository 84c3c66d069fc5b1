/** The safetensors dtypes taskmerge reads and writes. */

export type DType = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";
export type FloatDType = "F64" | "F32" | "F16" | "BF16";

export const DTYPE_SIZE: Readonly<Record<DType, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

export function isDType(s: unknown): s is DType {
  return typeof s === "string" && Object.prototype.hasOwnProperty.call(DTYPE_SIZE, s);
}

export function isFloatDType(d: DType): d is FloatDType {
  return d === "F64" || d === "F32" || d === "F16" || d === "BF16";
}

/**
 * Output dtype names of the typed library API. The command line and YAML also
 * take mergekit's (torch's) names float32, float16, bfloat16, float64.
 */
export type OutputDType = "f32" | "f16" | "bf16" | "f64";

/** The --dtype option: f32|f16|bf16 (and f64) to a safetensors dtype name. */
export function parseOutputDType(s: string): FloatDType {
  const m: Record<string, FloatDType> = {
    f64: "F64", float64: "F64", f32: "F32", float32: "F32", f16: "F16", float16: "F16", fp16: "F16",
    bf16: "BF16", bfloat16: "BF16",
  };
  const d = m[s.toLowerCase()];
  if (!d) throw new Error(`unknown dtype '${s}' (expected f32, f16 or bf16)`);
  return d;
}
