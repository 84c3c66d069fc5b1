/**
 * Reading a statistics tensor checks it (SPEC "Statistics files"), so that no
 * method merges from garbage: every error names the statistics file, key and
 * expert. What is checked:
 *  - a Gram [n,n] (op "gram_check", native): every entry finite, diagonal ≥ 0,
 *    symmetric within |G_ij − G_ji| ≤ GRAM_TOL·√(G_ii G_jj), and
 *    |G_ij| ≤ (1 + GRAM_TOL)·√(G_ii G_jj) (Cauchy–Schwarz). These hold for any
 *    Σ x xᵀ and are cheap (one pass); they do not prove positive semidefiniteness.
 *  - Σx̂² of a normalisation scale: finite and ≥ 0.
 *  - a row count: finite and > 0.
 */
import { runOp } from "../native";
import { TaskmergeError } from "../errors";
import type { SafetensorsFile } from "../safetensors/file";
import { StatTensor, statsSource, STATS_DTYPES } from "./keys";

/**
 * Relative tolerance of the symmetry and Cauchy–Schwarz checks: loose enough for
 * Grams summed in float32 over millions of rows, tight enough for corrupt ones.
 */
export const GRAM_TOL = 1e-3;

function statsFail(s: StatTensor, message: string): TaskmergeError {
  return new TaskmergeError(`statistics of expert '${s.expert.name}': ${message}`, s.file.path, s.info.key, statsSource(s));
}

/** The bytes of a Gram, checked. */
export async function readGram(s: StatTensor): Promise<Buffer> {
  const b = await s.file.read(s.info.key);
  await runOp("gram_check", { gram: b, gramDtype: s.info.dtype, n: s.info.shape[0] ?? 0, tol: GRAM_TOL }).catch((e) => {
    throw statsFail(s, String((e as { message?: unknown })?.message ?? e));
  });
  return b;
}

function floats(s: StatTensor, b: Buffer): Float64Array {
  const n = s.info.numel;
  return s.info.dtype === "F64" ? new Float64Array(b.buffer.slice(b.byteOffset, b.byteOffset + 8 * n)) : Float64Array.from(new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + 4 * n)));
}

/** The bytes of a normalisation scale's Σx̂², checked finite and ≥ 0. */
export async function readScale(s: StatTensor): Promise<Buffer> {
  const b = await s.file.read(s.info.key);
  const v = floats(s, b);
  const i = v.findIndex((x) => !(x >= 0) || x === Infinity);
  if (i >= 0) throw statsFail(s, `norm_sq_sum holds a negative or non-finite value (${v[i]}) at element ${i}`);
  return b;
}

/** A row count as a number, checked finite and > 0. */
export async function readCount(s: StatTensor): Promise<number> {
  if (!STATS_DTYPES.includes(s.info.dtype) || s.info.numel !== 1)
    throw statsFail(s, `input_count must hold one F64 (or F32) value, found ${s.info.dtype} [${s.info.shape.join(", ")}]`);
  const v = floats(s, await s.file.read(s.info.key))[0];
  if (!Number.isFinite(v) || v <= 0) throw statsFail(s, `input_count must be a positive finite number (found ${v})`);
  return v;
}

/** Checks every row count of the experts' statistics files before a merge reads anything else. */
export async function checkCounts(experts: readonly { name: string; stats?: SafetensorsFile }[]): Promise<void> {
  for (const [index, e] of experts.entries())
    for (const info of e.stats?.tensors ?? [])
      if (info.key.endsWith(".input_count")) await readCount({ file: e.stats!, info, expert: { index, name: e.name } });
}
