/**
 * Test fixtures: a minimal safetensors writer and reader written separately
 * from lib/safetensors (so tests do not check the library against itself),
 * seeded checkpoint generators, temporary directories and a CLI runner.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { spawn } from "child_process";
import { encode, decode, quantize, RefFloat, SIZE } from "./floatref";

export const ROOT = path.join(__dirname, "..", "..");
export const CLI = process.env.TASKMERGE_CLI ?? path.join(ROOT, "dist", "cli", "main.js");

export interface RawTensor {
  dtype: string;
  shape: number[];
  data: Buffer;
}

/** Writes a safetensors file from raw tensors, in the given order, 8-byte aligned header. */
export function writeSafetensors(file: string, tensors: Record<string, RawTensor>, metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let off = 0;
  for (const [k, t] of Object.entries(tensors)) {
    header[k] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.length] };
    off += t.data.length;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from(json), ...Object.values(tensors).map((t) => t.data)]));
}

/** Reads every tensor of a safetensors file, or of an HF directory (single file or sharded). */
export function readSafetensors(p: string): Record<string, RawTensor> {
  if (fs.statSync(p).isDirectory()) {
    const idx = path.join(p, "model.safetensors.index.json");
    if (!fs.existsSync(idx)) return readSafetensors(path.join(p, "model.safetensors"));
    const map = JSON.parse(fs.readFileSync(idx, "utf8")).weight_map as Record<string, string>;
    const out: Record<string, RawTensor> = {};
    for (const shard of [...new Set(Object.values(map))]) Object.assign(out, readSafetensors(path.join(p, shard)));
    return out;
  }
  const buf = fs.readFileSync(p);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8"));
  const out: Record<string, RawTensor> = {};
  for (const [k, v] of Object.entries<any>(header)) {
    if (k === "__metadata__") continue;
    out[k] = { dtype: v.dtype, shape: v.shape, data: Buffer.from(buf.subarray(8 + n + v.data_offsets[0], 8 + n + v.data_offsets[1])) };
  }
  return out;
}

export function readHeader(file: string): Record<string, any> {
  const fd = fs.openSync(file, "r");
  try {
    const len = Buffer.alloc(8);
    fs.readSync(fd, len, 0, 8, 0);
    const n = Number(len.readBigUInt64LE(0));
    const h = Buffer.alloc(n);
    fs.readSync(fd, h, 0, n, 8);
    return JSON.parse(h.toString("utf8"));
  } finally {
    fs.closeSync(fd);
  }
}

/** Float64 values of a float tensor. */
export function values(t: RawTensor): Float64Array {
  return decode(t.data, t.dtype);
}

/** Deterministic PRNG (mulberry32) with a normal sampler. */
export function rng(seed: number) {
  let a = seed >>> 0;
  const u = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(u() + 1e-300)) * Math.cos(2 * Math.PI * u());
  return { u, normal };
}

export interface KeySpec {
  name: string;
  shape: number[];
  dtype: string; // float or integer dtype
}

export const isFloatName = (d: string) => d === "F64" || d === "F32" || d === "F16" || d === "BF16";
export const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** A small transformer-like layout with a non-float buffer. */
export function smallModel(dtype: RefFloat = "F32"): KeySpec[] {
  return [
    { name: "embed.weight", shape: [16, 8], dtype },
    { name: "blocks.0.attn.qkv.weight", shape: [24, 8], dtype },
    { name: "blocks.0.attn.qkv.bias", shape: [24], dtype },
    { name: "blocks.0.norm.weight", shape: [8], dtype },
    { name: "blocks.0.norm.bias", shape: [8], dtype },
    { name: "blocks.0.mlp.fc1.weight", shape: [32, 8], dtype },
    { name: "blocks.0.mlp.fc2.weight", shape: [8, 32], dtype },
    { name: "position_ids", shape: [6], dtype: "I64" },
    { name: "mask", shape: [5], dtype: "BOOL" },
  ];
}

export type Layout = "file" | "dir" | "sharded";

export interface Model {
  path: string;
  /** Float64 values of each float key exactly as stored (after rounding to the dtype). */
  floats: Record<string, Float64Array>;
  raw: Record<string, RawTensor>;
}

