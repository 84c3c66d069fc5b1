/**
 * The hidden names taskmerge uses beside an output X, all starting with `.X.`
 * and carrying the pid of the run that made them, so a later run can tell a
 * leftover of a killed run (pid gone) from the work of a live one:
 *   .X.tmp-<pid>-<hex>       the output being written (file or directory)
 *   .X.tmp-<pid>-<hex>.old   a previous output moved aside while the new one takes its place
 *   .X.lock                  the lock of the run writing X (holds its pid)
 *   .X.lock-<pid>-<hex>      a lock being created or reclaimed
 */
import * as path from "path";
import { randomBytes } from "crypto";

const tag = () => `${process.pid}-${randomBytes(4).toString("hex")}`;

export const tempName = (abs: string) => path.join(path.dirname(abs), `.${path.basename(abs)}.tmp-${tag()}`);
export const asideName = (tmp: string) => `${tmp}.old`;
export const lockName = (abs: string) => path.join(path.dirname(abs), `.${path.basename(abs)}.lock`);
export const lockStageName = (abs: string) => path.join(path.dirname(abs), `.${path.basename(abs)}.lock-${tag()}`);

export interface Leftover {
  /** Entry name in the output's parent directory. */
  name: string;
  pid: number;
  /** A previous output moved aside (`.old`), not a temporary. */
  aside: boolean;
}

/** Parses an entry of the output's parent as one of the names above (the lock itself excluded). */
export function parseLeftover(outBase: string, entry: string): Leftover | undefined {
  const prefix = `.${outBase}.`;
  if (!entry.startsWith(prefix)) return undefined;
  const m = /^(?:tmp|lock)-(\d+)-[0-9a-f]+(\.old)?$/.exec(entry.slice(prefix.length));
  return m ? { name: entry, pid: Number(m[1]), aside: !!m[2] } : undefined;
}

/** Whether process `pid` exists (EPERM: it does, owned by another user). */
export function pidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
