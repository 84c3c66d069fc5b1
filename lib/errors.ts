/** Errors with the context a user needs: which file, which key. */

/** Which input an error is about, for callers that act on it without reading the message. */
export interface Provenance {
  role: "base" | "expert" | "stats" | "bundle" | "output";
  /** Position among the inputs of that role (experts and their statistics: --expert order). */
  index?: number;
  /** The expert's name, for role expert or stats. */
  name?: string;
}

export class TaskmergeError extends Error {
  constructor(message: string, readonly file?: string, readonly key?: string, readonly source?: Provenance) {
    super(TaskmergeError.compose(message, file, key));
    this.name = "TaskmergeError";
  }

  private static compose(message: string, file?: string, key?: string): string {
    const where = [file && `file ${file}`, key && `key '${key}'`].filter(Boolean).join(", ");
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