/** Generates raw tensors: floats around `center` (base) plus a task offset of scale `scale`. */
export function genTensors(keys: KeySpec[], seed: number, base?: Model, scale = 0.1): Model {
  const r = rng(seed);
  const raw: Record<string, RawTensor> = {};
  const floats: Record<string, Float64Array> = {};
  for (const k of keys) {
    const n = numel(k.shape);
    if (isFloatName(k.dtype)) {
      const v = new Float64Array(n);
      for (let i = 0; i < n; i++) v[i] = (base ? base.floats[k.name][i] : 0) + (base ? scale : 1) * r.normal();
      const q = quantize(v, k.dtype as RefFloat);
      floats[k.name] = q;
      raw[k.name] = { dtype: k.dtype, shape: k.shape, data: encode(q, k.dtype as RefFloat) };
    } else {
      // Non-float buffers are identical in every checkpoint (as real ones are).
      const data = base ? Buffer.from(base.raw[k.name].data) : Buffer.alloc(n * SIZE[k.dtype]);
      if (!base) for (let i = 0; i < data.length; i++) data[i] = k.dtype === "BOOL" ? i % 2 : (i * 7 + 3) & 0xff;
      raw[k.name] = { dtype: k.dtype, shape: k.shape, data };
    }
  }
  return { path: "", floats, raw };
}

/** Saves a model as one file, an HF directory, or an HF directory in `shards` shards. */
export function saveModel(m: Model, p: string, layout: Layout, shards = 2): string {
  if (layout === "file") {
    writeSafetensors(p, m.raw);
  } else if (layout === "dir") {
    fs.mkdirSync(p, { recursive: true });
    writeSafetensors(path.join(p, "model.safetensors"), m.raw);
  } else {
    fs.mkdirSync(p, { recursive: true });
    const keys = Object.keys(m.raw);
    const per = Math.ceil(keys.length / shards);
    const weightMap: Record<string, string> = {};
    for (let s = 0; s < shards; s++) {
      const name = `model-${String(s + 1).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.safetensors`;
      const part: Record<string, RawTensor> = {};
      for (const k of keys.slice(s * per, (s + 1) * per)) {
        part[k] = m.raw[k];
        weightMap[k] = name;
      }
      writeSafetensors(path.join(p, name), part);
    }
    fs.writeFileSync(path.join(p, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  }
  m.path = p;
  return p;
}

export interface Zoo {
  dir: string;
  base: Model;
  experts: Model[];
}

/** A base and T experts on disk. Expert t may use its own dtype (`expertDtypes`). */
export function makeZoo(
  dir: string,
  o: { T: number; keys?: KeySpec[]; dtype?: RefFloat; layout?: Layout; seed?: number; scale?: number; expertDtypes?: RefFloat[] },
): Zoo {
  const keys = o.keys ?? smallModel(o.dtype ?? "F32");
  const layout = o.layout ?? "file";
  const seed = o.seed ?? 1;
  const ext = layout === "file" ? ".safetensors" : "";
  const base = genTensors(keys, seed);
  saveModel(base, path.join(dir, `base${ext}`), layout);
  const experts: Model[] = [];
  for (let t = 0; t < o.T; t++) {
    const ek = o.expertDtypes ? keys.map((k) => (isFloatName(k.dtype) ? { ...k, dtype: o.expertDtypes![t] } : k)) : keys;
    const e = genTensors(ek, seed * 1000 + t + 1, base, o.scale ?? 0.1);
    saveModel(e, path.join(dir, `task${t}${ext}`), layout);
    experts.push(e);
  }
  return { dir, base, experts };
}

const tmpRoots: string[] = [];

/** A fresh temporary directory, removed after the test file finishes. */
export function tmpDir(prefix = "tm-"): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tmpRoots.push(d);
  return d;
}

if (typeof afterAll === "function") {
  afterAll(() => {
    for (const d of tmpRoots.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the real CLI (dist/) as a child process. */
export function runCli(args: string[], o: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: o.cwd, env: { ...process.env, ...o.env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), o.timeoutMs ?? 60000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Files and directories under `dir`, relative, sorted. */
export function listTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      out.push(r);
      if (e.isDirectory()) walk(path.join(d, e.name), r);
    }
  };
  if (fs.existsSync(dir)) walk(dir, "");
  return out.sort();
}

/** max |a − b| / (|b| + floor) over all elements. */
export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-6): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / (Math.abs(b[i]) + floor));
  return m;
}

/** The error `p` rejects with (its fields: message, kind, role, arg, ...); throws when it resolves. */
export async function rejection(p: Promise<unknown>): Promise<Record<string, unknown> & { message: string }> {
  try {
    await p;
  } catch (e) {
    return e as Record<string, unknown> & { message: string };
  }
  throw new Error("expected a rejection");
}
