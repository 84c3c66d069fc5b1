/**
 * The merge.yaml that reproduces a mergekit:* merge, in mergekit's form (the
 * one whose keys mean mergekit's definitions): per-model weight and density as
 * resolved, the method's switches back as YAML booleans, and for linear the
 * base listed among the models with its weight.
 */
import * as path from "path";

interface Manifest {
  method: string;
  params: Record<string, number | string | boolean>;
  base: string;
  experts: { name: string; path: string; weight: number; parameters?: Record<string, unknown> }[];
  dtype?: string;
}

export function mergekitConfig(m: Manifest): Record<string, unknown> {
  const { base_weight, compute_dtype, ...rest } = m.params;
  const parameters = Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, v === "true" ? true : v === "false" ? false : v]));
  const models = m.experts.map((e) => ({
    model: e.path,
    ...(e.name !== path.basename(e.path).replace(/\.safetensors$/, "") ? { name: e.name } : {}),
    parameters: e.parameters ?? { weight: e.weight },
  }));
  if (m.method === "linear") models.unshift({ model: m.base, parameters: { weight: base_weight } });
  return {
    merge_method: m.method,
    base_model: m.base,
    models,
    parameters,
    // mergekit's dtype is the compute precision; without it mergekit computes in the stored dtypes.
    ...(compute_dtype && compute_dtype !== "stored" ? { dtype: compute_dtype } : {}),
    ...(m.dtype ? { out_dtype: m.dtype.toLowerCase() } : {}),
  };
}
