/**
 * merge.yaml: the merge command's options as YAML keys (flags override them),
 * in taskmerge's form or mergekit's. Paths are relative to the file's
 * directory. Every error names the file, the offending key and its line, and
 * is a usage error (exit 2).
 */
import * as fs from "fs";
import * as path from "path";
import YAML, { LineCounter, Document } from "yaml";
import type { ZodIssue, ZodTypeAny } from "zod";
import { TaskmergeError, UsageError } from "../errors";
import { readRegularFile } from "../input_file";
import type { ExpertSpec } from "../api/merge";
import { getMethod, resolveParams } from "../methods";
import { listMergekitMethods, MERGEKIT_PREFIX, MERGEKIT_UNSUPPORTED } from "../methods/mergekit";
import { Setting, withFallback } from "../methods/mergekit/settings";
import { parseByteSize } from "../units";
import {
  nativeSchema, mergekitSchema, NativeConfig, MergekitConfig, MERGEKIT_KEYS, DTYPE_ALIASES, keysAt, unknownKeyHint,
} from "./config_schema";

export interface MergeConfig {
  /** The config file as the user named it (for messages). */
  file: string;
  form: "taskmerge" | "mergekit";
  base?: string;
  experts?: ExpertSpec[];
  method?: string;
  params: Record<string, unknown>;
  /** The YAML key each parameter came from, e.g. "parameters.density". */
  paramKeys: Record<string, string>;
  /** The YAML keys of base, method and experts in this form. */
  keys: { base: string; method: string; experts: string };
  out?: string;
  dtype?: string;
  device?: string;
  maxShardSize?: string | number;
  /** Progressive merges: the statistics command (stats_command). */
  statsCommand?: string;
}

/** A usage error about `key` of the config file. */
export function configError(cfg: { file: string }, key: string, message: string): UsageError {
  return new UsageError(`${cfg.file}: ${key ? `${key}: ` : ""}${message}`);
}

export async function loadMergeConfig(file: string): Promise<MergeConfig> {
  let text: string;
  try {
    text = (await readRegularFile(file)).toString("utf8");
  } catch (e) {
    // A FIFO or device is refused (it would block), as for every input.
    if (e instanceof TaskmergeError) throw new UsageError(`${file}: cannot read the config file (${e.reason.replace(/^cannot open: /, "")})`);
    const code = (e as NodeJS.ErrnoException).code;
    throw new UsageError(`${file}: cannot read the config file (${code === "ENOENT" ? "no such file" : code ?? (e as Error).message})`);
  }
  return parseMergeConfig(text, file);
}

/** Parses and validates config text; `file` names it in messages and anchors relative paths. */
export function parseMergeConfig(text: string, file: string): MergeConfig {
  const lines = new LineCounter();
  const doc = YAML.parseDocument(text, { lineCounter: lines });
  if (doc.errors.length) {
    const first = doc.errors[0].message.split("\n")[0].replace(/:$/, "");
    throw new UsageError(`${file}: invalid YAML: ${first}`);
  }
  const js: unknown = doc.toJS();
  if (js === null || js === undefined) throw new UsageError(`${file}: the file is empty; expected a mapping of merge options`);
  if (typeof js !== "object" || Array.isArray(js))
    throw new UsageError(`${file}: expected a mapping of merge options, found ${Array.isArray(js) ? "a list" : typeof js}`);

  const mergekit = MERGEKIT_KEYS.some((k) => k in js);
  const schema = mergekit ? mergekitSchema() : nativeSchema();
  const parsed = schema.safeParse(js);
  if (!parsed.success) throw new UsageError(describeIssues(file, parsed.error.issues, schema, mergekit, doc, lines));
  const dir = path.dirname(path.resolve(file));
  const abs = (p: string) => path.resolve(dir, p);
  return resolvePathParams(
    mergekit
      ? fromMergekit(parsed.data as MergekitConfig, file, abs)
      : fromNative(parsed.data as NativeConfig, file, abs, typeof (js as { method?: unknown }).method === "string"),
    abs,
  );
}

