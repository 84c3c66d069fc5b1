/**
 * The TALL bundle: bundle.json (tasks, λt, τMTL kind, base reference, key
 * order), tau.safetensors (τMTL) and masks.safetensors (one U8 tensor
 * `<task>::<key>` per task and float key, NumPy packbits order). Opening a
 * bundle checks everything a reconstruction relies on, with errors that name
 * the file and key.
 */
import * as path from "path";
import { SafetensorsFile } from "../safetensors/file";
import { isFloatDType, FloatDType, DType } from "../safetensors/dtypes";
import type { Checkpoint } from "../checkpoint";
import { quote, TaskmergeError } from "../errors";
import { readRegularFile } from "../input_file";
import { sampleHash } from "../fingerprint";

/** The content hash of the bundle's base (the fingerprint statistics files use too: lib/fingerprint.ts). */
export { sampleHash };

export const BUNDLE_FORMAT = "taskmerge.tall-bundle";
export const BUNDLE_VERSION = 1;
export const BUNDLE_JSON = "bundle.json";
export const TAU_FILE = "tau.safetensors";
export const MASKS_FILE = "masks.safetensors";

export interface BundleKey {
  key: string;
  shape: number[];
  /** dtype of the key in the base. */
  dtype: DType;
}

export interface BundleTask {
  name: string;
  lambda: number;
  /** The expert checkpoint it was made from, and its size in bytes. */
  expert: string;
  bytes: number;
}

export interface BundleManifest {
  format: string;
  version: number;
  taskmerge: string;
  tau: { kind: "sum" | "ties"; file: string; dtype: FloatDType; density?: number; scope?: string };
  masks: { file: string; bitorder: "big"; name: "<task>::<key>" };
  tasks: BundleTask[];
  /** The base: header hash (layout) and a hash of the first entries of every key (contents). */
  base: { path: string; bytes: number; headerHash: string; sampleHash: string };
  /** The base's float keys, in order: the keys of tau.safetensors and of every task's masks. */
  keys: BundleKey[];
}

export const maskKey = (task: string, key: string) => `${task}::${key}`;
export const maskBytes = (numel: number) => Math.ceil(numel / 8);
export const numelOf = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

export interface Bundle {
  dir: string;
  manifest: BundleManifest;
  tau: SafetensorsFile;
  masks: SafetensorsFile;
  close(): Promise<void>;
}

/** Opens and validates a bundle directory; `signal` stops the reading of its headers. */
export async function openBundle(dir: string, signal?: AbortSignal): Promise<Bundle> {
  const jsonPath = path.join(dir, BUNDLE_JSON);
  let text: string;
  try {
    text = (await readRegularFile(jsonPath)).toString("utf8");
  } catch (e) {
    if (e instanceof TaskmergeError && !/no such file/.test(e.message)) throw e;
    throw new TaskmergeError(`not a taskmerge bundle: ${BUNDLE_JSON} not found`, dir);
  }
  let m: BundleManifest;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw new TaskmergeError(`invalid JSON: ${(e as Error).message.split("\n")[0]}`, jsonPath);
  }
  checkManifest(m, jsonPath);
  const files: SafetensorsFile[] = [];
  try {
    const tau = await SafetensorsFile.open(path.join(dir, TAU_FILE), { signal });
    files.push(tau);
    const masks = await SafetensorsFile.open(path.join(dir, MASKS_FILE), { signal });
    files.push(masks);
    checkTau(m, tau);
    checkMasks(m, masks);
    return { dir, manifest: m, tau, masks, close: async () => void (await Promise.all(files.map((f) => f.close()))) };
  } catch (e) {
    await Promise.all(files.map((f) => f.close()));
    throw e;
  }
}

