/**
 * What a directory output says about its base on the Hugging Face Hub: the
 * base's Hub id (an option, or config.json's `_name_or_path` when that is a
 * Hub id and not a local path), its license (the base's README front matter,
 * or config.json), and config.json with `torch_dtype` following --dtype.
 */
import * as path from "path";
import YAML from "yaml";
import type { FloatDType } from "./safetensors/dtypes";
import { readRegularFile } from "./input_file";

export interface BaseInfo {
  /** The base's Hub id for the card's `base_model`, when known. */
  baseModel?: string;
  license?: string;
  /** The base's config.json when it is a JSON object. */
  config?: Record<string, unknown>;
}

/** `org/name`: what the Hub accepts as base_model (a local path is not one). */
export function isHubId(s: unknown): s is string {
  return typeof s === "string" && /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(s) && !s.includes("..");
}

async function readText(file: string): Promise<string | undefined> {
  // Only a regular file: a FIFO named config.json must not block the run.
  return readRegularFile(file).then((b) => b.toString("utf8"), () => undefined);
}

function jsonObject(text: string | undefined): Record<string, unknown> | undefined {
  if (text === undefined) return undefined;
  try {
    const v: unknown = JSON.parse(text);
    return v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The YAML front matter of a model card (between the leading `---` lines), when it parses to a mapping. */
export function frontMatter(card: string | undefined): Record<string, unknown> | undefined {
  const m = card === undefined ? null : /^---\r?\n([\s\S]*?)\r?\n---\r?\n?/.exec(card);
  if (!m) return undefined;
  try {
    const v: unknown = YAML.parse(m[1]);
    return v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Reads the base directory's config.json and README.md (a single-file base has neither). */
export async function readBaseInfo(baseDir: string | undefined, baseModel?: string): Promise<BaseInfo> {
  const config = baseDir ? jsonObject(await readText(path.join(baseDir, "config.json"))) : undefined;
  const front = baseDir ? frontMatter(await readText(path.join(baseDir, "README.md"))) : undefined;
  const license = [front?.license, config?.license].find((l) => typeof l === "string" && l.trim() !== "") as string | undefined;
  const named = config?._name_or_path;
  return { baseModel: baseModel ?? (isHubId(named) ? named : undefined), license, config };
}

const TORCH_DTYPE: Record<FloatDType, string> = { F64: "float64", F32: "float32", F16: "float16", BF16: "bfloat16" };

/**
 * The output's config.json when --dtype changes the weights' dtype: the base's
 * with `torch_dtype` (and `dtype`, its newer name, when present) set to it.
 * Nothing when there is no --dtype or no JSON config: the base's file is copied as it is.
 */
export function outputConfigFiles(info: BaseInfo, dtype: FloatDType | undefined): Record<string, string> {
  if (!dtype || !info.config) return {};
  const c: Record<string, unknown> = { ...info.config, torch_dtype: TORCH_DTYPE[dtype] };
  if ("dtype" in info.config) c.dtype = TORCH_DTYPE[dtype];
  return { "config.json": JSON.stringify(c, null, 2) + "\n" };
}