function common(c: NativeConfig | MergekitConfig, file: string, abs: (p: string) => string) {
  if (c.max_shard_size !== undefined) {
    try {
      parseByteSize(c.max_shard_size);
    } catch (e) {
      throw configError({ file }, "max_shard_size", (e as Error).message);
    }
  }
  return {
    out: c.out === undefined ? undefined : abs(c.out),
    dtype: c.dtype === undefined ? undefined : DTYPE_ALIASES[c.dtype] ?? c.dtype,
    device: c.device,
    maxShardSize: c.max_shard_size,
    statsCommand: c.stats_command,
  };
}

const PARAM_EXCLUDE = new Set(["base", "experts", "stats", "method", "out", "dtype", "device", "max_shard_size", "stats_command", "name"]);

/** Parameters that name files: relative to the config file, like every other path in it. */
function resolvePathParams(cfg: MergeConfig, abs: (p: string) => string): MergeConfig {
  if (typeof cfg.params.module_order === "string" && cfg.params.module_order) cfg.params.module_order = abs(cfg.params.module_order);
  return cfg;
}

function fromNative(c: NativeConfig, file: string, abs: (p: string) => string, methodIsName: boolean): MergeConfig {
  const cfg: MergeConfig = {
    file, form: "taskmerge", params: {}, paramKeys: {}, keys: { base: "base", method: "method", experts: "experts" },
    base: c.base === undefined ? undefined : abs(c.base), ...common(c, file, abs),
  };
  const setParam = (name: string, value: unknown, key: string) => {
    if (value === undefined) return;
    if (name in cfg.params) throw configError(cfg, key, `given twice (also as ${cfg.paramKeys[name]})`);
    cfg.params[name] = value;
    cfg.paramKeys[name] = key;
  };
  if (c.method) {
    const { name, ...params } = c.method as { name: string } & Record<string, unknown>;
    cfg.method = name;
    if (!methodIsName) cfg.keys.method = "method.name";
    for (const [k, v] of Object.entries(params)) setParam(k, v, `method.${k}`);
  }
  for (const [k, v] of Object.entries(c)) if (!PARAM_EXCLUDE.has(k)) setParam(k, v, k);
  if (c.experts) {
    const experts = c.experts as { path: string; name?: string; weight?: number; stats?: string }[];
    if (c.stats && c.stats.length !== experts.length)
      throw configError(cfg, "stats", `${c.stats.length} statistics files for ${experts.length} experts; give one per expert, in order`);
    cfg.experts = experts.map((e, i) => {
      if (c.stats && e.stats !== undefined) throw configError(cfg, `experts[${i}].stats`, "given both here and in the top-level 'stats' list");
      const stats = e.stats ?? c.stats?.[i];
      return { path: abs(e.path), name: e.name, weight: e.weight, stats: stats === undefined ? undefined : abs(stats) };
    });
  } else if (c.stats) throw configError(cfg, "stats", "statistics files need an 'experts' list in the same file");
  return cfg;
}

/**
 * mergekit configs usually name Hugging Face Hub ids; taskmerge reads local
 * checkpoints only, so say so rather than report a missing path.
 */
function localPath(cfg: MergeConfig, key: string, p: string, abs: (p: string) => string): string {
  const full = abs(p);
  if (/^[\w.-]+\/[\w.-]+$/.test(p) && !fs.existsSync(full))
    throw configError(
      cfg,
      key,
      `'${p}' is not a local checkpoint (${full} does not exist); if it is a Hugging Face Hub id, ` +
        `download it first (huggingface-cli download ${p} --local-dir DIR) and name DIR here`,
    );
  return full;
}

type MkModel = NonNullable<MergekitConfig["models"]>[number] & { i: number };

