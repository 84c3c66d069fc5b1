/**
 * Loads the native addon and exposes its one entry point: run(op, args),
 * which runs a named C++ op on a worker thread and resolves with its results.
 */
import * as path from "path";
import { envValue } from "./env";

export type OpArg = number | boolean | string | Uint8Array | ArrayBufferView | number[] | string[] | ArrayBufferView[];
export type OpResult = Record<string, number | number[] | Buffer>;

interface Addon {
  run(op: string, args: Record<string, OpArg | undefined>): Promise<OpResult>;
  info(): { threads: number; blas: string; ops: string[] };
}

let addon: Addon | undefined;

function load(): Addon {
  if (addon) return addon;
  const root = path.join(__dirname, "..");
  const candidates = [
    process.env.TASKMERGE_ADDON,
    path.join(root, "build", "Release", "taskmerge.node"),
    path.join(root, "build", "Debug", "taskmerge.node"),
  ].filter((p): p is string => !!p);
  const errors: string[] = [];
  for (const p of candidates) {
    try {
      addon = require(p) as Addon;
      return addon;
    } catch (e) {
      errors.push(`${p}: ${(e as Error).message.split("\n")[0]}`);
    }
  }
  throw new Error(`taskmerge: native addon not found; run 'npm run build:native'.\n${errors.join("\n")}`);
}

/** Always a promise: argument errors the addon throws synchronously become rejections. */
export async function runOp(op: string, args: Record<string, OpArg | undefined>): Promise<OpResult> {
  // The addon reads TASKMERGE_THREADS and TASKMERGE_LINALG itself and would ignore a bad value.
  envValue("TASKMERGE_THREADS");
  envValue("TASKMERGE_LINALG");
  return load().run(op, args);
}

export function nativeInfo(): { threads: number; blas: string; ops: string[] } {
  return load().info();
}
