/**
 * Where a merge writes: one .safetensors file, or a Hugging Face style
 * directory (model.safetensors or shards plus index, the base's other files,
 * taskmerge.json listing every file). Everything is written in the slot's
 * staged temporary (OutputSlot.stage) and put in place only on commit(), so a
 * failed or killed run leaves nothing at the output path.
 */
import { promises as fsp } from "fs";
import * as path from "path";
import { OutTensor, SafetensorsWriter, tensorBytes } from "./safetensors/writer";
import { TaskmergeError } from "./errors";
import type { OutputSlot, StagedOutput } from "./out_path/slot";
import { CHECKPOINT_DIR, MANIFEST, OutputKind } from "./out_path/owned";

export interface OutputOptions {
  maxShardSize?: number;
  /** Base checkpoint directory whose non-weight files are copied (directory output only). */
  copyFrom?: string;
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

/** What a checkpoint output at `out` is: one file, or a directory marked by taskmerge.json. */
export function checkpointKind(out: string): OutputKind {
  return isFileOutput(out) ? { kind: "file" } : CHECKPOINT_DIR;
}

export class Output {
  private writer?: SafetensorsWriter;
  private shard = -1;
  private closed = false;

  private constructor(
    readonly out: string,
    /** Temporary file (file output) or directory (directory output). */
    private readonly staged: StagedOutput,
    private readonly shards: OutTensor[][],
    private readonly opts: OutputOptions,
  ) {}

  /** Starts writing the output claimed by `slot` (see OutputSlot.claim). */
  static async create(slot: OutputSlot, tensors: OutTensor[], opts: OutputOptions = {}): Promise<Output> {
    if (isFileOutput(slot.out)) return new Output(slot.out, await slot.stage("file"), [tensors], opts);
    return new Output(slot.out, await slot.stage("dir"), planShards(tensors, opts.maxShardSize ?? DEFAULT_MAX_SHARD), opts);
  }

  private get tmp(): string {
    return this.staged.path;
  }

  get isFile(): boolean {
    return isFileOutput(this.out);
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
    // A file output stays at its temporary name (the slot renames it); shards get their names in the temporary directory.
    const final = this.isFile ? this.tmp : path.join(this.tmp, shardFileName(this.shard, this.shards.length));
    const tmp = this.isFile ? this.tmp : `${final}.part`;
    this.writer = await SafetensorsWriter.create(final, tmp, this.shards[this.shard], this.opts.metadata);
  }

  /**
   * Finishes the output and puts it in place. A directory output gets `extraFiles`
   * and, last, taskmerge.json: `manifest` plus the list of every file of the
   * directory, which is what lets a later run know the directory is its own to replace.
   */
  async commit(extraFiles: Record<string, string> = {}, manifest?: Record<string, unknown>): Promise<void> {
    // Shards after the last written one (only empty tensors) still need their files.
    while (this.shard < this.shards.length - 1) await this.nextShard();
    await this.writer?.finish();
    this.writer = undefined;
    if (!this.isFile) {
      if (this.shards.length > 1) await this.writeIndex();
      for (const [name, content] of Object.entries(extraFiles)) await fsp.writeFile(path.join(this.tmp, name), content);
      if (this.opts.copyFrom) await copyOtherFiles(this.opts.copyFrom, this.tmp);
      const files = [...new Set([...(await fsp.readdir(this.tmp)), MANIFEST])].sort();
      await fsp.writeFile(path.join(this.tmp, MANIFEST), JSON.stringify({ ...manifest, files }, null, 2) + "\n");
    }
    await this.staged.commit();
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
    await this.staged.abort();
  }
}

const WEIGHT_FILE = /(\.safetensors|\.bin|\.pt|\.pth|\.ckpt|\.safetensors\.index\.json|\.bin\.index\.json)$/;

/** The base directory's other top-level files (config, tokenizer) that a directory output copies. */
export async function listOtherFiles(from: string): Promise<string[]> {
  const entries = await fsp.readdir(from, { withFileTypes: true });
  return entries.filter((e) => e.isFile() && !WEIGHT_FILE.test(e.name) && e.name !== MANIFEST).map((e) => e.name);
}

async function copyOtherFiles(from: string, to: string): Promise<void> {
  for (const name of await listOtherFiles(from)) {
    const dst = path.join(to, name);
    if (await fsp.stat(dst).catch(() => undefined)) continue; // files the merge wrote win
    await fsp.copyFile(path.join(from, name), dst);
  }
}
