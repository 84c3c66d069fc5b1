/**
 * The TASKMERGE_* environment knobs, validated in one place: a value that is
 * set but not valid is a usage error of one line ("TASKMERGE_THREADS='abc'
 * is not an integer from 1 to 1024"), never silently the default. The CLI
 * checks them all before it starts; the library checks each where it is used.
 */
import { UsageError } from "./errors";

type Knob =
  | { kind: "int"; min: number; max: number; what: string }
  | { kind: "number"; min: number; max: number; minExclusive?: boolean; what: string }
  | { kind: "choice"; choices: readonly string[]; what: string };

export const KNOBS = {
  /** Native worker threads (read by the addon itself). */
  TASKMERGE_THREADS: { kind: "int", min: 1, max: 1024, what: "worker threads" },
  TASKMERGE_CHUNK_ELEMS: { kind: "int", min: 1, max: 1 << 28, what: "elements per streamed chunk" },
  TASKMERGE_PROGRESS_INTERVAL: { kind: "number", min: 0, max: 86400, minExclusive: true, what: "seconds between progress lines" },
  TASKMERGE_TIES_CANDIDATES: { kind: "int", min: -1, max: 2 ** 31 - 1, what: "fused sign-sum candidates (-1: off)" },
  TASKMERGE_TIES_SAMPLE: { kind: "int", min: 1, max: 2 ** 31 - 1, what: "TIES window sample entries" },
  TASKMERGE_TIES_WINDOW_Z: { kind: "number", min: 0, max: 1e6, what: "TIES window width in standard errors" },
  TASKMERGE_TIES_SELECT: { kind: "choice", choices: ["window", "histogram"], what: "TIES threshold selection" },
  TASKMERGE_LINALG: { kind: "choice", choices: ["builtin", "openblas"], what: "linear algebra backend" },
  /** Read by the CUDA backend (native/cuda/context.cu) when it starts. */
  TASKMERGE_CUDA_DEVICE: { kind: "int", min: 0, max: 1023, what: "CUDA device index" },
  TASKMERGE_CUDA_PRECISION: { kind: "choice", choices: ["f64", "f32", "tf32"], what: "CUDA default precision of gemm, syrk and Cholesky (the solves take solve_precision)" },
} as const satisfies Record<string, Knob>;

export type KnobName = keyof typeof KNOBS;

function describe(k: Knob): string {
  if (k.kind === "choice") return `one of ${k.choices.join(", ")}`;
  if (k.kind === "int") return `an integer from ${k.min} to ${k.max}`;
  return `a number ${k.minExclusive ? "above" : "from"} ${k.min} ${k.minExclusive ? "and at most" : "to"} ${k.max}`;
}

/** The knob's value, undefined when unset or empty; throws a UsageError when it is set but invalid. */
export function envValue(name: KnobName, env: NodeJS.ProcessEnv = process.env): number | string | undefined {
  const raw = env[name];
  if (raw === undefined || raw === "") return undefined;
  const k: Knob = KNOBS[name];
  const bad = () => new UsageError(`environment variable ${name}=${JSON.stringify(raw.length > 40 ? raw.slice(0, 40) + "…" : raw)} is not ${describe(k)} (${k.what})`);
  if (k.kind === "choice") {
    if (!k.choices.includes(raw)) throw bad();
    return raw;
  }
  const s = raw.trim();
  const v = k.kind === "int" ? (/^[+-]?\d+$/.test(s) ? Number(s) : NaN) : /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s) ? Number(s) : NaN;
  const low = k.kind === "number" && k.minExclusive ? v <= k.min : v < k.min;
  if (!Number.isFinite(v) || low || v > k.max) throw bad();
  return v;
}

/** A numeric knob's value (undefined when unset). */
export function envNumber(name: KnobName, env: NodeJS.ProcessEnv = process.env): number | undefined {
  const v = envValue(name, env);
  return typeof v === "number" ? v : undefined;
}

/** Checks every knob that is set: the CLI runs this first, so a typo fails before any work. */
export function checkEnvironment(env: NodeJS.ProcessEnv = process.env): void {
  for (const name of Object.keys(KNOBS) as KnobName[]) envValue(name, env);
}
