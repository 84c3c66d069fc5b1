/**
 * The schemas of merge.yaml, in two forms:
 * - taskmerge's own: the merge command's flags as keys (base, experts, method, lambda, ...);
 * - mergekit's: merge_method, base_model, models[{model, parameters{weight, density}}], parameters, dtype.
 * Method parameter keys come from the registered methods, so a new method's
 * parameters are accepted without editing this file.
 */
import { z } from "zod";
import { listMethods } from "../methods";

const path = () => z.string({ invalid_type_error: "expected a path (a string)" }).min(1, "expected a non-empty path");
const num = () => z.number().finite();

export const DTYPES = ["f32", "f16", "bf16", "f64", "float32", "float16", "bfloat16", "float64"] as const;
/** mergekit writes torch dtype names; the engine takes the short ones. */
export const DTYPE_ALIASES: Record<string, string> = { float32: "f32", float16: "f16", bfloat16: "bf16", float64: "f64" };

/** Every parameter any registered method declares, typed by its declaration. */
export function paramShape(): Record<string, z.ZodTypeAny> {
  const out: Record<string, z.ZodTypeAny> = {};
  for (const m of listMethods())
    for (const p of m.params) {
      if (out[p.name]) continue;
      // Choices and ranges differ per method: resolveParams checks them once the method is known.
      out[p.name] = (p.type === "string" ? z.string() : p.type === "boolean" ? z.boolean() : p.type === "integer" ? num().int() : num()).optional();
    }
  return out;
}

const common = () => ({
  out: path().optional(),
  dtype: z.enum(DTYPES).optional(),
  device: z.enum(["auto", "cpu", "cuda"]).optional(),
  max_shard_size: z.union([z.string().min(1), z.number().positive()]).optional(),
  stats_command: z.string().min(1).optional(),
});

/** A path, or {path, name, weight, stats}. */
const nativeExpert = () =>
  z.preprocess(
    (v) => (typeof v === "string" ? { path: v } : v),
    z
      .object(
        { path: path(), name: z.string().min(1).optional(), weight: num().optional(), stats: path().optional() },
        { invalid_type_error: "expected a path or a mapping with 'path'" },
      )
      .strict(),
  );

/** A method name, or {name, <parameters>}. */
const nativeMethod = () =>
  z.preprocess(
    (v) => (typeof v === "string" ? { name: v } : v),
    z
      .object({ name: z.string().min(1), ...paramShape() }, { invalid_type_error: "expected a method name or a mapping with 'name'" })
      .strict(),
  );

export function nativeSchema() {
  return z
    .object({
      base: path().optional(),
      experts: z.array(nativeExpert()).min(1, "expected at least one expert").optional(),
      stats: z.array(path()).optional(),
      method: nativeMethod().optional(),
      ...paramShape(),
      ...common(),
    })
    .strict();
}

/** Whether v is one of mergekit's per-tensor settings (lib/methods/mergekit/settings.ts). */
function settingProblem(v: unknown): string | undefined {
  const finite = (x: unknown) => typeof x === "number" && Number.isFinite(x);
  if (finite(v)) return undefined;
  if (!Array.isArray(v)) return typeof v === "number" ? "expected a finite number" : `expected number, received ${v === null ? "null" : typeof v}`;
  if (v.length && v.every(finite)) return undefined;
  const conditional = (c: unknown) =>
    typeof c === "object" && c !== null && !Array.isArray(c) &&
    Object.keys(c).every((k) => k === "filter" || k === "value") &&
    ((c as { filter?: unknown }).filter === undefined || typeof (c as { filter?: unknown }).filter === "string") &&
    (finite((c as { value?: unknown }).value) ||
      (Array.isArray((c as { value?: unknown }).value) && ((c as { value: unknown[] }).value.length > 0) && (c as { value: unknown[] }).value.every(finite)));
  if (v.length && v.every(conditional)) return undefined;
  return "expected a number, a gradient (a non-empty list of numbers) or a list of {filter, value} (value: a number or a gradient)";
}

