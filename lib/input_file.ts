/**
 * Opening an input file (checkpoint, shard, index, statistics, bundle,
 * config): only regular files are read. A FIFO or a device would block the
 * open or the reads forever, past any signal, so the type is checked first,
 * and the open itself is non-blocking (a FIFO swapped in after the check
 * cannot block it either) and checked again on the open handle.
 */
import { constants, promises as fsp, Stats } from "fs";
import { TaskmergeError } from "./errors";

const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0);

/** What a non-regular file is, for messages. */
export function fileKind(st: Stats): string {
  if (st.isDirectory()) return "a directory";
  if (st.isFIFO()) return "a FIFO";
  if (st.isSocket()) return "a socket";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  return "not a regular file";
}

function notRegular(st: Stats, file: string): TaskmergeError {
  return new TaskmergeError(`not a regular file (${fileKind(st)}); inputs must be regular files`, file);
}

function cannotOpen(e: unknown, file: string): TaskmergeError {
  const code = (e as NodeJS.ErrnoException).code;
  return new TaskmergeError(`cannot open: ${code === "ENOENT" ? "no such file" : code ?? (e as Error).message}`, file);
}

/** Opens `file` for reading; fails, without blocking, unless it is a regular file (symlinks to one are fine). */
export async function openRegularFile(file: string): Promise<fsp.FileHandle> {
  const before = await fsp.stat(file).catch((e) => {
    throw cannotOpen(e, file);
  });
  if (!before.isFile()) throw notRegular(before, file);
  const fh = await fsp.open(file, OPEN_FLAGS).catch((e) => {
    throw cannotOpen(e, file);
  });
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw notRegular(st, file);
    return fh;
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/** The whole content of a regular file. */
export async function readRegularFile(file: string): Promise<Buffer> {
  const fh = await openRegularFile(file);
  try {
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}
