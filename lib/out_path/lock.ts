/**
 * One run at a time per output path: `.X.lock` beside the output holds the
 * pid of the run writing X. It is created whole (written under a staging name,
 * then hard-linked into place, which fails if a lock exists), so a reader never
 * sees a half-written lock. A lock whose pid is gone was left by a killed run
 * and is reclaimed.
 */
import { promises as fsp } from "fs";
import { TaskmergeError } from "../errors";
import { lockName, lockStageName, pidAlive } from "./names";

export interface HeldLock {
  /** A line saying a stale lock was reclaimed, if one was. */
  reclaimed?: string;
  release(): Promise<void>;
}

const ATTEMPTS = 8;

export async function acquireLock(abs: string, shown: string): Promise<HeldLock> {
  const lock = lockName(abs);
  let reclaimed: string | undefined;
  for (let i = 0; i < ATTEMPTS; i++) {
    if (await tryCreate(lock, abs)) return { reclaimed, release: () => release(lock) };
    const holder = await readPid(lock);
    if (holder === "gone") continue; // released meanwhile: try again
    if (holder === "unreadable" || pidAlive(holder)) {
      const who = holder === "unreadable" ? "another taskmerge run" : `another taskmerge run (pid ${holder})`;
      throw new TaskmergeError(`${who} is writing this output; wait for it to finish, or remove ${lock} if no such run exists`, shown);
    }
    // Stale. Move it aside under a name of our own, then check that what we moved is that
    // stale lock and not one a concurrent run made meanwhile (which goes back).
    const aside = lockStageName(abs);
    try {
      await fsp.rename(lock, aside);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw e;
    }
    const moved = await readPid(aside);
    if (typeof moved === "number" && moved !== holder && pidAlive(moved)) await fsp.link(aside, lock).catch(() => undefined);
    else reclaimed = `removed the lock of a killed run (pid ${holder}) on ${shown}`;
    await fsp.rm(aside, { force: true });
  }
  throw new TaskmergeError(`could not take the lock ${lock}; other runs keep taking it`, shown);
}

/** Creates the lock with our pid; false if one exists. */
async function tryCreate(lock: string, abs: string): Promise<boolean> {
  const stage = lockStageName(abs);
  await fsp.writeFile(stage, `${process.pid}\n`, { flag: "wx" });
  try {
    await fsp.link(stage, lock);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST") return false;
    // Filesystems without hard links (FAT, some network shares): exclusive create instead.
    try {
      await fsp.writeFile(lock, `${process.pid}\n`, { flag: "wx" });
      return true;
    } catch (e2) {
      if ((e2 as NodeJS.ErrnoException).code === "EEXIST") return false;
      throw e2;
    }
  } finally {
    await fsp.rm(stage, { force: true });
  }
}

async function readPid(file: string): Promise<number | "gone" | "unreadable"> {
  let text: string;
  try {
    text = await fsp.readFile(file, "utf8");
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ENOENT" ? "gone" : "unreadable";
  }
  return /^\d+\n?$/.test(text) ? Number(text) : "unreadable";
}

/** Removes the lock if it is still ours. */
async function release(lock: string): Promise<void> {
  if ((await readPid(lock)) === process.pid) await fsp.rm(lock, { force: true });
}