function checkManifest(m: BundleManifest, file: string): void {
  const bad = (what: string) => new TaskmergeError(`invalid bundle: ${what}`, file);
  if (!m || typeof m !== "object" || m.format !== BUNDLE_FORMAT) throw bad(`'format' is not ${BUNDLE_FORMAT}`);
  if (m.version !== BUNDLE_VERSION) throw bad(`unsupported version ${JSON.stringify(m.version)} (this taskmerge reads ${BUNDLE_VERSION})`);
  if (!Array.isArray(m.tasks) || !m.tasks.length) throw bad("no tasks");
  const names = new Set<string>();
  for (const t of m.tasks) {
    if (!t || typeof t.name !== "string" || !t.name) throw bad("a task has no name");
    if (names.has(t.name)) throw bad(`task ${quote(t.name)} appears twice`);
    if (typeof t.lambda !== "number" || !Number.isFinite(t.lambda)) throw bad(`task ${quote(t.name)} has no finite lambda`);
    names.add(t.name);
  }
  if (!m.base || typeof m.base.headerHash !== "string" || typeof m.base.sampleHash !== "string" || typeof m.base.bytes !== "number")
    throw bad("no base reference (bytes, headerHash, sampleHash)");
  if (!m.tau || !isFloatDType(m.tau.dtype)) throw bad("no tau dtype");
  if (!Array.isArray(m.keys)) throw bad("no key list");
  for (const k of m.keys)
    if (!k || typeof k.key !== "string" || !Array.isArray(k.shape) || !k.shape.every((d) => Number.isInteger(d) && d >= 0))
      throw bad("a key entry has no key or shape");
}

const sameShape = (a: number[], b: number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

function checkTau(m: BundleManifest, tau: SafetensorsFile): void {
  const got = tau.tensors;
  if (got.length !== m.keys.length)
    throw new TaskmergeError(`holds ${got.length} tensors but ${BUNDLE_JSON} lists ${m.keys.length} keys`, tau.path);
  m.keys.forEach((k, i) => {
    const t = got[i];
    if (t.key !== k.key) throw new TaskmergeError(`key order differs from ${BUNDLE_JSON}: ${quote(t.key)} where ${quote(k.key)} belongs`, tau.path, t.key);
    if (!sameShape(t.shape, k.shape)) throw new TaskmergeError(`shape [${t.shape}] differs from ${BUNDLE_JSON} [${k.shape}]`, tau.path, k.key);
    if (!isFloatDType(t.dtype)) throw new TaskmergeError(`dtype ${t.dtype} is not a float dtype`, tau.path, k.key);
  });
}

function checkMasks(m: BundleManifest, masks: SafetensorsFile): void {
  const expected = m.tasks.length * m.keys.length;
  for (const task of m.tasks)
    for (const k of m.keys) {
      const name = maskKey(task.name, k.key);
      const t = masks.tensor(name);
      if (!t) throw new TaskmergeError(`mask of task ${quote(task.name)} missing`, masks.path, name);
      const want = maskBytes(numelOf(k.shape));
      if (t.dtype !== "U8" || t.shape.length !== 1 || t.shape[0] !== want)
        throw new TaskmergeError(`expected U8 [${want}] (packed bits of ${numelOf(k.shape)} entries), got ${t.dtype} [${t.shape}]`, masks.path, name);
    }
  if (masks.tensors.length !== expected)
    throw new TaskmergeError(`holds ${masks.tensors.length} tensors, expected ${expected} (${m.tasks.length} tasks × ${m.keys.length} keys)`, masks.path);
}

/** Checks that `base` is the checkpoint the bundle was made from. */
export async function checkBase(m: BundleManifest, base: Checkpoint, bundleDir: string): Promise<void> {
  const floatKeys = base.keys().filter((k) => isFloatDType(base.get(k).dtype));
  const first = m.keys.findIndex((k, i) => floatKeys[i] !== k.key || !sameShape(base.get(k.key).shape, k.shape));
  if (first >= 0 || floatKeys.length !== m.keys.length) {
    const k = first >= 0 ? m.keys[first].key : floatKeys[m.keys.length];
    throw new TaskmergeError(`base does not match the bundle ${bundleDir} (made from ${m.base.path}): keys or shapes differ at ${quote(k)}`, base.path);
  }
  if (base.fileBytes !== m.base.bytes)
    throw new TaskmergeError(`base differs from the bundle's base ${m.base.path} (${base.fileBytes} bytes, the bundle's base has ${m.base.bytes})`, base.path);
  if (base.headerHash !== m.base.headerHash)
    throw new TaskmergeError(`base differs from the bundle's base ${m.base.path} (header hash mismatch; was it made from another checkpoint?)`, base.path);
  if ((await sampleHash(base)) !== m.base.sampleHash)
    throw new TaskmergeError(`base differs from the bundle's base ${m.base.path} (same layout, different weights)`, base.path);
}
