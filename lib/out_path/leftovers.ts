/**
 * Leftovers of killed runs beside an output: temporaries (up to the size of
 * the whole output) and a previous output moved aside. The next run on the
 * same output, holding its lock, removes those whose pid is gone, and puts a
 * moved-aside output back when the kill came between the two renames of a
 * replacement and left nothing at the output path.
 */
import { promises as fsp } from "fs";
import * as path from "path";
import { formatBytes } from "../units";
import { Leftover, parseLeftover, pidAlive } from "./names";

/** Reclaims the leftovers of `abs`; returns one line per thing done. */
export async function reclaimLeftovers(abs: string, shown: string): Promise<string[]> {
  const parent = path.dirname(abs);
  const shownIn = (name: string) => path.join(path.dirname(shown), name);
  const stale = (await fsp.readdir(parent))
    .map((e) => parseLeftover(path.basename(abs), e))
    .filter((l): l is Leftover => !!l && !pidAlive(l.pid));
  const lines: string[] = [];
  const outExists = await fsp.lstat(abs).then(() => true, () => false);
  const restore = outExists ? undefined : stale.find((l) => l.aside);
  if (restore) {
    await fsp.rename(path.join(parent, restore.name), abs);
    lines.push(`restored ${shown} from ${shownIn(restore.name)}, where a run (pid ${restore.pid}) killed while replacing it had moved it`);
  }
  for (const l of stale) {
    if (l === restore) continue;
    const p = path.join(parent, l.name);
    const bytes = await diskBytes(p);
    await fsp.rm(p, { recursive: true, force: true });
    lines.push(`removed ${shownIn(l.name)} (${formatBytes(bytes)}), left by a killed run (pid ${l.pid})`);
  }
  return lines;
}

async function diskBytes(p: string): Promise<number> {
  const st = await fsp.lstat(p).catch(() => undefined);
  if (!st?.isDirectory()) return st?.size ?? 0;
  let n = 0;
  for (const e of await fsp.readdir(p)) n += await diskBytes(path.join(p, e));
  return n;
}
