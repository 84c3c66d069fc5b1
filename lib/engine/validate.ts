/** Checks that every expert holds the base's keys with the same shapes, before anything is written. */
import type { Checkpoint } from "../checkpoint";
import { quote, TaskmergeError } from "../errors";
import { isFloatDType } from "../safetensors/dtypes";

const SHOW = 5;

export function checkCompatible(base: Checkpoint, others: Checkpoint[]): void {
  const baseKeys = base.keys();
  for (const other of others) {
    const missing = baseKeys.filter((k) => !other.tensor(k));
    const extra = other.keys().filter((k) => !base.tensor(k));
    if (missing.length || extra.length) {
      const parts = [];
      if (missing.length) parts.push(`missing ${list(missing)}`);
      if (extra.length) parts.push(`not in the base: ${list(extra)}`);
      throw new TaskmergeError(`keys differ from the base ${base.path}: ${parts.join("; ")}`, other.path);
    }
    const bad: string[] = [];
    for (const k of baseKeys) {
      const a = base.get(k), b = other.get(k);
      const sameShape = a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]);
      if (!sameShape) bad.push(`${quote(k)} [${b.shape}] vs base [${a.shape}]`);
      else if (isFloatDType(a.dtype) !== isFloatDType(b.dtype)) bad.push(`${quote(k)} ${b.dtype} vs base ${a.dtype}`);
      if (bad.length >= SHOW) break;
    }
    if (bad.length) throw new TaskmergeError(`shapes or dtypes differ from the base: ${bad.join(", ")}`, other.path);
  }
}

function list(keys: string[]): string {
  const shown = keys.slice(0, SHOW).map(quote).join(", ");
  return keys.length > SHOW ? `${shown} and ${keys.length - SHOW} more` : shown;
}
