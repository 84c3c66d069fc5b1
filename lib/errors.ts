/** Errors with the context a user needs: which file, which key. */

const MAX_QUOTED = 200;

/**
 * A key (or any text from a file) as it appears in a message: JSON-quoted, so
 * a newline or control character in it cannot break the one-line error, and
 * cut to a readable length.
 */
export function quote(s: string): string {
  const q = JSON.stringify(s.length > MAX_QUOTED ? s.slice(0, MAX_QUOTED) : s);
  return s.length > MAX_QUOTED ? `${q.slice(0, -1)}…" (${s.length} characters)` : q;
}

/** A file path in a message: as written, unless it holds control characters. */
function quotePath(p: string): string {
  return /[\x00-\x1f\x7f]/.test(p) ? JSON.stringify(p) : p;
}

/** Which input an error is about, for callers that act on it without reading the message. */
export interface Provenance {
  role: "base" | "expert" | "stats" | "bundle" | "output";
  /** Position among the inputs of that role (experts and their statistics: --expert order). */
  index?: number;
  /** The expert's name, for role expert or stats. */
  name?: string;
}

export class TaskmergeError extends Error {
  /** The message without the file and key. */
  readonly reason: string;

  constructor(message: string, readonly file?: string, readonly key?: string, readonly source?: Provenance) {
    super(TaskmergeError.compose(message, file, key));
    this.name = "TaskmergeError";
    this.reason = message;
  }

  private static compose(message: string, file?: string, key?: string): string {
    const where = [file && `file ${quotePath(file)}`, key !== undefined && `key ${quote(key)}`].filter(Boolean).join(", ");
    return where ? `${message} (${where})` : message;
  }
}

/** Bad options or arguments: the CLI exits with code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export class AbortError extends Error {
  constructor(message = "the operation was aborted") {
    super(message);
    this.name = "AbortError";
  }
}

export function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new AbortError();
}