/** mergekit's methods that taskmerge runs with mergekit's meaning (lib/methods/mergekit). */
const MERGEKIT_METHODS = new Set(listMergekitMethods().map((m) => m.name));
/** The methods with mergekit's per-model gamma (magnitude_outliers sparsification). */
const TAKES_GAMMA = new Set(["breadcrumbs", "breadcrumbs_ties"]);

function fromMergekit(c: MergekitConfig, file: string, abs: (p: string) => string): MergeConfig {
  const name = c.merge_method;
  const mk = name !== undefined && MERGEKIT_METHODS.has(name);
  const cfg: MergeConfig = {
    file, form: "mergekit", params: {}, paramKeys: {}, keys: { base: "base_model", method: "merge_method", experts: "models" },
    method: name, ...common(c, file, abs),
  };
  if (c.out_dtype !== undefined) cfg.dtype = DTYPE_ALIASES[c.out_dtype] ?? c.out_dtype;
  if (c.base_model !== undefined) cfg.base = localPath(cfg, "base_model", c.base_model, abs);
  // Top-level weight (and, for mergekit's methods, density and gamma) is every model's fallback, as in
  // mergekit's lookup; the other keys are the method's parameters.
  const globals: Record<string, Setting | undefined> = {};
  for (const [k, v] of Object.entries(c.parameters ?? {})) {
    if (v === undefined) continue;
    if (k === "weight" || (mk && (k === "density" || k === "gamma"))) {
      globals[k] = v as Setting;
      continue;
    }
    cfg.params[k] = typeof v === "boolean" ? String(v) : v;
    cfg.paramKeys[k] = `parameters.${k}`;
  }
  if (globals.gamma !== undefined && !TAKES_GAMMA.has(name!))
    throw configError(cfg, "parameters.gamma", `only breadcrumbs and breadcrumbs_ties take gamma ('${name}' does not)`);
  if (mk) computeDtype(cfg, c.dtype);
  if (!c.models) return cfg;
  const all: MkModel[] = c.models.map((m, i) => ({ ...m, i }));
  let models = all.filter((m) => !(cfg.base && abs(m.model) === cfg.base));
  if (name === "linear") models = linearBase(cfg, all, models, globals, abs);
  if (!models.length) throw configError(cfg, "models", "lists only the base model; add the fine-tuned models to merge");
  if (!mk) {
    if (globals.weight !== undefined && typeof globals.weight !== "number") throw settingNeedsMergekit(cfg, "parameters.weight", name);
    oneDensity(cfg, models);
  }
  cfg.experts = models.map((m) => {
    const parameters: Record<string, Setting> = {};
    for (const k of ["weight", "density", "gamma"] as const) {
      const own = m.parameters?.[k] as Setting | undefined;
      if (k === "gamma" && own !== undefined && !TAKES_GAMMA.has(name!))
        throw configError(cfg, `models[${m.i}].parameters.gamma`, `only breadcrumbs and breadcrumbs_ties take a per-model gamma ('${name}' does not)`);
      if (!mk && own !== undefined && typeof own !== "number") throw settingNeedsMergekit(cfg, `models[${m.i}].parameters.${k}`, name);
      const v = withFallback(own, globals[k]);
      if (v !== undefined) parameters[k] = v;
    }
    const weight = parameters.weight;
    return {
      path: localPath(cfg, `models[${m.i}].model`, m.model, abs),
      name: m.name,
      weight: typeof weight === "number" ? weight : undefined,
      stats: m.stats === undefined ? undefined : abs(m.stats),
      ...(mk && Object.keys(parameters).length ? { parameters } : {}),
    };
  });
  return cfg;
}

/**
 * mergekit computes in `dtype` (its inputs cast to it), and without one in
 * each tensor's stored dtype; it is also the output dtype unless out_dtype is
 * given. float64, which mergekit lacks, computes as float32 does.
 */
