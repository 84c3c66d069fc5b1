/**
 * Native ops report a bad input as an InputError whose role ("base",
 * "expert", "stats", "bundle"), argument name, index and detail the addon
 * attaches to the JS error as properties (kind "input"; a bad op argument
 * is kind "argument" with arg and index, a caller's bug, never attributed to
 * a file). This turns them into TaskmergeErrors that name the input's
 * file, the key and the expert by its name, without parsing message text.
 */
import type { Checkpoint } from "../checkpoint";
import type { Expert } from "./context";
import { Provenance, TaskmergeError } from "../errors";

export interface NativeInputError {
  message: string;
  kind: "input";
  /** "base" | "expert" | "stats" | "bundle": which input the caller resolves to a file. */
  role: string;
  /** The argument as the message names it ("base", "expert", "tau"). */
  arg: string;
  /** Position among the op's inputs of that role; absent when the role has one input. */
  index?: number;
  /** The message without its subject ("holds a non-finite value ... at element 5"). */
  detail: string;
  element?: number;
}

/** The structured fields of a native InputError (duck-typed: errors may come from another realm). */
export function nativeInputError(e: unknown): NativeInputError | undefined {
  const x = e as Partial<NativeInputError> | null;
  return x && typeof x === "object" && x.kind === "input" && typeof x.role === "string" && typeof x.detail === "string" ? (x as NativeInputError) : undefined;
}

/** How an error names one input: the subject of its message, the file and key, the provenance. */
export interface InputRef {
  subject: string;
  file?: string;
  key?: string;
  source: Provenance;
}

export type Resolve = (role: string, index: number | undefined) => InputRef | undefined;

/** The shard of `ck` that holds `key` (the checkpoint itself when unknown). */
function fileOf(ck: Checkpoint, key: string): string {
  return ck.tensor(key)?.file.path ?? ck.path;
}

export function baseRef(base: Checkpoint, key: string): InputRef {
  return { subject: "the base", file: fileOf(base, key), key, source: { role: "base" } };
}

export function expertRef(experts: readonly Pick<Expert, "name" | "checkpoint">[], index: number, key: string): InputRef {
  const e = experts[index];
  return { subject: `expert '${e.name}'`, file: fileOf(e.checkpoint, key), key, source: { role: "expert", index, name: e.name } };
}

/** Inputs of an op over a chunk of `key`: the base and the experts by position. */
export function chunkInputs(ctx: { base: Checkpoint; experts: readonly Pick<Expert, "name" | "checkpoint">[] }, key: string): Resolve {
  return (role, index) => {
    if (role === "base") return baseRef(ctx.base, key);
    if (role === "expert" && index !== undefined && index < ctx.experts.length) return expertRef(ctx.experts, index, key);
    return undefined;
  };
}

/** A native InputError as a TaskmergeError naming its input; any other error is returned unchanged. */
export function attribute(e: unknown, resolve: Resolve): unknown {
  const n = nativeInputError(e);
  if (!n || e instanceof TaskmergeError) return e;
  const ref = resolve(n.role, n.index);
  return ref ? new TaskmergeError(`${ref.subject} ${n.detail}`, ref.file, ref.key, ref.source) : e;
}

/** Runs `fn`, attributing a native input error to the input it concerns. */
export async function blaming<T>(resolve: Resolve, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw attribute(e, resolve);
  }
}
