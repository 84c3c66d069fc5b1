/**
 * Checking a value against its ParamSpec declaration: the one validation path
 * of method parameters (methods/index.ts resolveParams) and of compress's
 * options (tall/params.ts). Values from flags arrive as strings and are
 * converted here.
 */
import { UsageError } from "../errors";
import type { ParamSpec } from "./context";

/** `v` checked against `p` (type, choices, range); `owner` starts the error message ("ties", "compress"). */
export function checkParam(owner: string, p: ParamSpec, v: unknown): number | string | boolean {
  const where = `${owner}: parameter '${p.name}'`;
  if (p.type === "boolean") {
    if (v === "true") return true;
    if (v === "false") return false;
    if (typeof v !== "boolean") throw new UsageError(`${where} must be true or false (got ${JSON.stringify(v)})`);
    return v;
  }
  if (p.type === "string") {
    if (typeof v !== "string") throw new UsageError(`${where} must be a string`);
    if (p.choices && !p.choices.includes(v)) throw new UsageError(`${where} must be one of ${p.choices.join(", ")} (got '${v}')`);
    return v;
  }
  const n = typeof v === "string" && v.trim() !== "" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isFinite(n)) throw new UsageError(`${where} must be a finite number (got ${JSON.stringify(v)})`);
  if (p.type === "integer" && !Number.isInteger(n)) throw new UsageError(`${where} must be an integer (got ${n})`);
  if (p.min !== undefined && n < p.min) throw new UsageError(`${where} must be ≥ ${p.min} (got ${n})`);
  if (p.max !== undefined && n > p.max) throw new UsageError(`${where} must be ≤ ${p.max} (got ${n})`);
  return n;
}