function computeDtype(cfg: MergeConfig, dtype: string | undefined): void {
  const short = dtype === undefined ? undefined : DTYPE_ALIASES[dtype] ?? dtype;
  cfg.params.compute_dtype = short === undefined ? "stored" : ({ bf16: "bfloat16", f16: "float16" } as Record<string, string>)[short] ?? "float32";
  cfg.paramKeys.compute_dtype = "dtype";
}

function settingNeedsMergekit(cfg: MergeConfig, key: string, method: string | undefined): UsageError {
  return configError(
    cfg, key,
    `a gradient or filter list needs one of mergekit's methods (${[...MERGEKIT_METHODS].join(", ")}); '${method}' takes one number here`,
  );
}

/** taskmerge's own methods apply one density to every model: per-model values must agree. */
function oneDensity(cfg: MergeConfig, models: MkModel[]): void {
  for (const m of models) {
    const d = m.parameters?.density;
    if (d === undefined) continue;
    const key = `models[${m.i}].parameters.density`;
    if (cfg.params.density !== undefined && cfg.params.density !== d)
      throw configError(cfg, key, `${d} differs from ${cfg.paramKeys.density} (${cfg.params.density}); taskmerge applies one density to every model`);
    cfg.params.density = d;
    cfg.paramKeys.density ??= key;
  }
  const given = models.filter((m) => m.parameters?.density !== undefined);
  if (given.length && given.length < models.length && cfg.paramKeys.density?.startsWith("models[")) {
    const m = models.find((x) => x.parameters?.density === undefined)!;
    throw configError(cfg, `models[${m.i}]`, "has no parameters.density while other models do; set it on every model or once in 'parameters'");
  }
}

/**
 * mergekit's linear averages every model, the base too when it is one of them:
 * the engine's base is base_model (or, without one, the first model), and its
 * own weight becomes the method's base_weight.
 */
function linearBase(
  cfg: MergeConfig, all: MkModel[], others: MkModel[], globals: Record<string, Setting | undefined>, abs: (p: string) => string,
): MkModel[] {
  let models = others;
  let key: string;
  let weight: Setting | undefined;
  if (cfg.base) {
    const listed = all.find((m) => abs(m.model) === cfg.base);
    key = listed?.parameters?.weight !== undefined ? `models[${listed.i}].parameters.weight` : "parameters.weight";
    weight = withFallback(listed?.parameters?.weight as Setting | undefined, globals.weight);
    if (weight === undefined && !listed)
      throw configError(
        cfg, "base_model",
        "is not among 'models' and has no weight: mergekit's linear averages every model, the base too, and needs its weight " +
          "(list it in 'models' with a weight, give parameters.weight, or drop base_model to average the models alone)",
      );
  } else {
    const [first, ...rest] = all;
    if (!rest.length) throw configError(cfg, "models", "linear of one model is that model; list at least two");
    cfg.base = localPath(cfg, `models[${first.i}].model`, first.model, abs);
    key = first.parameters?.weight !== undefined ? `models[${first.i}].parameters.weight` : "parameters.weight";
    weight = withFallback(first.parameters?.weight as Setting | undefined, globals.weight);
    models = rest;
  }
  weight ??= 1;
  if (typeof weight !== "number") throw configError(cfg, key, "the base model's weight must be one number (taskmerge scales the base as a whole)");
  cfg.params.base_weight = weight;
  cfg.paramKeys.base_weight = key;
  return models;
}

/**
 * Checks the file's method and parameters against the method that will run
 * (`name`, possibly from --method), skipping parameters a flag overrides, so
 * that errors point at the offending key.
 */
