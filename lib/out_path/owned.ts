/**
 * What an output may replace: nothing, an empty directory, or something
 * taskmerge wrote itself. A file output replaces only a safetensors file; a
 * directory output replaces only a directory holding its marker file
 * (taskmerge.json, bundle.json) and no entry taskmerge did not write. Anything
 * else fails here, before any input is read.
 */
import { promises as fsp } from "fs";
import * as path from "path";
import { TaskmergeError } from "../errors";

export type OutputKind =
  /** One safetensors file. */
  | { kind: "file" }
  /**
   * A directory recognised by its marker file. `files` lists every name such a
   * directory holds; without it, the marker's own `files` list (taskmerge.json) says.
   */
  | { kind: "dir"; what: string; marker: string; files?: readonly string[] };

/** The marker of checkpoint directories; it lists the files of its directory under `files`. */
export const MANIFEST = "taskmerge.json";
export const CHECKPOINT_DIR: OutputKind = { kind: "dir", what: "taskmerge output", marker: MANIFEST };

export async function checkParent(abs: string, shown: string): Promise<void> {
  const st = await fsp.stat(path.dirname(abs)).catch(() => undefined);
  if (!st?.isDirectory()) throw new TaskmergeError("output's parent directory does not exist", shown);
}

/** Throws unless `abs` is absent or may be replaced by an output of `kind`. */
export async function checkReplaceable(abs: string, shown: string, kind: OutputKind): Promise<void> {
  await checkParent(abs, shown);
  const st = await fsp.lstat(abs).catch(() => undefined);
  if (!st) return;
  const refuse = (why: string) => new TaskmergeError(`${why}; refusing to replace it`, shown);
  if (st.isSymbolicLink()) throw refuse("output path is a symbolic link");
  if (kind.kind === "file") {
    if (st.isDirectory()) throw new TaskmergeError("output path is a directory", shown);
    if (!st.isFile()) throw refuse("output path exists and is not a regular file");
    if (!(await isSafetensorsFile(abs, st.size))) throw refuse("output path exists and is not a safetensors file");
    return;
  }
  if (!st.isDirectory()) throw new TaskmergeError("output path exists and is not a directory", shown);
  // Replacing the working directory would leave the shell in a deleted one.
  if (abs === path.resolve(".")) throw new TaskmergeError("output is the current directory; give a directory name to write into", shown);
  const entries = await fsp.readdir(abs, { withFileTypes: true });
  if (!entries.length) return;
  if (!entries.some((e) => e.name === kind.marker && e.isFile()))
    throw refuse(`output directory exists and is not a ${kind.what} (no ${kind.marker})`);
  const ours = new Set(kind.files ?? (await listedFiles(path.join(abs, kind.marker), shown)));
  // Names are quoted when they hold control characters, so the error stays one line.
  const foreign = entries.filter((e) => !e.isFile() || !ours.has(e.name)).map((e) => (/[\x00-\x1f\x7f]/.test(e.name) ? JSON.stringify(e.name) : e.name));
  if (foreign.length) {
    const shownNames = foreign.slice(0, 3).join(", ") + (foreign.length > 3 ? ` and ${foreign.length - 3} more` : "");
    throw refuse(`output directory holds ${shownNames}, which taskmerge did not write`);
  }
}

/** The `files` list of a taskmerge.json. */
async function listedFiles(manifest: string, shown: string): Promise<string[]> {
  let files: unknown;
  try {
    files = JSON.parse(await fsp.readFile(manifest, "utf8"))?.files;
  } catch {
    files = undefined;
  }
  if (!Array.isArray(files) || !files.every((f) => typeof f === "string"))
    throw new TaskmergeError(
      `output directory's ${path.basename(manifest)} lists no files (an older taskmerge wrote it, or it was edited); ` +
        "refusing to replace it (remove it yourself or choose another output)",
      shown,
    );
  return files;
}

/** The framing of a safetensors file: an 8-byte length, then a JSON object header that fits the file. */
async function isSafetensorsFile(abs: string, size: number): Promise<boolean> {
  if (size < 10) return false;
  const fh = await fsp.open(abs, "r");
  try {
    const head = Buffer.alloc(9);
    await fh.read(head, 0, 9, 0);
    const n = head.readBigUInt64LE(0);
    if (n < 2n || n > BigInt(size - 8)) return false;
    const tail = Buffer.alloc(Math.min(8, Number(n)));
    await fh.read(tail, 0, tail.length, 8 + Number(n) - tail.length);
    return head[8] === 0x7b && tail.toString("latin1").trimEnd().endsWith("}");
  } finally {
    await fh.close();
  }
}
