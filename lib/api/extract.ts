/** The public extract() call: one task's checkpoint from a TALL bundle and the base. */
import { UsageError } from "../errors";
import { parseDTypeOption } from "./merge";
import { parseByteSize } from "../units";
import type { OutputDType } from "../safetensors/dtypes";
import { isHubId } from "../base_info";
import { runExtract, ExtractReport } from "../job/extract";
import type { Progress } from "../engine/progress";
import { resolveDevice, Device } from "../device";

export interface ExtractOptions {
  bundle: string;
  task: string;
  base: string;
  out: string;
  /** Output dtype of float tensors (default: the base's). */
  dtype?: OutputDType;
  /** The base's Hugging Face Hub id for the model card (default: the base's config.json `_name_or_path` when that is one). */
  baseModel?: string;
  maxShardSize?: string | number;
  /** Where the native ops run: "auto" (default: cuda where a CUDA backend reports a device, else cpu), "cpu" or "cuda". */
  device?: Device;
  onProgress?: (p: Progress) => void;
  signal?: AbortSignal;
}

export type { ExtractReport };

export async function extract(opts: ExtractOptions): Promise<ExtractReport> {
  if (!opts || typeof opts !== "object") throw new UsageError("extract() needs an options object");
  for (const k of ["bundle", "task", "base", "out"] as const) if (!opts[k]) throw new UsageError(`${k} is required`);
  if (opts.baseModel !== undefined && !isHubId(opts.baseModel))
    throw new UsageError(`baseModel must be a Hugging Face Hub id such as org/name (got '${opts.baseModel}')`);
  let maxShardSize: number | undefined;
  try {
    maxShardSize = opts.maxShardSize === undefined ? undefined : parseByteSize(opts.maxShardSize);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const device = resolveDevice(opts.device);
  return runExtract({ ...opts, dtype: parseDTypeOption(opts.dtype), maxShardSize, device });
}