export function checkConfigMethod(cfg: MergeConfig, name: string, overridden: Set<string>): string {
  // In mergekit's form a method name means mergekit's definition of it, given here or with --method.
  if (cfg.form === "mergekit" && MERGEKIT_METHODS.has(name)) name = MERGEKIT_PREFIX + name;
  let method;
  try {
    method = getMethod(name);
  } catch (e) {
    const hint =
      cfg.form === "mergekit" && MERGEKIT_UNSUPPORTED.includes(name)
        ? `; mergekit's '${name}' is not supported (mergekit methods taskmerge runs with mergekit's meaning: ${[...MERGEKIT_METHODS].join(", ")})`
        : "";
    if (name === cfg.method) throw configError(cfg, cfg.keys.method, (e as Error).message + hint);
    throw e;
  }
  // mergekit's dtype is the compute precision of mergekit's methods only; taskmerge's (given with --method) take it as the output dtype.
  if (cfg.paramKeys.compute_dtype === "dtype" && !method.params.some((p) => p.name === "compute_dtype")) {
    delete cfg.params.compute_dtype;
    delete cfg.paramKeys.compute_dtype;
  }
  for (const [k, v] of Object.entries(cfg.params)) {
    if (overridden.has(k)) continue;
    try {
      resolveParams(method, { [k]: v });
    } catch (e) {
      throw configError(cfg, cfg.paramKeys[k], (e as Error).message);
    }
  }
  return name;
}

// ---- messages for schema issues ----

function keyPath(at: (string | number)[]): string {
  return at.map((p, i) => (typeof p === "number" ? `[${p}]` : i ? `.${p}` : p)).join("");
}

function describeIssues(
  file: string, issues: ZodIssue[], schema: ZodTypeAny, mergekit: boolean, doc: Document, lines: LineCounter,
): string {
  const described = issues.map((iss) => {
    let at = iss.path;
    let msg: string;
    let line: number | undefined;
    if (iss.code === "unrecognized_keys") {
      const key = iss.keys[0];
      line = lineOf(doc, lines, at, key);
      at = [...at, key];
      msg = `unknown key${unknownKeyHint(key, keysAt(schema, iss.path), mergekit)}`;
    } else {
      line = lineOf(doc, lines, at);
      msg = issueMessage(iss);
    }
    return { text: `${keyPath(at) ? `${keyPath(at)}: ` : ""}${msg}${line ? ` (line ${line})` : ""}`, line: line ?? Infinity };
  });
  // Report the first problem in file order: the one the user reads first.
  described.sort((a, b) => a.line - b.line);
  const more = described.length > 1 ? ` (and ${described.length - 1} more problem${described.length > 2 ? "s" : ""})` : "";
  return `${file}: ${described[0].text}${more}`;
}

function issueMessage(iss: ZodIssue): string {
  switch (iss.code) {
    case "invalid_type":
      if (iss.received === "undefined") return "is required";
      return iss.message.startsWith("Expected") ? `expected ${iss.expected}, received ${iss.received}` : iss.message;
    case "invalid_enum_value":
      return `expected one of ${iss.options.join(", ")} (got ${JSON.stringify(iss.received)})`;
    case "invalid_literal":
      return `expected ${JSON.stringify(iss.expected)} (taskmerge copies the tokenizer and config files from the base)`;
    case "not_finite":
      return "expected a finite number";
    case "invalid_union":
      return "expected a size such as 5GB or a number of bytes";
    case "too_small":
      return iss.type === "number" ? `must be ${iss.inclusive ? "≥" : ">"} ${iss.minimum}` : iss.message;
    default:
      return iss.message.charAt(0).toLowerCase() + iss.message.slice(1);
  }
}

/** The line of the YAML node at `at` (or of its key `key`), falling back to the nearest parent. */
function lineOf(doc: Document, lines: LineCounter, at: (string | number)[], key?: string): number | undefined {
  for (let n = at.length; n >= 0; n--) {
    let node: unknown = n ? doc.getIn(at.slice(0, n), true) : doc.contents;
    if (key !== undefined && n === at.length && YAML.isMap(node)) {
      const pair = node.items.find((p) => YAML.isScalar(p.key) && p.key.value === key);
      node = pair?.key ?? node;
    }
    const range = (node as { range?: [number, number, number] } | undefined)?.range;
    if (range) return lines.linePos(range[0]).line;
  }
  return undefined;
}
