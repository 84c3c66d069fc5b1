/**
 * An output must not replace one of the run's inputs. Paths are compared as
 * the filesystem resolves them (symbolic links, `..`, a symlinked directory
 * alias) and files by device and inode (hard links, bind mounts,
 * case-insensitive names), against the output file or every file an output
 * directory would replace.
 */
import { promises as fsp, Stats } from "fs";
import * as path from "path";
import type { Checkpoint } from "../checkpoint";
import { UsageError } from "../errors";

/** Every file a checkpoint reads from: its safetensors files and, sharded, its index. */
export function checkpointFiles(ck: Checkpoint): string[] {
  const files = ck.files.map((f) => f.path);
  return ck.layout === "sharded" ? [path.join(ck.path, "model.safetensors.index.json"), ...files] : files;
}

/** Throws a usage error if `out` is, holds or would replace any of `inputs` (paths that do not exist are skipped). */
export async function checkInputClash(out: string, inputs: string[]): Promise<void> {
  const abs = path.resolve(out);
  const realOut = await realPath(abs);
  const st = await fsp.stat(abs).catch(() => undefined);
  const replaced: Stats[] = st?.isDirectory() ? await entryStats(abs) : st ? [st] : [];
  for (const p of inputs) {
    const ist = await fsp.stat(p).catch(() => undefined);
    if (!ist) continue;
    const real = await fsp.realpath(p);
    const where =
      real === realOut || (st && sameFile(st, ist)) ? "is also"
      : real.startsWith(realOut.endsWith(path.sep) ? realOut : realOut + path.sep) ? "contains"
      : replaced.some((r) => sameFile(r, ist)) ? "would replace"
      : undefined;
    if (where) throw new UsageError(`the output ${out} ${where} an input (${p}); write the output somewhere else`);
  }
}

const sameFile = (a: Stats, b: Stats) => a.dev === b.dev && a.ino === b.ino;

/** The real path of `abs`, or of its parent joined with its name when it does not exist yet. */
async function realPath(abs: string): Promise<string> {
  try {
    return await fsp.realpath(abs);
  } catch {
    const parent = await fsp.realpath(path.dirname(abs)).catch(() => path.dirname(abs));
    return path.join(parent, path.basename(abs));
  }
}

async function entryStats(dir: string): Promise<Stats[]> {
  const out: Stats[] = [];
  for (const e of await fsp.readdir(dir)) {
    const s = await fsp.stat(path.join(dir, e)).catch(() => undefined);
    if (s) out.push(s);
  }
  return out;
}
