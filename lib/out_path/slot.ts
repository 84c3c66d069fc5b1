/**
 * Claiming an output path and putting a finished output there: the one place
 * where taskmerge replaces anything. claimOutput() takes the output's lock,
 * reclaims leftovers of killed runs and checks that what is at the path may
 * be replaced, all before any input is read; stage() starts the temporary
 * (file or directory) an output is written in, and its commit() renames it
 * into place.
 */
import { promises as fsp } from "fs";
import * as path from "path";
import { TaskmergeError, throwIfAborted } from "../errors";
import { acquireLock, HeldLock } from "./lock";
import { reclaimLeftovers } from "./leftovers";
import { asideName, tempName } from "./names";
import { checkParent, checkReplaceable, OutputKind } from "./owned";

/**
 * Test seam: called between the steps of replacing an existing directory, so
 * tests can kill the process exactly there. Does nothing unless a test sets it.
 */
export const replaceSteps: { after?: (step: "old-moved-aside" | "new-in-place") => void } = {};

export class OutputSlot {
  private released = false;

  private constructor(
    /** Absolute output path. */
    readonly out: string,
    /** The path as the user gave it, for messages. */
    readonly shown: string,
    readonly kind: OutputKind,
    /** One line per leftover of a killed run that was removed or restored. */
    readonly reclaimed: string[],
    private readonly lock: HeldLock,
    private readonly signal?: AbortSignal,
  ) {}

  static async claim(out: string, kind: OutputKind, signal?: AbortSignal): Promise<OutputSlot> {
    const abs = path.resolve(out);
    await checkParent(abs, out);
    const lock = await acquireLock(abs, out).catch((e: NodeJS.ErrnoException) => {
      throw e instanceof TaskmergeError ? e : new TaskmergeError(`cannot write beside the output (${e.code ?? e.message})`, out);
    });
    try {
      const reclaimed = [...(lock.reclaimed ? [lock.reclaimed] : []), ...(await reclaimLeftovers(abs, out))];
      await checkReplaceable(abs, out, kind);
      return new OutputSlot(abs, out, kind, reclaimed, lock, signal);
    } catch (e) {
      await lock.release();
      throw e;
    }
  }

  /**
   * Starts writing the output under a fresh hidden name beside it: a directory
   * (created here) or a file (which the caller's writer creates there).
   */
  async stage(what: "file" | "dir"): Promise<StagedOutput> {
    const tmp = tempName(this.out);
    if (what === "dir") await fsp.mkdir(tmp);
    return new StagedOutput(this, tmp);
  }

  /**
   * Renames the complete temporary `tmp` to the output path. A file, a missing
   * or an empty directory is replaced in one rename. A directory with an older
   * output takes two, and between them the old one waits under `<tmp>.old`
   * for the next run to put back should this one be killed there.
   */
  async place(tmp: string): Promise<void> {
    // The point of no return: an interruption before it leaves no output.
    throwIfAborted(this.signal);
    // Something may have appeared at the path since the claim.
    await checkReplaceable(this.out, this.shown, this.kind);
    try {
      await fsp.rename(tmp, this.out);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (this.kind.kind === "file" || (code !== "ENOTEMPTY" && code !== "EEXIST")) throw e;
      const old = asideName(tmp);
      await fsp.rename(this.out, old);
      replaceSteps.after?.("old-moved-aside");
      try {
        await fsp.rename(tmp, this.out);
      } catch (e2) {
        await fsp.rename(old, this.out).catch(() => undefined);
        throw e2;
      }
      replaceSteps.after?.("new-in-place");
      await fsp.rm(old, { recursive: true, force: true });
    }
    await syncDir(path.dirname(this.out));
  }

  /** Releases the lock; safe to call more than once. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.lock.release();
  }
}

/**
 * The one atomic writer of an output: everything is written at `path`, a
 * temporary beside the output, which commit() puts in place through the slot
 * and abort() removes, so a failed or killed run leaves nothing at the output.
 */
export class StagedOutput {
  private settled = false;

  constructor(
    private readonly slot: OutputSlot,
    /** The temporary file or directory being written. */
    readonly path: string,
  ) {}

  /** Puts the complete temporary in place (see OutputSlot.place). */
  async commit(): Promise<void> {
    await this.slot.place(this.path);
    this.settled = true;
  }

  /** Removes the temporary unless committed; safe to call more than once. */
  async abort(): Promise<void> {
    if (this.settled) return;
    this.settled = true;
    await fsp.rm(this.path, { recursive: true, force: true });
  }
}

/** Makes the renames durable (best effort: not every filesystem can sync a directory). */
async function syncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, "r").catch(() => undefined);
  await fh?.sync().catch(() => undefined);
  await fh?.close();
}