/** A mergekit parameter setting: a number, a gradient or a list of {filter, value}. */
const setting = () =>
  z.unknown().superRefine((v, ctx) => {
    const problem = settingProblem(v);
    if (problem) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem });
  }).optional();

export function mergekitSchema() {
  const model = z
    .object(
      {
        model: path(),
        name: z.string().min(1).optional(),
        stats: path().optional(),
        parameters: z.object({ weight: setting(), density: setting(), gamma: setting() }).strict().optional(),
      },
      { invalid_type_error: "expected a mapping with 'model'" },
    )
    .strict();
  return z
    .object({
      merge_method: z.string().min(1).optional(),
      base_model: path().optional(),
      models: z.array(model).min(1, "expected at least one model").optional(),
      parameters: z
        .object({
          ...paramShape(),
          // mergekit's: per-tensor defaults for every model, and the switches of its methods.
          weight: setting(),
          density: setting(),
          gamma: setting(),
          normalize: z.boolean().optional(),
          rescale: z.boolean().optional(),
          int8_mask: z.boolean().optional(),
          topk_ties: z.enum(["keep_all", "exact_k"]).optional(),
        })
        .strict()
        .optional(),
      // taskmerge always takes the tokenizer and config files from the base, which is mergekit's "base".
      tokenizer_source: z.literal("base").optional(),
      out_dtype: z.enum(DTYPES).optional(),
      ...common(),
    })
    .strict();
}

export type NativeConfig = z.infer<ReturnType<typeof nativeSchema>>;
export type MergekitConfig = z.infer<ReturnType<typeof mergekitSchema>>;

export const MERGEKIT_KEYS = ["merge_method", "base_model", "models"];

/** Hints for keys of the other form, or close misspellings. */
const OTHER_FORM: Record<string, string> = {
  base: "base_model", experts: "models", method: "merge_method",
  base_model: "base", models: "experts", merge_method: "method",
};

/** mergekit keys taskmerge does not take, and why. */
const MERGEKIT_REFUSED: Record<string, string> = {
  slices: "mergekit's slices (layer ranges) are not supported: taskmerge merges whole checkpoints of one architecture; list them under 'models'",
  modules: "mergekit's modules are not supported: taskmerge merges whole checkpoints; list them under 'models'",
  tokenizer: "taskmerge copies the tokenizer from the base (tokenizer_source: base)",
  chat_template: "taskmerge copies the base's files, its chat template included",
};

export function unknownKeyHint(key: string, allowed: string[], mergekit: boolean): string {
  if (mergekit && MERGEKIT_REFUSED[key] && allowed.includes("merge_method")) return ` (${MERGEKIT_REFUSED[key]})`;
  const other = OTHER_FORM[key];
  if (other && allowed.includes(other))
    return ` (the ${mergekit ? "mergekit" : "taskmerge"} form of this file uses '${other}'; do not mix the two forms)`;
  const near = allowed
    .map((a) => [a, distance(key.toLowerCase().replace(/-/g, "_"), a)] as const)
    .filter(([, d]) => d <= 2)
    .sort((a, b) => a[1] - b[1])[0];
  return near ? ` (did you mean '${near[0]}'?)` : ` (allowed: ${allowed.join(", ")})`;
}

function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length][b.length];
}

/** The keys a mapping at `at` accepts, found by walking the schema (for "did you mean"). */
export function keysAt(schema: z.ZodTypeAny, at: (string | number)[]): string[] {
  let s: z.ZodTypeAny | undefined = schema;
  const unwrap = (x: z.ZodTypeAny): z.ZodTypeAny => {
    for (;;) {
      if (x instanceof z.ZodOptional || x instanceof z.ZodNullable) x = x.unwrap();
      else if (x instanceof z.ZodEffects) x = x.innerType();
      else return x;
    }
  };
  for (const part of at) {
    if (!s) return [];
    s = unwrap(s);
    if (s instanceof z.ZodArray && typeof part === "number") s = s.element;
    else if (s instanceof z.ZodObject && typeof part === "string") s = s.shape[part];
    else return [];
  }
  s = s && unwrap(s);
  return s instanceof z.ZodObject ? Object.keys(s.shape) : [];
}
