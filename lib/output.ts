/**
 * Where a merge writes: one .safetensors file, or a Hugging Face style
 * directory (model.safetensors or shards plus index, the base's other files,
 * taskmerge.json). Everything is written under a temporary name in the same
 * directory and renamed into place only on commit(), so a failed or killed
 * run leaves nothing at the output path.
 */
import { promises as fsp } from "fs";
import * as path from "path";
import { randomBytes } from "crypto";
import { OutTensor, SafetensorsWriter, tensorBytes } from "./safetensors/writer";
import { TaskmergeError } from "./errors";

export interface OutputOptions {
  maxShardSize?: number;
  /** Base checkpoint directory whose non-weight files are copied (directory output only). */
  copyFrom?: string;
  /** Extra JSON files to write into a directory output (name → content). */
  extraFiles?: Record<string, string>;
  metadata?: Record<string, string>;
}

export const DEFAULT_MAX_SHARD = 5e9;

export function isFileOutput(out: string): boolean {
  return out.endsWith(".safetensors");
}

/** Splits tensors into shards of at most maxShardSize bytes (a larger tensor gets a shard of its own). */
export function planShards(tensors: OutTensor[], maxShardSize: number): OutTensor[][] {
  const shards: OutTensor[][] = [];
  let cur: OutTensor[] = [];
  let size = 0;
  for (const t of tensors) {
    const n = tensorBytes(t);
    if (cur.length && size + n > maxShardSize) {
      shards.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(t);
    size += n;
  }
  if (cur.length || !shards.length) shards.push(cur);
  return shards;
}

export function shardFileName(i: number, n: number): string {
  const pad = (k: number) => String(k).padStart(5, "0");
  return n === 1 ? "model.safetensors" : `model-${pad(i + 1)}-of-${pad(n)}.safetensors`;
}

/** Checks that `out` can be written (parent exists, no file/directory clash), writing nothing. */
export async function checkOutputPath(out: string): Promise<void> {
  const abs = path.resolve(out);
  const st = await fsp.stat(path.dirname(abs)).catch(() => undefined);
  if (!st?.isDirectory()) throw new TaskmergeError("output's parent directory does not exist", out);
  const existing = await fsp.stat(abs).catch(() => undefined);
  if (isFileOutput(abs) && existing?.isDirectory()) throw new TaskmergeError("output path is a directory", out);
  if (!isFileOutput(abs) && existing && !existing.isDirectory()) throw new TaskmergeError("output path exists and is not a directory", out);
}

export class Output {
  private writer?: SafetensorsWriter;
  private shard = -1;
  private closed = false;

  private constructor(
    readonly out: string,
    /** Temporary file (file output) or directory (directory output). */
    private readonly tmp: string,
    private readonly shards: OutTensor[][],
    private readonly opts: OutputOptions,
  ) {}

  static async create(out: string, tensors: OutTensor[], opts: OutputOptions = {}): Promise<Output> {
    await checkOutputPath(out);
    const abs = path.resolve(out);
    const parent = path.dirname(abs);
    const tag = `.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
    if (isFileOutput(abs)) {
      const tmp = path.join(parent, `.${path.basename(abs)}${tag}`);
      return new Output(abs, tmp, [tensors], opts);
    }
    const tmp = path.join(parent, `.${path.basename(abs)}${tag}`);
    await fsp.mkdir(tmp);
    return new Output(abs, tmp, planShards(tensors, opts.maxShardSize ?? DEFAULT_MAX_SHARD), opts);
  }

  get isFile(): boolean {
    return isFileOutput(this.out);
  }

  private shardPath(i: number): string {
    return this.isFile ? this.out : path.join(this.tmp, shardFileName(i, this.shards.length));
  }

  /** Appends data of `key`; keys must arrive in the planned order. */
  async write(key: string, data: Uint8Array): Promise<void> {
    while (!this.writer || this.writer.pendingKey() === undefined) await this.nextShard();
    await this.writer.write(key, data);
  }

  private async nextShard(): Promise<void> {
    if (this.writer) await this.writer.finish();
    this.shard++;
    if (this.shard >= this.shards.length) throw new TaskmergeError("internal: more data than planned", this.out);
    const final = this.shardPath(this.shard);
    const tmp = this.isFile ? this.tmp : `${final}.part`;
    this.writer = await SafetensorsWriter.create(final, tmp, this.shards[this.shard], this.opts.metadata);
  }

  /** Finishes the output; `extraFiles` (directory output) join those given at creation. */
  async commit(extraFiles: Record<string, string> = {}): Promise<void> {
    // Shards after the last written one (only empty tensors) still need their files.
    while (this.shard < this.shards.length - 1) await this.nextShard();
    await this.writer?.finish();
    this.writer = undefined;
    if (this.isFile) {
      this.closed = true;
      return;
    }
    if (this.shards.length > 1) await this.writeIndex();
    for (const [name, content] of Object.entries({ ...this.opts.extraFiles, ...extraFiles }))
      await fsp.writeFile(path.join(this.tmp, name), content);
    if (this.opts.copyFrom) await copyOtherFiles(this.opts.copyFrom, this.tmp);
    await swapIntoPlace(this.tmp, this.out);
    this.closed = true;
  }

  private async writeIndex(): Promise<void> {
    const weight_map: Record<string, string> = Object.create(null); // keys come from files: `__proto__` must stay a key
    let total = 0;
    this.shards.forEach((s, i) => {
      for (const t of s) {
        weight_map[t.key] = shardFileName(i, this.shards.length);
        total += tensorBytes(t);
      }
    });
    const index = { metadata: { total_size: total }, weight_map };
    await fsp.writeFile(path.join(this.tmp, "model.safetensors.index.json"), JSON.stringify(index, null, 2) + "\n");
  }

  /** Removes everything written so far. Safe to call more than once. */
  async abort(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.writer?.close();
    if (!this.isFile) await fsp.rm(this.tmp, { recursive: true, force: true });
  }
}

const WEIGHT_FILE = /(\.safetensors|\.bin|\.pt|\.pth|\.ckpt|\.safetensors\.index\.json|\.bin\.index\.json)$/;

/** The base directory's other top-level files (config, tokenizer) that a directory output copies. */
export async function listOtherFiles(from: string): Promise<string[]> {
  const entries = await fsp.readdir(from, { withFileTypes: true });
  return entries.filter((e) => e.isFile() && !WEIGHT_FILE.test(e.name) && e.name !== "taskmerge.json").map((e) => e.name);
}

async function copyOtherFiles(from: string, to: string): Promise<void> {
  for (const name of await listOtherFiles(from)) {
    const dst = path.join(to, name);
    if (await fsp.stat(dst).catch(() => undefined)) continue; // files the merge wrote win
    await fsp.copyFile(path.join(from, name), dst);
  }
}

/** Renames the finished temporary directory to `out`, replacing an old one. */
async function swapIntoPlace(tmp: string, out: string): Promise<void> {
  const old = await fsp.stat(out).catch(() => undefined);
  if (!old) {
    await fsp.rename(tmp, out);
    return;
  }
  const trash = `${tmp}.old`;
  await fsp.rename(out, trash);
  await fsp.rename(tmp, out);
  await fsp.rm(trash, { recursive: true, force: true });
}
