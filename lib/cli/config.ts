/** merge.yaml: the merge command's options as YAML keys (flags override them). */
import { promises as fsp } from "fs";
import * as path from "path";
import YAML from "yaml";
import { UsageError } from "../errors";
import type { ExpertSpec } from "../api/merge";

export interface MergeConfig {
  base?: string;
  experts?: (string | ExpertSpec)[];
  method?: string;
  params: Record<string, unknown>;
  out?: string;
  dtype?: string;
  device?: string;
  maxShardSize?: string | number;
}

const PARAM_KEYS = ["lambda", "density", "k", "alpha", "seed", "scope", "tall_lambda", "ridge", "solver"];

export async function loadMergeConfig(file: string): Promise<MergeConfig> {
  let doc: unknown;
  try {
    doc = YAML.parse(await fsp.readFile(file, "utf8"));
  } catch (e) {
    throw new UsageError(`${file}: ${(e as Error).message.split("\n")[0]}`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw new UsageError(`${file}: expected a mapping of options`);
  const o = doc as Record<string, unknown>;
  const dir = path.dirname(path.resolve(file));
  const rel = (p: unknown, where: string): string => {
    if (typeof p !== "string" || !p) throw new UsageError(`${file}: '${where}' must be a path`);
    return path.resolve(dir, p);
  };
  const cfg: MergeConfig = { params: {} };
  for (const [k, v] of Object.entries(o)) {
    switch (k) {
      case "base": cfg.base = rel(v, k); break;
      case "out": cfg.out = rel(v, k); break;
      case "dtype": case "device": cfg[k] = String(v); break;
      case "max_shard_size": cfg.maxShardSize = v as string | number; break;
      case "method":
        if (typeof v === "string") cfg.method = v;
        else if (v && typeof v === "object" && typeof (v as { name?: unknown }).name === "string") {
          const { name, ...params } = v as Record<string, unknown>;
          cfg.method = name as string;
          Object.assign(cfg.params, params);
        } else throw new UsageError(`${file}: 'method' must be a name or a mapping with 'name'`);
        break;
      case "experts":
        if (!Array.isArray(v)) throw new UsageError(`${file}: 'experts' must be a list`);
        cfg.experts = v.map((e, i) => {
          if (typeof e === "string") return rel(e, `experts[${i}]`);
          if (!e || typeof e !== "object") throw new UsageError(`${file}: 'experts[${i}]' must be a path or a mapping`);
          const x = e as Record<string, unknown>;
          for (const key of Object.keys(x))
            if (!["path", "name", "weight", "stats"].includes(key)) throw new UsageError(`${file}: unknown key 'experts[${i}].${key}'`);
          return {
            path: rel(x.path, `experts[${i}].path`),
            name: x.name === undefined ? undefined : String(x.name),
            weight: x.weight === undefined ? undefined : Number(x.weight),
            stats: x.stats === undefined ? undefined : rel(x.stats, `experts[${i}].stats`),
          };
        });
        break;
      default:
        if (PARAM_KEYS.includes(k)) cfg.params[k] = v;
        else throw new UsageError(`${file}: unknown key '${k}'`);
    }
  }
  return cfg;
}
