/** The public compress() call: experts → a TALL bundle (τMTL + one bit per parameter per task). */
import { UsageError } from "../errors";
import { normalizeExperts, parseDTypeOption, ExpertSpec } from "./merge";
import { runCompress, CompressReport, LambdaSearch, DEFAULT_TALL_LAMBDA } from "../job/compress";
import { resolveCompressParams } from "../tall/params";
import type { Progress } from "../engine/progress";
import type { OutputDType } from "../safetensors/dtypes";
import { resolveDevice, Device } from "../device";

export interface CompressOptions {
  base: string;
  experts: (string | ExpertSpec)[];
  /** Bundle directory. */
  out: string;
  /**
   * TALL mask λ: one number for all tasks (default 0.4), one per task, or
   * `{ grid, score }` to choose each task's λ from `grid` (default 0.2…0.6) by
   * the highest score(task, candidatePath) of a temporary extracted checkpoint.
   */
  tallLambda?: number | number[] | LambdaSearch;
  /** τMTL: Σt τt ("sum", default) or the TIES disjoint sum ("ties"). Checked, like density and scope, against tall/params.ts. */
  tau?: "sum" | "ties";
  /** TIES density and scope when tau is "ties" (0.2, "global"). */
  density?: number;
  scope?: "global" | "tensor";
  /** dtype of tau.safetensors (default: the base's). */
  dtype?: OutputDType;
  /** Where the native ops run: "auto" (default: cuda where a CUDA backend reports a device, else cpu), "cpu" or "cuda". */
  device?: Device;
  onProgress?: (p: Progress) => void;
  signal?: AbortSignal;
}

export type { CompressReport, LambdaSearch };

const finiteLambda = (x: unknown, what: string): number => {
  if (typeof x !== "number" || !Number.isFinite(x) || x < 0) throw new UsageError(`${what} must be a non-negative number (got ${JSON.stringify(x)})`);
  return x;
};

export async function compress(opts: CompressOptions): Promise<CompressReport> {
  if (!opts || typeof opts !== "object") throw new UsageError("compress() needs an options object");
  if (!opts.base) throw new UsageError("base is required");
  if (!opts.out) throw new UsageError("out is required");
  const experts = normalizeExperts(opts.experts);
  const T = experts.length;
  const tl = opts.tallLambda ?? DEFAULT_TALL_LAMBDA;
  let tallLambda: number[] | LambdaSearch;
  if (typeof tl === "number") tallLambda = new Array(T).fill(finiteLambda(tl, "tallLambda"));
  else if (Array.isArray(tl)) {
    if (tl.length !== T) throw new UsageError(`tallLambda lists ${tl.length} values for ${T} experts; give one per expert`);
    tallLambda = tl.map((x, i) => finiteLambda(x, `tallLambda[${i}]`));
  } else if (tl && typeof tl === "object" && typeof tl.score === "function") {
    if (tl.grid !== undefined && (!Array.isArray(tl.grid) || !tl.grid.length)) throw new UsageError("tallLambda.grid must be a non-empty list");
    tl.grid?.forEach((x, i) => finiteLambda(x, `tallLambda.grid[${i}]`));
    tallLambda = tl;
  } else throw new UsageError("tallLambda must be a number, a list of numbers, or { grid, score }");
  const { tau, density, scope } = resolveCompressParams(opts);
  const device = resolveDevice(opts.device);
  return runCompress({
    base: opts.base, experts, out: opts.out, tallLambda, tau, density, scope, dtype: parseDTypeOption(opts.dtype), device,
    onProgress: opts.onProgress, signal: opts.signal,
  });
}
